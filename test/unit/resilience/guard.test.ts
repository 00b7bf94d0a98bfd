/**
 * The service guard's breakers with the fake clock: breakers on by default, off with `circuitBreaker: false`,
 * a service without endpoints never opens its breaker, and one failing endpoint among healthy ones does
 * not open the service breaker (its own breaker takes it out), while a service whose every endpoint fails
 * does open it.
 */
import { describe, expect, it } from 'vitest';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import { seededRandom } from '../../../common/src/random.js';
import { Cluster } from '../../../sidecar/src/cluster/cluster.js';
import { HealthFlag, type Endpoint } from '../../../sidecar/src/core/endpoint.js';
import { Outcome } from '../../../sidecar/src/health/outlier/detector.js';
import { BreakerFactory } from '../../../sidecar/src/resilience/breaker.js';
import { BREAKER_OPEN, ServiceGuard, type GuardSlot, type PickSlot } from '../../../sidecar/src/resilience/guard.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const A = '10.0.0.1:80';
const B = '10.0.0.2:80';

function setup(policy: Record<string, unknown>): { clock: FakeClock; cluster: Cluster; guard: ServiceGuard } {
  const clock = new FakeClock();
  const cluster = new Cluster('orders', parseServiceConfig({ lb: 'round-robin', slowStart: '0s', ...policy }, 'test'), { clock, random: seededRandom(1), timers: clock });
  const breakers = new BreakerFactory(clock, clock, (b, state) => {
    if (b.endpoint) cluster.setFlag(b.endpoint, HealthFlag.Breaker, state === 'open');
  });
  return { clock, cluster, guard: new ServiceGuard(cluster, breakers, clock) };
}

type Slot = GuardSlot & PickSlot;
const slot = (): Slot => ({ admitted: false, serviceTicket: undefined, retrying: false, waits: 0, tried: undefined, ticket: undefined });

/**
 * One request as a Call makes it, without retries: admission, a pick, the endpoint's answer by `answer`
 * (status per endpoint address), and the end. Returns the status the client got.
 */
function request(guard: ServiceGuard, cluster: Cluster, answer: (ep: Endpoint) => number): number {
  const s = slot();
  const refused = guard.admit(s);
  if (refused !== undefined) {
    guard.leave(s, 503);
    return 503;
  }
  const ep = guard.pick((avoid) => cluster.picker.pick(undefined, avoid), s);
  if (ep === BREAKER_OPEN || ep === undefined) {
    guard.leave(s, 503);
    return 503;
  }
  const status = answer(ep);
  guard.report(ep, s.ticket, status >= 500 ? Outcome.Error5xx : Outcome.Success);
  guard.leave(s, status);
  return status;
}

const state = (guard: ServiceGuard, endpoint: string | null): string | undefined => guard.breakerViews().find((v) => v.endpoint === endpoint)?.state;

describe('service guard breakers', () => {
  it('are on by default: one service breaker and one per endpoint, with the documented settings', () => {
    const { guard } = setup({ endpoints: [{ address: A }, { address: B }] });
    expect(guard.breakerViews().map((v) => [v.endpoint, v.state])).toEqual([
      [null, 'closed'],
      [A, 'closed'],
      [B, 'closed'],
    ]);
    expect(guard.serviceBreaker?.config).toEqual({ errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10_000, resetTimeoutMs: 5_000 });
  });

  it('are off with circuitBreaker: false', () => {
    const { guard, cluster } = setup({ endpoints: [{ address: A }], circuitBreaker: false });
    expect(guard.breakerViews()).toEqual([]);
    for (let i = 0; i < 50; i++) expect(request(guard, cluster, () => 500)).toBe(500);
  });

  it('a service with no endpoints answers no-healthy-upstream without counting it on its breaker', () => {
    const { guard, cluster } = setup({ endpoints: [] });
    for (let i = 0; i < 100; i++) expect(request(guard, cluster, () => 200)).toBe(503);
    expect(state(guard, null)).toBe('closed');
    expect(guard.serviceBreaker!.view().counts).toMatchObject({ fires: 0, failures: 0 });
    // Once endpoints arrive, requests go through at once.
    cluster.update(parseServiceConfig({ endpoints: [{ address: A }], slowStart: '0s' }, 'test'));
    guard.sync();
    expect(request(guard, cluster, () => 200)).toBe(200);
  });

  it('one of two endpoints answering 500: its breaker opens, the service breaker stays closed and the healthy one serves', () => {
    const { guard, cluster, clock } = setup({ endpoints: [{ address: A }, { address: B }] });
    const answer = (ep: Endpoint): number => (ep.address === A ? 500 : 200);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 200; i++) {
      const st = request(guard, cluster, answer);
      statuses.set(st, (statuses.get(st) ?? 0) + 1);
      clock.advance(10);
    }
    expect(state(guard, null)).toBe('closed');
    expect(state(guard, A)).not.toBe('closed');
    expect(state(guard, B)).toBe('closed');
    // A answered 500 until its breaker opened (20 calls, the volume threshold); nobody got 503.
    expect(statuses.get(503)).toBeUndefined();
    expect(statuses.get(500)).toBe(20);
    expect(guard.serviceBreaker!.view().counts.failures).toBe(0);
  });

  it('every endpoint failing opens the service breaker, which then refuses at once', () => {
    const { guard, cluster, clock } = setup({ endpoints: [{ address: A }, { address: B }] });
    const seen: number[] = [];
    for (let i = 0; i < 60; i++) {
      seen.push(request(guard, cluster, () => 500));
      clock.advance(10);
    }
    expect(state(guard, null)).toBe('open');
    const s = slot();
    expect(guard.admit(s)?.reason).toBe('circuit-open');
    // It goes half-open after resetTimeout, and a probe answered by a recovered endpoint closes it.
    clock.advance(5_000);
    expect(state(guard, null)).toBe('half-open');
    expect(request(guard, cluster, () => 200)).toBe(200);
    expect(state(guard, null)).toBe('closed');
  });

  it('a half-open service breaker whose probe fails on one endpoint while another is healthy lets the next request probe', () => {
    const { guard, cluster, clock } = setup({ endpoints: [{ address: A }, { address: B }] });
    for (let i = 0; i < 60; i++) request(guard, cluster, () => 500);
    expect(state(guard, null)).toBe('open');
    // Past the endpoints' rolling window: their failures are forgotten, both look healthy again.
    clock.advance(11_000);
    expect(state(guard, null)).toBe('half-open');
    let first = true;
    const probeFails = (): number => {
      const st = first ? 500 : 200;
      first = false;
      return st;
    };
    // The probe fails on one endpoint while the other is healthy: excused, the breaker admits another probe.
    expect(request(guard, cluster, probeFails)).toBe(500);
    expect(state(guard, null)).toBe('half-open');
    expect(request(guard, cluster, probeFails)).toBe(200);
    expect(state(guard, null)).toBe('closed');
  });
});
