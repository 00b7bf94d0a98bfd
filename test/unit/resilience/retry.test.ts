import { describe, expect, it } from 'vitest';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import type { RetryConfig, RetryOn } from '../../../common/src/config/types.js';
import type { ProxyErrorReason } from '../../../common/src/errors.js';
import { type Random, randomInt, seededRandom } from '../../../common/src/random.js';
import {
  backoffMs,
  isIdempotentMethod,
  isRetriableFailure,
  isRetriableStatus,
  parseDeadlineHeader,
  RetryBudget,
} from '../../../sidecar/src/resilience/retry.js';
import { FakeClock } from '../../helpers/fake-clock.js';

/** A RetryConfig as the config loader builds it from the YAML keys under `retry:`. */
function retryConfig(retry: Record<string, unknown> = {}): RetryConfig {
  return parseServiceConfig({ endpoints: [{ address: '127.0.0.1:1' }], retry }, 'test').retry;
}

/** A Random that returns the given values in turn (then repeats the last). */
function fixedRandom(...values: number[]): Random {
  let i = 0;
  return { next: () => values[Math.min(i++, values.length - 1)]! };
}

const ALL_REASONS: readonly ProxyErrorReason[] = [
  'no-healthy-upstream',
  'circuit-open',
  'overloaded',
  'timeout',
  'connect-failure',
  'reset',
  'retry-budget-exhausted',
  'unknown-service',
  'bad-request',
];

const SAMPLE_STATUSES = [200, 204, 301, 400, 404, 408, 409, 425, 429, 499, 500, 501, 502, 503, 504, 505, 507, 511, 599];

// ---------------------------------------------------------------------------------------------------------

