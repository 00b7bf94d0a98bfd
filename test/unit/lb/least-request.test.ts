import { describe, expect, it } from 'vitest';
import { leastRequestFactory } from '../../../sidecar/src/lb/least-request.js';
import { makeEndpoints, opts, shares } from './helpers.js';

describe('least-request', () => {
  it('prefers fewer in-flight requests (two endpoints: always the idler one)', () => {
    const eps = makeEndpoints(2);
    eps[0]!.inflight = 5;
    eps[1]!.inflight = 2;
    const got = shares(leastRequestFactory(eps, opts()), eps, 1_000);
    expect(got).toEqual([0, 1]);
  });

  it('is power of two choices: the busiest never wins, the idlest wins every pair it is in', () => {
    const eps = makeEndpoints(3);
    eps.forEach((ep, i) => (ep.inflight = i));
    const got = shares(leastRequestFactory(eps, opts(4)), eps, 9_000);
    expect(got[2]).toBe(0);
    expect(Math.abs(got[0]! - 2 / 3)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(got[1]! - 1 / 3)).toBeLessThanOrEqual(0.02);
  });

  it('breaks ties at random', () => {
    const eps = makeEndpoints(2);
    const got = shares(leastRequestFactory(eps, opts(6)), eps, 4_000);
    expect(Math.abs(got[0]! - 0.5)).toBeLessThanOrEqual(0.03);
  });

  it('reads in-flight live', () => {
    const eps = makeEndpoints(2);
    const p = leastRequestFactory(eps, opts());
    eps[0]!.inflight = 1;
    expect(p.pick(undefined, undefined)).toBe(eps[1]);
    eps[1]!.inflight = 3;
    expect(p.pick(undefined, undefined)).toBe(eps[0]);
  });

  it('biases by weight: (in-flight + 1) / weight decides', () => {
    // A: weight 4, 3 in flight → 4/4 = 1;  B: weight 1, 1 in flight → 2/1 = 2 → A despite more in flight
    const eps = makeEndpoints(2, (i) => ({ weight: i === 0 ? 4 : 1 }));
    eps[0]!.inflight = 3;
    eps[1]!.inflight = 1;
    const p = leastRequestFactory(eps, opts());
    for (let k = 0; k < 100; k++) expect(p.pick(undefined, undefined)).toBe(eps[0]);
    // A with 4 in flight → 5/4 = 1.25;  B idle → 1 → B
    eps[0]!.inflight = 4;
    eps[1]!.inflight = 0;
    for (let k = 0; k < 100; k++) expect(p.pick(undefined, undefined)).toBe(eps[1]);
    // both idle: the heavier wins
    eps[0]!.inflight = 0;
    for (let k = 0; k < 100; k++) expect(p.pick(undefined, undefined)).toBe(eps[0]);
  });

  it('ties exactly on weighted load are random (A: w2, 1 in flight = B: w1, idle)', () => {
    const eps = makeEndpoints(2, (i) => ({ weight: i === 0 ? 2 : 1 }));
    eps[0]!.inflight = 1;
    const got = shares(leastRequestFactory(eps, opts(8)), eps, 4_000);
    expect(Math.abs(got[0]! - 0.5)).toBeLessThanOrEqual(0.03);
  });

  it('returns the only endpoint, and undefined for an empty set', () => {
    const one = makeEndpoints(1);
    expect(leastRequestFactory(one, opts()).pick(undefined, undefined)).toBe(one[0]);
    expect(leastRequestFactory([], opts()).pick(undefined, undefined)).toBeUndefined();
  });
});
