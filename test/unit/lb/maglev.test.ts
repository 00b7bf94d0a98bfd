import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../common/src/random.js';
import { buildMaglevTable, createMaglevFactory, DEFAULT_TABLE_SIZE, maglevFactory, MaglevPicker, nextPrime } from '../../../sidecar/src/lb/maglev.js';
import { makeEndpoints, opts, shares } from './helpers.js';
import { assignment, KEYS, keyShares, movement } from './consistent-hash.helpers.js';

function slotShares(table: Int32Array, n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const i of table) counts[i] = counts[i]! + 1;
  return counts.map((c) => c / table.length);
}

describe('maglev', () => {
  it('maps the same key to the same endpoint, across pickers, seeds and input order', () => {
    const eps = makeEndpoints(10);
    const a = assignment(maglevFactory(eps, opts(1)));
    expect(assignment(maglevFactory(eps, opts(2)))).toEqual(a);
    expect(assignment(maglevFactory([...eps].reverse(), opts(3)))).toEqual(a);
  });

  it('fills a prime-sized table completely and evenly', () => {
    const eps = makeEndpoints(10);
    const p = new MaglevPicker(eps, new Float64Array(10).fill(1), seededRandom(1));
    expect(p.table.length).toBe(DEFAULT_TABLE_SIZE);
    expect(p.table.every((i) => i >= 0 && i < 10)).toBe(true);
    for (const s of slotShares(p.table, 10)) expect(Math.abs(s - 0.1)).toBeLessThanOrEqual(0.001);
  });

  it('spreads 10,000 keys over 10 endpoints within ±30 % of the mean', () => {
    const eps = makeEndpoints(10);
    for (const s of keyShares(maglevFactory(eps, opts()), eps)) {
      expect(s).toBeGreaterThanOrEqual(0.07);
      expect(s).toBeLessThanOrEqual(0.13);
    }
  });

  it('gives table slots and key shares in proportion to weights 1,2,3,4', () => {
    const weights = Float64Array.of(1, 2, 3, 4);
    const table = buildMaglevTable(['a:1', 'b:1', 'c:1', 'd:1'], weights, DEFAULT_TABLE_SIZE);
    slotShares(table, 4).forEach((s, i) => expect(Math.abs(s - (i + 1) / 10)).toBeLessThanOrEqual(0.002));
    const eps = makeEndpoints(4, (i) => ({ weight: i + 1 }));
    keyShares(maglevFactory(eps, opts()), eps).forEach((s, i) => {
      const expected = (i + 1) / 10;
      expect(Math.abs(s - expected)).toBeLessThanOrEqual(0.3 * expected);
    });
  });

  it('moves at most about 1/n of the keys when one of 10 endpoints leaves', () => {
    const eps = makeEndpoints(10);
    const before = assignment(maglevFactory(eps, opts()));
    for (const gone of [0, 4, 9]) {
      const rest = eps.filter((_, i) => i !== gone);
      const m = movement(before, assignment(maglevFactory(rest, opts())), eps[gone]!.address);
      expect(m.moved).toBeLessThanOrEqual(1 / 10 + 0.03);
      expect(m.moved).toBeGreaterThanOrEqual(0.09); // at least the removed endpoint's keys
    }
  });

  it('grows the table to a prime ≥ 100·n when it is too small', () => {
    expect(nextPrime(1000)).toBe(1009);
    expect(nextPrime(65537)).toBe(65537);
    const eps = makeEndpoints(10);
    const p = new MaglevPicker(eps, new Float64Array(10).fill(1), seededRandom(1), { tableSize: 251 });
    expect(p.table.length).toBe(1009);
    const q = new MaglevPicker(eps, new Float64Array(10).fill(1), seededRandom(1), { tableSize: 5000 });
    expect(q.table.length).toBe(5003);
    expect(createMaglevFactory({ tableSize: 1009 })(eps, opts()).pick('k', undefined)).toBeDefined();
  });

  it('picks at random (weighted) without a key', () => {
    const eps = makeEndpoints(4);
    for (const s of shares(maglevFactory(eps, opts(5)), eps, 8_000)) expect(Math.abs(s - 0.25)).toBeLessThanOrEqual(0.02);
  });

  it('probes the next table slots on avoid, deterministically per key', () => {
    const eps = makeEndpoints(5);
    const p = maglevFactory(eps, opts());
    for (const k of KEYS.slice(0, 500)) {
      const first = p.pick(k, undefined)!;
      const second = p.pick(k, [first])!;
      expect(second).not.toBe(first);
      expect(p.pick(k, [first])).toBe(second);
      const third = p.pick(k, [first, second])!;
      expect([first, second]).not.toContain(third);
    }
  });

  it('returns undefined for an empty set', () => {
    expect(maglevFactory([], opts()).pick('k', undefined)).toBeUndefined();
  });
});
