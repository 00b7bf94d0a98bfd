import { Endpoint, type HealthFlag } from '../core/endpoint.js';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { ServiceConfig } from '../config/types.js';
import type { Picker } from '../lb/picker.js';
import { buildPicker } from '../lb/index.js';

export interface ClusterDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** Called when endpoints leave the cluster, so their connection pools can be closed. */
  readonly onEndpointsRemoved?: ((removed: readonly Endpoint[]) => void) | undefined;
  /** Called after a health source set or cleared its flag on an endpoint (for logs and metrics). */
  readonly onHealthChange?: ((change: HealthChange) => void) | undefined;
  /** Called when the cluster enters or leaves panic mode. */
  readonly onPanicChange?: ((cluster: Cluster, panic: boolean) => void) | undefined;
}

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

  constructor(
    readonly name: string,
    config: ServiceConfig,
    private readonly deps: ClusterDeps,
  ) {
    this._config = config;
    this._picker = this.reconcile(config);
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
    if ((before === 0) !== (endpoint.flags === 0)) this._picker = this.buildPicker();
    this.deps.onHealthChange?.({ cluster: this, endpoint, flag, on, eligible: endpoint.flags === 0 });
    return true;
  }

  private reconcile(config: ServiceConfig): Picker {
    const next: Endpoint[] = [];
    const nextBy = new Map<string, Endpoint>();
    for (const spec of config.endpoints) {
      let ep = this.byAddress.get(spec.address);
      if (ep) ep.update(spec);
      else ep = new Endpoint(spec);
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

  /** Everything the cluster holds, for shutdown. */
  close(): void {
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
