import { describe, expect, it } from 'vitest';
import { HealthFlag } from '../../../../sidecar/src/core/endpoint.js';
import { seededRandom } from '../../../../common/src/random.js';
import { ActiveHealthChecker, JITTER } from '../../../../sidecar/src/health/active/checker.js';
import { FakeClock } from '../../../helpers/fake-clock.js';
import {
  FakeProber,
  addr,
  byAddress,
  constantRandom,
  eventLog,
  flush,
  makeCluster,
  recordingTimers,
  scriptedRandom,
  serviceConfig,
} from './helpers.js';

const INTERVAL = 1_000;

/** Moves the fake clock and lets probe results land. */
async function step(clock: FakeClock, ms: number): Promise<void> {
  clock.advance(ms);
  await flush();
}

/**
 * n endpoints, HTTP check every 1 s (timeout 500 ms, healthy 2, unhealthy 3), random fixed at 0.5 so the
 * first check of each endpoint comes at 500 ms and then exactly every 1 000 ms.
 */
function setup(n = 2, healthCheck: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const cluster = makeCluster(serviceConfig(n, healthCheck), clock);
  const prober = new FakeProber();
  const failing = new Set<string>();
  prober.answer = byAddress(failing);
  const { events, log } = eventLog();
  const checker = new ActiveHealthChecker(cluster, { clock, timers: clock, random: constantRandom(0.5), prober: prober.fn, log });
  return { clock, cluster, prober, failing, events, checker, ep: (i: number) => cluster.endpoint(addr(i))! };
}

