import { describe, expect, it } from 'vitest';
import { Cluster, RAMP_START, type HealthChange } from '../../../sidecar/src/cluster/cluster.js';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import { HealthFlag, type Endpoint } from '../../../sidecar/src/core/endpoint.js';
import { seededRandom } from '../../../common/src/random.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const addresses = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'];

function config(addrs: readonly string[], extra: Record<string, unknown> = {}) {
  return parseServiceConfig({ lb: 'weighted-random', endpoints: addrs.map((address) => ({ address })), slowStart: '10s', ...extra }, 'test');
}

function shares(cluster: Cluster, n = 20_000): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const ep = cluster.picker.pick(undefined, undefined)!;
    counts.set(ep.address, (counts.get(ep.address) ?? 0) + 1);
  }
  for (const [k, v] of counts) counts.set(k, v / n);
  return counts;
}

describe('slow start', () => {
  it('ramps a joining endpoint from 10 % to 100 % of its weight over slowStart, then stops its timer', () => {
    const clock = new FakeClock();
    const cluster = new Cluster('svc', config(addresses.slice(0, 3)), { clock, random: seededRandom(7), timers: clock });
    // The endpoints a cluster starts with are not ramped.
    expect(cluster.endpoints.every((e) => e.rampFactor === 1)).toBe(true);
    expect(clock.timerCount).toBe(0);
    cluster.update(config(addresses));
    const joined = cluster.endpoint(addresses[3]!)!;
    expect(joined.rampFactor).toBe(RAMP_START);
    // Weight 0.1 against three of weight 1: share 0.1 / 3.1.
    expect(shares(cluster).get(joined.address)).toBeCloseTo(0.1 / 3.1, 2);
    clock.advance(5_000);
    expect(joined.rampFactor).toBeCloseTo(0.55, 2);
    expect(shares(cluster).get(joined.address)).toBeCloseTo(0.55 / 3.55, 2);
    clock.advance(5_000);
    expect(joined.rampFactor).toBe(1);
    expect(shares(cluster).get(joined.address)).toBeCloseTo(0.25, 2);
    expect(clock.timerCount).toBe(0);
  });

  it('ramps an endpoint that becomes eligible again, and scales capacity for least-load', () => {
    const clock = new FakeClock();
    const cluster = new Cluster('svc', config(addresses.slice(0, 2), { lb: 'least-load' }), { clock, random: seededRandom(3), timers: clock });
    const [a, b] = cluster.endpoints as [Endpoint, Endpoint];
    cluster.setFlag(b, HealthFlag.ActiveCheck, true);
    expect(cluster.picker.pick(undefined, undefined)).toBe(a);
    cluster.setFlag(b, HealthFlag.ActiveCheck, false);
    expect(b.rampFactor).toBe(RAMP_START);
    // b's effective capacity is 10 (of 100): with a at 5 in flight, b (idle) loads 1/10 vs a's 6/100.
    a.inflight = 5;
    expect(cluster.picker.pick(undefined, undefined)).toBe(a);
    a.inflight = 10;
    // a: 11/100 = 0.11 > b: 1/10 = 0.1
    expect(cluster.picker.pick(undefined, undefined)).toBe(b);
    clock.advance(10_000);
    expect(b.rampFactor).toBe(1);
  });

  it('slowStart 0s turns it off', () => {
    const clock = new FakeClock();
    const cluster = new Cluster('svc', config(addresses.slice(0, 1), { slowStart: '0s' }), { clock, random: seededRandom(1), timers: clock });
    cluster.update(config(addresses.slice(0, 2), { slowStart: '0s' }));
    expect(cluster.endpoint(addresses[1]!)!.rampFactor).toBe(1);
    expect(clock.timerCount).toBe(0);
  });
});

describe('eligibility and panic mode', () => {
  it('leaves an endpoint out while any source flags it, and reports each change', () => {
    const clock = new FakeClock();
    const changes: HealthChange[] = [];
    const cluster = new Cluster('svc', config(addresses), { clock, random: seededRandom(1), onHealthChange: (c) => changes.push(c) });
    const ep = cluster.endpoints[0]!;
    expect(cluster.setFlag(ep, HealthFlag.Outlier, true)).toBe(true);
    expect(cluster.setFlag(ep, HealthFlag.Outlier, true)).toBe(false);
    cluster.setFlag(ep, HealthFlag.ActiveCheck, true);
    cluster.setFlag(ep, HealthFlag.Outlier, false);
    // Still flagged by the active check.
    expect(ep.eligible).toBe(false);
    for (let i = 0; i < 200; i++) expect(cluster.picker.pick(undefined, undefined)).not.toBe(ep);
    cluster.setFlag(ep, HealthFlag.ActiveCheck, false);
    expect(ep.eligible).toBe(true);
    expect(changes.map((c) => [c.flag, c.on, c.eligible])).toEqual([
      [HealthFlag.Outlier, true, false],
      [HealthFlag.ActiveCheck, true, false],
      [HealthFlag.Outlier, false, false],
      [HealthFlag.ActiveCheck, false, true],
    ]);
  });

  it('balances over all endpoints in panic mode (fewer than panicThreshold % eligible) and leaves it when they recover', () => {
    const clock = new FakeClock();
    const panics: boolean[] = [];
    const cluster = new Cluster('svc', config(addresses, { panicThreshold: 50 }), { clock, random: seededRandom(1), onPanicChange: (_c, p) => panics.push(p) });
    const [a, b, c] = cluster.endpoints as [Endpoint, Endpoint, Endpoint];
    cluster.setFlag(a, HealthFlag.Outlier, true);
    cluster.setFlag(b, HealthFlag.Outlier, true);
    // 2 of 4 eligible = 50 %: not below the threshold.
    expect(cluster.panic).toBe(false);
    cluster.setFlag(c, HealthFlag.Outlier, true);
    expect(cluster.panic).toBe(true);
    const seen = new Set<Endpoint>();
    for (let i = 0; i < 400; i++) seen.add(cluster.picker.pick(undefined, undefined)!);
    expect(seen.size).toBe(4);
    cluster.setFlag(c, HealthFlag.Outlier, false);
    expect(cluster.panic).toBe(false);
    expect(panics).toEqual([true, false]);
  });
});
