import { describe, expect, it } from 'vitest';
import { Cluster } from '../../../../sidecar/src/cluster/cluster.js';
import { parseServiceConfig } from '../../../../common/src/config/load.js';
import { Endpoint, HealthFlag } from '../../../../sidecar/src/core/endpoint.js';
import { seededRandom } from '../../../../common/src/random.js';
import {
  type EjectionReason,
  Outcome,
  OutlierDetector,
  type OutlierEvent,
  outcomeOfStatus,
} from '../../../../sidecar/src/health/outlier/detector.js';
import { FakeClock } from '../../../helpers/fake-clock.js';

const SEC = 1_000;
const addr = (i: number): string => `10.0.0.${i + 1}:8080`;

interface SetupOptions {
  /** Number of endpoints (default 4). */
  readonly n?: number;
  /** outlierDetection keys (YAML names); merged over interval 10s, base 30s, max 300s. */
  readonly od?: Record<string, unknown>;
  /** Other service keys. */
  readonly extra?: Record<string, unknown>;
  readonly start?: boolean;
}

function serviceConfig(addresses: readonly string[], od: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) {
  return parseServiceConfig(
    {
      lb: 'round-robin',
      endpoints: addresses.map((address) => ({ address })),
      ...(od === undefined ? {} : { outlierDetection: { interval: '10s', baseEjectionTime: '30s', maxEjectionTime: '300s', ...od } }),
      ...extra,
    },
    'test',
  );
}

function setup(o: SetupOptions = {}) {
  const n = o.n ?? 4;
  const clock = new FakeClock();
  const cluster = new Cluster('svc', serviceConfig(Array.from({ length: n }, (_, i) => addr(i)), o.od ?? {}, o.extra), {
    clock,
    random: seededRandom(1),
  });
  const events: OutlierEvent[] = [];
  const ejections: { endpoint: Endpoint; reason: EjectionReason }[] = [];
  const detector = new OutlierDetector(cluster, {
    clock,
    timers: clock,
    log: (e) => events.push(e),
    onEject: (endpoint, reason) => ejections.push({ endpoint, reason }),
  });
  if (o.start !== false) detector.start();
  const ep = (i: number): Endpoint => cluster.endpoints[i]!;
  const repeat = (endpoint: Endpoint, outcome: Outcome, times: number): void => {
    for (let i = 0; i < times; i++) detector.record(endpoint, outcome);
  };
  const ejected = (): string[] => cluster.endpoints.filter((e) => (e.flags & HealthFlag.Outlier) !== 0).map((e) => e.address);
  const ejectedEvents = () => events.filter((e) => e.type === 'ejected');
  return { clock, cluster, detector, events, ejections, ep, repeat, ejected, ejectedEvents };
}

/** Records `total` outcomes with `failures` failures spread out (never two failures in a row when possible). */
function spread(record: (o: Outcome) => void, total: number, failures: number, failure: Outcome = Outcome.Error5xx): void {
  let f = 0;
  for (let i = 0; i < total; i++) {
    // Bresenham-style: a failure whenever the running share falls behind.
    if (f < failures && (f + 1) * total <= (i + 1) * failures) {
      record(failure);
      f++;
    } else record(Outcome.Success);
  }
}

describe('outcomeOfStatus', () => {
  it('maps 502-504 to GatewayFailure, other 5xx to Error5xx, the rest to Success', () => {
    expect([200, 404, 499, 500, 501, 502, 503, 504, 505, 599, 600].map(outcomeOfStatus)).toEqual([
      Outcome.Success,
      Outcome.Success,
      Outcome.Success,
      Outcome.Error5xx,
      Outcome.Error5xx,
      Outcome.GatewayFailure,
      Outcome.GatewayFailure,
      Outcome.GatewayFailure,
      Outcome.Error5xx,
      Outcome.Error5xx,
      Outcome.Success,
    ]);
  });
});