describe('ActiveHealthChecker thresholds', () => {
  it('marks an endpoint ineligible after unhealthyThreshold (3) consecutive failures, eligible after healthyThreshold (2) successes', async () => {
    const { clock, cluster, prober, failing, events, checker, ep } = setup(2);
    checker.start();
    failing.add(addr(1));

    await step(clock, 500); // check 1
    expect(prober.calls).toHaveLength(2);
    expect(ep(1).eligible).toBe(true);
    await step(clock, INTERVAL); // check 2
    expect(ep(1).eligible).toBe(true);
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(2);
    await step(clock, INTERVAL); // check 3
    expect(ep(1).eligible).toBe(false);
    expect(ep(1).flags).toBe(HealthFlag.ActiveCheck);
    expect(cluster.eligibleCount).toBe(1);
    expect(ep(2).eligible).toBe(true);
    expect(events).toEqual([{ type: 'ejected', source: 'active-check', service: 'svc', endpoint: addr(1), reason: 'HTTP 503', consecutive: 3 }]);

    // more failures change nothing and log nothing
    await step(clock, INTERVAL);
    expect(events).toHaveLength(1);

    failing.delete(addr(1));
    await step(clock, INTERVAL); // 1 success
    expect(ep(1).eligible).toBe(false);
    expect(checker.statusOf(addr(1))).toMatchObject({ healthy: false, consecutiveSuccesses: 1, consecutiveFailures: 0 });
    await step(clock, INTERVAL); // 2 successes
    expect(ep(1).eligible).toBe(true);
    expect(cluster.eligibleCount).toBe(2);
    expect(events[1]).toEqual({ type: 'readmitted', source: 'active-check', service: 'svc', endpoint: addr(1), reason: 'HTTP 200', consecutive: 2 });
    expect(events).toHaveLength(2);
    checker.stop();
  });

  it('needs the failures to be consecutive: a success in between resets the count', async () => {
    const { clock, prober, failing, events, checker, ep } = setup(1);
    checker.start();
    const pattern = [false, false, true, false, false, true, false, false];
    for (const [i, healthy] of pattern.entries()) {
      if (healthy) failing.clear();
      else failing.add(addr(1));
      await step(clock, i === 0 ? 500 : INTERVAL);
    }
    expect(prober.calls).toHaveLength(pattern.length);
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(2);
    expect(ep(1).eligible).toBe(true);
    expect(events).toEqual([]);
    checker.stop();
  });

  it('needs the successes to be consecutive while ineligible', async () => {
    const { clock, failing, checker, ep } = setup(1, { unhealthyThreshold: 1, healthyThreshold: 3 });
    checker.start();
    failing.add(addr(1));
    await step(clock, 500);
    expect(ep(1).eligible).toBe(false);
    for (const healthy of [true, true, false, true, true]) {
      if (healthy) failing.clear();
      else failing.add(addr(1));
      await step(clock, INTERVAL);
      expect(ep(1).eligible).toBe(false);
    }
    failing.clear();
    await step(clock, INTERVAL);
    expect(ep(1).eligible).toBe(true);
    checker.stop();
  });

  it('keeps new endpoints eligible until proven bad', async () => {
    const { clock, prober, checker, ep } = setup(2);
    prober.answer = undefined; // every probe hangs
    checker.start();
    expect(ep(1).eligible).toBe(true);
    await step(clock, 10 * INTERVAL);
    expect(ep(1).eligible).toBe(true);
    expect(checker.statusOf(addr(1))).toMatchObject({ healthy: true, lastResult: null, lastCheckAt: null, checks: 0, inFlight: true });
    checker.stop();
  });

  it('keeps a flag already set when the endpoint is first seen, until healthyThreshold successes', async () => {
    const { clock, cluster, checker, ep } = setup(1);
    cluster.setFlag(ep(1), HealthFlag.ActiveCheck, true);
    checker.start();
    expect(checker.statusOf(addr(1))?.healthy).toBe(false);
    await step(clock, 500);
    expect(ep(1).eligible).toBe(false);
    await step(clock, INTERVAL);
    expect(ep(1).eligible).toBe(true);
    checker.stop();
  });

  it('counts a rejected or throwing prober as a failure', async () => {
    const clock = new FakeClock();
    const cluster = makeCluster(serviceConfig(2, { unhealthyThreshold: 1 }), clock);
    const { events, log } = eventLog();
    let n = 0;
    const checker = new ActiveHealthChecker(cluster, {
      clock,
      timers: clock,
      random: constantRandom(0.5),
      log,
      prober: (endpoint) => {
        if (n++ % 2 === 0) throw new Error(`boom ${endpoint.address}`);
        return Promise.reject(new Error('nope'));
      },
    });
    checker.start();
    await step(clock, 500);
    expect(cluster.eligibleCount).toBe(0);
    expect(events.map((e) => e.reason).sort()).toEqual([`probe error: boom ${addr(1)}`, 'probe error: nope']);
    checker.stop();
  });

  it('passes the configured timeout to the prober', async () => {
    const { clock, prober, checker } = setup(1, { timeout: '250ms' });
    checker.start();
    await step(clock, 500);
    expect(prober.calls[0]?.timeoutMs).toBe(250);
    checker.stop();
  });
});

describe('ActiveHealthChecker status', () => {
  it('reports wall time of the last result, the result, counts and duration', async () => {
    const { clock, prober, failing, checker } = setup(2);
    prober.answer = undefined;
    checker.start();
    await step(clock, 500);
    const [p1, p2] = prober.calls;
    await step(clock, 40);
    failing.add(addr(2));
    p1!.resolve({ healthy: true, detail: 'HTTP 200' });
    p2!.resolve({ healthy: false, detail: 'HTTP 503' });
    await flush();
    const wall = clock.wallNow();
    expect(checker.status()).toEqual([
      { address: addr(1), healthy: true, lastCheckAt: wall, lastResult: { healthy: true, detail: 'HTTP 200' }, lastDurationMs: 40, consecutiveSuccesses: 1, consecutiveFailures: 0, checks: 1, skipped: 0, inFlight: false },
      { address: addr(2), healthy: true, lastCheckAt: wall, lastResult: { healthy: false, detail: 'HTTP 503' }, lastDurationMs: 40, consecutiveSuccesses: 0, consecutiveFailures: 1, checks: 1, skipped: 0, inFlight: false },
    ]);
    expect(Object.isFrozen(checker.status()[0])).toBe(true);
    expect(checker.statusOf('10.9.9.9:1')).toBeUndefined();
    checker.stop();
    expect(checker.status()).toEqual([]);
  });
});

