import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import type { CircuitBreakerConfig } from '../../../common/src/config/types.js';
import { Endpoint } from '../../../sidecar/src/core/endpoint.js';
import { type Breaker, BreakerFactory, type BreakerState } from '../../../sidecar/src/resilience/breaker.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const SEC = 1_000;
const RESET_MS = 5 * SEC;
const WINDOW_MS = 10 * SEC;

/** errorThresholdPercentage 50, volumeThreshold 4, rollingWindow 10s, resetTimeout 5s unless overridden. */
function breakerConfig(overrides: Record<string, unknown> = {}): CircuitBreakerConfig {
  return parseServiceConfig(
    {
      endpoints: [{ address: '127.0.0.1:1' }],
      circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, rollingWindow: '10s', resetTimeout: '5s', ...overrides },
    },
    'test',
  ).circuitBreaker!;
}

/** Lets any pending microtask run (the breaker itself is synchronous; this keeps the calls realistic). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

let clock: FakeClock;
let changes: [Breaker, BreakerState][];
let factory: BreakerFactory;
let created: Breaker[];

/** Moves both the FakeClock (bucket rotation, reset timer, `since`) and vitest's fake timers (which must not drive the breaker). */
function advance(ms: number): void {
  clock.advance(ms);
  vi.advanceTimersByTime(ms);
}

function create(config = breakerConfig(), endpoint?: Endpoint): Breaker {
  const b = factory.create('orders', endpoint, config);
  created.push(b);
  return b;
}

/** One admitted call through `b` that ends in success or failure. */
async function call(b: Breaker, ok: boolean): Promise<void> {
  expect(b.admit()).toBe(true);
  const t = b.begin();
  if (ok) t.success();
  else t.failure();
  await settle();
}

async function calls(b: Breaker, pattern: string): Promise<void> {
  for (const c of pattern) await call(b, c === 'S');
}

/** Opens `b` with four failures (4/4 = 100 % > 50 % at the volume threshold). */
async function open(b: Breaker): Promise<void> {
  await calls(b, 'FFFF');
  expect(b.state).toBe('open');
}

const statesOf = (b: Breaker) => changes.filter(([x]) => x === b).map(([, s]) => s);
const iso = (wall: number) => new Date(wall).toISOString();

beforeEach(() => {
  vi.useFakeTimers();
  clock = new FakeClock();
  changes = [];
  created = [];
  factory = new BreakerFactory(clock, clock, (b, s) => changes.push([b, s]));
});

afterEach(() => {
  factory.close();
  for (const b of created) b.shutdown();
  vi.useRealTimers();
});

describe('closed → open', () => {
  it('opens when the error percentage exceeds the threshold with volumeThreshold calls in the window', async () => {
    const b = create();
    await calls(b, 'SFF');
    expect(b.state).toBe('closed'); // 3 calls: below the volume threshold
    await call(b, false); // 4 calls, 3 failures: 75 % > 50 %
    expect(b.state).toBe('open');
    expect(statesOf(b)).toEqual(['open']);
    expect(changes[0]![0]).toBe(b);
    expect(b.admit()).toBe(false);
  });

  it('does not open below volumeThreshold, whatever the error percentage', async () => {
    const b = create();
    await calls(b, 'FFF');
    expect(b.state).toBe('closed');
    expect(b.admit()).toBe(true);
    expect(statesOf(b)).toEqual([]);
  });

  it('does not open at exactly the threshold (it must be exceeded)', async () => {
    const b = create();
    await calls(b, 'SFSF'); // 2 of 4 = 50 %
    expect(b.state).toBe('closed');
    await call(b, false); // 3 of 5 = 60 %
    expect(b.state).toBe('open');
  });

  it('counts successes in the percentage: after 10 successes it opens at the 11th failure', async () => {
    const b = create();
    await calls(b, 'SSSSSSSSSS');
    await calls(b, 'FFFFFFFFFF'); // 10 of 20 = 50 %
    expect(b.state).toBe('closed');
    await call(b, false); // 11 of 21 > 50 %
    expect(b.state).toBe('open');
  });

  it('honours another threshold and volume', async () => {
    const b = create(breakerConfig({ errorThresholdPercentage: 25, volumeThreshold: 8 }));
    await calls(b, 'SSSSSSF'); // 7 calls: below the volume
    expect(b.state).toBe('closed');
    await call(b, false); // 2 of 8 = 25 %: not above
    expect(b.state).toBe('closed');
    await call(b, false); // 3 of 9 = 33 %
    expect(b.state).toBe('open');
  });

  it('breakers are independent: failures on one do not open another', async () => {
    const a = create();
    const other = create();
    await open(a);
    expect(other.state).toBe('closed');
    expect(other.admit()).toBe(true);
    expect(statesOf(other)).toEqual([]);
  });
});

