import { describe, expect, it } from 'vitest';
import type { LoadReport } from '../../../../proto/gen/outrigger/v1/discovery.js';
import {
  computeTargets,
  computeWeights,
  costFromUtilization,
  DEFAULT_WEIGHT_OPTIONS,
  normalizeWeights,
  rawWeight,
  resolveWeightOptions,
  utilization,
  withinDeadBand,
  smooth,
} from '../../../../control-plane/src/weights/compute.js';
import { seededRandom } from '../../../../common/src/random.js';
import { FakeClock } from '../../../helpers/fake-clock.js';
import { input, inputs } from './helpers.js';

const clock = new FakeClock(50_000);
const now = clock.now();

function weights(cases: Parameters<typeof inputs>[0], options = {}): number[] {
  return [...computeWeights(inputs(cases, now), now, options).values()].map((w) => w.weight);
}

describe('utilization, raw weight and cost formulas', () => {
  it('takes u = max(cpu, inflight/capacity), and inflight/capacity alone when cpu is missing or 0', () => {
    expect(utilization({ rps: 1, inflight: 20, errorRate: 0, cpu: 0.6 }, 100)).toBeCloseTo(0.6);
    expect(utilization({ rps: 1, inflight: 90, errorRate: 0, cpu: 0.3 }, 100)).toBeCloseTo(0.9);
    expect(utilization({ rps: 1, inflight: 40, errorRate: 0 }, 50)).toBeCloseTo(0.8);
    expect(utilization({ rps: 1, inflight: 40, errorRate: 0, cpu: 0 }, 50)).toBeCloseTo(0.8);
    expect(utilization({ rps: 1, inflight: 40, errorRate: 0, cpu: Number.NaN }, 0)).toBe(0);
  });

  it('computes raw = rps / (u + penalty · errorRate)', () => {
    expect(rawWeight({ rps: 300, inflight: 0, errorRate: 0.1, cpu: 0.5 }, 100)).toBeCloseTo(300 / 0.6);
    expect(rawWeight({ rps: 300, inflight: 0, errorRate: 0.1, cpu: 0.5 }, 100, 2)).toBeCloseTo(300 / 0.7);
    expect(rawWeight({ rps: 300, inflight: 0, errorRate: 0, cpu: 0 }, 100)).toBe(0);
    expect(rawWeight({ rps: 0, inflight: 0, errorRate: 0, cpu: 0.5 }, 100)).toBe(0);
  });

  it('computes cost = clamp(1 + k · max(0, u − 0.5) · 2, 1, 10) with k = 4 by default', () => {
    expect(costFromUtilization(0)).toBe(1);
    expect(costFromUtilization(0.5)).toBe(1);
    expect(costFromUtilization(0.6)).toBeCloseTo(1.8);
    expect(costFromUtilization(0.75)).toBeCloseTo(3);
    expect(costFromUtilization(1)).toBeCloseTo(5);
    expect(costFromUtilization(1.5)).toBeCloseTo(9);
    expect(costFromUtilization(3)).toBe(10);
    expect(costFromUtilization(1, 9)).toBeCloseTo(10);
    expect(costFromUtilization(0.75, 1)).toBeCloseTo(1.5);
  });

  it('scales raw weights so their mean is 100, clamped to 1..1000', () => {
    expect(normalizeWeights([1, 2, 3])).toEqual([50, 100, 150]);
    expect(normalizeWeights([1, 1, 1])).toEqual([100, 100, 100]);
    expect(normalizeWeights([1e6, ...Array<number>(19).fill(1)])).toEqual([1000, ...Array<number>(19).fill(1)]);
    expect(normalizeWeights([])).toEqual([]);
  });

  it('smooths by α of the way and reports the dead band', () => {
    expect(smooth(100, 200, 0.3)).toBeCloseTo(130);
    expect(withinDeadBand(100, 104.9, 0.05)).toBe(true);
    expect(withinDeadBand(100, 95.1, 0.05)).toBe(true);
    expect(withinDeadBand(100, 105, 0.05)).toBe(false);
    expect(withinDeadBand(100, 94, 0.05)).toBe(false);
  });
});

