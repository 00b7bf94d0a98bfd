import { describe, expect, it } from 'vitest';
import { buildPicker, lbPolicies, pickerFactories } from '../../../sidecar/src/lb/index.js';
import { SCAN_LIMIT } from '../../../sidecar/src/lb/least-load.js';
import { makeEndpoints, opts } from './helpers.js';


describe.each(lbPolicies.map((policy) => ({ policy })))('avoid with $policy', ({ policy }) => {
  const key = (i: number) => `user-${i}`;

  it('never returns the avoided endpoint when one of 3 is avoided', () => {
    const eps = makeEndpoints(3, (i) => ({ weight: i + 1 }));
    for (const avoided of eps) {
      const p = buildPicker(policy, eps, opts(3));
      for (let i = 0; i < 1_000; i++) {
        const got = p.pick(key(i), [avoided]);
        expect(got).toBeDefined();
        expect(got).not.toBe(avoided);
      }
    }
  });

  it('returns the only endpoint left when 2 of 3 are avoided', () => {
    const eps = makeEndpoints(3);
    const p = pickerFactories[policy](eps, opts(4));
    for (let i = 0; i < 300; i++) expect(p.pick(key(i), [eps[2]!, eps[0]!])).toBe(eps[1]);
  });

  it('still returns an endpoint of the set when all are avoided', () => {
    const eps = makeEndpoints(3);
    const p = pickerFactories[policy](eps, opts(5));
    for (let i = 0; i < 300; i++) expect(eps).toContain(p.pick(key(i), [...eps]));
    // an avoid list with duplicates and outsiders, still covering the whole set
    const outsider = makeEndpoints(5)[4]!;
    expect(eps).toContain(p.pick('k', [eps[0]!, eps[0]!, outsider, eps[1]!, eps[2]!]));
  });

  it('ignores endpoints in avoid that are not in the set, and an empty avoid list', () => {
    const eps = makeEndpoints(3);
    const outsiders = makeEndpoints(6).slice(3);
    const p = pickerFactories[policy](eps, opts(6));
    for (let i = 0; i < 100; i++) {
      expect(eps).toContain(p.pick(key(i), outsiders));
      expect(eps).toContain(p.pick(key(i), []));
    }
  });

  it('returns undefined for an empty set, with or without avoid', () => {
    const p = pickerFactories[policy]([], opts());
    expect(p.pick('k', undefined)).toBeUndefined();
    expect(p.pick('k', makeEndpoints(1))).toBeUndefined();
    expect(p.pick(undefined, [])).toBeUndefined();
  });

  it('avoids on large sets too (P2C path of least-load, long rings)', () => {
    const eps = makeEndpoints(SCAN_LIMIT + 8, (i) => ({ weight: 1 + (i % 3) }));
    const avoid = eps.slice(0, eps.length - 2);
    const p = pickerFactories[policy](eps, opts(7));
    for (let i = 0; i < 300; i++) expect(eps.slice(-2)).toContain(p.pick(key(i), avoid));
  });

  it('with one endpoint, returns it whether avoided or not', () => {
    const eps = makeEndpoints(1);
    const p = pickerFactories[policy](eps, opts());
    expect(p.pick('k', undefined)).toBe(eps[0]);
    expect(p.pick('k', eps)).toBe(eps[0]);
  });
});

describe('avoid keeps the policy’s preference among the rest', () => {
  it('least-load picks the argmin of the endpoints not yet tried', () => {
    const eps = makeEndpoints(4);
    eps.forEach((ep, i) => (ep.inflight = i)); // loads ascending
    const p = pickerFactories['least-load'](eps, opts());
    for (let i = 0; i < 50; i++) expect(p.pick(undefined, [eps[0]!])).toBe(eps[1]);
    for (let i = 0; i < 50; i++) expect(p.pick(undefined, [eps[1]!, eps[0]!])).toBe(eps[2]);
    for (let i = 0; i < 50; i++) expect(p.pick(undefined, [...eps])).toBe(eps[0]);
  });

  it('least-request / peak-ewma compare two untried endpoints', () => {
    const eps = makeEndpoints(3);
    eps[1]!.inflight = 9;
    eps[1]!.ewmaMs = 500;
    eps[2]!.ewmaMs = 5;
    for (const policy of ['least-request', 'peak-ewma'] as const) {
      const p = pickerFactories[policy](eps, opts());
      // untried: 1 and 2 → 2 is better for both policies
      for (let i = 0; i < 50; i++) expect(p.pick(undefined, [eps[0]!])).toBe(eps[2]);
    }
  });
});
