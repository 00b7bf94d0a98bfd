import { describe, expect, it } from 'vitest';
import type { Endpoint, EndpointSpec } from '../../../sidecar/src/core/endpoint.js';
import { seededRandom } from '../../../common/src/random.js';
import { endpointLoad, leastLoadFactory, SCAN_LIMIT } from '../../../sidecar/src/lb/least-load.js';
import { makeEndpoints, opts, scriptedRandom, shares } from './helpers.js';
import { FakeClock } from '../../helpers/fake-clock.js';

type Case = Partial<EndpointSpec> & { inflight: number };

function build(cases: readonly Case[]): Endpoint[] {
  const eps = makeEndpoints(cases.length, (i) => {
    const { inflight: _inflight, ...spec } = cases[i]!;
    return spec;
  });
  eps.forEach((ep, i) => (ep.inflight = cases[i]!.inflight));
  return eps;
}

function alwaysPicks(eps: readonly Endpoint[], seed = 1, picks = 200): Set<number> {
  const p = leastLoadFactory(eps, opts(seed));
  const seen = new Set<number>();
  for (let i = 0; i < picks; i++) seen.add(eps.indexOf(p.pick(undefined, undefined)!));
  return seen;
}

describe('least-load (full scan, n ≤ 16)', () => {
  it('picks the fewest in-flight when cost and capacity are equal', () => {
    // loads: 4/100, 2/100, 3/100
    expect(alwaysPicks(build([{ inflight: 3 }, { inflight: 1 }, { inflight: 2 }]))).toEqual(new Set([1]));
  });

  it('lets capacity dominate: a big endpoint with more in-flight beats a small idle one', () => {
    // A: 1·(10+1)/200 = 0.055   B: 1·(0+1)/10 = 0.1   C: 1·(5+1)/50 = 0.12
    const eps = build([
      { inflight: 10, capacity: 200 },
      { inflight: 0, capacity: 10 },
      { inflight: 5, capacity: 50 },
    ]);
    expect(endpointLoad(eps[0]!)).toBeCloseTo(0.055);
    expect(alwaysPicks(eps)).toEqual(new Set([0]));
  });

  it('compares ratios, not sizes: a small endpoint beats a busier large one when its ratio is lower', () => {
    // A: (1+1)/10 = 0.2   B: (30+1)/100 = 0.31   → A, although far smaller
    expect(alwaysPicks(build([{ inflight: 1, capacity: 10 }, { inflight: 30, capacity: 100 }]))).toEqual(new Set([0]));
  });

  it('lets cost dominate: an expensive idle endpoint loses to a cheap busier one', () => {
    // A: 3·(0+1)/100 = 0.03   B: 1·(1+1)/100 = 0.02   C: 0.5·(4+1)/100 = 0.025
    const eps = build([
      { inflight: 0, cost: 3 },
      { inflight: 1, cost: 1 },
      { inflight: 4, cost: 0.5 },
    ]);
    expect(alwaysPicks(eps)).toEqual(new Set([1]));
  });

  it('combines all three factors', () => {
    // A: 2·(3+1)/40 = 0.2   B: 1·(7+1)/50 = 0.16   C: 4·(0+1)/30 ≈ 0.133   D: 0.5·(20+1)/60 = 0.175
    const eps = build([
      { inflight: 3, cost: 2, capacity: 40 },
      { inflight: 7, cost: 1, capacity: 50 },
      { inflight: 0, cost: 4, capacity: 30 },
      { inflight: 20, cost: 0.5, capacity: 60 },
    ]);
    expect(alwaysPicks(eps)).toEqual(new Set([2]));
  });

  it('always returns an argmin for random configurations', () => {
    const r = seededRandom(99);
    for (let trial = 0; trial < 300; trial++) {
      const n = 1 + Math.floor(r.next() * SCAN_LIMIT);
      const eps = makeEndpoints(n, () => ({
        capacity: 1 + Math.floor(r.next() * 8),
        cost: [0.5, 1, 2][Math.floor(r.next() * 3)]!,
      }));
      for (const ep of eps) ep.inflight = Math.floor(r.next() * 6);
      const min = Math.min(...eps.map(endpointLoad));
      const p = leastLoadFactory(eps, opts(trial));
      for (let k = 0; k < 5; k++) expect(endpointLoad(p.pick(undefined, undefined)!)).toBeCloseTo(min, 12);
    }
  });

  it('reads inflight, cost and capacity live (no rebuild)', () => {
    const eps = build([{ inflight: 0 }, { inflight: 1 }]);
    const p = leastLoadFactory(eps, opts());
    expect(p.pick(undefined, undefined)).toBe(eps[0]);
    eps[0]!.inflight = 5;
    expect(p.pick(undefined, undefined)).toBe(eps[1]);
    eps[1]!.cost = 10;
    expect(p.pick(undefined, undefined)).toBe(eps[0]);
    eps[0]!.capacity = 1;
    expect(p.pick(undefined, undefined)).toBe(eps[1]);
  });

  it('breaks ties at random, spread over all tied endpoints', () => {
    // B (2/100) ties with D (cost 2, 1/100 → 2/100) and E (2·(3+1)/400); A and C are worse.
    const eps = build([
      { inflight: 2 },
      { inflight: 1 },
      { inflight: 5 },
      { inflight: 0, cost: 2 },
      { inflight: 3, cost: 2, capacity: 400 },
    ]);
    const got = shares(leastLoadFactory(eps, opts(21)), eps, 3_000);
    expect(got[0]).toBe(0);
    expect(got[2]).toBe(0);
    for (const i of [1, 3, 4]) expect(Math.abs(got[i]! - 1 / 3)).toBeLessThanOrEqual(0.04);
  });

  it('spreads over all endpoints when all are tied', () => {
    const eps = makeEndpoints(SCAN_LIMIT);
    const got = shares(leastLoadFactory(eps, opts(5)), eps, 16_000);
    for (const s of got) expect(Math.abs(s - 1 / 16)).toBeLessThanOrEqual(0.015);
  });
});

