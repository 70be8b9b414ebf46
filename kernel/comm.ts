/** Comms: kernel-side objects paired with frontend objects (ipywidgets uses them). Frontend comm_open,
 * comm_msg and comm_close arrive on shell; kernel-side messages go out on iopub. */
import { randomUUID } from "node:crypto";
import type { CommHandle } from "./host.js";
import type { Message } from "./wire.js";

export interface CommSender {
  publish(msgType: string, content: Record<string, unknown>, extra?: { metadata?: Record<string, unknown>; buffers?: Uint8Array[] }): void;
}

class Comm implements CommHandle {
  private messageHandlers: ((data: Record<string, any>, buffers: Uint8Array[]) => void)[] = [];
  private closeHandlers: ((data: Record<string, any>) => void)[] = [];
  closed = false;

  constructor(readonly commId: string, readonly targetName: string, private readonly manager: CommManager) {}

  send(data: Record<string, unknown>, metadata: Record<string, unknown> = {}, buffers: Uint8Array[] = []): void {
    if (this.closed) return;
    this.manager.sender.publish("comm_msg", { comm_id: this.commId, data }, { metadata, buffers });
  }

  close(data: Record<string, unknown> = {}): void {
    if (this.closed) return;
    this.closed = true;
    this.manager.sender.publish("comm_close", { comm_id: this.commId, data });
    this.manager.forget(this.commId);
  }

  onMessage(handler: (data: Record<string, any>, buffers: Uint8Array[]) => void): void {
    this.messageHandlers.push(handler);
  }

  onClose(handler: (data: Record<string, any>) => void): void {
    this.closeHandlers.push(handler);
  }

  deliver(data: Record<string, any>, buffers: Uint8Array[]): void {
    for (const h of this.messageHandlers) h(data, buffers);
  }

  closedByFrontend(data: Record<string, any>): void {
    this.closed = true;
    for (const h of this.closeHandlers) h(data);
  }
}

export type CommTarget = (comm: CommHandle, data: Record<string, any>, msg: Message) => void;

export class CommManager {
  private readonly comms = new Map<string, Comm>();
  private readonly targets = new Map<string, CommTarget>();

  constructor(readonly sender: CommSender) {}

  registerTarget(name: string, target: CommTarget): void {
    this.targets.set(name, target);
  }

  open(targetName: string, data: Record<string, unknown>, metadata: Record<string, unknown> = {}, buffers: Uint8Array[] = []): CommHandle {
    const comm = new Comm(randomUUID().replace(/-/g, ""), targetName, this);
    this.comms.set(comm.commId, comm);
    this.sender.publish("comm_open", { comm_id: comm.commId, target_name: targetName, data }, { metadata, buffers });
    return comm;
  }

  forget(id: string): void {
    this.comms.delete(id);
  }

  /** comm_open from the frontend: unknown targets are closed right away (as ipykernel does). */
  handleOpen(msg: Message): void {
    const { comm_id, target_name, data } = msg.content as { comm_id: string; target_name: string; data: Record<string, any> };
    const target = this.targets.get(target_name);
    const comm = new Comm(comm_id, target_name, this);
    if (!target) {
      comm.close();
      return;
    }
    this.comms.set(comm_id, comm);
    target(comm, data ?? {}, msg);
  }

  handleMessage(msg: Message): void {
    const { comm_id, data } = msg.content as { comm_id: string; data: Record<string, any> };
    this.comms.get(comm_id)?.deliver(data ?? {}, msg.buffers);
  }

  handleClose(msg: Message): void {
    const { comm_id, data } = msg.content as { comm_id: string; data: Record<string, any> };
    const comm = this.comms.get(comm_id);
    if (!comm) return;
    this.comms.delete(comm_id);
    comm.closedByFrontend(data ?? {});
  }

  info(targetName?: string): Record<string, { target_name: string }> {
    const out: Record<string, { target_name: string }> = {};
    for (const [id, c] of this.comms) if (!targetName || c.targetName === targetName) out[id] = { target_name: c.targetName };
    return out;
  }
}
