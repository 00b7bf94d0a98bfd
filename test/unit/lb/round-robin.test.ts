import { describe, expect, it } from 'vitest';
import { RoundRobinPicker, roundRobinFactory } from '../../../sidecar/src/lb/round-robin.js';
import { seededRandom } from '../../../common/src/random.js';
import { makeEndpoints, opts, shares } from './helpers.js';

describe('round-robin', () => {
  it('rotates: every window of n picks contains each endpoint exactly once', () => {
    const eps = makeEndpoints(5);
    const p = roundRobinFactory(eps, opts(3));
    const seq = Array.from({ length: 50 }, () => p.pick(undefined, undefined)!);
    for (let i = 0; i + 5 <= seq.length; i++) expect(new Set(seq.slice(i, i + 5)).size).toBe(5);
    // consecutive picks follow list order
    for (let i = 1; i < seq.length; i++) {
      expect(eps.indexOf(seq[i]!)).toBe((eps.indexOf(seq[i - 1]!) + 1) % 5);
    }
  });

  it('gives equal shares within 1 % over 10,000 picks', () => {
    const eps = makeEndpoints(4);
    const got = shares(roundRobinFactory(eps, opts(8)), eps, 10_000);
    for (const s of got) expect(Math.abs(s - 0.25)).toBeLessThanOrEqual(0.01);
  });

  it('starts at a random offset per build: different seeds give different offsets', () => {
    const eps = makeEndpoints(10);
    const a = new RoundRobinPicker(eps, seededRandom(1));
    const b = new RoundRobinPicker(eps, seededRandom(2));
    expect(a.offset).not.toBe(b.offset);
    expect(a.pick(undefined, undefined)).not.toBe(b.pick(undefined, undefined));
    const offsets = new Set(Array.from({ length: 40 }, (_, s) => new RoundRobinPicker(eps, seededRandom(s + 100)).offset));
    expect(offsets.size).toBeGreaterThanOrEqual(6);
  });

  it('returns undefined for an empty set', () => {
    expect(roundRobinFactory([], opts()).pick(undefined, undefined)).toBeUndefined();
  });
});
