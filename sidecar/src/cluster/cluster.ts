import { Endpoint, type HealthFlag } from '../core/endpoint.js';
import type { Clock } from '../../../common/src/clock.js';
import type { Random } from '../../../common/src/random.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { ServiceConfig } from '../../../common/src/config/types.js';
import type { Picker } from '../lb/picker.js';
import { buildPicker } from '../lb/index.js';

export interface ClusterDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** Drives slow start (picker rebuilds while endpoints ramp up); without it slow start is off. */
  readonly timers?: Timers | undefined;
  /** Called when endpoints leave the cluster, so their connection pools can be closed. */
  readonly onEndpointsRemoved?: ((removed: readonly Endpoint[]) => void) | undefined;
  /** Called after a health source set or cleared its flag on an endpoint (for logs and metrics). */
  readonly onHealthChange?: ((change: HealthChange) => void) | undefined;
  /** Called when the cluster enters or leaves panic mode. */
  readonly onPanicChange?: ((cluster: Cluster, panic: boolean) => void) | undefined;
}

/** Share of its weight a newly eligible endpoint starts with. */
export const RAMP_START = 0.1;

export interface HealthChange {
  readonly cluster: Cluster;
  readonly endpoint: Endpoint;
  readonly flag: HealthFlag;
  /** True when the source now marks the endpoint bad. */
  readonly on: boolean;
  /** Whether the endpoint is eligible after the change. */
  readonly eligible: boolean;
}

/**
 * The endpoints of one upstream service and the picker over its eligible set. The control path calls
 * `update` and `rebuild`; the request path reads `picker` and `config` only.
 */
export class Cluster {
  private _endpoints: Endpoint[] = [];
  private byAddress = new Map<string, Endpoint>();
  private _picker: Picker;
  private _config: ServiceConfig;
  private _panic = false;
  private _eligibleCount = 0;
  private rampTimer: TimerHandle | undefined;
  private initialized = false;

  constructor(
    readonly name: string,
    config: ServiceConfig,
    private readonly deps: ClusterDeps,
  ) {
    this._config = config;
    this._picker = this.reconcile(config);
    this.initialized = true;
  }

  get config(): ServiceConfig {
    return this._config;
  }

  get picker(): Picker {
    return this._picker;
  }

  get endpoints(): readonly Endpoint[] {
    return this._endpoints;
  }

  /** True while fewer than panicThreshold % of endpoints are eligible and the picker balances over all. */
  get panic(): boolean {
    return this._panic;
  }

  get eligibleCount(): number {
    return this._eligibleCount;
  }

  endpoint(address: string): Endpoint | undefined {
    return this.byAddress.get(address);
  }

  /** Applies a new policy and endpoint list; endpoints that stay keep their live counters. */
  update(config: ServiceConfig): void {
    this._config = config;
    this._picker = this.reconcile(config);
  }

  /** Rebuilds the picker (after weights or flags changed). */
  rebuild(): void {
    this._picker = this.buildPicker();
  }

  /**
   * A health source (each owns one flag) marks an endpoint bad (`on`) or good again. The picker is rebuilt
   * only when the endpoint's eligibility actually changed. Returns true when the flag changed.
   */
  setFlag(endpoint: Endpoint, flag: HealthFlag, on: boolean): boolean {
    if (this.byAddress.get(endpoint.address) !== endpoint) return false;
    const before = endpoint.flags;
    endpoint.flags = on ? before | flag : before & ~flag;
    if (endpoint.flags === before) return false;
    if ((before === 0) !== (endpoint.flags === 0)) {
      if (endpoint.flags === 0) this.startRamp(endpoint);
      this._picker = this.buildPicker();
    }
    this.deps.onHealthChange?.({ cluster: this, endpoint, flag, on, eligible: endpoint.flags === 0 });
    return true;
  }

  private reconcile(config: ServiceConfig): Picker {
    const next: Endpoint[] = [];
    const nextBy = new Map<string, Endpoint>();
    for (const spec of config.endpoints) {
      let ep = this.byAddress.get(spec.address);
      if (ep) ep.update(spec);
      else {
        ep = new Endpoint(spec);
        // Endpoints of a new cluster all start together; one that joins a running cluster warms up.
        if (this.initialized) this.startRamp(ep);
      }
      next.push(ep);
      nextBy.set(spec.address, ep);
    }
    const removed = this._endpoints.filter((e) => !nextBy.has(e.address));
    this._endpoints = next;
    this.byAddress = nextBy;
    if (removed.length > 0) this.deps.onEndpointsRemoved?.(removed);
    return this.buildPicker();
  }

  private buildPicker(): Picker {
    const all = this._endpoints;
    const eligible = all.filter((e) => e.eligible);
    this._eligibleCount = eligible.length;
    // Panic mode (as Envoy): below the threshold, balance over every endpoint rather than overload the few.
    const wasPanic = this._panic;
    this._panic = all.length > 0 && (eligible.length * 100) / all.length < this._config.panicThreshold;
    if (wasPanic !== this._panic) this.deps.onPanicChange?.(this, this._panic);
    const set = this._panic ? all : eligible;
    return buildPicker(this._config.lb, set, { clock: this.deps.clock, random: this.deps.random });
  }

  /**
   * Slow start: a newly eligible endpoint's weight (capacity for least-load) ramps linearly from
   * 10 % to 100 % over `slowStart`; the picker is rebuilt on a short step while any endpoint ramps.
   */
  private startRamp(ep: Endpoint): void {
    const duration = this._config.slowStartMs;
    if (duration <= 0 || this.deps.timers === undefined) return;
    ep.rampStart = this.deps.clock.now();
    ep.rampFactor = RAMP_START;
    if (this.rampTimer === undefined) {
      const step = Math.min(1_000, Math.max(50, duration / 20));
      this.rampTimer = this.deps.timers.every(step, () => this.rampStep());
    }
  }

  private rampStep(): void {
    const duration = this._config.slowStartMs;
    const now = this.deps.clock.now();
    let ramping = false;
    for (const ep of this._endpoints) {
      if (ep.rampFactor >= 1) continue;
      const progress = duration <= 0 ? 1 : (now - ep.rampStart) / duration;
      ep.rampFactor = progress >= 1 ? 1 : RAMP_START + (1 - RAMP_START) * progress;
      if (ep.rampFactor < 1) ramping = true;
    }
    if (!ramping) {
      this.rampTimer?.cancel();
      this.rampTimer = undefined;
    }
    this._picker = this.buildPicker();
  }

  /** Everything the cluster holds, for shutdown. */
  close(): void {
    this.rampTimer?.cancel();
    this.rampTimer = undefined;
    if (this._endpoints.length > 0) this.deps.onEndpointsRemoved?.(this._endpoints);
    this._endpoints = [];
    this.byAddress.clear();
    this._picker = this.buildPicker();
  }
}

/** All upstream clusters of one sidecar, keyed by service name. */
export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();
  constructor(private readonly deps: ClusterDeps) {}

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  all(): IterableIterator<Cluster> {
    return this.clusters.values();
  }

  /** Makes the set of clusters match `services`: adds, updates, and removes (closing removed ones). */
  apply(services: Readonly<Record<string, ServiceConfig>>): void {
    for (const [name, cfg] of Object.entries(services)) {
      const existing = this.clusters.get(name);
      if (existing) existing.update(cfg);
      else this.clusters.set(name, new Cluster(name, cfg, this.deps));
    }
    for (const [name, cluster] of this.clusters) {
      if (!Object.hasOwn(services, name)) {
        cluster.close();
        this.clusters.delete(name);
      }
    }
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
    this.clusters.clear();
  }
}