describe('computeWeights', () => {
  it('gives an endpoint with twice the qps at the same utilization about twice the weight', () => {
    const [a, b] = weights([{ rps: 200, cpu: 0.5 }, { rps: 100, cpu: 0.5 }]);
    expect(a).toBe(133);
    expect(b).toBe(67);
    expect(a! / b!).toBeCloseTo(2, 1);
  });

  it('keeps the mean of reporting endpoints at 100', () => {
    const w = weights([{ rps: 50 }, { rps: 150, cpu: 0.3 }, { rps: 400, cpu: 0.9 }, { rps: 90, cpu: 0.2 }]);
    expect(w.reduce((x, y) => x + y, 0) / w.length).toBeCloseTo(100, 0);
  });

  it('gives higher cpu a lower weight and a higher cost', () => {
    const out = computeWeights(inputs([{ cpu: 0.4 }, { cpu: 0.8 }], now), now);
    // raw: 100/0.4 = 250, 100/0.8 = 125 → mean 187.5 → 133.3, 66.7; cost: 1 and 1 + 4·0.3·2 = 3.4
    expect(out.get('a')).toEqual({ weight: 133, cost: 1 });
    expect(out.get('b')).toEqual({ weight: 67, cost: 3.4 });
  });

  it('raises cost from inflight/capacity when cpu is missing', () => {
    const out = computeWeights(inputs([{ cpu: undefined, inflight: 90, capacity: 100 }, { cpu: undefined, inflight: 10, capacity: 100 }], now), now);
    expect(out.get('a')!.cost).toBeCloseTo(4.2); // u = 0.9 → 1 + 4·0.4·2
    expect(out.get('b')!.cost).toBe(1);
    expect(out.get('a')!.weight).toBeLessThan(out.get('b')!.weight);
  });

  it('penalizes errors: errorRate counts as utilization, scaled by the penalty', () => {
    // raw 100/0.5 = 200 and 100/(0.5 + 0.25) = 133.3 → 120 and 80
    expect(weights([{ errorRate: 0 }, { errorRate: 0.25 }])).toEqual([120, 80]);
    // penalty 2: 100/(0.5 + 0.5) = 100 → 133 and 67
    expect(weights([{ errorRate: 0 }, { errorRate: 0.25 }], { errorUtilizationPenalty: 2 })).toEqual([133, 67]);
    expect(weights([{ errorRate: 0 }, { errorRate: 0.25 }], { errorUtilizationPenalty: 0 })).toEqual([100, 100]);
  });

  it('falls back to the configured weight when the report is older than expirationMs (15 s by default)', () => {
    const cases = [{ rps: 100 }, { rps: 300, age: 15_001, configuredWeight: 7 }, { rps: 300, age: 15_000, configuredWeight: 7 }];
    const t = computeTargets(inputs(cases, now), now);
    expect(t.get('b')).toMatchObject({ weight: 7, source: 'fallback', reason: 'expired' });
    expect(t.get('c')).toMatchObject({ weight: 150, source: 'computed' });
    expect(t.get('a')).toMatchObject({ weight: 50, source: 'computed' });
    expect(computeTargets(inputs(cases, now), now, { expirationMs: 20_000 }).get('b')!.source).toBe('computed');
  });

  it('uses the configured weight and cost when there is no report, and no report-derived cost when expired', () => {
    const t = computeTargets(inputs([{ age: null, configuredWeight: 9, configuredCost: 2.5 }, { age: 60_000, cpu: 1, configuredWeight: 3 }, {}], now), now);
    expect(t.get('a')).toMatchObject({ weight: 9, cost: 2.5, source: 'fallback', reason: 'no-report', costFromReport: false });
    expect(t.get('b')).toMatchObject({ weight: 3, cost: 1, source: 'fallback', reason: 'expired', costFromReport: false });
    expect(t.get('c')).toMatchObject({ weight: 100, source: 'computed' });
  });

  it('keeps the configured weight below minQps, but still computes the cost from the fresh report', () => {
    const t = computeTargets(inputs([{ rps: 0.5, cpu: 0.9, configuredWeight: 4 }, { rps: 100 }, { rps: 300 }], now), now);
    expect(t.get('a')).toMatchObject({ weight: 4, source: 'fallback', reason: 'low-qps', costFromReport: true });
    expect(t.get('a')!.cost).toBeCloseTo(4.2);
    // the others alone set the mean: 50 and 150
    expect(t.get('b')!.weight).toBeCloseTo(50);
    expect(t.get('c')!.weight).toBeCloseTo(150);
    expect(computeTargets(inputs([{ rps: 0.5 }], now), now, { minQps: 0.1 }).get('a')!.source).toBe('computed');
  });

  it('falls back when the report carries no utilization signal at all', () => {
    const t = computeTargets(inputs([{ cpu: 0, inflight: 0, configuredWeight: 5 }], now), now);
    expect(t.get('a')).toMatchObject({ weight: 5, source: 'fallback', reason: 'no-utilization' });
  });

  it("with fallbackWeight 'mean' gives a non-reporting endpoint the mean weight (as gRPC)", () => {
    const cases = [{ rps: 100 }, { rps: 300 }, { age: null, configuredWeight: 2 }];
    expect(weights(cases, { fallbackWeight: 'mean' })).toEqual([50, 150, 100]);
    expect(weights(cases)).toEqual([50, 150, 2]);
    expect(weights([{ age: null, configuredWeight: 2 }], { fallbackWeight: 'mean' })).toEqual([2]);
  });

  it('ignores a report inside the blackout period of a new run of reports', () => {
    const cases = (since: number) => [{ reportingSince: since, configuredWeight: 3, rps: 300 }, { rps: 100 }];
    const opts = { blackoutMs: 10_000 };
    expect(computeTargets(inputs(cases(now - 9_999), now), now, opts).get('a')).toMatchObject({ weight: 3, reason: 'blackout' });
    expect(computeTargets(inputs(cases(now - 10_000), now), now, opts).get('a')).toMatchObject({ weight: 150, source: 'computed' });
    expect(computeTargets(inputs(cases(now - 1), now), now).get('a')!.source).toBe('computed');
  });

  it('lets a pinned weight win, still computes its cost, and keeps it in the mean', () => {
    const cases = [{ rps: 100, cpu: 0.9 }, { rps: 300, cpu: 0.5 }, { rps: 100, cpu: 0.5 }];
    const unpinned = computeWeights(inputs(cases, now), now);
    const pinned = computeWeights(inputs([{ ...cases[0], pinnedWeight: 700 }, ...cases.slice(1)], now), now);
    expect(pinned.get('a')).toEqual({ weight: 700, cost: 4.2 });
    expect(unpinned.get('a')!.weight).not.toBe(700);
    expect(pinned.get('b')).toEqual(unpinned.get('b'));
    expect(pinned.get('c')).toEqual(unpinned.get('c'));
    // a pin wins over a stale report too, and is clamped to 1..1000
    expect(computeWeights([input('x', { age: 99_999, pinnedWeight: 5_000, configuredWeight: 2 }, now)], now).get('x')!.weight).toBe(1_000);
    expect(computeWeights([input('x', { pinnedWeight: 0.2 }, now)], now).get('x')!.weight).toBe(1);
  });

  it('always publishes integer weights in 1..1000 and costs in [1, 10]', () => {
    expect(weights([{ rps: 1e6, cpu: 0.01 }, ...Array.from({ length: 8 }, () => ({ rps: 10 })), { rps: 1, cpu: 1, errorRate: 1 }])).toEqual([
      1000, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ]);
    const random = seededRandom(7);
    for (let round = 0; round < 300; round++) {
      const n = 1 + Math.floor(random.next() * 12);
      const cases = Array.from({ length: n }, () => ({
        rps: random.next() < 0.1 ? 0 : 10 ** (random.next() * 5),
        cpu: random.next() < 0.2 ? undefined : random.next() * 1.5,
        inflight: Math.floor(random.next() * 300),
        errorRate: random.next() < 0.5 ? 0 : random.next(),
        age: random.next() < 0.1 ? 20_000 : 0,
        configuredWeight: random.next() * 1_500,
      }));
      for (const w of computeWeights(inputs(cases, now), now).values()) {
        expect(Number.isInteger(w.weight)).toBe(true);
        expect(w.weight).toBeGreaterThanOrEqual(1);
        expect(w.weight).toBeLessThanOrEqual(1000);
        expect(w.cost).toBeGreaterThanOrEqual(1);
        expect(w.cost).toBeLessThanOrEqual(10);
      }
    }
  });

  it('reads a LoadReport from the wire contract as it is', () => {
    const load: LoadReport = { rps: 200, inflight: 80, latencyEwmaMs: 12, errorRate: 0, cpu: 0, circuits: [], latencyP99Ms: 30, endpoints: [] };
    const out = computeWeights([{ address: 'a', report: { load, receivedAt: now }, configuredWeight: 1, capacity: 100 }], now);
    expect(out.get('a')).toEqual({ weight: 100, cost: 3.4 });
  });

  it('rejects a duplicate address and invalid options', () => {
    expect(() => computeTargets(inputs([{}], now).concat(inputs([{}], now)), now)).toThrow(/duplicate endpoint address a/);
    expect(() => resolveWeightOptions({ smoothing: 0 })).toThrow(/smoothing: expected a number in \(0, 1\], got 0/);
    expect(() => resolveWeightOptions({ deadBand: 1 })).toThrow(/deadBand/);
    expect(() => resolveWeightOptions({ expirationMs: -1 })).toThrow(/expirationMs/);
    expect(() => resolveWeightOptions({ meanWeight: 2_000 })).toThrow(/meanWeight/);
    expect(resolveWeightOptions({})).toEqual(DEFAULT_WEIGHT_OPTIONS);
    expect(DEFAULT_WEIGHT_OPTIONS).toMatchObject({ errorUtilizationPenalty: 1, smoothing: 0.3, deadBand: 0.05, meanWeight: 100, expirationMs: 15_000 });
  });
});
