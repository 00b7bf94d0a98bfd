/**
 * Passive outlier detection for one cluster (docs/resilience.md), following Envoy's semantics:
 *
 * - consecutive 5xx: every 5xx (including 502-504 and local gateway failures: connect error, reset,
 *   timeout) counts; any non-5xx outcome resets the count. The host is ejected at once, inside `record()`,
 *   when the count reaches `consecutive5xx`.
 * - consecutive gateway failures: connect error, reset, timeout, 502/503/504 count; any other outcome
 *   (success or another 5xx) resets the count. Ejection at once at `consecutiveGatewayFailure`.
 * - success rate (every `intervalMs`): among hosts with at least `successRateRequestVolume` requests in
 *   the interval, if there are at least `successRateMinimumHosts` of them, a host whose success rate is
 *   below mean − `successRateStdevFactor` × stdev (population stdev of the hosts' rates) is ejected.
 * - failure percentage (every `intervalMs`): among hosts with at least `failurePercentageRequestVolume`
 *   requests, if there are at least `failurePercentageMinimumHosts` of them, a host whose failure
 *   percentage is ≥ `failurePercentageThreshold` is ejected. (Envoy gates this on enforcing_failure_percentage,
 *   0 by default; this config has no such switch, so it is always enforced.)
 *
 * Ejection lasts `baseEjectionTimeMs` × the host's ejection multiplier (+1 at each ejection), capped at
 * max(`maxEjectionTimeMs`, `baseEjectionTimeMs`). The multiplier decreases by one at each sweep that
 * closes an interval during which the host was never ejected, and it stops growing once the cap is reached
 * (as Envoy bounds it), so a host that was ejected many times recovers its short ejections in bounded time.
 *
 * Never more than floor(n × `maxEjectionPercent` / 100) of the cluster's n endpoints are ejected at once
 * (Envoy's "(ejected + 1) / n ≤ max%" rule); when that is 0 (e.g. one endpoint at 50 %) nothing is ejected
 * (Envoy's always_eject_one_host is off by default). A refused ejection counts in `overflowCount`.
 *
 * The Outlier flag is changed only through `Cluster.setFlag`. A host is re-admitted by a one-shot timer at
 * the exact end of its ejection (so re-admission never waits for the next sweep); each sweep also
 * re-admits any host whose time has passed, as a safety net.
 *
 * Hot path: `record()` is one Map lookup and a few integer updates, no allocation (ejection itself, which
 * is rare, allocates its log event and timer).
 */
import type { Clock } from '../../../../common/src/clock.js';
import { type Endpoint, HealthFlag } from '../../core/endpoint.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import type { Cluster } from '../../cluster/cluster.js';
import type { OutlierDetectionConfig } from '../../../../common/src/config/types.js';

