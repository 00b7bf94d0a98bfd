import type { Cluster } from '../../cluster/cluster.js';
import type { Clock } from '../../../../common/src/clock.js';
import { HealthFlag, type Endpoint } from '../../core/endpoint.js';
import type { Random } from '../../../../common/src/random.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import type { HealthCheckConfig } from '../../../../common/src/config/types.js';
import { proberFor, type ProbeResult, type Prober } from './probe.js';
import type { UpstreamTls } from '../../proxy/tls/mesh-tls.js';

/** Each wait between checks is intervalMs × (1 ± JITTER). */
export const JITTER = 0.1;

/** A state change made by the active health checker (for the log). */
export interface ActiveCheckEvent {
  readonly type: 'ejected' | 'readmitted';
  readonly source: 'active-check';
  readonly service: string;
  /** host:port */
  readonly endpoint: string;
  /** The detail of the check that tipped it ("HTTP 503", "timeout", …), or why checking ended. */
  readonly reason: string;
  /** Consecutive failures (ejected) or successes (readmitted) at that moment; 0 when checking ended. */
  readonly consecutive: number;
}

export interface ActiveHealthCheckerDeps {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
  /** Replaces the prober built from the cluster's config (tests). */
  readonly prober?: Prober | undefined;
  readonly log?: ((event: ActiveCheckEvent) => void) | undefined;
  /** Called for every passing check (the outlier detector un-ejects on it, as Envoy does by default). */
  readonly onPass?: ((endpoint: Endpoint) => void) | undefined;
  /** Mutual TLS for HTTP checks of mesh endpoints (undefined while this sidecar has no certificate). */
  readonly mesh?: (() => UpstreamTls | undefined) | undefined;
}

/** Read-only view of one endpoint's active checks (admin endpoint). */
export interface ActiveCheckStatus {
  readonly address: string;
  /** False while the checker holds the endpoint's ActiveCheck flag. */
  readonly healthy: boolean;
  /** Wall-clock ms (epoch) when the last result arrived; null before the first. */
  readonly lastCheckAt: number | null;
  readonly lastResult: ProbeResult | null;
  /** How long the last check took (monotonic ms); null before the first. */
  readonly lastDurationMs: number | null;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
  /** Checks completed. */
  readonly checks: number;
  /** Intervals that passed while the previous check was still running (no check started). */
  readonly skipped: number;
  readonly inFlight: boolean;
}

interface EndpointState {
  readonly endpoint: Endpoint;
  timer: TimerHandle | undefined;
  inFlight: boolean;
  /** Bumped when results of running probes must be ignored (probe changed); `removed` ends the state. */
  epoch: number;
  removed: boolean;
  lastCheckAt: number | null;
  lastResult: ProbeResult | null;
  lastDurationMs: number | null;
  successes: number;
  failures: number;
  checks: number;
  skipped: number;
}

function errorDetail(err: unknown): string {
  return `probe error: ${err instanceof Error ? err.message : String(err)}`;
}

/** The parts of a config that decide what a probe does (a change makes earlier results meaningless). */
function probeKey(hc: HealthCheckConfig): string {
  return JSON.stringify({ http: hc.http ?? null, tcp: hc.tcp ?? null, grpc: hc.grpc ?? null });
}

/**
 * Active health checks of one cluster's endpoints (docs/resilience.md). It owns HealthFlag.ActiveCheck and changes
 * it only through `cluster.setFlag`.
 *
 * - Scheduling: per endpoint, the first check comes after a random fraction of the interval (so the checks
 *   of many endpoints and many sidecars spread out), then every intervalMs × (1 ± 10 %), drawn anew each
 *   time. The schedule does not wait for checks: when an interval ends while the previous check of that
 *   endpoint is still running, that turn is skipped (counted in `skipped`), so checks never pile up.
 * - Thresholds: `unhealthyThreshold` consecutive failures set the flag, `healthyThreshold` consecutive
 *   successes clear it; a result of the other kind resets the count.
 * - New endpoints start healthy: they stay eligible until `unhealthyThreshold` checks have failed. Envoy
 *   instead holds back hosts added to a cluster with active checks until their first check passes; here the
 *   control plane only pushes registered, heartbeating instances, and holding them back would leave a
 *   freshly started sidecar with nothing to send to for up to an interval. An endpoint that already carries
 *   the flag when first seen (a previous checker's verdict) keeps it until proven good.
 * - `stop()` and a config without `healthCheck` (seen by `sync()`) clear the flags this checker set: a source
 *   that no longer checks must not keep anything out of rotation.
 * - A config change that alters the probe (kind, path, statuses, host, service) resets the counts and
 *   ignores results of probes still running; a new interval reschedules at once; new thresholds apply from
 *   the next result.
 */
export class ActiveHealthChecker {
  private readonly states = new Map<Endpoint, EndpointState>();
  private running = false;
  private hc: HealthCheckConfig | undefined;
  private prober: Prober | undefined;
  private key: string | undefined;

