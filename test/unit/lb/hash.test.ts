import { describe, expect, it } from 'vitest';
import { fmix32, hash32 } from '../../../sidecar/src/lb/hash.js';

describe('hash32', () => {
  it('is a deterministic unsigned 32-bit value', () => {
    for (const k of ['', 'a', 'user-1', '10.0.0.1:8080_0', 'ünïcödé']) {
      const h = hash32(k);
      expect(h).toBe(hash32(k));
      expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
    }
  });

  it('is FNV-1a with a murmur3 finalizer (pinned values, so rings stay stable across releases)', () => {
    // FNV-1a("") is the offset basis 0x811c9dc5; FNV-1a("a") = 0xe40c292c.
    expect(hash32('')).toBe(fmix32(0x811c9dc5));
    expect(hash32('a')).toBe(fmix32(0xe40c292c));
  });

  it('gives independent functions for different seeds', () => {
    let same = 0;
    for (let i = 0; i < 1_000; i++) if (hash32(`k${i}`, 0) === hash32(`k${i}`, 1)) same++;
    expect(same).toBe(0);
  });

  it('spreads similar keys evenly over buckets, also in the high bits', () => {
    const low = new Array<number>(16).fill(0);
    const high = new Array<number>(16).fill(0);
    const n = 32_000;
    for (let i = 0; i < n; i++) {
      const h = hash32(`10.0.0.1:8080_${i}`);
      low[h & 15]!++;
      high[h >>> 28]!++;
    }
    for (const c of [...low, ...high]) expect(Math.abs(c - n / 16)).toBeLessThanOrEqual(0.1 * (n / 16));
  });
});