describe('ActiveHealthChecker never piles up checks', () => {
  it('skips an interval while the previous check of that endpoint is still running', async () => {
    const { clock, prober, checker } = setup(1);
    prober.answer = undefined; // probes wait for the test
    checker.start();
    await step(clock, 500);
    expect(prober.calls).toHaveLength(1);
    for (let i = 0; i < 5; i++) await step(clock, INTERVAL);
    expect(prober.calls).toHaveLength(1);
    expect(checker.statusOf(addr(1))).toMatchObject({ inFlight: true, skipped: 5, checks: 0 });

    prober.calls[0]!.resolve({ healthy: true, detail: 'HTTP 200' });
    await flush();
    expect(checker.statusOf(addr(1))).toMatchObject({ inFlight: false, checks: 1 });
    // the next turn of the schedule starts the next check; the schedule never shifted
    await step(clock, INTERVAL - 1);
    expect(prober.calls).toHaveLength(1);
    await step(clock, 1);
    expect(prober.calls).toHaveLength(2);
    expect(prober.maxConcurrent.get(addr(1))).toBe(1);
    checker.stop();
  });

  it('keeps one probe per endpoint at most under random timing', async () => {
    const clock = new FakeClock();
    const cluster = makeCluster(serviceConfig(5), clock);
    const prober = new FakeProber();
    const random = seededRandom(42);
    const checker = new ActiveHealthChecker(cluster, { clock, timers: clock, random, prober: prober.fn });
    checker.start();
    for (let i = 0; i < 400; i++) {
      await step(clock, 37);
      // settle a random subset of the running probes
      for (const p of [...prober.pending]) if (random.next() < 0.1) p.resolve({ healthy: random.next() < 0.5, detail: 'x' });
      await flush();
    }
    for (let i = 1; i <= 5; i++) expect(prober.maxConcurrent.get(addr(i))).toBe(1);
    expect(prober.calls.length).toBeGreaterThan(5);
    checker.stop();
  });
});

describe('ActiveHealthChecker jitter', () => {
  it('waits a random fraction of the interval first, then interval × (1 ± 10 %)', async () => {
    const clock = new FakeClock();
    const timers = recordingTimers(clock);
    const cluster = makeCluster(serviceConfig(1), clock);
    const prober = new FakeProber();
    prober.answer = () => ({ healthy: true, detail: 'ok' });
    const checker = new ActiveHealthChecker(cluster, { clock, timers, random: scriptedRandom([0.25, 0, 0.999_999, 0.5]), prober: prober.fn });
    checker.start();
    expect(timers.delays).toEqual([250]);
    await step(clock, 250);
    await step(clock, 900);
    await step(clock, 1_100);
    expect(timers.delays[0]).toBe(250);
    expect(timers.delays[1]).toBeCloseTo(900, 6);
    expect(timers.delays[2]).toBeCloseTo(1_100, 2);
    expect(timers.delays[2]).toBeLessThan(1_100);
    expect(timers.delays[3]).toBeCloseTo(1_000, 6);
    expect(prober.calls).toHaveLength(3);
    checker.stop();
  });

  it('stays within the bounds and spreads over them with a real generator', async () => {
    const clock = new FakeClock();
    const timers = recordingTimers(clock);
    const n = 20;
    const cluster = makeCluster(serviceConfig(n), clock);
    const prober = new FakeProber();
    prober.answer = () => ({ healthy: true, detail: 'ok' });
    const checker = new ActiveHealthChecker(cluster, { clock, timers, random: seededRandom(3), prober: prober.fn });
    checker.start();
    const first = timers.delays.slice(0, n);
    for (const d of first) {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(INTERVAL);
    }
    // the first checks of many endpoints spread over the interval
    expect(Math.max(...first) - Math.min(...first)).toBeGreaterThan(INTERVAL / 2);
    for (let i = 0; i < 60; i++) await step(clock, 500);
    const later = timers.delays.slice(n);
    expect(later.length).toBeGreaterThan(400);
    for (const d of later) {
      expect(d).toBeGreaterThanOrEqual(INTERVAL * (1 - JITTER));
      expect(d).toBeLessThan(INTERVAL * (1 + JITTER));
    }
    expect(Math.min(...later)).toBeLessThan(INTERVAL * (1 - JITTER / 2));
    expect(Math.max(...later)).toBeGreaterThan(INTERVAL * (1 + JITTER / 2));
    checker.stop();
  });
});