describe('consecutive 5xx', () => {
  it('ejects at exactly the threshold, immediately inside record()', () => {
    const t = setup({ od: { consecutive5xx: 5 } });
    t.repeat(t.ep(0), Outcome.Error5xx, 4);
    expect(t.ejected()).toEqual([]);
    expect(t.detector.status(t.ep(0))?.consecutive5xx).toBe(4);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejected()).toEqual([addr(0)]);
    expect(t.ep(0).eligible).toBe(false);
    expect(t.events).toEqual([
      { type: 'ejected', cluster: 'svc', endpoint: addr(0), reason: 'consecutive-5xx', durationMs: 30 * SEC, timesEjected: 1 },
    ]);
    expect(t.ejections).toEqual([{ endpoint: t.ep(0), reason: 'consecutive-5xx' }]);
    expect(t.detector.ejectedCount).toBe(1);
  });

  it('a success in between resets the count', () => {
    const t = setup({ od: { consecutive5xx: 5 } });
    t.repeat(t.ep(0), Outcome.Error5xx, 4);
    t.detector.record(t.ep(0), Outcome.Success);
    expect(t.detector.status(t.ep(0))?.consecutive5xx).toBe(0);
    t.repeat(t.ep(0), Outcome.Error5xx, 4);
    expect(t.ejected()).toEqual([]);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejected()).toEqual([addr(0)]);
  });

  it('counts per endpoint', () => {
    const t = setup({ od: { consecutive5xx: 3 } });
    for (let i = 0; i < 2; i++) for (let e = 0; e < 4; e++) t.detector.record(t.ep(e), Outcome.Error5xx);
    expect(t.ejected()).toEqual([]);
    t.detector.record(t.ep(2), Outcome.Error5xx);
    expect(t.ejected()).toEqual([addr(2)]);
  });

  it('gateway failures (502-504, connect failure, reset, timeout) count as 5xx too', () => {
    const t = setup({ od: { consecutive5xx: 5, consecutiveGatewayFailure: 100 } });
    t.repeat(t.ep(1), Outcome.GatewayFailure, 2);
    t.repeat(t.ep(1), Outcome.Error5xx, 2);
    expect(t.ejected()).toEqual([]);
    t.detector.record(t.ep(1), Outcome.GatewayFailure);
    expect(t.ejected()).toEqual([addr(1)]);
    expect(t.ejections[0]?.reason).toBe('consecutive-5xx');
  });

  it('resets the counters after an ejection', () => {
    const t = setup({ od: { consecutive5xx: 3 } });
    t.repeat(t.ep(0), Outcome.Error5xx, 3);
    expect(t.detector.status(t.ep(0))).toMatchObject({ ejected: true, consecutive5xx: 0, consecutiveGatewayFailures: 0 });
  });
});

describe('consecutive gateway failures', () => {
  it('ejects at exactly the threshold with reason consecutive-gateway-failure', () => {
    const t = setup({ od: { consecutive5xx: 5, consecutiveGatewayFailure: 3 } });
    t.repeat(t.ep(0), Outcome.GatewayFailure, 2);
    expect(t.detector.status(t.ep(0))).toMatchObject({ consecutive5xx: 2, consecutiveGatewayFailures: 2, ejected: false });
    t.detector.record(t.ep(0), Outcome.GatewayFailure);
    expect(t.ejected()).toEqual([addr(0)]);
    expect(t.ejectedEvents()).toMatchObject([{ reason: 'consecutive-gateway-failure', endpoint: addr(0) }]);
  });

  it('a non-gateway 5xx resets the gateway count but not the 5xx count', () => {
    const t = setup({ od: { consecutive5xx: 10, consecutiveGatewayFailure: 3 } });
    t.repeat(t.ep(0), Outcome.GatewayFailure, 2);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.detector.status(t.ep(0))).toMatchObject({ consecutive5xx: 3, consecutiveGatewayFailures: 0 });
    t.repeat(t.ep(0), Outcome.GatewayFailure, 2);
    expect(t.ejected()).toEqual([]);
    t.detector.record(t.ep(0), Outcome.GatewayFailure);
    expect(t.ejected()).toEqual([addr(0)]);
  });

  it('a success resets both counts', () => {
    const t = setup({ od: { consecutiveGatewayFailure: 3 } });
    t.repeat(t.ep(0), Outcome.GatewayFailure, 2);
    t.detector.record(t.ep(0), Outcome.Success);
    expect(t.detector.status(t.ep(0))).toMatchObject({ consecutive5xx: 0, consecutiveGatewayFailures: 0 });
    t.repeat(t.ep(0), Outcome.GatewayFailure, 2);
    expect(t.ejected()).toEqual([]);
  });
});

