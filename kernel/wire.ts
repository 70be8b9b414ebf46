import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/** Jupyter messaging protocol version this kernel speaks. */
export const PROTOCOL_VERSION = "5.3";
const DELIMITER = "<IDS|MSG>";

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
}

/** A decoded message; `identities` are the ROUTER routing frames to send the reply back with. */
export interface Message<C = Record<string, any>> {
  identities: Uint8Array[];
  header: Header;
  parent_header: Partial<Header>;
  metadata: Record<string, unknown>;
  content: C;
  buffers: Uint8Array[];
}

export class SignatureError extends Error {
  override name = "SignatureError";
}

/** Signs and verifies with HMAC-SHA256 over header, parent header, metadata and content (the wire spec).
 * An empty key disables signing, as the spec allows. */
export class Signer {
  constructor(private readonly key: string, scheme = "hmac-sha256") {
    if (key && scheme !== "hmac-sha256") throw new Error(`unsupported signature_scheme '${scheme}' (only hmac-sha256)`);
  }

  sign(parts: (string | Uint8Array)[]): string {
    if (!this.key) return "";
    const h = createHmac("sha256", this.key);
    for (const p of parts) h.update(p);
    return h.digest("hex");
  }

  verify(signature: string, parts: Uint8Array[]): boolean {
    if (!this.key) return true;
    const expected = Buffer.from(this.sign(parts), "utf8");
    const got = Buffer.from(signature, "utf8");
    return got.length === expected.length && timingSafeEqual(got, expected);
  }
}

export function makeHeader(msgType: string, session: string): Header {
  return { msg_id: randomUUID(), session, username: "kernel", date: new Date().toISOString(), msg_type: msgType, version: PROTOCOL_VERSION };
}

/** Frames -> Message; throws SignatureError when the HMAC does not match. */
export function decode(frames: Uint8Array[], signer: Signer): Message {
  const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
  const at = frames.findIndex((f) => f.byteLength === DELIMITER.length && text(f) === DELIMITER);
  if (at < 0 || frames.length < at + 6) throw new Error("malformed message: no <IDS|MSG> delimiter or missing parts");
  const [signature, header, parent, metadata, content] = frames.slice(at + 1, at + 6);
  if (!signer.verify(text(signature), [header, parent, metadata, content])) throw new SignatureError("bad message signature");
  return {
    identities: frames.slice(0, at),
    header: JSON.parse(text(header)),
    parent_header: JSON.parse(text(parent)),
    metadata: JSON.parse(text(metadata)),
    content: JSON.parse(text(content)),
    buffers: frames.slice(at + 6),
  };
}

/** Message -> frames (identities, delimiter, signature, four JSON parts, buffers). */
export function encode(msg: Omit<Message, "identities"> & { identities?: Uint8Array[] }, signer: Signer): (Buffer | Uint8Array)[] {
  const parts = [msg.header, msg.parent_header, msg.metadata, msg.content].map((p) => Buffer.from(JSON.stringify(p), "utf8"));
  return [...(msg.identities ?? []), Buffer.from(DELIMITER), Buffer.from(signer.sign(parts)), ...parts, ...msg.buffers];
}
