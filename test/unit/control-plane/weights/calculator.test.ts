import { describe, expect, it } from 'vitest';
import { WeightCalculator } from '../../../../control-plane/src/weights/calculator.js';
import { computeTargets, computeWeights, type WeightOptions } from '../../../../control-plane/src/weights/compute.js';
import { seededRandom } from '../../../../common/src/random.js';
import { FakeClock } from '../../../helpers/fake-clock.js';
import { inputs, variance, type EndpointCase } from './helpers.js';

const INTERVAL = 5_000;

/** A calculator driven by a FakeClock: each `step` advances one report interval and updates. */
function harness(options: Partial<WeightOptions> = {}) {
  const clock = new FakeClock();
  const calc = new WeightCalculator(options);
  return {
    clock,
    calc,
    step(cases: readonly EndpointCase[]) {
      clock.advance(INTERVAL);
      const out = calc.update('orders', inputs(cases, clock.now()), clock.now());
      return { out, weights: [...out.values()].map((w) => w.weight), costs: [...out.values()].map((w) => w.cost), changed: calc.changed };
    },
  };
}

const even = [{ rps: 100 }, { rps: 100 }];

describe('WeightCalculator', () => {
  it('publishes the undamped values for a service it has not seen, and reports the change', () => {
    const h = harness();
    const cases = [{ rps: 100 }, { rps: 300, cpu: 0.9 }];
    const first = h.step(cases);
    expect(first.out).toEqual(computeWeights(inputs(cases, h.clock.now()), h.clock.now()));
    expect(first.changed).toBe(true);
    expect(h.step(cases).changed).toBe(false);
    expect(h.calc.current('orders')).toEqual(first.out);
    expect(h.calc.current('payments')).toBeUndefined();
  });

  it('moves the weight only α of the way towards a single spike', () => {
    const h = harness();
    for (let i = 0; i < 5; i++) expect(h.step(even).weights).toEqual([100, 100]);
    // a triples its rps for one report: undamped targets 150 / 50
    const spike = [{ rps: 300 }, { rps: 100 }];
    expect([...computeTargets(inputs(spike, 0), 0).values()].map((t) => t.weight)).toEqual([150, 50]);
    const s = h.step(spike);
    expect(s.weights).toEqual([115, 85]); // 100 + 0.3·(150 − 100), 100 + 0.3·(50 − 100)
    expect(s.changed).toBe(true);
    // without damping the same spike goes all the way
    const raw = harness({ smoothing: 1, deadBand: 0 });
    raw.step(even);
    expect(raw.step(spike).weights).toEqual([150, 50]);
  });

  it('moves the cost only α of the way towards a cpu spike', () => {
    const h = harness();
    h.step(even);
    const s = h.step([{ cpu: 1 }, { rps: 100 }]);
    expect(s.costs).toEqual([2.2, 1]); // 1 + 0.3·(5 − 1)
    const raw = harness({ smoothing: 1, deadBand: 0 });
    raw.step(even);
    expect(raw.step([{ cpu: 1 }, { rps: 100 }]).costs).toEqual([5, 1]);
  });

  it('converges to a lasting change', () => {
    const h = harness();
    h.step(even);
    const shifted = [{ rps: 300 }, { rps: 100 }];
    let last = h.step(shifted).weights;
    for (let i = 0; i < 30; i++) last = h.step(shifted).weights;
    // rests within the 5 % dead band of the targets 150 / 50
    expect(Math.abs(last[0]! - 150)).toBeLessThanOrEqual(150 * 0.05);
    expect(Math.abs(last[1]! - 50)).toBeLessThanOrEqual(50 * 0.05);
  });

  it('settles oscillating reports: alternating loads give a bounded weight with far less variance than undamped', () => {
    const high = [{ rps: 300 }, { rps: 200 }];
    const low = [{ rps: 100 }, { rps: 200 }];
    // undamped targets for a alternate between 120 and 67
    const run = (options: Partial<WeightOptions>) => {
      const h = harness(options);
      const seen: number[] = [];
      for (let i = 0; i < 60; i++) seen.push(h.step(i % 2 === 0 ? high : low).weights[0]!);
      return seen.slice(30);
    };
    const damped = run({});
    const undamped = run({ smoothing: 1, deadBand: 0 });
    expect(Math.min(...undamped)).toBe(67);
    expect(Math.max(...undamped)).toBe(120);
    expect(variance(damped)).toBeLessThan(variance(undamped) / 10);
    expect(Math.max(...damped) - Math.min(...damped)).toBeLessThanOrEqual(12);
    expect(Math.min(...damped)).toBeGreaterThan(67);
    expect(Math.max(...damped)).toBeLessThan(120);
  });

  it('does not publish changes under the 5 % dead band', () => {
    const h = harness();
    h.step(even);
    // a +4 % rps: undamped targets 102 / 98
    const tiny = [{ rps: 104 }, { rps: 100 }];
    for (let i = 0; i < 30; i++) {
      const s = h.step(tiny);
      expect(s.weights).toEqual([100, 100]);
      expect(s.changed).toBe(false);
    }
    // the same change is published without the dead band
    const open = harness({ deadBand: 0 });
    open.step(even);
    let w: number[] = [];
    for (let i = 0; i < 30; i++) w = open.step(tiny).weights;
    expect(w).toEqual([102, 98]);
  });

  it('publishes a change once it builds up past the dead band', () => {
    const h = harness();
    h.step(even);
    // +24 % rps: targets ≈ 110.7 / 89.3; smoothed: 103.2 (held), 105.4 → published
    const s1 = h.step([{ rps: 124 }, { rps: 100 }]);
    expect(s1.weights).toEqual([100, 100]);
    expect(s1.changed).toBe(false);
    const s2 = h.step([{ rps: 124 }, { rps: 100 }]);
    expect(s2.weights).toEqual([105, 95]);
    expect(s2.changed).toBe(true);
  });

  it('falls back to the configured weight at once when reports stop, and ramps back when they resume', () => {
    const h = harness();
    const cases = [{ rps: 300, configuredWeight: 1 }, { rps: 100, configuredWeight: 1 }];
    for (let i = 0; i < 3; i++) h.step(cases);
    expect(h.step(cases).weights).toEqual([150, 50]);
    // a's last report was 5 s ago, then 20 s ago: expired
    expect(h.step([{ rps: 300, configuredWeight: 1, age: INTERVAL }, cases[1]!]).weights).toEqual([150, 50]);
    const stale = h.step([{ rps: 300, configuredWeight: 1, age: 4 * INTERVAL }, cases[1]!]);
    expect(stale.weights).toEqual([1, 65]); // a at once; b alone now, damped from 50 towards 100
    expect(stale.changed).toBe(true);
    // reports resume: smoothing starts from the fallback value 1 (target 150): 1 + 0.3·149 = 45.7
    expect(h.step(cases).weights[0]).toBe(46);
  });

  it('lets a pinned weight win at once while the cost still follows the reports', () => {
    const h = harness();
    h.step(even);
    const pinned = h.step([{ rps: 100, cpu: 1, pinnedWeight: 7 }, { rps: 100 }]);
    expect(pinned.weights[0]).toBe(7);
    expect(pinned.costs[0]).toBe(2.2);
    expect(pinned.changed).toBe(true);
    expect(h.step([{ rps: 100, cpu: 1, pinnedWeight: 7 }, { rps: 100 }]).weights[0]).toBe(7);
    // unpinned: damped from 7 towards the computed target
    const after = h.step(even).weights[0]!;
    expect(after).toBeGreaterThan(7);
    expect(after).toBeLessThan(100);
  });

  it('keeps weights integers in 1..1000 through a long random run', () => {
    const h = harness();
    const random = seededRandom(11);
    for (let i = 0; i < 500; i++) {
      const cases = Array.from({ length: 6 }, () => ({
        rps: 10 ** (random.next() * 5),
        cpu: random.next() * 1.5,
        inflight: Math.floor(random.next() * 200),
        errorRate: random.next() < 0.7 ? 0 : random.next(),
        age: random.next() < 0.1 ? 60_000 : 0,
        ...(random.next() < 0.05 ? { pinnedWeight: random.next() * 2_000 } : {}),
      }));
      for (const w of h.step(cases).out.values()) {
        expect(Number.isInteger(w.weight)).toBe(true);
        expect(w.weight).toBeGreaterThanOrEqual(1);
        expect(w.weight).toBeLessThanOrEqual(1000);
        expect(w.cost).toBeGreaterThanOrEqual(1);
        expect(w.cost).toBeLessThanOrEqual(10);
      }
    }
  });

  it('tracks the run of fresh reports for the blackout period', () => {
    const h = harness({ blackoutMs: 10_000 });
    const b = { rps: 100, reportingSince: -100_000 }; // reporting for long
    const a = { rps: 300, configuredWeight: 2 };
    expect(h.step([{ ...a, age: null }, b]).weights).toEqual([2, 100]); // no report yet
    expect(h.step([a, b]).weights).toEqual([2, 100]); // run starts
    expect(h.step([a, b]).weights).toEqual([2, 100]); // 5 s in
    expect(h.step([a, b]).weights).toEqual([46, 85]); // 10 s in: computed, damped from 2 and 100 (targets 150 / 50)
    // a gap longer than expirationMs breaks the run: the next fresh report starts a new blackout
    expect(h.step([{ ...a, age: 20_000 }, b]).weights[0]).toBe(2);
    expect(h.step([a, b]).weights[0]).toBe(2);
    expect(h.step([a, b]).weights[0]).toBe(2);
    expect(h.step([a, b]).weights[0]).toBeGreaterThan(2);

    // so does a gap between two reports with no update in between
    h.clock.advance(30_000);
    expect(h.step([a, b]).weights[0]).toBe(2);

    const off = harness();
    off.step([{ ...a, age: null }, b]);
    expect(off.step([a, b]).weights[0]).toBeGreaterThan(2);
  });

  it('reports a change of cost alone', () => {
    const h = harness();
    expect(h.step([{ cpu: 0.5 }])).toMatchObject({ weights: [100], costs: [1] });
    expect(h.step([{ cpu: 1 }])).toMatchObject({ weights: [100], costs: [2.2], changed: true });
    expect(h.step([{ cpu: 1 }])).toMatchObject({ weights: [100], costs: [3.04], changed: true });
    // target 3.4: smoothed 3.04 + 0.3·0.36 = 3.148, within 5 % of 3.04
    expect(h.step([{ cpu: 0.8 }])).toMatchObject({ weights: [100], costs: [3.04], changed: false });
  });

  it('reports endpoint set changes and forgets services', () => {
    const h = harness();
    h.step([{ rps: 100 }, { rps: 100 }, { rps: 100 }]);
    const fewer = h.step(even);
    expect(fewer.changed).toBe(true);
    expect([...fewer.out.keys()]).toEqual(['a', 'b']);
    expect(h.step(even).changed).toBe(false);
    h.calc.forget('orders');
    expect(h.calc.current('orders')).toBeUndefined();
    expect(h.step(even).changed).toBe(true);
    expect(h.calc.update('orders', [], h.clock.now())).toEqual(new Map());
    expect(h.calc.changed).toBe(true);
    expect(h.calc.current('orders')).toBeUndefined();
    expect(h.calc.update('orders', [], h.clock.now())).toEqual(new Map());
    expect(h.calc.changed).toBe(false);
  });
});