describe('ejection and re-admission', () => {
  it('an ejected endpoint is not picked and is re-admitted after the base ejection time', () => {
    const t = setup({ n: 3, od: { consecutive5xx: 3, baseEjectionTime: '30s', interval: '10s' } });
    t.repeat(t.ep(0), Outcome.Error5xx, 3);
    expect(t.cluster.eligibleCount).toBe(2);
    expect(t.cluster.panic).toBe(false);
    for (let i = 0; i < 300; i++) expect(t.cluster.picker.pick(undefined, undefined)).not.toBe(t.ep(0));

    t.clock.advance(30 * SEC - 1);
    expect(t.ejected()).toEqual([addr(0)]);
    t.clock.advance(1);
    expect(t.ejected()).toEqual([]);
    expect(t.cluster.eligibleCount).toBe(3);
    expect(t.events.at(-1)).toEqual({ type: 'readmitted', cluster: 'svc', endpoint: addr(0), cause: 'expired' });
    const picked = new Set<Endpoint | undefined>();
    for (let i = 0; i < 30; i++) picked.add(t.cluster.picker.pick(undefined, undefined));
    expect(picked.has(t.ep(0))).toBe(true);
  });

  it('re-admits at the exact end of the ejection, not at the next sweep', () => {
    const t = setup({ n: 3, od: { consecutive5xx: 1, baseEjectionTime: '7s', interval: '10s' } });
    t.clock.advance(2 * SEC);
    t.detector.record(t.ep(1), Outcome.Error5xx);
    t.clock.advance(7 * SEC - 1);
    expect(t.ep(1).eligible).toBe(false);
    t.clock.advance(1);
    expect(t.ep(1).eligible).toBe(true);
  });

  it('status reports the wall-clock end of the ejection', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '30s' } });
    const wall = t.clock.wallNow();
    expect(t.detector.status(t.ep(0))).toEqual({ ejected: false, ejectedUntil: null, timesEjected: 0, consecutive5xx: 0, consecutiveGatewayFailures: 0 });
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.detector.status(t.ep(0))).toEqual({ ejected: true, ejectedUntil: wall + 30 * SEC, timesEjected: 1, consecutive5xx: 0, consecutiveGatewayFailures: 0 });
  });

  it('errors while ejected do not extend or repeat the ejection', () => {
    const t = setup({ od: { consecutive5xx: 2, baseEjectionTime: '30s' } });
    t.repeat(t.ep(0), Outcome.Error5xx, 2);
    t.clock.advance(10 * SEC);
    t.repeat(t.ep(0), Outcome.Error5xx, 11);
    expect(t.ejectedEvents()).toHaveLength(1);
    expect(t.detector.status(t.ep(0))?.consecutive5xx).toBe(1);
    t.clock.advance(20 * SEC);
    expect(t.ep(0).eligible).toBe(true);
    // counters start fresh on re-admission
    expect(t.detector.status(t.ep(0))?.consecutive5xx).toBe(0);
  });

  it('a second ejection lasts twice the base time', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '30s', interval: '10s' } });
    t.detector.record(t.ep(0), Outcome.Error5xx);
    t.clock.advance(30 * SEC);
    expect(t.ep(0).eligible).toBe(true);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejectedEvents().map((e) => e.durationMs)).toEqual([30 * SEC, 60 * SEC]);
    expect(t.detector.status(t.ep(0))?.timesEjected).toBe(2);
    t.clock.advance(60 * SEC - 1);
    expect(t.ep(0).eligible).toBe(false);
    t.clock.advance(1);
    expect(t.ep(0).eligible).toBe(true);
  });

  it('caps the ejection time at maxEjectionTime', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '10s', maxEjectionTime: '25s', interval: '1h' } });
    for (let i = 0; i < 5; i++) {
      t.detector.record(t.ep(0), Outcome.Error5xx);
      const d = t.ejectedEvents().at(-1)!.durationMs;
      t.clock.advance(d);
      expect(t.ep(0).eligible).toBe(true);
    }
    expect(t.ejectedEvents().map((e) => e.durationMs)).toEqual([10 * SEC, 20 * SEC, 25 * SEC, 25 * SEC, 25 * SEC]);
    // the multiplier stops growing at the cap (ceil(25 / 10) = 3), so its decay takes bounded time
    expect(t.detector.status(t.ep(0))?.timesEjected).toBe(3);
  });

  it('uses the base time as the cap when maxEjectionTime equals it', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '10s', maxEjectionTime: '10s', interval: '1h' } });
    for (let i = 0; i < 3; i++) {
      t.detector.record(t.ep(0), Outcome.Error5xx);
      t.clock.advance(10 * SEC);
    }
    expect(t.ejectedEvents().map((e) => e.durationMs)).toEqual([10 * SEC, 10 * SEC, 10 * SEC]);
  });

  it('the multiplier decays by one for each interval the host is not ejected', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '20s', interval: '10s' } });
    const status = () => t.detector.status(t.ep(0))!;
    t.detector.record(t.ep(0), Outcome.Error5xx); // ×1: 20 s
    t.clock.advance(20 * SEC);
    t.detector.record(t.ep(0), Outcome.Error5xx); // ×2: 40 s
    expect(status().timesEjected).toBe(2);
    // no decay while ejected
    t.clock.advance(40 * SEC);
    expect(status()).toMatchObject({ ejected: false, timesEjected: 2 });
    // each full interval after the re-admission (here at a sweep) decrements it
    t.clock.advance(10 * SEC);
    expect(status().timesEjected).toBe(1);
    t.detector.record(t.ep(0), Outcome.Error5xx); // ×2 again: 40 s
    expect(t.ejectedEvents().at(-1)?.durationMs).toBe(40 * SEC);
    t.clock.advance(40 * SEC);
    t.clock.advance(30 * SEC);
    expect(status().timesEjected).toBe(0);
    t.clock.advance(10 * SEC);
    expect(status().timesEjected).toBe(0);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejectedEvents().at(-1)?.durationMs).toBe(20 * SEC);
  });

  it('an ejection shorter than the interval still blocks decay for that interval', () => {
    const t = setup({ od: { consecutive5xx: 1, baseEjectionTime: '2s', interval: '10s' } });
    t.detector.record(t.ep(0), Outcome.Error5xx);
    t.clock.advance(2 * SEC);
    t.detector.record(t.ep(0), Outcome.Error5xx);
    t.clock.advance(4 * SEC);
    expect(t.detector.status(t.ep(0))).toMatchObject({ ejected: false, timesEjected: 2 });
    t.clock.advance(4 * SEC); // sweep at 10 s: ejected during this interval, no decay
    expect(t.detector.status(t.ep(0))?.timesEjected).toBe(2);
    t.clock.advance(10 * SEC);
    expect(t.detector.status(t.ep(0))?.timesEjected).toBe(1);
  });
});

