import { describe, expect, it } from 'vitest';
import { DEFAULT_RTT_MS, peakEwmaFactory } from '../../../sidecar/src/lb/peak-ewma.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { makeEndpoints, opts, shares } from './helpers.js';

describe('peak-ewma', () => {
  it('prefers the lower-latency endpoint when in-flight is equal', () => {
    const eps = makeEndpoints(2);
    eps[0]!.ewmaMs = 50;
    eps[1]!.ewmaMs = 10;
    expect(shares(peakEwmaFactory(eps, opts()), eps, 500)).toEqual([0, 1]);
  });

  it('weighs in-flight: cost is ewma × (in-flight + 1)', () => {
    const eps = makeEndpoints(2);
    eps[0]!.ewmaMs = 50; // 50 × 1 = 50
    eps[1]!.ewmaMs = 10; // 10 × 6 = 60
    eps[1]!.inflight = 5;
    const p = peakEwmaFactory(eps, opts());
    for (let k = 0; k < 100; k++) expect(p.pick(undefined, undefined)).toBe(eps[0]);
    eps[1]!.inflight = 3; // 10 × 4 = 40 < 50, read live
    for (let k = 0; k < 100; k++) expect(p.pick(undefined, undefined)).toBe(eps[1]);
  });

  it('follows latencies recorded through Endpoint.observeLatency', () => {
    const clock = new FakeClock();
    const eps = makeEndpoints(3);
    eps[0]!.observeLatency(80, clock.now());
    eps[1]!.observeLatency(20, clock.now());
    eps[2]!.observeLatency(40, clock.now());
    const got = shares(peakEwmaFactory(eps, { ...opts(3), clock }), eps, 3_000);
    expect(got[0]).toBe(0); // slowest never wins a pair
    expect(Math.abs(got[1]! - 2 / 3)).toBeLessThanOrEqual(0.03);
  });

  it('makes an unsampled endpoint attractive against slow ones, but not all-consuming', () => {
    const eps = makeEndpoints(2);
    eps[0]!.ewmaMs = 100;
    // unsampled (default 30 ms) beats 100 ms at equal in-flight
    const p = peakEwmaFactory(eps, opts());
    for (let k = 0; k < 50; k++) expect(p.pick(undefined, undefined)).toBe(eps[1]);
    // ... but its own in-flight count still counts: 30 × 4 = 120 > 100
    eps[1]!.inflight = 3;
    for (let k = 0; k < 50; k++) expect(p.pick(undefined, undefined)).toBe(eps[0]);
    expect(DEFAULT_RTT_MS).toBe(30);
  });

  it('does not starve an unsampled endpoint among fast ones: it ties with a faster sampled rival', () => {
    const eps = makeEndpoints(2);
    eps[0]!.ewmaMs = 2;
    const got = shares(peakEwmaFactory(eps, opts(12)), eps, 4_000);
    expect(Math.abs(got[1]! - 0.5)).toBeLessThanOrEqual(0.03);
  });

  it('breaks ties at random and handles tiny sets', () => {
    const eps = makeEndpoints(2);
    const got = shares(peakEwmaFactory(eps, opts(2)), eps, 4_000);
    expect(Math.abs(got[0]! - 0.5)).toBeLessThanOrEqual(0.03);
    expect(peakEwmaFactory([], opts()).pick(undefined, undefined)).toBeUndefined();
    const one = makeEndpoints(1);
    expect(peakEwmaFactory(one, opts()).pick(undefined, undefined)).toBe(one[0]);
  });
});
