/** comm_open / comm_msg / comm_close from the frontend, and comm_info_request. */
import type { Handler } from "../kernelbase.js";

export const commOpen: Handler = async (kernel, ctx) => {
  kernel.comms.handleOpen(ctx.msg);
  return null;
};

export const commMsg: Handler = async (kernel, ctx) => {
  kernel.comms.handleMessage(ctx.msg);
  return null;
};

export const commClose: Handler = async (kernel, ctx) => {
  kernel.comms.handleClose(ctx.msg);
  return null;
};

export const commInfoRequest: Handler = async (kernel, ctx) => {
  const { target_name } = ctx.msg.content as { target_name?: string };
  return { status: "ok", comms: kernel.comms.info(target_name) };
};