describe('open', () => {
  it('refuses admission and counts each refusal in view().counts.rejects', async () => {
    const b = create();
    expect(b.admit()).toBe(true);
    expect(b.admit()).toBe(true);
    expect(b.view().counts.rejects).toBe(0); // admissions while closed are not rejects
    await open(b);
    for (let i = 0; i < 3; i++) expect(b.admit()).toBe(false);
    expect(b.view().counts.rejects).toBe(3);
  });

  it('stays open until resetTimeout has passed', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS - 1);
    expect(b.state).toBe('open');
    expect(b.admit()).toBe(false);
    expect(statesOf(b)).toEqual(['open']);
  });
});

describe('half-open', () => {
  it('goes half-open after resetTimeout and admits exactly one probe', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS);
    expect(b.state).toBe('half-open');
    expect(statesOf(b)).toEqual(['open', 'half-open']);
    expect(b.admit()).toBe(true);
    const probe = b.begin();
    // A second request before the probe has finished is refused.
    expect(b.admit()).toBe(false);
    expect(b.admit()).toBe(false);
    expect(b.view().counts.rejects).toBe(2);
    probe.success();
    await settle();
  });

  it('closes when the probe succeeds', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS);
    await call(b, true);
    expect(b.state).toBe('closed');
    expect(statesOf(b)).toEqual(['open', 'half-open', 'closed']);
    expect(b.admit()).toBe(true);
    expect(b.admit()).toBe(true);
  });

  it('an excused probe is given back: the state stays half-open and the next call probes', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS);
    expect(b.admit()).toBe(true);
    b.begin().excuse();
    expect(b.state).toBe('half-open');
    await call(b, true);
    expect(b.state).toBe('closed');
  });

  it('opens again when the probe fails, and goes half-open again one resetTimeout later', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS);
    await call(b, false);
    expect(b.state).toBe('open');
    expect(statesOf(b)).toEqual(['open', 'half-open', 'open']);
    expect(b.admit()).toBe(false);
    advance(RESET_MS - 1);
    expect(b.state).toBe('open');
    advance(1);
    expect(b.state).toBe('half-open');
    expect(statesOf(b)).toEqual(['open', 'half-open', 'open', 'half-open']);
  });
});

describe('excuse() and healthy', () => {
  it('an excused call stays a fire but is neither success nor failure: it dilutes the error rate', async () => {
    const b = create();
    for (let i = 0; i < 4; i++) {
      expect(b.admit()).toBe(true);
      b.begin().excuse();
    }
    await calls(b, 'FFF');
    // 3 failures of 7 fires: 43 %, not above 50 %.
    expect(b.state).toBe('closed');
    expect(b.view().counts).toMatchObject({ fires: 7, successes: 0, failures: 3 });
  });

  it('healthy: closed and within the error threshold, whatever the volume', async () => {
    const b = create();
    expect(b.healthy).toBe(true);
    await calls(b, 'SF');
    expect(b.healthy).toBe(true);
    await calls(b, 'F');
    expect(b.healthy).toBe(false);
    await calls(b, 'SS');
    expect(b.healthy).toBe(true);
  });
});

describe('view()', () => {
  it('describes a new breaker: closed since its creation, no next attempt, no counts', () => {
    const b = create();
    expect(b.view()).toEqual({
      service: 'orders',
      endpoint: null,
      state: 'closed',
      counts: { fires: 0, successes: 0, failures: 0, rejects: 0 },
      since: iso(clock.wallNow()),
      nextAttemptAt: null,
    });
    expect(changes).toEqual([]);
  });

  it("names the endpoint of an endpoint breaker", () => {
    const ep = new Endpoint({ address: '10.0.0.7:8080', weight: 1, capacity: 100, cost: 1 });
    expect(create(breakerConfig(), ep).view().endpoint).toBe('10.0.0.7:8080');
  });

  it('counts fires, successes and failures', async () => {
    const b = create();
    await calls(b, 'SSF');
    expect(b.view().counts).toEqual({ fires: 3, successes: 2, failures: 1, rejects: 0 });
  });

  it('tracks since and nextAttemptAt (= since + resetTimeout) through open, half-open and closed', async () => {
    const b = create();
    const created = clock.wallNow();
    advance(1_234);
    await open(b);
    const openedAt = clock.wallNow();
    expect(openedAt).toBe(created + 1_234);
    let v = b.view();
    expect(v.state).toBe('open');
    expect(v.since).toBe(iso(openedAt));
    expect(v.nextAttemptAt).toBe(iso(openedAt + RESET_MS));

    advance(RESET_MS);
    v = b.view();
    expect(v.state).toBe('half-open');
    expect(v.since).toBe(iso(openedAt + RESET_MS));
    expect(v.nextAttemptAt).toBeNull();

    advance(250);
    await call(b, true);
    v = b.view();
    expect(v.state).toBe('closed');
    expect(v.since).toBe(iso(openedAt + RESET_MS + 250));
    expect(v.nextAttemptAt).toBeNull();
  });

  it('after a failed probe, nextAttemptAt is a resetTimeout after the reopening', async () => {
    const b = create();
    await open(b);
    advance(RESET_MS);
    advance(700);
    await call(b, false);
    const reopenedAt = clock.wallNow();
    expect(b.view().since).toBe(iso(reopenedAt));
    expect(b.view().nextAttemptAt).toBe(iso(reopenedAt + RESET_MS));
  });
});

