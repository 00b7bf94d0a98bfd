import { describe, expect, it } from 'vitest';
import { randomFactory } from '../../../sidecar/src/lb/random.js';
import { weightedRandomFactory } from '../../../sidecar/src/lb/weighted-random.js';
import { makeEndpoints, opts, shares } from './helpers.js';

const PICKS = 10_000;

describe('random', () => {
  it('spreads uniformly: every share within 1 % of 1/n over 10,000 picks', () => {
    const eps = makeEndpoints(4);
    const got = shares(randomFactory(eps, opts(7)), eps, PICKS);
    for (const s of got) expect(Math.abs(s - 0.25)).toBeLessThanOrEqual(0.01);
  });

  it('ignores weights', () => {
    const eps = makeEndpoints(2, (i) => ({ weight: i === 0 ? 1 : 9 }));
    const got = shares(randomFactory(eps, opts(3)), eps, PICKS);
    for (const s of got) expect(Math.abs(s - 0.5)).toBeLessThanOrEqual(0.01);
  });

  it('is reproducible with the same seed and differs with another', () => {
    const eps = makeEndpoints(8);
    const seq = (seed: number) => {
      const p = randomFactory(eps, opts(seed));
      return Array.from({ length: 20 }, () => p.pick(undefined, undefined)?.address);
    };
    expect(seq(5)).toEqual(seq(5));
    expect(seq(5)).not.toEqual(seq(6));
  });

  it('returns undefined for an empty set', () => {
    expect(randomFactory([], opts()).pick(undefined, undefined)).toBeUndefined();
  });
});

describe('weighted-random', () => {
  it('gives shares proportional to weights 1,2,3,4 within 1 % over 10,000 picks', () => {
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    const got = shares(weightedRandomFactory(eps, opts(11)), eps, PICKS);
    got.forEach((s, i) => expect(Math.abs(s - (i + 1) / 10)).toBeLessThanOrEqual(0.01));
  });

  it('handles skewed weights (1 and 999) and a single endpoint', () => {
    const eps = makeEndpoints(2, (i) => ({ weight: i === 0 ? 1 : 999 }));
    const got = shares(weightedRandomFactory(eps, opts(2)), eps, PICKS);
    expect(got[0]).toBeLessThanOrEqual(0.004);
    expect(got[1]).toBeGreaterThanOrEqual(0.996);
    const one = makeEndpoints(1);
    expect(weightedRandomFactory(one, opts()).pick(undefined, undefined)).toBe(one[0]);
  });

  it('supports fractional weights (slow start) and reads weights at build time', () => {
    const eps = makeEndpoints(2, (i) => ({ weight: i === 0 ? 0.25 : 0.75 }));
    const picker = weightedRandomFactory(eps, opts(4));
    eps[0]!.weight = 100; // no effect until rebuilt
    const got = shares(picker, eps, PICKS);
    expect(Math.abs(got[0]! - 0.25)).toBeLessThanOrEqual(0.01);
    const rebuilt = shares(weightedRandomFactory(eps, opts(4)), eps, PICKS);
    expect(rebuilt[0]).toBeGreaterThan(0.99);
  });

  it('gives no share to an endpoint with a non-positive weight, unless all are', () => {
    const eps = makeEndpoints(3, (i) => ({ weight: i === 1 ? 0 : 1 }));
    const got = shares(weightedRandomFactory(eps, opts(9)), eps, 2_000);
    expect(got[1]).toBe(0);
    const zeros = makeEndpoints(2, () => ({ weight: 0 }));
    const z = shares(weightedRandomFactory(zeros, opts(9)), zeros, 2_000);
    for (const s of z) expect(s).toBeGreaterThan(0.4);
  });
});