describe('ActiveHealthChecker lifecycle', () => {
  it('start() schedules one timer per endpoint and stop() cancels them all', async () => {
    const { clock, prober, checker } = setup(3);
    expect(clock.timerCount).toBe(0);
    checker.start();
    checker.start(); // idempotent
    expect(checker.isRunning).toBe(true);
    expect(clock.timerCount).toBe(3);
    await step(clock, 500);
    await step(clock, INTERVAL);
    await step(clock, INTERVAL);
    expect(clock.timerCount).toBe(3);
    const calls = prober.calls.length;
    expect(calls).toBe(9);
    checker.stop();
    expect(checker.isRunning).toBe(false);
    expect(clock.timerCount).toBe(0);
    await step(clock, 10 * INTERVAL);
    expect(prober.calls).toHaveLength(calls);
  });

  it('stop() clears the flags it set and ignores results still in flight', async () => {
    const { clock, prober, failing, events, checker, ep } = setup(2, { unhealthyThreshold: 1 });
    failing.add(addr(1));
    checker.start();
    await step(clock, 500);
    expect(ep(1).eligible).toBe(false);
    prober.answer = undefined;
    await step(clock, INTERVAL); // probes now hang
    expect(prober.pending.size).toBe(2);
    checker.stop();
    expect(ep(1).eligible).toBe(true);
    expect(events.at(-1)).toEqual({ type: 'readmitted', source: 'active-check', service: 'svc', endpoint: addr(1), reason: 'health checking stopped', consecutive: 0 });
    for (const p of [...prober.pending]) p.resolve({ healthy: false, detail: 'late' });
    await flush();
    expect(ep(1).eligible).toBe(true);
    expect(ep(2).eligible).toBe(true);
    expect(events).toHaveLength(2);
  });

  it('can start again after stop', async () => {
    const { clock, prober, checker } = setup(1);
    checker.start();
    checker.stop();
    checker.start();
    expect(clock.timerCount).toBe(1);
    await step(clock, 500);
    expect(prober.calls).toHaveLength(1);
    checker.stop();
  });

  it('does nothing for a cluster without healthCheck', async () => {
    const clock = new FakeClock();
    const cluster = makeCluster(serviceConfig(2, null), clock);
    const prober = new FakeProber();
    const checker = new ActiveHealthChecker(cluster, { clock, timers: clock, random: constantRandom(0.5), prober: prober.fn });
    checker.start();
    expect(clock.timerCount).toBe(0);
    await step(clock, 5 * INTERVAL);
    expect(prober.calls).toHaveLength(0);
    expect(checker.status()).toEqual([]);
    checker.stop();
  });
});