  constructor(
    readonly cluster: Cluster,
    private readonly deps: ActiveHealthCheckerDeps,
  ) {}

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts checking the cluster's endpoints (nothing happens when its config has no healthCheck). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.sync();
  }

  /** Cancels every timer, ignores results still to come and clears the flags this checker set. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.releaseAll('health checking stopped');
    this.hc = undefined;
    this.prober = undefined;
    this.key = undefined;
  }

  /**
   * Call after the cluster's endpoints or config changed: starts checking new endpoints, stops checking
   * removed ones, and applies a new healthCheck config (or its removal). A no-op while stopped.
   */
  sync(): void {
    if (!this.running) return;
    const hc = this.cluster.config.healthCheck;
    if (hc === undefined) {
      this.releaseAll('health check removed from config');
      this.hc = undefined;
      this.prober = undefined;
      this.key = undefined;
      return;
    }
    const previous = this.hc;
    this.hc = hc;
    const key = probeKey(hc);
    if (key !== this.key) {
      this.key = key;
      this.prober = this.deps.prober ?? proberFor(hc, { timers: this.deps.timers, mesh: this.deps.mesh });
      for (const s of this.states.values()) {
        s.epoch++;
        s.successes = 0;
        s.failures = 0;
      }
    }
    if (previous !== undefined && previous.intervalMs !== hc.intervalMs) {
      for (const s of this.states.values()) this.schedule(s, this.firstWait());
    }

    const current = new Set(this.cluster.endpoints);
    for (const [ep, s] of this.states) {
      if (!current.has(ep)) {
        this.drop(s);
        this.states.delete(ep);
      }
    }
    for (const ep of current) {
      if (this.states.has(ep)) continue;
      const s: EndpointState = {
        endpoint: ep,
        timer: undefined,
        inFlight: false,
        epoch: 0,
        removed: false,
        lastCheckAt: null,
        lastResult: null,
        lastDurationMs: null,
        successes: 0,
        failures: 0,
        checks: 0,
        skipped: 0,
      };
      this.states.set(ep, s);
      this.schedule(s, this.firstWait());
    }
  }

  /** Status of every checked endpoint, in the cluster's endpoint order. */
  status(): ActiveCheckStatus[] {
    const out: ActiveCheckStatus[] = [];
    for (const ep of this.cluster.endpoints) {
      const s = this.states.get(ep);
      if (s) out.push(this.view(s));
    }
    return out;
  }

  /** Status of one endpoint, or undefined when it is not checked. */
  statusOf(address: string): ActiveCheckStatus | undefined {
    const ep = this.cluster.endpoint(address);
    const s = ep && this.states.get(ep);
    return s ? this.view(s) : undefined;
  }

  private view(s: EndpointState): ActiveCheckStatus {
    return Object.freeze({
      address: s.endpoint.address,
      healthy: (s.endpoint.flags & HealthFlag.ActiveCheck) === 0,
      lastCheckAt: s.lastCheckAt,
      lastResult: s.lastResult,
      lastDurationMs: s.lastDurationMs,
      consecutiveSuccesses: s.successes,
      consecutiveFailures: s.failures,
      checks: s.checks,
      skipped: s.skipped,
      inFlight: s.inFlight,
    });
  }

  private firstWait(): number {
    return (this.hc?.intervalMs ?? 0) * this.deps.random.next();
  }

  private nextWait(): number {
    return (this.hc?.intervalMs ?? 0) * (1 - JITTER + 2 * JITTER * this.deps.random.next());
  }

  private schedule(s: EndpointState, ms: number): void {
    s.timer?.cancel();
    s.timer = this.deps.timers.after(ms, () => this.tick(s));
  }

  private tick(s: EndpointState): void {
    if (s.removed || !this.running) return;
    this.schedule(s, this.nextWait());
    if (s.inFlight) {
      s.skipped++;
      return;
    }
    this.check(s);
  }

  private check(s: EndpointState): void {
    const prober = this.prober;
    const hc = this.hc;
    if (prober === undefined || hc === undefined) return;
    s.inFlight = true;
    const epoch = s.epoch;
    const started = this.deps.clock.now();
    let probe: Promise<ProbeResult>;
    try {
      probe = prober(s.endpoint, hc.timeoutMs);
    } catch (err) {
      probe = Promise.resolve({ healthy: false, detail: errorDetail(err) });
    }
    void probe
      .then(
        (r) => r,
        (err: unknown): ProbeResult => ({ healthy: false, detail: errorDetail(err) }),
      )
      .then((r) => {
        s.inFlight = false;
        if (s.removed || s.epoch !== epoch || !this.running) return;
        this.record(s, r, started);
      });
  }

  private record(s: EndpointState, r: ProbeResult, started: number): void {
    const hc = this.hc;
    if (hc === undefined) return;
    s.lastCheckAt = this.deps.clock.wallNow();
    s.lastDurationMs = this.deps.clock.now() - started;
    s.lastResult = Object.freeze({ healthy: r.healthy, detail: r.detail });
    s.checks++;
    const ep = s.endpoint;
    const flagged = (ep.flags & HealthFlag.ActiveCheck) !== 0;
    if (r.healthy) {
      s.successes++;
      s.failures = 0;
      this.deps.onPass?.(ep);
      if (flagged && s.successes >= hc.healthyThreshold && this.cluster.setFlag(ep, HealthFlag.ActiveCheck, false)) {
        this.emit('readmitted', ep, r.detail, s.successes);
      }
    } else {
      s.failures++;
      s.successes = 0;
      if (!flagged && s.failures >= hc.unhealthyThreshold && this.cluster.setFlag(ep, HealthFlag.ActiveCheck, true)) {
        this.emit('ejected', ep, r.detail, s.failures);
      }
    }
  }

  private drop(s: EndpointState): void {
    s.removed = true;
    s.timer?.cancel();
    s.timer = undefined;
  }

  private releaseAll(reason: string): void {
    for (const s of this.states.values()) {
      this.drop(s);
      if (this.cluster.setFlag(s.endpoint, HealthFlag.ActiveCheck, false)) this.emit('readmitted', s.endpoint, reason, 0);
    }
    this.states.clear();
  }

  private emit(type: ActiveCheckEvent['type'], ep: Endpoint, reason: string, consecutive: number): void {
    this.deps.log?.({ type, source: 'active-check', service: this.cluster.name, endpoint: ep.address, reason, consecutive });
  }
}
