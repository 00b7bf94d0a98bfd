import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, TrafficStats, latencyBucket, latencyBucketUpperMs, latencyPercentile } from '../../../sidecar/src/telemetry/stats.js';

describe('inbound latency buckets for the load report p99', () => {
  it('puts every response time in a bucket whose upper bound is at most 9 % above it', () => {
    for (const ms of [0.06, 0.3, 1, 2.5, 10, 77, 250, 1_000, 9_999, 40_000]) {
      const i = latencyBucket(ms);
      expect(latencyBucketUpperMs(i)).toBeGreaterThanOrEqual(ms);
      expect(latencyBucketUpperMs(i)).toBeLessThanOrEqual(ms * 1.091);
      if (i > 0) expect(latencyBucketUpperMs(i - 1)).toBeLessThan(ms);
    }
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(Number.NaN)).toBe(0);
    expect(latencyBucket(10 * 60_000)).toBe(LATENCY_BUCKETS - 1);
  });

  it('gives the p99 of the interval between two copies, not of all time', () => {
    const stats = new TrafficStats('inbound', 'svc', false);
    // First interval: fast.
    for (let i = 0; i < 1_000; i++) stats.record(200, 0.002);
    const before = stats.latencyBuckets.slice();
    expect(latencyPercentile(stats.latencyBuckets, undefined, 0.99)).toBeCloseTo(2, 0);
    // Second interval: 98 % at 5 ms, 2 % at 300 ms → p99 is in the slow tail.
    for (let i = 0; i < 980; i++) stats.record(200, 0.005);
    for (let i = 0; i < 20; i++) stats.record(503, 0.3);
    const p99 = latencyPercentile(stats.latencyBuckets, before, 0.99);
    expect(p99).toBeGreaterThanOrEqual(300);
    expect(p99).toBeLessThan(330);
    const p50 = latencyPercentile(stats.latencyBuckets, before, 0.5);
    expect(p50).toBeGreaterThanOrEqual(5);
    expect(p50).toBeLessThan(5.5);
    // No requests in an interval: 0.
    expect(latencyPercentile(stats.latencyBuckets, stats.latencyBuckets.slice(), 0.99)).toBe(0);
  });
});