describe('ActiveHealthChecker.sync()', () => {
  it('is a no-op before start', () => {
    const { clock, checker } = setup(2);
    checker.sync();
    expect(clock.timerCount).toBe(0);
  });

  it('starts checking an added endpoint and stops checking a removed one', async () => {
    const { clock, cluster, prober, checker } = setup(2);
    checker.start();
    await step(clock, 500);
    expect(prober.calls.map((c) => c.endpoint.address)).toEqual([addr(1), addr(2)]);

    cluster.update(serviceConfig(0, {}, [addr(1), addr(2), addr(3)]));
    checker.sync();
    expect(clock.timerCount).toBe(3);
    expect(cluster.endpoint(addr(3))?.eligible).toBe(true);
    await step(clock, 500); // the new endpoint's first check: half an interval after it appeared
    expect(prober.callsFor(addr(3))).toHaveLength(1);
    expect(checker.status().map((s) => s.address)).toEqual([addr(1), addr(2), addr(3)]);

    cluster.update(serviceConfig(0, {}, [addr(1), addr(3)]));
    checker.sync();
    expect(clock.timerCount).toBe(2);
    const before = prober.callsFor(addr(2)).length;
    for (let i = 0; i < 5; i++) await step(clock, INTERVAL);
    expect(prober.callsFor(addr(2))).toHaveLength(before);
    expect(prober.callsFor(addr(1)).length).toBeGreaterThan(4);
    expect(prober.callsFor(addr(3)).length).toBeGreaterThan(4);
    expect(checker.statusOf(addr(2))).toBeUndefined();
    checker.stop();
    expect(clock.timerCount).toBe(0);
  });

  it('ignores the result of a probe of an endpoint removed meanwhile, and checks it afresh when it comes back', async () => {
    const { clock, cluster, prober, events, checker } = setup(2, { unhealthyThreshold: 1 });
    prober.answer = undefined;
    checker.start();
    await step(clock, 500);
    const old = cluster.endpoint(addr(2))!;
    cluster.update(serviceConfig(0, {}, [addr(1)]));
    checker.sync();
    prober.callsFor(addr(2))[0]!.resolve({ healthy: false, detail: 'HTTP 503' });
    await flush();
    expect(old.flags).toBe(0);
    expect(events).toEqual([]);

    cluster.update(serviceConfig(0, {}, [addr(1), addr(2)]));
    checker.sync();
    expect(cluster.endpoint(addr(2))).not.toBe(old);
    expect(checker.statusOf(addr(2))).toMatchObject({ healthy: true, checks: 0, inFlight: false });
    await step(clock, 500);
    expect(prober.callsFor(addr(2))).toHaveLength(2);
    checker.stop();
  });

  it('clears its flags and cancels its timers when the config drops healthCheck, and resumes when it returns', async () => {
    const { clock, cluster, failing, events, checker, ep } = setup(2, { unhealthyThreshold: 1 });
    failing.add(addr(1));
    checker.start();
    await step(clock, 500);
    expect(ep(1).eligible).toBe(false);

    cluster.update(serviceConfig(2, null));
    checker.sync();
    expect(clock.timerCount).toBe(0);
    expect(ep(1).eligible).toBe(true);
    expect(events.at(-1)?.reason).toBe('health check removed from config');
    expect(checker.status()).toEqual([]);

    cluster.update(serviceConfig(2, { unhealthyThreshold: 1 }));
    checker.sync();
    expect(clock.timerCount).toBe(2);
    await step(clock, 500);
    expect(ep(1).eligible).toBe(false);
    checker.stop();
  });

  it('reschedules at once when the interval changes', async () => {
    const { clock, cluster, prober, checker } = setup(1);
    checker.start();
    await step(clock, 500);
    expect(prober.calls).toHaveLength(1);
    cluster.update(serviceConfig(1, { interval: '100ms' }));
    checker.sync();
    expect(clock.timerCount).toBe(1);
    await step(clock, 50); // half of the new interval
    expect(prober.calls).toHaveLength(2);
    await step(clock, 100);
    expect(prober.calls).toHaveLength(3);
    checker.stop();
  });

  it('keeps the schedule and counts when the config is re-pushed unchanged', async () => {
    const { clock, cluster, prober, failing, checker } = setup(1);
    failing.add(addr(1));
    checker.start();
    await step(clock, 500);
    await step(clock, INTERVAL);
    cluster.update(serviceConfig(1));
    checker.sync();
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(2);
    await step(clock, INTERVAL);
    expect(prober.calls).toHaveLength(3);
    expect(cluster.endpoint(addr(1))?.eligible).toBe(false);
    checker.stop();
  });

  it('resets the counts and ignores running probes when the probe itself changes', async () => {
    const { clock, cluster, prober, failing, checker, ep } = setup(1);
    failing.add(addr(1));
    checker.start();
    await step(clock, 500);
    await step(clock, INTERVAL);
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(2);
    prober.answer = undefined;
    await step(clock, INTERVAL); // third check hangs
    cluster.update(serviceConfig(1, { http: { path: '/ready' } }));
    checker.sync();
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(0);
    prober.calls[2]!.resolve({ healthy: false, detail: 'HTTP 503' });
    await flush();
    expect(ep(1).eligible).toBe(true);
    expect(checker.statusOf(addr(1))?.consecutiveFailures).toBe(0);
    checker.stop();
  });
});
