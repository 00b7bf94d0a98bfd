import { Cluster } from '../../../../sidecar/src/cluster/cluster.js';
import { parseServiceConfig } from '../../../../common/src/config/load.js';
import type { ServiceConfig } from '../../../../common/src/config/types.js';
import type { Endpoint } from '../../../../sidecar/src/core/endpoint.js';
import { seededRandom, type Random } from '../../../../common/src/random.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import type { ActiveCheckEvent } from '../../../../sidecar/src/health/active/checker.js';
import type { ProbeResult, Prober } from '../../../../sidecar/src/health/active/probe.js';
import type { FakeClock } from '../../../helpers/fake-clock.js';

export const addr = (i: number): string => `10.0.0.${i}:8080`;

/** A service config with `n` endpoints (10.0.0.1..n:8080) and an HTTP check (overridable). */
export function serviceConfig(n: number, healthCheck: Record<string, unknown> | null = {}, addresses?: readonly string[]): ServiceConfig {
  const endpoints = (addresses ?? Array.from({ length: n }, (_, i) => addr(i + 1))).map((address) => ({ address }));
  const hc =
    healthCheck === null
      ? undefined
      : { http: { path: '/healthz' }, interval: '1s', timeout: '500ms', healthyThreshold: 2, unhealthyThreshold: 3, ...healthCheck };
  return parseServiceConfig({ endpoints, ...(hc ? { healthCheck: hc } : {}) }, 'test');
}

export function makeCluster(config: ServiceConfig, clock: FakeClock): Cluster {
  return new Cluster('svc', config, { clock, random: seededRandom(7) });
}

/** A Random that always returns `v` (0.5 makes the first wait half an interval and every later one exact). */
export function constantRandom(v: number): Random {
  return { next: () => v };
}

/** A Random that replays the given values, then repeats the last one. */
export function scriptedRandom(values: readonly number[]): Random {
  let i = 0;
  return { next: () => values[Math.min(i++, values.length - 1)]! };
}

/** Lets settled probe promises run their continuations (FakeClock fires timers synchronously). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface PendingProbe {
  readonly endpoint: Endpoint;
  readonly timeoutMs: number;
  resolve(r: ProbeResult): void;
  reject(err: unknown): void;
}

/**
 * A Prober under the test's control. With `answer` set, each probe settles at once with its result for the
 * endpoint (undefined leaves it pending); otherwise every probe waits in `pending` until the test settles it.
 */
export class FakeProber {
  readonly calls: PendingProbe[] = [];
  readonly pending = new Set<PendingProbe>();
  /** Most probes running at once, per endpoint address. */
  readonly maxConcurrent = new Map<string, number>();
  private readonly running = new Map<string, number>();
  answer: ((endpoint: Endpoint) => ProbeResult | undefined) | undefined;

  readonly fn: Prober = (endpoint, timeoutMs) =>
    new Promise<ProbeResult>((resolve, reject) => {
      const a = endpoint.address;
      const n = (this.running.get(a) ?? 0) + 1;
      this.running.set(a, n);
      this.maxConcurrent.set(a, Math.max(n, this.maxConcurrent.get(a) ?? 0));
      const done = (): void => {
        this.running.set(a, (this.running.get(a) ?? 1) - 1);
        this.pending.delete(p);
      };
      const p: PendingProbe = {
        endpoint,
        timeoutMs,
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
      this.calls.push(p);
      this.pending.add(p);
      const r = this.answer?.(endpoint);
      if (r !== undefined) p.resolve(r);
    });

  callsFor(address: string): PendingProbe[] {
    return this.calls.filter((c) => c.endpoint.address === address);
  }
}

/** Answers healthy or not per address, from a mutable set of failing addresses. */
export function byAddress(failing: Set<string>): (endpoint: Endpoint) => ProbeResult {
  return (ep) => (failing.has(ep.address) ? { healthy: false, detail: 'HTTP 503' } : { healthy: true, detail: 'HTTP 200' });
}

/** Timers that record every delay asked for, delegating to a FakeClock. */
export function recordingTimers(clock: FakeClock): Timers & { readonly delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    after(ms: number, fn: () => void): TimerHandle {
      delays.push(ms);
      return clock.after(ms, fn);
    },
    every(ms: number, fn: () => void): TimerHandle {
      delays.push(ms);
      return clock.every(ms, fn);
    },
  };
}

export function eventLog(): { events: ActiveCheckEvent[]; log: (e: ActiveCheckEvent) => void } {
  const events: ActiveCheckEvent[] = [];
  return { events, log: (e) => events.push(e) };
}
