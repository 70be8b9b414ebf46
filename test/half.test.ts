import assert from "node:assert/strict";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../lib/tensor/half.js";

/** Independent reference: round a double to the nearest representable value with `mant` mantissa bits
 * and minimum normal exponent `emin`, ties to even, done with exact float64 arithmetic. */
function roundToFormat(x: number, mant: number, emin: number, max: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  const e = Math.max(Math.floor(Math.log2(a)), emin);
  const ulp = 2 ** (e - mant);
  const q = a / ulp;
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const v = r * ulp;
  return Math.sign(x) * (v > max ? Infinity : v);
}

describe("half-precision conversion (round to nearest even)", () => {
  const samples = new Float32Array(20000);
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < samples.length; i++) samples[i] = (rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 26);
  // exact ties and edge cases
  samples.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, 0], 0);

  it("f32 -> f16 matches a float64 reference rounding", () => {
    const h = f32ToF16(samples);
    const back = f16ToF32(h);
    for (let i = 0; i < samples.length; i++) {
      const want = roundToFormat(samples[i], 10, -14, 65504);
      assert.ok(Object.is(back[i], Math.fround(want)) || back[i] === want, `x=${samples[i]} got ${back[i]} want ${want}`);
    }
  });

  it("f32 -> bf16 matches a float64 reference rounding", () => {
    const b = f32ToBf16(samples);
    const back = bf16ToF32(b);
    for (let i = 0; i < samples.length; i++) {
      const want = roundToFormat(samples[i], 7, -126, 3.3895313892515355e38);
      assert.equal(back[i], Math.fround(want), `x=${samples[i]}`);
    }
  });

  it("known bit patterns", () => {
    assert.deepEqual([...f32ToF16(Float32Array.from([1, -2, 65504, Infinity, 1e-8]))], [0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0000]);
    assert.deepEqual([...f32ToBf16(Float32Array.from([1, -2, 3.140625]))], [0x3f80, 0xc000, 0x4049]);
    assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.from([NaN])))[0]));
  });
});