describe('maxEjectionPercent', () => {
  it('with 4 endpoints and 50 %, at most 2 are ejected even if all fail', () => {
    const t = setup({ n: 4, od: { consecutive5xx: 5, maxEjectionPercent: 50 } });
    for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Error5xx, 5);
    expect(t.ejected()).toEqual([addr(0), addr(1)]);
    expect(t.detector.ejectedCount).toBe(2);
    expect(t.detector.overflowCount).toBe(2);
    // another run of errors on a refused host is refused again while two are out
    t.repeat(t.ep(3), Outcome.Error5xx, 5);
    expect(t.ejected()).toHaveLength(2);
    // once they are re-admitted, room frees up for the next run of errors
    t.clock.advance(30 * SEC);
    expect(t.ejected()).toEqual([]);
    t.repeat(t.ep(3), Outcome.Error5xx, 5);
    expect(t.ejected()).toEqual([addr(3)]);
  });

  it('floor(n × percent / 100) = 0 allows none', () => {
    const t = setup({ n: 1, od: { consecutive5xx: 1, maxEjectionPercent: 50 } });
    t.repeat(t.ep(0), Outcome.Error5xx, 10);
    expect(t.ejected()).toEqual([]);
    const u = setup({ n: 3, od: { consecutive5xx: 1, maxEjectionPercent: 33 } });
    u.repeat(u.ep(0), Outcome.Error5xx, 1);
    expect(u.ejected()).toEqual([]);
  });

  it('100 % allows ejecting every endpoint', () => {
    const t = setup({ n: 3, od: { consecutive5xx: 1, maxEjectionPercent: 100 } });
    for (let e = 0; e < 3; e++) t.detector.record(t.ep(e), Outcome.Error5xx);
    expect(t.ejected()).toHaveLength(3);
  });

  it('applies to interval ejections too', () => {
    const t = setup({
      n: 6,
      od: { consecutive5xx: 1000, consecutiveGatewayFailure: 1000, successRateRequestVolume: 10_000, failurePercentageRequestVolume: 10, maxEjectionPercent: 34 },
    });
    // three hosts at 100 % failure, three healthy: floor(6 × 34 / 100) = 2 ejected, the worst first
    spread((o) => t.detector.record(t.ep(0), o), 20, 18);
    spread((o) => t.detector.record(t.ep(1), o), 20, 20);
    spread((o) => t.detector.record(t.ep(2), o), 20, 19);
    for (let e = 3; e < 6; e++) t.repeat(t.ep(e), Outcome.Success, 20);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([addr(1), addr(2)]);
  });
});