describe('least-load (power of two choices, n > 16)', () => {
  const n = 20;
  // Distinct loads (i + 1) / 100, half from cost 2 with fewer in flight: the worst is index n - 1.
  const distinct = (): Endpoint[] => {
    const eps = makeEndpoints(n, (i) => ({ cost: i % 2 === 0 ? 1 : 2 }));
    eps.forEach((ep, i) => (ep.inflight = i % 2 === 0 ? i : (i - 1) / 2));
    return eps;
  };

  it('picks the lower load of the two sampled endpoints', () => {
    const eps = distinct();
    // loads: index 3 → 2·(1+1)/100 = 0.04, index 12 → 1·13/100 = 0.13
    // draws: a = floor(0.17·20) = 3, b = floor(0.6·19) = 11 → 12 (skips a)
    const p = leastLoadFactory(eps, { random: scriptedRandom([0.17, 0.6]), clock: new FakeClock() });
    expect(p.pick(undefined, undefined)).toBe(eps[3]);
    const q = leastLoadFactory(eps, { random: scriptedRandom([0.6, 0.17]), clock: new FakeClock() });
    // a = 12, b = floor(0.17·19) = 3 → the same pair the other way round
    expect(q.pick(undefined, undefined)).toBe(eps[3]);
  });

  it('never picks the worst of the two: the globally worst endpoint is never chosen', () => {
    const eps = distinct();
    const loads = eps.map(endpointLoad);
    const worst = loads.indexOf(Math.max(...loads));
    const got = shares(leastLoadFactory(eps, opts(13)), eps, 10_000);
    expect(got[worst]).toBe(0);
    // and the best is chosen whenever it is sampled: about 2/n of picks
    const best = loads.indexOf(Math.min(...loads));
    expect(got[best]).toBeGreaterThan(2 / n - 0.02);
  });

  it('never returns the higher-load endpoint of any sampled pair (recorded draws)', () => {
    const eps = distinct();
    const base = seededRandom(77);
    const draws: number[] = [];
    const recording = { next: () => {
      const v = base.next();
      draws.push(v);
      return v;
    } };
    const p = leastLoadFactory(eps, { random: recording, clock: new FakeClock() });
    for (let k = 0; k < 2_000; k++) {
      draws.length = 0;
      const chosen = p.pick(undefined, undefined)!;
      const a = Math.floor(draws[0]! * n);
      let b = Math.floor(draws[1]! * (n - 1));
      if (b >= a) b++;
      const better = endpointLoad(eps[a]!) <= endpointLoad(eps[b]!) ? eps[a] : eps[b];
      expect(chosen).toBe(better);
    }
  });
});