describe('isIdempotentMethod', () => {
  it.each(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])('%s is idempotent (RFC 9110 §9.2.2)', (m) => {
    expect(isIdempotentMethod(m)).toBe(true);
  });

  it.each(['POST', 'PATCH', 'CONNECT', 'PROPFIND', ''])('%s is not idempotent', (m) => {
    expect(isIdempotentMethod(m)).toBe(false);
  });

  it('is case-sensitive, as method tokens are (RFC 9110 §9.1): "get" is not GET', () => {
    expect(isIdempotentMethod('get')).toBe(false);
    expect(isIdempotentMethod('Put')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('isRetriableFailure / isRetriableStatus', () => {
  /** The expected rules for one `on` value, written out independently of the implementation. */
  interface Rule {
    readonly reasons: readonly ProxyErrorReason[];
    readonly statuses: (s: number) => boolean;
  }
  const CUSTOM = [409, 429, 503];
  const RULES: Record<RetryOn, Rule> = {
    'connect-failure': { reasons: ['connect-failure'], statuses: () => false },
    reset: { reasons: ['reset'], statuses: () => false },
    // 502/503/504 and per-try timeouts (as Envoy's gateway-error).
    'gateway-error': { reasons: ['timeout'], statuses: (s) => s === 502 || s === 503 || s === 504 },
    // Every 5xx, and connect failures, resets and timeouts.
    '5xx': { reasons: ['connect-failure', 'reset', 'timeout'], statuses: (s) => s >= 500 && s <= 599 },
    timeout: { reasons: ['timeout'], statuses: () => false },
    'retriable-status': { reasons: [], statuses: (s) => CUSTOM.includes(s) },
    // gRPC status codes (grpc.test.ts): never an HTTP status nor a proxy error reason.
    cancelled: { reasons: [], statuses: () => false },
    'deadline-exceeded': { reasons: [], statuses: () => false },
    internal: { reasons: [], statuses: () => false },
    'resource-exhausted': { reasons: [], statuses: () => false },
    unavailable: { reasons: [], statuses: () => false },
  };
  const configFor = (on: readonly RetryOn[]): RetryConfig =>
    retryConfig(on.includes('retriable-status') ? { on, statuses: CUSTOM } : { on });
  const expectedError = (on: readonly RetryOn[], r: ProxyErrorReason) => on.some((o) => RULES[o].reasons.includes(r));
  const expectedStatus = (on: readonly RetryOn[], s: number) => on.some((o) => RULES[o].statuses(s));

  const ONS = Object.keys(RULES) as RetryOn[];

  describe.each(ONS)('on: [%s]', (on) => {
    const cfg = configFor([on]);

    it('retries exactly the expected error reasons', () => {
      for (const reason of ALL_REASONS) {
        expect({ reason, retriable: isRetriableFailure(cfg, { kind: 'error', reason }) }).toEqual({ reason, retriable: expectedError([on], reason) });
      }
    });

    it('retries exactly the expected statuses (isRetriableFailure and isRetriableStatus agree)', () => {
      for (const status of SAMPLE_STATUSES) {
        const want = expectedStatus([on], status);
        expect({ status, retriable: isRetriableFailure(cfg, { kind: 'status', status }) }).toEqual({ status, retriable: want });
        expect({ status, retriable: isRetriableStatus(cfg, status) }).toEqual({ status, retriable: want });
      }
    });
  });

  it('gateway-error covers 502, 503, 504 and per-try timeouts but not 500, 501, 505, connect failures or resets', () => {
    const cfg = configFor(['gateway-error']);
    for (const s of [502, 503, 504]) expect(isRetriableStatus(cfg, s)).toBe(true);
    for (const s of [500, 501, 505]) expect(isRetriableStatus(cfg, s)).toBe(false);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'timeout' })).toBe(true);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'connect-failure' })).toBe(false);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'reset' })).toBe(false);
  });

  it('retriable-status retries only the listed statuses, 4xx included, and nothing else', () => {
    const cfg = retryConfig({ on: ['retriable-status'], statuses: [429, 409] });
    expect(isRetriableStatus(cfg, 429)).toBe(true);
    expect(isRetriableStatus(cfg, 409)).toBe(true);
    expect(isRetriableStatus(cfg, 408)).toBe(false);
    expect(isRetriableStatus(cfg, 503)).toBe(false);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'connect-failure' })).toBe(false);
  });

  it('never retries failures the sidecar itself decided (circuit-open, overloaded, budget, ...) under any rule', () => {
    const cfg = configFor(ONS);
    for (const reason of ['no-healthy-upstream', 'circuit-open', 'overloaded', 'retry-budget-exhausted', 'unknown-service', 'bad-request'] as const) {
      expect({ reason, retriable: isRetriableFailure(cfg, { kind: 'error', reason }) }).toEqual({ reason, retriable: false });
    }
  });

  it('never retries a success or a 4xx that is not listed, even with every rule on', () => {
    const cfg = configFor(ONS);
    for (const s of [200, 201, 204, 304, 400, 404, 408, 499]) expect({ s, r: isRetriableStatus(cfg, s) }).toEqual({ s, r: false });
  });

  it('combines rules as a union', () => {
    const combos: RetryOn[][] = [
      ['reset', 'retriable-status'],
      ['connect-failure', 'gateway-error'],
      ['timeout', '5xx'],
      ['connect-failure', 'reset', 'timeout', 'retriable-status'],
      ONS,
    ];
    for (const on of combos) {
      const cfg = configFor(on);
      for (const reason of ALL_REASONS) {
        expect({ on, reason, r: isRetriableFailure(cfg, { kind: 'error', reason }) }).toEqual({ on, reason, r: expectedError(on, reason) });
      }
      for (const status of SAMPLE_STATUSES) {
        expect({ on, status, r: isRetriableStatus(cfg, status) }).toEqual({ on, status, r: expectedStatus(on, status) });
      }
    }
  });

  it('the default rules (connect-failure, reset, gateway-error) retry connect failures, resets, timeouts and 502..504', () => {
    const cfg = retryConfig();
    expect(cfg.on).toEqual(['connect-failure', 'reset', 'gateway-error']);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'connect-failure' })).toBe(true);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'reset' })).toBe(true);
    expect(isRetriableFailure(cfg, { kind: 'error', reason: 'timeout' })).toBe(true);
    expect(SAMPLE_STATUSES.filter((s) => isRetriableStatus(cfg, s))).toEqual([502, 503, 504]);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('backoffMs', () => {
  const { baseMs, maxMs } = retryConfig({ backoff: { base: '25ms', max: '250ms' } }).backoff;
  const ceiling = (n: number) => Math.min(maxMs, baseMs * 2 ** (n - 1));

  it('takes base and max from the config in ms', () => {
    expect([baseMs, maxMs]).toEqual([25, 250]);
  });

  it('scales the random draw by min(max, base·2^(n-1)): doubles from base, then stays at max', () => {
    const half = fixedRandom(0.5);
    expect([1, 2, 3, 4, 5, 6, 7, 10].map((n) => backoffMs(n, baseMs, maxMs, half))).toEqual([12.5, 25, 50, 100, 125, 125, 125, 125]);
  });

  it('spans the full jitter range [0, ceiling]: a draw of 0 gives 0, a draw near 1 gives nearly the ceiling', () => {
    for (let n = 1; n <= 6; n++) {
      expect(backoffMs(n, baseMs, maxMs, fixedRandom(0))).toBe(0);
      const top = backoffMs(n, baseMs, maxMs, fixedRandom(1 - 2 ** -40));
      expect(top).toBeLessThanOrEqual(ceiling(n));
      expect(top).toBeGreaterThan(ceiling(n) * 0.999_999);
    }
  });

  it('stays within [0, min(max, base·2^(n-1))] and is uniform over it (seeded, 20,000 draws per retry)', () => {
    const random = seededRandom(42);
    for (let n = 1; n <= 8; n++) {
      const c = ceiling(n);
      const draws = Array.from({ length: 20_000 }, () => backoffMs(n, baseMs, maxMs, random));
      expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...draws)).toBeLessThanOrEqual(c);
      // Full jitter (not "equal jitter"): both ends of [0, c] are reached.
      expect(Math.min(...draws)).toBeLessThan(c * 0.01);
      expect(Math.max(...draws)).toBeGreaterThan(c * 0.99);
      const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
      expect(Math.abs(mean / c - 0.5)).toBeLessThan(0.02);
      const lowerHalf = draws.filter((d) => d < c / 2).length / draws.length;
      expect(Math.abs(lowerHalf - 0.5)).toBeLessThan(0.02);
    }
  });

  it('grows exponentially in expectation until the cap', () => {
    const random = seededRandom(9);
    const mean = (n: number) => {
      let sum = 0;
      for (let i = 0; i < 20_000; i++) sum += backoffMs(n, 10, 1_000, random);
      return sum / 20_000;
    };
    const means = [1, 2, 3, 4, 5, 6, 7, 8, 9].map(mean);
    // ceilings 10, 20, 40, 80, 160, 320, 640, 1000, 1000
    for (let i = 1; i < 7; i++) expect(means[i]! / means[i - 1]!).toBeCloseTo(2, 0);
    expect(means[7]! / means[6]!).toBeCloseTo(1000 / 640, 0);
    expect(Math.abs(means[8]! / means[7]! - 1)).toBeLessThan(0.05);
  });

  it('is deterministic for a seed and differs between seeds', () => {
    const seq = (seed: number) => {
      const r = seededRandom(seed);
      return [1, 2, 3, 4, 5, 1, 2, 3].map((n) => backoffMs(n, baseMs, maxMs, r));
    };
    expect(seq(7)).toEqual(seq(7));
    expect(seq(7)).not.toEqual(seq(8));
  });

  it('caps huge retry counts at max instead of overflowing', () => {
    const v = backoffMs(2_000, baseMs, maxMs, fixedRandom(0.5));
    expect(v).toBe(125);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('RetryBudget', () => {
  const SEC = 1_000;
  const WINDOW = 10 * SEC;
  /** The budget of the default config (ratio 0.2, minPerSecond 10) over a 10 s window, created now. */
  function freshBudget(clock: FakeClock, retry: Record<string, unknown> = {}): RetryBudget {
    const b = retryConfig(retry).budget;
    return new RetryBudget(b.ratio, b.minPerSecond, clock, WINDOW);
  }
  /** A budget that has existed, idle, for a whole window: its reserve is minPerSecond × 10 s. */
  function budget(clock: FakeClock, retry: Record<string, unknown> = {}): RetryBudget {
    const b = freshBudget(clock, retry);
    clock.advance(WINDOW);
    return b;
  }
  const withdrawAll = (b: RetryBudget, limit = 1_000_000): number => {
    let n = 0;
    while (n < limit && b.tryWithdraw()) n++;
    return n;
  };

  it('uses the config defaults ratio 0.2 and minPerSecond 10', () => {
    expect(retryConfig().budget).toEqual({ ratio: 0.2, minPerSecond: 10 });
  });

  it('with no requests allows the reserve alone: minPerSecond × window = 100 retries', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    expect(b.remaining).toBe(100);
    expect(withdrawAll(b)).toBe(100);
    expect(b.remaining).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('after 100 requests at once allows exactly 20 + 100 retries and refuses the next; remaining counts down', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    for (let i = 0; i < 100; i++) b.deposit();
    expect(b.remaining).toBe(120);
    for (let i = 0; i < 120; i++) {
      expect(b.remaining).toBe(120 - i);
      expect(b.tryWithdraw()).toBe(true);
    }
    expect(b.remaining).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
    expect(b.tryWithdraw()).toBe(false);
    expect(b.remaining).toBe(0);
  });

  it('a refused withdrawal takes nothing: then every 5 more requests allow exactly one more retry', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    for (let i = 0; i < 100; i++) b.deposit();
    expect(withdrawAll(b)).toBe(120);
    for (let round = 1; round <= 3; round++) {
      for (let i = 0; i < 4; i++) {
        b.deposit();
        expect(b.tryWithdraw()).toBe(false);
      }
      b.deposit(); // 100 + 5·round requests: 20 + round + 100 retries
      expect(b.tryWithdraw()).toBe(true);
      expect(b.tryWithdraw()).toBe(false);
    }
  });

  describe('a new budget builds its reserve up from one second', () => {
    it('starts at minPerSecond × 1 s and grows with the time covered until a whole window', () => {
      const clock = new FakeClock();
      const b = freshBudget(clock);
      const at: [number, number][] = [];
      for (const t of [0, 500, 1_000, 1_500, 2_500, 5_000, 9_999, 10_000, 10_001, 60_000]) {
        clock.advance(t - (at.length === 0 ? 0 : at[at.length - 1]![0]));
        at.push([t, b.remaining]);
      }
      expect(at).toEqual([
        [0, 10],
        [500, 10],
        [1_000, 10],
        [1_500, 15],
        [2_500, 25],
        [5_000, 50],
        [9_999, 99],
        [10_000, 100],
        [10_001, 100],
        [60_000, 100],
      ]);
    });

    it('after 100 requests at creation allows 20 + 10 retries at once, and more as the reserve builds', () => {
      const clock = new FakeClock();
      const b = freshBudget(clock);
      for (let i = 0; i < 100; i++) b.deposit();
      expect(b.remaining).toBe(30);
      expect(withdrawAll(b)).toBe(30);
      expect(b.tryWithdraw()).toBe(false);
      clock.advance(3 * SEC); // reserve 30: 20 + 30 - 30 taken
      expect(b.remaining).toBe(20);
      expect(withdrawAll(b)).toBe(20);
      clock.advance(6 * SEC); // t = 9 s: reserve 90, so 20 + 90 - 50 taken
      expect(withdrawAll(b)).toBe(60);
      clock.advance(SEC - 1); // t = 9.999 s: reserve 99.99 (⌊119.99⌋ - 110); nothing of t = 0 forgotten yet
      expect(withdrawAll(b)).toBe(9);
      expect(b.tryWithdraw()).toBe(false);
    });
  });

  it('forgets requests and retries a window (10 s) later, not before', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    for (let i = 0; i < 100; i++) b.deposit();
    expect(withdrawAll(b)).toBe(120);
    clock.advance(WINDOW - 1);
    expect(b.remaining).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
    clock.advance(1);
    // The 100 requests and 120 retries have left the window: the reserve alone is left.
    expect(b.remaining).toBe(100);
    expect(withdrawAll(b)).toBe(100);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('slides one bucket (1 s) at a time: remaining grows by what each forgotten second held', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    // Seconds 0..9: 10 requests and 12 retries each; at the end the window holds 100 and 120 (spent).
    for (let s = 0; s < 10; s++) {
      if (s > 0) clock.advance(SEC);
      for (let i = 0; i < 10; i++) b.deposit();
      for (let i = 0; i < 12; i++) expect(b.tryWithdraw()).toBe(true);
    }
    expect(b.remaining).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
    // At 9 + k s, seconds 0..k-1 are gone: 100 - 10k requests and 120 - 12k retries remain, so
    // remaining = 0.2 (100 - 10k) + 100 - (120 - 12k) = 10k.
    for (let k = 1; k <= 10; k++) {
      clock.advance(SEC - 1);
      expect({ k, remaining: b.remaining }).toEqual({ k, remaining: 10 * (k - 1) });
      clock.advance(1);
      expect({ k, remaining: b.remaining }).toEqual({ k, remaining: 10 * k });
    }
  });

  it('after 5 s of silence exactly the retries of the forgotten half are available again', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    for (let s = 0; s < 10; s++) {
      if (s > 0) clock.advance(SEC);
      for (let i = 0; i < 10; i++) b.deposit();
      for (let i = 0; i < 12; i++) b.tryWithdraw();
    }
    expect(b.tryWithdraw()).toBe(false);
    clock.advance(5 * SEC); // t = 14 s: seconds 0..4 forgotten (50 requests, 60 retries)
    expect(withdrawAll(b)).toBe(50);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('after a long idle gap forgets everything and keeps its buckets aligned', () => {
    const clock = new FakeClock();
    const b = budget(clock);
    for (let i = 0; i < 500; i++) b.deposit();
    expect(withdrawAll(b)).toBe(200);
    clock.advance(3_600 * SEC + 500); // 1 h later, half-way through a bucket
    expect(b.remaining).toBe(100);
    for (let i = 0; i < 50; i++) b.deposit();
    expect(b.remaining).toBe(110);
    clock.advance(9 * SEC + 499); // the last ms in which that bucket is still in the window
    expect(b.remaining).toBe(110);
    clock.advance(1);
    expect(b.remaining).toBe(100);
  });

  it('with ratio 0 and minPerSecond 0 refuses every retry', () => {
    const clock = new FakeClock();
    const b = budget(clock, { budget: { ratio: 0, minPerSecond: 0 } });
    for (let i = 0; i < 1_000; i++) b.deposit();
    expect(b.remaining).toBe(0);
    expect(b.tryWithdraw()).toBe(false);
  });

  it('with ratio 1 and minPerSecond 0 allows one retry per request', () => {
    const clock = new FakeClock();
    const b = budget(clock, { budget: { ratio: 1, minPerSecond: 0 } });
    for (let i = 0; i < 37; i++) b.deposit();
    expect(b.remaining).toBe(37);
    expect(withdrawAll(b)).toBe(37);
  });

  it('scales the reserve with minPerSecond and the window length', () => {
    const clock = new FakeClock();
    const b = new RetryBudget(0, 3, clock, 2 * SEC);
    clock.advance(2 * SEC);
    expect(b.remaining).toBe(6);
    expect(withdrawAll(b)).toBe(6);
    clock.advance(2 * SEC);
    expect(withdrawAll(b)).toBe(6);
  });

  it('over 20 s of 300 requests/s, each retrying until refused, stays within ratio × requests + minPerSecond × duration', () => {
    // Let D(j), W(j) be the requests and retries in the j-th 1 s bucket after the budget's creation (sums over
    // empty ranges and negative j are 0). At the last retry taken in bucket j, at t < j + 1 s, the window
    // was buckets j-9..j and the reserve at most 10/s × min(10 s, j + 1 s), so
    //   (1) W(j-9..j) ≤ 0.2·D(j-9..j) + 10·min(10, j + 1)       for every j.
    // Total: let j be the bucket of the last retry; (1) bounds W(j-9..j), and (1) applied to the last retry
    // before bucket j-9 (whose window starts at or before bucket 0) bounds W(0..j-10); so
    //   (2) total ≤ 0.2·N + 2 × 100 = 0.2·N + 10/s × 20 s   (no extra window's reserve is needed because the
    //       run starts with the budget; the reserve starts at 10 and only builds up).
    // Tightness: in buckets 0..9 nothing leaves the window and the allowance only grows, so the last request
    // of bucket 9 tops the retries up to exactly ⌊0.2·D(0..9) + 10/s × its time⌋; likewise buckets 10..19 end
    // at ⌊0.2·D(10..19) + 100⌋ or above; hence total ≥ 0.2·N + 200 - 2 when the last request of bucket 9
    // comes in its final 100 ms.
    const clock = new FakeClock();
    const start = clock.now();
    const b = freshBudget(clock);
    const random = seededRandom(2024);
    const SECONDS = 20;
    const RATE = 300;
    const D = new Array<number>(SECONDS).fill(0);
    const W = new Array<number>(SECONDS).fill(0);
    let lastOfBucket9 = 0;
    for (let s = 0; s < SECONDS; s++) {
      const offsets = Array.from({ length: RATE }, () => randomInt(random, SEC)).sort((x, y) => x - y);
      for (const off of offsets) {
        clock.advance(start + s * SEC + off - clock.now());
        if (s === 9) lastOfBucket9 = s * SEC + off;
        b.deposit();
        D[s]!++;
        while (b.tryWithdraw()) W[s]!++;
      }
    }
    const sum = (a: number[], from: number, to: number) => a.slice(Math.max(0, from), to + 1).reduce((x, y) => x + y, 0);
    const requests = sum(D, 0, SECONDS - 1);
    const retries = sum(W, 0, SECONDS - 1);
    expect(requests).toBe(6_000);
    expect(lastOfBucket9).toBeGreaterThanOrEqual(9_900);

    // (1), in integers: W ≤ ⌊D/5⌋ + 10·min(10, j + 1).
    for (let j = 0; j < SECONDS; j++) {
      const allowance = Math.floor(sum(D, j - 9, j) / 5) + 10 * Math.min(10, j + 1);
      expect({ j, within: sum(W, j - 9, j) <= allowance }).toEqual({ j, within: true });
    }
    // The first window is filled exactly: ⌊0.2·D + lastOfBucket9 / 100⌋ = ⌊(20·D + lastOfBucket9) / 100⌋.
    expect(sum(W, 0, 9)).toBe(Math.floor((20 * sum(D, 0, 9) + lastOfBucket9) / 100));
    // (2) and its tightness: 1398 ≤ total ≤ 0.2 × 6000 + 10/s × 20 s = 1400.
    expect(retries).toBeLessThanOrEqual(0.2 * requests + 10 * SECONDS);
    expect(retries).toBeGreaterThanOrEqual(0.2 * requests + 10 * SECONDS - 2);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('parseDeadlineHeader', () => {
  it('is undefined when the header is absent', () => {
    expect(parseDeadlineHeader(undefined)).toBeUndefined();
  });

  it.each([
    ['250', 250],
    ['1', 1],
    ['12.5', 12.5],
    ['1e3', 1000],
    [' 300 ', 300],
  ])('parses %j as %d ms', (text, ms) => {
    expect(parseDeadlineHeader(text)).toBe(ms);
  });

  it.each(['0', '-5', '-0', '', '   ', 'abc', '10ms', 'Infinity', 'NaN', '1,000'])('rejects %j', (text) => {
    expect(parseDeadlineHeader(text)).toBeUndefined();
  });

  it('takes the first of repeated headers', () => {
    expect(parseDeadlineHeader(['300', '400'])).toBe(300);
    expect(parseDeadlineHeader(['abc', '400'])).toBeUndefined();
  });

  it('is undefined for an empty list', () => {
    expect(parseDeadlineHeader([])).toBeUndefined();
  });
});