describe('success rate', () => {
  const od = { consecutive5xx: 1000, consecutiveGatewayFailure: 1000, successRateMinimumHosts: 3, successRateRequestVolume: 100, successRateStdevFactor: 1.9 };

  it('ejects an outlier among enough hosts with enough volume', () => {
    const t = setup({ n: 5, od });
    // rates 100, 100, 100, 100, 50: mean 90, stdev 20, threshold 90 − 1.9 × 20 = 52
    for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Success, 100);
    spread((o) => t.detector.record(t.ep(4), o), 100, 50);
    expect(t.ejected()).toEqual([]);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([addr(4)]);
    expect(t.ejectedEvents()).toMatchObject([{ reason: 'success-rate', endpoint: addr(4), durationMs: 30 * SEC }]);
    expect(t.ejections).toEqual([{ endpoint: t.ep(4), reason: 'success-rate' }]);
  });

  it('does not eject a host just above mean − factor × stdev', () => {
    const t = setup({ n: 5, od: { ...od, successRateStdevFactor: 2.1 } });
    // same rates, threshold 90 − 2.1 × 20 = 48 < 50
    for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Success, 100);
    spread((o) => t.detector.record(t.ep(4), o), 100, 50);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });

  it('ignores hosts below the request volume', () => {
    const t = setup({ n: 5, od });
    for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Success, 99);
    spread((o) => t.detector.record(t.ep(4), o), 99, 50);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });

  it('needs at least successRateMinimumHosts hosts with volume', () => {
    const t = setup({ n: 5, od: { ...od, successRateMinimumHosts: 5 } });
    for (let e = 0; e < 3; e++) t.repeat(t.ep(e), Outcome.Success, 100);
    t.repeat(t.ep(3), Outcome.Success, 99); // below volume: does not count
    spread((o) => t.detector.record(t.ep(4), o), 100, 60);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });

  it('uses the counters of the last interval only', () => {
    const t = setup({ n: 5, od });
    for (let round = 0; round < 3; round++) {
      for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Success, 60);
      spread((o) => t.detector.record(t.ep(4), o), 60, 30);
      t.clock.advance(10 * SEC);
    }
    expect(t.ejected()).toEqual([]);
  });

  it('does not eject anyone when all hosts have the same rate', () => {
    const t = setup({ n: 4, od });
    for (let e = 0; e < 4; e++) spread((o) => t.detector.record(t.ep(e), o), 100, 40);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });
});

