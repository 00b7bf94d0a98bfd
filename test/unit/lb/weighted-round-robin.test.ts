import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../sidecar/src/core/endpoint.js';
import { weightedRoundRobinFactory } from '../../../sidecar/src/lb/weighted-round-robin.js';
import { makeEndpoints, maxRun, opts, shares } from './helpers.js';

function sequence(eps: readonly Endpoint[], seed: number, length: number): Endpoint[] {
  const p = weightedRoundRobinFactory(eps, opts(seed));
  return Array.from({ length }, () => p.pick(undefined, undefined)!);
}

describe('weighted-round-robin', () => {
  it('gives shares proportional to weights 1,2,3,4 within 1 % over 10,000 picks', () => {
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    const got = shares(weightedRoundRobinFactory(eps, opts(5)), eps, 10_000);
    got.forEach((s, i) => expect(Math.abs(s - (i + 1) / 10)).toBeLessThanOrEqual(0.01));
  });

  it('is exact: in every full period (10 picks for weights 1..4) each endpoint gets exactly its weight', () => {
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    for (const seed of [1, 2, 3]) {
      const seq = sequence(eps, seed, 1_000);
      for (let start = 0; start + 10 <= seq.length; start += 10) {
        const window = seq.slice(start, start + 10);
        eps.forEach((ep, i) => expect(window.filter((e) => e === ep).length).toBe(i + 1));
      }
    }
  });

  it('has no bursts: with weights 5,1,1 the heavy endpoint never runs more than 3 in a row', () => {
    const eps = makeEndpoints(3, (i) => ({ weight: i === 0 ? 5 : 1 }));
    for (let seed = 1; seed <= 20; seed++) {
      const seq = sequence(eps, seed, 700);
      expect(maxRun(seq).get(eps[0]!)).toBeLessThanOrEqual(3);
      expect(maxRun(seq).get(eps[1]!)).toBe(1);
      expect(maxRun(seq).get(eps[2]!)).toBe(1);
    }
  });

  it('spreads turns evenly: any 7 consecutive picks with weights 5,1,1 hold the heavy one 4 to 6 times', () => {
    const eps = makeEndpoints(3, (i) => ({ weight: i === 0 ? 5 : 1 }));
    const seq = sequence(eps, 9, 700);
    for (let i = 0; i + 7 <= seq.length; i++) {
      const heavy = seq.slice(i, i + 7).filter((e) => e === eps[0]).length;
      expect(heavy).toBeGreaterThanOrEqual(4);
      expect(heavy).toBeLessThanOrEqual(6);
    }
  });

  it('reduces to plain rotation for equal weights', () => {
    const eps = makeEndpoints(6, () => ({ weight: 3 }));
    const seq = sequence(eps, 4, 60);
    for (let i = 0; i + 6 <= seq.length; i++) expect(new Set(seq.slice(i, i + 6)).size).toBe(6);
  });

  it('starts at a random phase per build', () => {
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    const firsts = new Set(Array.from({ length: 30 }, (_, s) => sequence(eps, s + 1, 3).map((e) => e.address).join()));
    expect(firsts.size).toBeGreaterThanOrEqual(4);
  });

  it('handles fractional weights and skips endpoints without a positive weight', () => {
    const eps = makeEndpoints(3, (i) => ({ weight: [0.1, 1, 0][i]! }));
    const got = shares(weightedRoundRobinFactory(eps, opts(2)), eps, 11_000);
    expect(Math.abs(got[0]! - 1 / 11)).toBeLessThanOrEqual(0.01);
    expect(Math.abs(got[1]! - 10 / 11)).toBeLessThanOrEqual(0.01);
    expect(got[2]).toBe(0);
  });

  it('returns undefined for an empty set', () => {
    expect(weightedRoundRobinFactory([], opts()).pick(undefined, undefined)).toBeUndefined();
  });
});