/** How one request to an endpoint ended, as outlier detection sees it. */
export const Outcome = {
  /** Any response that is not a 5xx (4xx included, as Envoy counts them). */
  Success: 0,
  /** A 5xx response other than 502/503/504. */
  Error5xx: 1,
  /** Connect failure, reset, timeout, or a 502/503/504 response; counts as a 5xx too. */
  GatewayFailure: 2,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** Maps an upstream HTTP status to its Outcome (502-504 → GatewayFailure, other 5xx → Error5xx). */
export function outcomeOfStatus(status: number): Outcome {
  if (status >= 502 && status <= 504) return Outcome.GatewayFailure;
  if (status >= 500 && status <= 599) return Outcome.Error5xx;
  return Outcome.Success;
}

export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-failure' | 'success-rate' | 'failure-percentage';

export type OutlierEvent =
  | {
      readonly type: 'ejected';
      readonly cluster: string;
      /** host:port */
      readonly endpoint: string;
      readonly reason: EjectionReason;
      readonly durationMs: number;
      /** The ejection multiplier after this ejection. */
      readonly timesEjected: number;
    }
  | {
      readonly type: 'readmitted';
      readonly cluster: string;
      readonly endpoint: string;
      /** Why: its ejection time passed, or the detector was stopped or its config removed. */
      readonly cause: 'expired' | 'stopped' | 'disabled' | 'active-check-passed';
    };

export interface OutlierDetectorDeps {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly log?: ((event: OutlierEvent) => void) | undefined;
  /** Called at each ejection (for outrigger_outlier_ejections_total). */
  readonly onEject?: ((endpoint: Endpoint, reason: EjectionReason) => void) | undefined;
}

/** One endpoint's outlier state, for the admin view. */
export interface OutlierStatus {
  readonly ejected: boolean;
  /** Wall-clock ms since the epoch when the ejection ends, or null when not ejected. */
  readonly ejectedUntil: number | null;
  /** The ejection multiplier (times ejected in a row, decaying while healthy). */
  readonly timesEjected: number;
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailures: number;
}

class HostState {
  consecutive5xx = 0;
  consecutiveGateway = 0;
  /** Outcomes in the current interval (reset at each sweep). */
  successes = 0;
  failures = 0;
  ejected = false;
  /** Monotonic ms when the ejection ends. */
  ejectedUntil = 0;
  ejectedUntilWall = 0;
  multiplier = 0;
  /** Ejected at some point during the current interval (blocks the multiplier's decay). */
  touched = false;
  timer: TimerHandle | undefined = undefined;

  constructor(readonly endpoint: Endpoint) {}
}

interface Rated {
  readonly state: HostState;
  /** Percent. */
  readonly rate: number;
}

export class OutlierDetector {
  private readonly states = new Map<Endpoint, HostState>();
  private cfg: OutlierDetectionConfig | undefined;
  private running = false;
  private sweepTimer: TimerHandle | undefined;
  private sweepInterval = 0;
  private _ejectedCount = 0;
  /** Ejections refused because of maxEjectionPercent (Envoy's ejections_overflow). */
  overflowCount = 0;

  constructor(
    readonly cluster: Cluster,
    private readonly deps: OutlierDetectorDeps,
  ) {
    this.sync();
  }

  /** Endpoints currently ejected by this detector. */
  get ejectedCount(): number {
    return this._ejectedCount;
  }

  /** Whether `start()` was called and not `stop()`. */
  get started(): boolean {
    return this.running;
  }

  /** Starts the interval sweep; `record()` is ignored until then. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const st of this.states.values()) {
      st.successes = 0;
      st.failures = 0;
    }
    this.armSweep();
  }

  /** Cancels every timer and re-admits every endpoint this detector ejected; `record()` is ignored after. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    this.releaseAll('stopped');
  }

  /**
   * Call after the cluster's endpoint set or config changed: drops the state of removed endpoints, adds
   * state for new ones (keeping it for endpoints that stay), and applies a changed outlierDetection config
   * (re-arming the sweep when the interval changed; re-admitting everything when the config was removed).
   */
  sync(): void {
    const present = new Set(this.cluster.endpoints);
    for (const [ep, st] of this.states) {
      if (present.has(ep)) continue;
      if (st.ejected) {
        st.timer?.cancel();
        st.timer = undefined;
        st.ejected = false;
        this._ejectedCount--;
      }
      this.states.delete(ep);
    }
    for (const ep of this.cluster.endpoints) if (!this.states.has(ep)) this.states.set(ep, new HostState(ep));

    this.cfg = this.cluster.config.outlierDetection;
    if (this.cfg === undefined) {
      this.sweepTimer?.cancel();
      this.sweepTimer = undefined;
      this.releaseAll('disabled');
    } else if (this.running && (this.sweepTimer === undefined || this.sweepInterval !== this.cfg.intervalMs)) {
      this.armSweep();
    }
  }

  /** Hot path: one request's outcome. Unknown endpoints (and calls while stopped or disabled) are ignored. */
  record(endpoint: Endpoint, outcome: Outcome): void {
    const cfg = this.cfg;
    if (!this.running || cfg === undefined) return;
    const st = this.states.get(endpoint);
    if (st === undefined) return;
    if (outcome === Outcome.Success) {
      st.successes++;
      st.consecutive5xx = 0;
      st.consecutiveGateway = 0;
      return;
    }
    st.failures++;
    st.consecutive5xx++;
    if (outcome === Outcome.GatewayFailure) {
      st.consecutiveGateway++;
      if (st.consecutiveGateway >= cfg.consecutiveGatewayFailure) {
        this.consecutiveTrip(st, 'consecutive-gateway-failure', cfg);
        return;
      }
    } else {
      st.consecutiveGateway = 0;
    }
    if (st.consecutive5xx >= cfg.consecutive5xx) this.consecutiveTrip(st, 'consecutive-5xx', cfg);
  }

  /** Admin view of one endpoint, or undefined when the detector does not know it. */
  status(endpoint: Endpoint): OutlierStatus | undefined {
    const st = this.states.get(endpoint);
    if (st === undefined) return undefined;
    return {
      ejected: st.ejected,
      ejectedUntil: st.ejected ? st.ejectedUntilWall : null,
      timesEjected: st.multiplier,
      consecutive5xx: st.consecutive5xx,
      consecutiveGatewayFailures: st.consecutiveGateway,
    };
  }

  /**
   * One interval's work (run by the timer; public so callers and tests can drive it): re-admit expired
   * ejections, decay multipliers of hosts not ejected during the interval, run the success-rate and
   * failure-percentage checks over this interval's counters, then reset the counters.
   */
  sweep(): void {
    const cfg = this.cfg;
    if (!this.running || cfg === undefined) return;
    const now = this.deps.clock.now();
    for (const st of this.states.values()) {
      if (st.ejected) {
        if (now >= st.ejectedUntil) this.readmit(st, 'expired');
      } else if (!st.touched && st.multiplier > 0) {
        st.multiplier--;
      }
    }

    this.successRateCheck(cfg);
    this.failurePercentageCheck(cfg);

    for (const st of this.states.values()) {
      st.successes = 0;
      st.failures = 0;
      st.touched = st.ejected;
    }
  }

  private successRateCheck(cfg: OutlierDetectionConfig): void {
    if (this.states.size < cfg.successRateMinimumHosts) return;
    const rated = this.rated(cfg.successRateRequestVolume);
    if (rated.length < cfg.successRateMinimumHosts) return;
    let sum = 0;
    for (const r of rated) sum += r.rate;
    const mean = sum / rated.length;
    let sq = 0;
    for (const r of rated) sq += (r.rate - mean) * (r.rate - mean);
    const stdev = Math.sqrt(sq / rated.length);
    const threshold = mean - cfg.successRateStdevFactor * stdev;
    // Worst first, so that when maxEjectionPercent leaves room for only some, the worst go.
    rated.sort((a, b) => a.rate - b.rate);
    for (const r of rated) {
      if (r.rate >= threshold) break;
      if (!r.state.ejected) this.eject(r.state, 'success-rate', cfg);
    }
  }

  private failurePercentageCheck(cfg: OutlierDetectionConfig): void {
    if (this.states.size < cfg.failurePercentageMinimumHosts) return;
    const rated = this.rated(cfg.failurePercentageRequestVolume);
    if (rated.length < cfg.failurePercentageMinimumHosts) return;
    rated.sort((a, b) => a.rate - b.rate);
    for (const r of rated) {
      if (100 - r.rate < cfg.failurePercentageThreshold) break;
      if (!r.state.ejected) this.eject(r.state, 'failure-percentage', cfg);
    }
  }

  /** Success rate (percent) of every host with at least `volume` requests in this interval. */
  private rated(volume: number): Rated[] {
    const out: Rated[] = [];
    for (const st of this.states.values()) {
      const total = st.successes + st.failures;
      if (total >= volume && total > 0) out.push({ state: st, rate: (100 * st.successes) / total });
    }
    return out;
  }

  /**
   * A consecutive-error threshold was reached: reset the counters (as Envoy resets the triggering one, so a
   * new run of errors is needed for another attempt, whether or not this one was allowed) and eject.
   */
  private consecutiveTrip(st: HostState, reason: EjectionReason, cfg: OutlierDetectionConfig): void {
    st.consecutive5xx = 0;
    st.consecutiveGateway = 0;
    if (!st.ejected) this.eject(st, reason, cfg);
  }

  private eject(st: HostState, reason: EjectionReason, cfg: OutlierDetectionConfig): void {
    const ep = st.endpoint;
    // Stale state (the cluster changed and sync() has not run yet): leave it alone.
    if (this.cluster.endpoint(ep.address) !== ep) return;
    const allowed = Math.floor((this.states.size * cfg.maxEjectionPercent) / 100);
    if (this._ejectedCount >= allowed) {
      this.overflowCount++;
      return;
    }
    const base = cfg.baseEjectionTimeMs;
    const cap = Math.max(cfg.maxEjectionTimeMs, base);
    const maxMultiplier = base > 0 ? Math.max(1, Math.ceil(cap / base)) : 1;
    if (st.multiplier < maxMultiplier) st.multiplier++;
    const durationMs = Math.min(base * st.multiplier, cap);

    st.ejected = true;
    st.touched = true;
    this._ejectedCount++;
    st.ejectedUntil = this.deps.clock.now() + durationMs;
    st.ejectedUntilWall = this.deps.clock.wallNow() + durationMs;
    st.timer = this.deps.timers.after(durationMs, () => {
      st.timer = undefined;
      this.readmit(st, 'expired');
    });
    this.cluster.setFlag(ep, HealthFlag.Outlier, true);
    this.deps.log?.({ type: 'ejected', cluster: this.cluster.name, endpoint: ep.address, reason, durationMs, timesEjected: st.multiplier });
    this.deps.onEject?.(ep, reason);
  }

  private readmit(st: HostState, cause: 'expired' | 'stopped' | 'disabled' | 'active-check-passed'): void {
    if (!st.ejected) return;
    st.timer?.cancel();
    st.timer = undefined;
    st.ejected = false;
    st.consecutive5xx = 0;
    st.consecutiveGateway = 0;
    this._ejectedCount--;
    this.cluster.setFlag(st.endpoint, HealthFlag.Outlier, false);
    this.deps.log?.({ type: 'readmitted', cluster: this.cluster.name, endpoint: st.endpoint.address, cause });
  }

  /**
   * Ends an ejection early because an active health check of the endpoint passed (Envoy's
   * `successful_active_health_check_uneject_host`): a restarted instance is back within a check interval
   * instead of waiting out its ejection time.
   */
  unejectAfterActiveCheck(endpoint: Endpoint): void {
    const st = this.states.get(endpoint);
    if (st !== undefined) this.readmit(st, 'active-check-passed');
  }

  private releaseAll(cause: 'stopped' | 'disabled'): void {
    for (const st of this.states.values()) this.readmit(st, cause);
  }

  private armSweep(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    const cfg = this.cfg;
    if (cfg === undefined) return;
    this.sweepInterval = cfg.intervalMs;
    this.sweepTimer = this.deps.timers.every(cfg.intervalMs, () => this.sweep());
  }
}