describe('failure percentage', () => {
  const od = {
    consecutive5xx: 1000,
    consecutiveGatewayFailure: 1000,
    successRateRequestVolume: 10_000,
    failurePercentageThreshold: 85,
    failurePercentageMinimumHosts: 3,
    failurePercentageRequestVolume: 50,
  };

  it('ejects hosts at or above the threshold', () => {
    const t = setup({ n: 4, od: { ...od, maxEjectionPercent: 100 } });
    t.repeat(t.ep(0), Outcome.Success, 50);
    spread((o) => t.detector.record(t.ep(1), o), 100, 85, Outcome.GatewayFailure); // exactly 85 %
    spread((o) => t.detector.record(t.ep(2), o), 50, 45); // 90 %
    spread((o) => t.detector.record(t.ep(3), o), 50, 42); // 84 %
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([addr(1), addr(2)]);
    expect(t.ejectedEvents().every((e) => e.reason === 'failure-percentage')).toBe(true);
  });

  it('ignores hosts below the request volume', () => {
    const t = setup({ n: 4, od });
    for (let e = 0; e < 3; e++) t.repeat(t.ep(e), Outcome.Success, 50);
    t.repeat(t.ep(3), Outcome.Error5xx, 49);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });

  it('needs at least failurePercentageMinimumHosts hosts with volume', () => {
    const t = setup({ n: 4, od });
    t.repeat(t.ep(0), Outcome.Success, 50);
    t.repeat(t.ep(1), Outcome.Error5xx, 50);
    t.clock.advance(10 * SEC);
    expect(t.ejected()).toEqual([]);
  });
});

