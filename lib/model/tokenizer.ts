import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { LoralabError } from "../errors.js";

/** A model's tokenizer.json through @huggingface/tokenizers (pure JS). `encode` adds BOS exactly when the
 * tokenizer's own post-processor would (Llama: yes, Qwen2: no). */
export class TextTokenizer {
  private constructor(private readonly tok: Tokenizer, readonly bosId: number | null, readonly dir: string) {}

  static async load(dir: string): Promise<TextTokenizer> {
    const read = async (name: string, required: boolean) => {
      const path = join(dir, name);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch {
        if (!required) return {};
        throw new LoralabError(`${dir} has no ${name}; the engine needs the model's Hugging Face tokenizer`);
      }
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new LoralabError(`${path}: not valid JSON (${(e as Error).message})`);
      }
    };
    const tok = new Tokenizer(await read("tokenizer.json", true), await read("tokenizer_config.json", false));
    // the BOS the post-processor prepends, if any
    const withSpecial = tok.encode("a").ids, without = tok.encode("a", { add_special_tokens: false }).ids;
    const bosId = withSpecial.length > without.length && withSpecial[0] !== without[0] ? withSpecial[0] : null;
    return new TextTokenizer(tok, bosId, dir);
  }

  /** Token ids of `text`; with `bos` (default true) the BOS is prepended when the tokenizer adds one. */
  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    return (opts.bos ?? true) && this.bosId !== null ? [this.bosId, ...ids] : ids;
  }

  decode(ids: number[], skipSpecial = true): string {
    return this.tok.decode(ids, { skip_special_tokens: skipSpecial });
  }

  /** Text of `ids` as it reads after `context` (keeps the leading space a decoder strips at the start). */
  decodeAfter(context: number | undefined, ids: number[]): string {
    if (context === undefined) return this.decode(ids);
    const head = this.decode([context]);
    const all = this.decode([context, ...ids]);
    return all.startsWith(head) ? all.slice(head.length) : this.decode(ids);
  }
}

/** Streams decoded text of generated tokens, holding back an incomplete UTF-8 sequence (byte fallback). */
export class TextStream {
  private ids: number[] = [];
  private emitted = 0;
  constructor(private readonly tok: TextTokenizer, private readonly context: number | undefined, private readonly write: (s: string) => void) {}
  push(id: number): void {
    this.ids.push(id);
    const text = this.tok.decodeAfter(this.context, this.ids);
    if (text.endsWith("\uFFFD")) return;
    if (text.length > this.emitted) this.write(text.slice(this.emitted));
    this.emitted = text.length;
  }
  end(): void {
    const text = this.tok.decodeAfter(this.context, this.ids);
    if (text.length > this.emitted) this.write(text.slice(this.emitted));
    this.emitted = text.length;
  }
}
