import { describe, expect, it } from 'vitest';
import { Metrics } from '../../../sidecar/src/telemetry/metrics.js';

describe('outrigger_request_duration_seconds', () => {
  it('is written at scrape time from the per-request counts, cumulative per bucket, with sum and count', async () => {
    const metrics = new Metrics(true);
    const stats = metrics.trafficStats('outbound', 'orders');
    for (const seconds of [0.0005, 0.001, 0.003, 0.2, 20]) stats.record(200, seconds);
    const text = await metrics.registry.metrics();
    const line = (le: string): string | undefined => text.split('\n').find((l) => l.startsWith(`outrigger_request_duration_seconds_bucket{le="${le}",direction="outbound",service="orders"}`));
    expect(line('0.001')).toMatch(/ 2$/);
    expect(line('0.005')).toMatch(/ 3$/);
    expect(line('0.25')).toMatch(/ 4$/);
    expect(line('10')).toMatch(/ 4$/);
    expect(line('+Inf')).toMatch(/ 5$/);
    expect(text).toContain('outrigger_request_duration_seconds_count{direction="outbound",service="orders"} 5');
    expect(text).toMatch(/outrigger_request_duration_seconds_sum\{direction="outbound",service="orders"\} 20\.204/);
  });

  it('is not written when metrics are disabled', async () => {
    const metrics = new Metrics(false);
    metrics.trafficStats('outbound', 'orders').record(200, 0.01);
    expect(await metrics.registry.metrics()).not.toContain('outrigger_request_duration_seconds');
  });
});
