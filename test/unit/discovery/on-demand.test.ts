/**
 * On-demand lookups with the fake clock: one Subscribe per name however many requests wait, answers by
 * snapshot or timeout, the negative cache, the cap on names, and names that are not service names.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { OnDemandResolver } from '../../../sidecar/src/discovery/on-demand.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { createLogger } from '../../../common/src/logger.js';

let clock: FakeClock;
let known: Set<string>;
let subscribes: string[][];
let unsubscribes: string[][];

function resolver(extra: { maxNames?: number } = {}): OnDemandResolver {
  return new OnDemandResolver({
    timeoutMs: 1_000,
    unknownTtlMs: 5_000,
    maxNames: extra.maxNames,
    subscribe: (names) => subscribes.push([...names]),
    unsubscribe: (names) => unsubscribes.push([...names]),
    known: (name) => known.has(name),
    clock,
    timers: clock,
    logger: createLogger('silent'),
  });
}

/** Starts a lookup and returns what it was answered so far. */
function ask(r: OnDemandResolver, name: string): { answer: boolean | undefined } {
  const out: { answer: boolean | undefined } = { answer: undefined };
  r.resolve(name, (found) => (out.answer = found));
  return out;
}

beforeEach(() => {
  clock = new FakeClock();
  known = new Set();
  subscribes = [];
  unsubscribes = [];
});

describe('OnDemandResolver', () => {
  it('concurrent requests for one name share one Subscribe and all route once the snapshot brings it', () => {
    const r = resolver();
    const waiting = Array.from({ length: 20 }, () => ask(r, 'orders'));
    expect(subscribes).toEqual([['orders']]);
    expect(waiting.every((w) => w.answer === undefined)).toBe(true);
    clock.advance(300);
    known.add('orders');
    r.answered(new Set(['orders']));
    expect(waiting.every((w) => w.answer === true)).toBe(true);
    expect([...r.names()]).toEqual(['orders']);
    // The lookup's timer is gone: nothing is answered twice.
    clock.advance(2_000);
    expect(waiting.every((w) => w.answer === true)).toBe(true);
  });

  it('a known name is answered at once, without asking', () => {
    known.add('orders');
    const r = resolver();
    expect(ask(r, 'orders').answer).toBe(true);
    expect(r.prefetch('orders')).toBe(true);
    expect(subscribes).toEqual([]);
  });

  it('a name the control plane says it does not know is answered false and remembered for the TTL', () => {
    const r = resolver();
    const first = ask(r, 'nope');
    r.answered(new Set(['nope']));
    expect(first.answer).toBe(false);
    // Within the TTL: answered at once, no new Subscribe.
    clock.advance(4_000);
    expect(ask(r, 'nope').answer).toBe(false);
    expect(r.prefetch('nope')).toBe(false);
    expect(subscribes).toEqual([['nope']]);
    // After it: asked again.
    clock.advance(1_001);
    const again = ask(r, 'nope');
    expect(again.answer).toBeUndefined();
    expect(subscribes).toEqual([['nope'], ['nope']]);
  });

  it('snapshots that do not speak for the name leave it waiting; without an answer it fails after the timeout', () => {
    const r = resolver();
    const w = ask(r, 'slow');
    r.answered(new Set(['other']));
    expect(w.answer).toBeUndefined();
    clock.advance(999);
    expect(w.answer).toBeUndefined();
    clock.advance(1);
    expect(w.answer).toBe(false);
    // Remembered unknown; a later push of the service makes it known all the same.
    expect(ask(r, 'slow').answer).toBe(false);
    known.add('slow');
    expect(ask(r, 'slow').answer).toBe(true);
  });

  it('does not look up what is not a service name', () => {
    const r = resolver();
    expect(ask(r, 'Not_A_Name').answer).toBe(false);
    expect(ask(r, '-x').answer).toBe(false);
    expect(r.prefetch('a'.repeat(300))).toBe(false);
    expect(subscribes).toEqual([]);
  });

  it('holds at most maxNames names: expired unknown ones make room, otherwise new names are refused', () => {
    const r = resolver({ maxNames: 3 });
    for (const n of ['a', 'b', 'c']) ask(r, n);
    r.answered(new Set(['a', 'b', 'c']));
    expect(ask(r, 'd').answer).toBe(false);
    expect(subscribes).toEqual([['a'], ['b'], ['c']]);
    clock.advance(5_000);
    // Their TTL is up: dropped from the subscriptions, and 'd' is looked up.
    expect(ask(r, 'd').answer).toBeUndefined();
    expect(unsubscribes).toEqual([['a', 'b', 'c']]);
    expect([...r.names()]).toEqual(['d']);
  });

  it('close() answers every waiting request and starts no more lookups', () => {
    const r = resolver();
    const w = ask(r, 'orders');
    r.close();
    expect(w.answer).toBe(false);
    expect(ask(r, 'other').answer).toBe(false);
    expect(clock.timerCount).toBe(0);
  });
});
