import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/**
 * prom-client's classes, loaded from their own modules. The package root also loads the Pushgateway client
 * (node:http/https, url) and, through its CPU metric, OpenTelemetry's API: about 6 MB of resident memory in
 * every sidecar for nothing it uses. The version of prom-client is pinned in package.json because these
 * paths are not part of its public entry points.
 */
const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export type Registry = PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export type Counter<T extends string> = PromClient.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export type Gauge<T extends string> = PromClient.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
export type Histogram<T extends string> = PromClient.Histogram<T>;

/** prom-client's default metrics, each from its own module (the CPU counters are ours, with its names). */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  'processResources',
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
] as const;

type DefaultMetric = (registry: Registry, config: { eventLoopMonitoringPrecision: number }) => void;

/** The standard process metrics (`process_*`, `nodejs_*`), as prom-client's collectDefaultMetrics registers them. */
export function collectProcessMetrics(registry: Registry, eventLoopMonitoringPrecision: number): void {
  for (const name of DEFAULT_METRICS) (require(`prom-client/lib/metrics/${name}`) as DefaultMetric)(registry, { eventLoopMonitoringPrecision });
  let last = process.cpuUsage();
  // The first counter's collect sets all three (the registry collects in registration order), as prom-client's.
  new Counter({
    name: 'process_cpu_user_seconds_total',
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    collect() {
      const now = process.cpuUsage();
      const u = (now.user - last.user) / 1e6;
      const s = (now.system - last.system) / 1e6;
      last = now;
      this.inc(u);
      system.inc(s);
      total.inc(u + s);
    },
  });
  const system = new Counter({ name: 'process_cpu_system_seconds_total', help: 'Total system CPU time spent in seconds.', registers: [registry] });
  const total = new Counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers: [registry] });
}