describe('lifecycle', () => {
  it('ignores record() on an unknown endpoint', () => {
    const t = setup({ od: { consecutive5xx: 1 } });
    const stranger = new Endpoint({ address: '10.9.9.9:80', weight: 1, capacity: 100, cost: 1 });
    for (let i = 0; i < 100; i++) t.detector.record(stranger, Outcome.GatewayFailure);
    expect(t.events).toEqual([]);
    expect(stranger.flags).toBe(0);
    expect(t.detector.status(stranger)).toBeUndefined();
  });

  it('ignores record() before start()', () => {
    const t = setup({ od: { consecutive5xx: 1 }, start: false });
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejected()).toEqual([]);
    expect(t.clock.timerCount).toBe(0);
    t.detector.start();
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.ejected()).toEqual([addr(0)]);
  });

  it('stop() cancels every timer and re-admits the ejected endpoints', () => {
    const t = setup({ od: { consecutive5xx: 1 } });
    expect(t.clock.timerCount).toBe(1); // the sweep
    t.detector.record(t.ep(0), Outcome.Error5xx);
    expect(t.clock.timerCount).toBe(2); // + the re-admission
    t.detector.stop();
    expect(t.clock.timerCount).toBe(0);
    expect(t.ejected()).toEqual([]);
    expect(t.events.at(-1)).toEqual({ type: 'readmitted', cluster: 'svc', endpoint: addr(0), cause: 'stopped' });
    t.detector.record(t.ep(1), Outcome.Error5xx);
    t.clock.advance(3_600 * SEC);
    expect(t.ejected()).toEqual([]);
    expect(t.events).toHaveLength(2);
    t.detector.stop(); // idempotent
  });

  it('sync() drops removed endpoints and adds new ones', () => {
    const t = setup({ n: 3, od: { consecutive5xx: 1, maxEjectionPercent: 100 } });
    const [a, b, c] = [t.ep(0), t.ep(1), t.ep(2)];
    t.detector.record(b, Outcome.Error5xx);
    expect(t.detector.ejectedCount).toBe(1);
    expect(t.clock.timerCount).toBe(2);
    t.cluster.update(serviceConfig([addr(0), addr(2), addr(7)], { consecutive5xx: 1, maxEjectionPercent: 100 }));
    t.detector.sync();
    expect(t.detector.status(b)).toBeUndefined();
    expect(t.detector.ejectedCount).toBe(0);
    expect(t.clock.timerCount).toBe(1); // b's re-admission timer is gone
    const d = t.cluster.endpoint(addr(7))!;
    expect(t.detector.status(d)).toMatchObject({ ejected: false, timesEjected: 0 });
    // endpoints that stay keep their state
    t.detector.record(a, Outcome.Error5xx);
    expect(t.detector.status(a)?.timesEjected).toBe(1);
    t.detector.record(d, Outcome.Error5xx);
    expect(t.ejected()).toEqual([addr(0), addr(7)]);
    t.detector.record(b, Outcome.Error5xx);
    expect(t.ejectedEvents()).toHaveLength(3);
    expect(c.eligible).toBe(true);
  });

  it('does nothing for a cluster without outlierDetection, and follows the config through sync()', () => {
    const clock = new FakeClock();
    const cluster = new Cluster('svc', serviceConfig([addr(0), addr(1)], undefined), { clock, random: seededRandom(1) });
    const events: OutlierEvent[] = [];
    const detector = new OutlierDetector(cluster, { clock, timers: clock, log: (e) => events.push(e) });
    detector.start();
    expect(clock.timerCount).toBe(0);
    const ep = cluster.endpoints[0]!;
    for (let i = 0; i < 10; i++) detector.record(ep, Outcome.Error5xx);
    expect(ep.eligible).toBe(true);

    cluster.update(serviceConfig([addr(0), addr(1)], { consecutive5xx: 2, interval: '5s' }));
    detector.sync();
    expect(clock.timerCount).toBe(1);
    detector.record(ep, Outcome.Error5xx);
    detector.record(ep, Outcome.Error5xx);
    expect(ep.eligible).toBe(false);

    // removing the config re-admits and stops the sweep
    cluster.update(serviceConfig([addr(0), addr(1)], undefined));
    detector.sync();
    expect(ep.eligible).toBe(true);
    expect(clock.timerCount).toBe(0);
    expect(events.at(-1)).toMatchObject({ type: 'readmitted', cause: 'disabled' });
  });

  it('re-arms the sweep when the interval changes', () => {
    const t = setup({ n: 5, od: { interval: '10s', consecutive5xx: 1000 } });
    t.cluster.update(
      serviceConfig(
        Array.from({ length: 5 }, (_, i) => addr(i)),
        { interval: '2s', consecutive5xx: 1000 },
      ),
    );
    t.detector.sync();
    expect(t.clock.timerCount).toBe(1);
    for (let e = 0; e < 4; e++) t.repeat(t.ep(e), Outcome.Success, 100);
    spread((o) => t.detector.record(t.ep(4), o), 100, 50);
    t.clock.advance(2 * SEC);
    expect(t.ejected()).toEqual([addr(4)]);
  });
});

describe('un-ejection by a passing active health check', () => {
  it('re-admits an ejected endpoint at once, long before its ejection time ends', () => {
    const t = setup({ od: { consecutive5xx: 2 } });
    t.repeat(t.ep(1), Outcome.Error5xx, 2);
    expect(t.ejected()).toEqual([addr(1)]);
    t.clock.advance(1 * SEC);
    t.detector.unejectAfterActiveCheck(t.ep(1));
    expect(t.ejected()).toEqual([]);
    expect(t.ep(1).eligible).toBe(true);
    expect(t.events.at(-1)).toEqual({ type: 'readmitted', cluster: 'svc', endpoint: addr(1), cause: 'active-check-passed' });
    expect(t.detector.ejectedCount).toBe(0);
    // An endpoint that was not ejected is left alone.
    t.detector.unejectAfterActiveCheck(t.ep(2));
    expect(t.events.filter((e) => e.type === 'readmitted')).toHaveLength(1);
  });
});
