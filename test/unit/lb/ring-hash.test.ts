import { describe, expect, it } from 'vitest';
import { createRingHashFactory, ringHashFactory, ringPointCounts, RingHashPicker, DEFAULT_VNODES } from '../../../sidecar/src/lb/ring-hash.js';
import { seededRandom } from '../../../common/src/random.js';
import { makeEndpoints, opts, shares } from './helpers.js';
import { assignment, KEYS, keyShares, movement } from './consistent-hash.helpers.js';

describe('ring-hash', () => {
  it('maps the same key to the same endpoint, across pickers, seeds and input order', () => {
    const eps = makeEndpoints(10);
    const a = assignment(ringHashFactory(eps, opts(1)));
    expect(assignment(ringHashFactory(eps, opts(1)))).toEqual(a);
    expect(assignment(ringHashFactory([...eps].reverse(), opts(2)))).toEqual(a);
    const p = ringHashFactory(eps, opts(3));
    for (const k of KEYS.slice(0, 200)) expect(p.pick(k, undefined)).toBe(p.pick(k, undefined));
  });

  it('spreads 10,000 keys over 10 endpoints within ±30 % of the mean', () => {
    const eps = makeEndpoints(10);
    for (const s of keyShares(ringHashFactory(eps, opts()), eps)) {
      expect(s).toBeGreaterThanOrEqual(0.07);
      expect(s).toBeLessThanOrEqual(0.13);
    }
  });

  it('gives key shares in proportion to weights 1,2,3,4 (±30 %)', () => {
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    keyShares(ringHashFactory(eps, opts()), eps).forEach((s, i) => {
      const expected = (i + 1) / 10;
      expect(Math.abs(s - expected)).toBeLessThanOrEqual(0.3 * expected);
    });
  });

  it('moves only the removed endpoint’s keys when one of 10 leaves', () => {
    const eps = makeEndpoints(10);
    const before = assignment(ringHashFactory(eps, opts()));
    for (const gone of [0, 3, 9]) {
      const rest = eps.filter((_, i) => i !== gone);
      const m = movement(before, assignment(ringHashFactory(rest, opts())), eps[gone]!.address);
      expect(m.movedFromSurvivors).toBeLessThanOrEqual(0.005);
      expect(m.moved).toBeLessThanOrEqual(1 / 10 + 0.03);
      expect(m.moved).toBeGreaterThan(0);
    }
  });

  it('moves few keys when an endpoint joins', () => {
    const eps = makeEndpoints(11);
    const before = assignment(ringHashFactory(eps.slice(0, 10), opts()));
    const after = assignment(ringHashFactory(eps, opts()));
    const moved = before.filter((a, i) => a !== after[i]);
    // only to the new endpoint
    expect(after.filter((a, i) => a !== before[i] && a !== eps[10]!.address)).toHaveLength(0);
    expect(moved.length / KEYS.length).toBeLessThanOrEqual(1 / 11 + 0.03);
  });

  it('sizes the ring by weight relative to the lightest endpoint, bounded above', () => {
    expect([...ringPointCounts(Float64Array.of(1, 1, 1))]).toEqual([DEFAULT_VNODES, DEFAULT_VNODES, DEFAULT_VNODES]);
    expect([...ringPointCounts(Float64Array.of(2, 4, 3))]).toEqual([256, 512, 384]);
    expect([...ringPointCounts(Float64Array.of(1000, 1000))]).toEqual([256, 256]);
    expect([...ringPointCounts(Float64Array.of(0.5, 1.25), 100)]).toEqual([100, 250]);
    const capped = ringPointCounts(Float64Array.of(1, 1000), 160, 10_000);
    expect(capped[0]! + capped[1]!).toBeLessThanOrEqual(10_000);
    expect(capped[0]).toBeGreaterThanOrEqual(1);
    const eps = makeEndpoints(3);
    const picker = new RingHashPicker(eps, Float64Array.of(1, 2, 3), seededRandom(1));
    expect(picker.ring.length).toBe(DEFAULT_VNODES * 6);
    for (let i = 1; i < picker.ring.length; i++) expect(picker.ring[i]!).toBeGreaterThanOrEqual(picker.ring[i - 1]!);
    const small = createRingHashFactory({ vnodes: 10 })(eps, opts());
    expect(small.pick('k', undefined)).toBeDefined();
  });

  it('picks at random (weighted) without a key', () => {
    const eps = makeEndpoints(4);
    for (const s of shares(ringHashFactory(eps, opts(5)), eps, 8_000)) expect(Math.abs(s - 0.25)).toBeLessThanOrEqual(0.075);
  });

  it('walks the ring forward on avoid, deterministically per key', () => {
    const eps = makeEndpoints(5);
    const p = ringHashFactory(eps, opts());
    const rest = ringHashFactory(eps, opts());
    for (const k of KEYS.slice(0, 500)) {
      const first = p.pick(k, undefined)!;
      const second = p.pick(k, [first])!;
      expect(second).not.toBe(first);
      expect(p.pick(k, [first])).toBe(second);
      // the retry target is where the key would go if the first endpoint were gone
      expect(second).toBe(ringHashFactory(eps.filter((e) => e !== first), opts()).pick(k, undefined));
      expect(rest.pick(k, undefined)).toBe(first);
    }
  });

  it('returns undefined for an empty set', () => {
    expect(ringHashFactory([], opts()).pick('k', undefined)).toBeUndefined();
  });
});