describe('rolling window', () => {
  it('still counts failures 9 s old', async () => {
    const b = create();
    await calls(b, 'FFF');
    advance(9 * SEC);
    await call(b, false); // 4 of 4 in the window
    expect(b.state).toBe('open');
  });

  it('forgets failures once the window has passed', async () => {
    const b = create();
    await calls(b, 'FFF');
    advance(WINDOW_MS);
    await call(b, false); // 1 of 1 in the window: below the volume threshold
    expect(b.state).toBe('closed');
    expect(b.view().counts).toMatchObject({ fires: 1, failures: 1 });
    await calls(b, 'FF');
    expect(b.state).toBe('closed');
    await call(b, false);
    expect(b.state).toBe('open');
  });

  it('forgets bucket by bucket: successes 6 s old dilute the rate, 10 s old they no longer do', async () => {
    const b = create();
    const c = create();
    await calls(b, 'SSSS');
    await calls(c, 'SSSS');
    advance(4 * SEC);
    // b: 4 successes still in the window, so FFFF is 4 of 8 = 50 %: closed.
    await calls(b, 'FFFF');
    expect(b.state).toBe('closed');
    advance(6 * SEC);
    // t = 10 s: the 4 successes of t = 0 have left b's window, the failures of t = 4 s have not.
    await call(b, false); // 5 of 5
    expect(b.state).toBe('open');
    // c has only its (now forgotten) successes: 1 failure is below the volume threshold.
    await call(c, false);
    expect(c.state).toBe('closed');
  });

  it('rotates with the factory timers (the FakeClock), not with the fake system timers', async () => {
    const b = create();
    await calls(b, 'FFF');
    vi.advanceTimersByTime(WINDOW_MS); // system timers only: no rotation
    await call(b, false);
    expect(b.state).toBe('open');
  });
});

describe('BreakerFactory', () => {
  it('shares one rotation timer per window length and cancels it when the last breaker is released', () => {
    expect(clock.timerCount).toBe(0);
    const a = create();
    const b = create();
    expect(clock.timerCount).toBe(1);
    const c = create(breakerConfig({ rollingWindow: '20s' }));
    expect(clock.timerCount).toBe(2);
    factory.release(a);
    expect(clock.timerCount).toBe(2);
    factory.release(c);
    expect(clock.timerCount).toBe(1);
    factory.release(b);
    expect(clock.timerCount).toBe(0);
  });

  it('keeps rotating for the breakers that remain after one is released', async () => {
    const a = create();
    const b = create();
    factory.release(a);
    await calls(b, 'FFF');
    advance(WINDOW_MS);
    await call(b, false);
    expect(b.state).toBe('closed');
  });

  it('starts a new rotation timer for a breaker created after all were released', async () => {
    factory.release(create());
    expect(clock.timerCount).toBe(0);
    const b = create();
    expect(clock.timerCount).toBe(1);
    await calls(b, 'FFF');
    advance(WINDOW_MS);
    await call(b, false);
    expect(b.state).toBe('closed');
  });

  it('rotates a 20 s window every 2 s', async () => {
    const b = create(breakerConfig({ rollingWindow: '20s' }));
    await calls(b, 'FFF');
    advance(19 * SEC);
    await call(b, false);
    expect(b.state).toBe('open');
    const c = create(breakerConfig({ rollingWindow: '20s' }));
    await calls(c, 'FFF');
    advance(20 * SEC);
    await call(c, false);
    expect(c.state).toBe('closed');
  });

  it('a released open breaker no longer goes half-open or reports state changes', async () => {
    const b = create();
    await open(b);
    factory.release(b);
    advance(RESET_MS * 3);
    expect(statesOf(b)).toEqual(['open']);
    expect(b.state).toBe('open');
  });

  it('close() cancels every rotation timer', () => {
    create();
    create(breakerConfig({ rollingWindow: '30s' }));
    expect(clock.timerCount).toBe(2);
    factory.close();
    expect(clock.timerCount).toBe(0);
  });
});
