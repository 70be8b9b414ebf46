/** mulberry32: a tiny seeded 32-bit PRNG, uniform in [0, 1); the same sequence on every platform, so
 * sampling, calibration windows and fixtures are reproducible without global state. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
