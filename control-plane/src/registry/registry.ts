import { checkHostPort } from '../../../common/src/config/address.js';
import { validate } from '../../../common/src/config/load.js';
import type { EndpointConfig } from '../../../common/src/config/types.js';
import type { Clock } from '../../../common/src/clock.js';
import { ConfigError } from '../../../common/src/errors.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import { parsePolicy } from '../config/load.js';
import { DEFAULT_POLICY_RULES, type PolicyRules } from '../config/policy-rules.js';
import { serviceNameSchema } from '../config/schema.js';
import type { ServicePolicy } from '../config/types.js';
import { mergePatch } from './merge-patch.js';
import { FileStore, type InstanceInput, instanceSchema, MAX_VERSION, parsePersistedState, type PersistedState, type RegisteredInstance, type StateStore } from './store.js';

/**
 * The control plane's state: services (policy and static endpoints from cp.yaml, policies set at run time),
 * instances registered by their sidecars (kept alive by heartbeats, removed after the TTL; deregistration
 * drains them first), weights pinned by operators, cost/weight computed from load reports, and endpoints
 * drained by operators. Every change bumps one global integer `version`, tells the listeners which services
 * changed, and is persisted through the StateStore (coalesced: at most one save in flight, the newest state
 * saved after it). `snapshot()` renders services in the shape of `services.NAME` in sidecar.yaml, which the
 * sidecar validates with the very schema it validates its own file with.
 */

export interface RegistryOptions {
  readonly clock: Clock;
  readonly timers: Timers;
  /** An instance whose heartbeats stop for this long is removed. */
  readonly instanceTtlMs: number;
  /** How long a deregistered instance stays (out of snapshots) before it is removed. */
  readonly drainTimeMs: number;
  /** Services declared in cp.yaml. */
  readonly services?: Readonly<Record<string, ServicePolicy>> | undefined;
  /** Where state is persisted; without one nothing survives a restart. */
  readonly store?: StateStore | undefined;
  /** A failed save (retried after `saveRetryMs`) or a throwing listener; default: a process warning. */
  readonly onError?: ((err: unknown, context: string) => void) | undefined;
  /** Delay before a failed save is tried again; default 1s. */
  readonly saveRetryMs?: number | undefined;
  /** What policies may hold beyond the sidecar's schema (cp.yaml `policies`); default: loopback listen only. */
  readonly policyRules?: PolicyRules | undefined;
  /**
   * Shared state (replicated control plane, docs/ha.md): instead of saving to `store`, local changes are
   * announced through `onLocalChange` for the replication layer to write (it reads `sharedState()`), and
   * only changes it applies back (`applyShared`, carrying the shared version) are versioned and pushed.
   */
  readonly shared?: { readonly onLocalChange: () => void; readonly flush: () => Promise<void> } | undefined;
}

/** What replicas share: everything but draining instances and timers. */
export interface SharedState {
  readonly policies: Readonly<Record<string, unknown>>;
  readonly weights: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly drained: readonly string[];
  /** Serving instances; `owned`: registered through this replica (its sidecar's stream is here). */
  readonly instances: readonly (RegisteredInstance & { readonly owned: boolean })[];
  readonly computed: Readonly<Record<string, Readonly<Record<string, ComputedOverride>>>>;
}

/** One change of the shared state, as read back from the shared store; `undefined` values are deletions. */
export type SharedChange =
  | { readonly kind: 'policy'; readonly service: string; readonly input: unknown }
  | { readonly kind: 'weights'; readonly service: string; readonly weights: Readonly<Record<string, number>> | undefined }
  | { readonly kind: 'drained'; readonly address: string; readonly drained: boolean }
  | { readonly kind: 'instance'; readonly id: string; readonly instance: RegisteredInstance | undefined; readonly mine: boolean }
  | { readonly kind: 'computed'; readonly service: string; readonly computed: Readonly<Record<string, ComputedOverride>> | undefined };

/** Cost/weight derived from load reports for one endpoint; a pinned weight still wins over `weight`. */
export interface ComputedOverride {
  readonly cost?: number | undefined; // > 0
  readonly weight?: number | undefined; // rounded and clamped to 1..1000
}

export type ChangeReason = 'register' | 'deregister' | 'expire' | 'remove' | 'policy' | 'weight' | 'computed' | 'drain' | 'undrain' | 'restore' | 'sync';

export interface ChangeEvent {
  /** The registry's version after the change. */
  readonly version: number;
  readonly reason: ChangeReason;
  /** Services whose snapshot may differ from the previous version (sorted). */
  readonly services: readonly string[];
}

export type ChangeListener = (event: ChangeEvent) => void;

/** One service as pushed (`ServiceSnapshot` on the wire). */
export interface ServiceSnapshot {
  readonly name: string;
  /** JSON of the policy in the shape of `services.NAME` in sidecar.yaml, endpoints included. */
  readonly policyJson: string;
}

export interface RegistrySnapshot {
  readonly version: number;
  readonly services: readonly ServiceSnapshot[];
}

/** serving: in snapshots; draining: deregistered, removed at the end of the drain time; drained: by an operator. */
export type EndpointState = 'serving' | 'draining' | 'drained';

export interface InstanceView extends RegisteredInstance {
  readonly state: EndpointState;
  /** Wall-clock ms. */
  readonly registeredAt: number;
  /** Wall-clock ms of the last registration or heartbeat. */
  readonly lastHeartbeatAt: number;
  /** Wall-clock ms at which the instance is removed: TTL expiry without further heartbeats, or end of drain. */
  readonly removeAt: number;
}

export interface EndpointView {
  readonly address: string;
  /** Effective: pinned, else computed, else registered/declared. */
  readonly weight: number;
  readonly capacity: number;
  /** Effective: computed, else declared (static) or 1. */
  readonly cost: number;
  readonly zone?: string | undefined;
  /** Reached over mutual TLS (a registered sidecar whose inbound takes it, or a static `mesh: true`). */
  readonly mesh?: true | undefined;
  readonly source: 'static' | 'registered';
  /** The registered instance's id. */
  readonly instance?: string | undefined;
  readonly state: EndpointState;
  readonly pinnedWeight?: number | undefined;
  readonly computed?: ComputedOverride | undefined;
}

export interface ServiceView {
  readonly name: string;
  /** cp.yaml, set at run time (wins over cp.yaml), or none (known by registration: the default policy). */
  readonly policySource: 'config' | 'runtime' | 'default';
  /** The policy as written; its `endpoints` are the static ones. */
  readonly policy: Readonly<Record<string, unknown>>;
  /** Every endpoint, also those kept out of snapshots (state ≠ serving). */
  readonly endpoints: readonly EndpointView[];
}

interface Instance {
  readonly data: RegisteredInstance;
  state: 'serving' | 'draining';
  readonly registeredAtWall: number;
  lastSeen: number; // monotonic
  lastSeenWall: number;
  /** Monotonic end of the drain while draining. */
  drainEndsAt: number;
  timer: TimerHandle;
  /** Shared mode: registered by another replica (no TTL here: that replica's lease and heartbeats keep it). */
  remote: boolean;
}

interface EndpointBase {
  readonly address: string;
  readonly weight: number;
  readonly capacity: number;
  readonly cost: number;
  readonly zone?: string | undefined;
  readonly mesh?: true | undefined;
}

const DEFAULT_POLICY: Readonly<Record<string, unknown>> = Object.freeze({});
const MAX_WEIGHT = 1000;

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export class Registry {
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly store: StateStore | undefined;
  private readonly saveRetryMs: number;
  private readonly onError: (err: unknown, context: string) => void;
  private readonly policyRules: PolicyRules;
  private readonly shared: RegistryOptions['shared'];
  readonly instanceTtlMs: number;
  readonly drainTimeMs: number;

  private currentVersion = 1;
  private readonly fileServices: ReadonlyMap<string, ServicePolicy>;
  private readonly runtimePolicies = new Map<string, ServicePolicy>();
  /** Services that had registrations: they stay known (default policy, maybe no endpoints) for the process's life. */
  private readonly registeredServices = new Set<string>();
  private readonly byId = new Map<string, Instance>();
  private readonly byService = new Map<string, Map<string, Instance>>();
  private readonly pinned = new Map<string, Map<string, number>>();
  private readonly computed = new Map<string, Map<string, ComputedOverride>>();
  private readonly drained = new Set<string>();
  private readonly jsonCache = new Map<string, string>();
  private readonly listeners = new Set<ChangeListener>();

  private dirty = false;
  private saveQueued = false;
  private saveRunning = false;
  private saveDone: Promise<void> = Promise.resolve();
  private lastSaveError: unknown = undefined;
  private retryTimer: TimerHandle | undefined;
  private closed = false;

  constructor(options: RegistryOptions) {
    if (!(options.instanceTtlMs > 0)) throw new RangeError(`instanceTtlMs: expected a duration > 0, got ${options.instanceTtlMs}`);
    if (!(options.drainTimeMs >= 0)) throw new RangeError(`drainTimeMs: expected a duration >= 0, got ${options.drainTimeMs}`);
    this.clock = options.clock;
    this.timers = options.timers;
    this.store = options.store;
    this.instanceTtlMs = options.instanceTtlMs;
    this.drainTimeMs = options.drainTimeMs;
    this.saveRetryMs = options.saveRetryMs ?? 1_000;
    this.onError = options.onError ?? ((err, context) => process.emitWarning(`${context}: ${err instanceof Error ? err.message : String(err)}`, 'OutriggerRegistry'));
    this.fileServices = new Map(Object.entries(options.services ?? {}));
    this.policyRules = options.policyRules ?? DEFAULT_POLICY_RULES;
    this.shared = options.shared;
  }

  /** Strictly increasing; bumped by every change. */
  get version(): number {
    return this.currentVersion;
  }

  // -------------------------------------------------------------------------------------------------------
  // Change notification

  /** Calls `listener` synchronously after every change; returns a function that unsubscribes it. */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // -------------------------------------------------------------------------------------------------------
  // Policies

  /**
   * Sets the policy of `service` at run time (wins over cp.yaml's, also after a restart). `input` is in the
   * shape of `services.NAME`; without an `endpoints` key, the static endpoints declared in cp.yaml stay.
   * @returns false when the policy was already exactly this.
   * @throws ConfigError naming the key path (`services.orders: retry.attempts: expected integer 0..10, got
   *   "three"`), or the service name's problem; the previous policy stays in force.
   */
  setPolicy(service: string, input: unknown): boolean {
    const policy = this.checkPolicy(service, input);
    const current = this.runtimePolicies.get(service);
    if (current !== undefined && JSON.stringify(current.input) === JSON.stringify(policy.input)) return false;
    this.runtimePolicies.set(service, policy);
    this.commit('policy', [service]);
    return true;
  }

  /**
   * Applies a JSON merge patch (RFC 7386: objects merge, `null` deletes a key, arrays and other values
   * replace) to the policy in force (run-time, else cp.yaml's, else `{}`) and sets the result as the run-time
   * policy, validated as setPolicy validates.
   * @returns false when the result is the policy in force already (nothing is set).
   * @throws ConfigError as setPolicy; the previous policy stays in force.
   */
  patchPolicy(service: string, patch: unknown): boolean {
    const next = this.patchedPolicy(service, patch);
    if (!this.runtimePolicies.has(service) && JSON.stringify(next) === JSON.stringify(this.policyInput(service))) return false;
    return this.setPolicy(service, next);
  }

  /** What patchPolicy would make of the policy in force with `patch`, unvalidated; nothing changes. */
  patchedPolicy(service: string, patch: unknown): unknown {
    return mergePatch(this.policyInput(service), patch);
  }

  /**
   * Validates `input` as the policy of `service` as setPolicy would, without setting it (a dry run).
   * @returns the policy as it would be stored.
   * @throws ConfigError as setPolicy.
   */
  checkPolicy(service: string, input: unknown): ServicePolicy {
    const problem = serviceNameProblem(service);
    if (problem !== undefined) throw new ConfigError('service name', [problem]);
    return parsePolicy(input, `services.${service}`, this.policyRules);
  }

  /**
   * The policy in force as written (run-time, else cp.yaml's, else `{}` for a service known by registration
   * only), or undefined when the service is unknown; `fallback` skips the run-time one (what clearPolicy leaves).
   */
  policyOf(service: string, fallback = false): Readonly<Record<string, unknown>> | undefined {
    if (!this.isKnown(service)) return undefined;
    return (fallback ? undefined : this.runtimePolicies.get(service)?.input) ?? this.fileServices.get(service)?.input ?? DEFAULT_POLICY;
  }

  /** Where the policy in force comes from. */
  policySource(service: string): ServiceView['policySource'] {
    return this.runtimePolicies.has(service) ? 'runtime' : this.fileServices.has(service) ? 'config' : 'default';
  }

  /** Drops the run-time policy of `service`: cp.yaml's applies again (or the default). */
  clearPolicy(service: string): boolean {
    if (!this.runtimePolicies.delete(service)) return false;
    this.commit('policy', [service]);
    return true;
  }

  // -------------------------------------------------------------------------------------------------------
  // Instances

  /**
   * Registers (or re-registers) an instance with a fresh TTL. A registration with the id of a known instance
   * replaces it (also one that is draining); another instance of the same service at the same address is
   * superseded and removed.
   * @throws ConfigError naming the field (`registration of catalog-1: weight: expected integer 1..1000, got 0`).
   */
  register(input: InstanceInput): RegisteredInstance {
    const id = (input as { id?: unknown } | null | undefined)?.id;
    const data = validate(instanceSchema, input, typeof id === 'string' && id !== '' ? `registration of ${id}` : 'registration');
    const now = this.clock.now();
    const existing = this.byId.get(data.id);
    if (existing !== undefined && existing.state === 'serving' && sameInstance(existing.data, data)) {
      existing.lastSeen = now;
      existing.lastSeenWall = this.clock.wallNow();
      if (existing.remote) {
        // Its sidecar moved here from another replica: this replica holds it now (its TTL, its lease).
        existing.remote = false;
        this.armTtl(existing, this.instanceTtlMs);
        this.shared?.onLocalChange();
      }
      return existing.data;
    }
    const affected = new Set([data.service]);
    if (existing !== undefined) {
      this.drop(existing);
      affected.add(existing.data.service);
    }
    for (const other of [...(this.byService.get(data.service)?.values() ?? [])]) {
      if (other.data.address === data.address) this.drop(other);
    }
    this.add(data);
    this.commit('register', affected);
    return data;
  }

  /** The registered instance with this id (serving or draining), if any. */
  registered(id: string): RegisteredInstance | undefined {
    return this.byId.get(id)?.data;
  }

  /**
   * Keeps a registered instance alive for another TTL.
   * @returns false when the id is unknown (expired or never registered): the caller registers it again.
   */
  heartbeat(id: string): boolean {
    const inst = this.byId.get(id);
    if (inst === undefined) return false;
    if (inst.state === 'serving') {
      inst.lastSeen = this.clock.now();
      inst.lastSeenWall = this.clock.wallNow();
    }
    return true;
  }

  /**
   * Starts draining an instance: out of snapshots at once (sidecars stop sending it new requests, requests in
   * flight finish), removed after the drain time whatever its heartbeats do.
   * @returns false when the id is unknown.
   */
  deregister(id: string): boolean {
    const inst = this.byId.get(id);
    if (inst === undefined) return false;
    if (inst.state === 'draining') return true;
    inst.timer.cancel();
    if (this.drainTimeMs === 0) {
      this.drop(inst);
      this.commit('remove', [inst.data.service]);
      return true;
    }
    inst.state = 'draining';
    inst.drainEndsAt = this.clock.now() + this.drainTimeMs;
    inst.timer = this.timers.after(this.drainTimeMs, () => {
      if (this.byId.get(inst.data.id) !== inst) return;
      this.drop(inst);
      this.commit('remove', [inst.data.service]);
    });
    this.commit('deregister', [inst.data.service]);
    return true;
  }

  // -------------------------------------------------------------------------------------------------------
  // Operator drains and weights

  /**
   * Keeps every endpoint at `address` (static or registered, in any service) out of snapshots until
   * `undrain`; registered instances stay registered. Survives restarts.
   * @returns false when it was drained already.
   * @throws RangeError when `address` is not host:port.
   */
  drain(address: string): boolean {
    checkAddress(address);
    if (this.drained.has(address)) return false;
    this.drained.add(address);
    this.commit('drain', this.servicesWithAddress(address));
    return true;
  }

  /** Ends an operator drain; false when `address` was not drained. */
  undrain(address: string): boolean {
    if (!this.drained.delete(address)) return false;
    this.commit('undrain', this.servicesWithAddress(address));
    return true;
  }

  /**
   * Pins the weight of the endpoint at `address` in `service` (it need not exist yet); wins over computed
   * and registered weights. Survives restarts.
   * @throws RangeError unless `weight` is an integer 1..1000, `service` a service name and `address` host:port.
   */
  setWeight(service: string, address: string, weight: number): boolean {
    const problem = serviceNameProblem(service);
    if (problem !== undefined) throw new RangeError(problem);
    checkAddress(address);
    if (!Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      throw new RangeError(`weight of ${service} ${address}: expected integer 1..${MAX_WEIGHT}, got ${JSON.stringify(weight) ?? String(weight)}`);
    }
    const weights = this.pinned.get(service) ?? new Map<string, number>();
    if (weights.get(address) === weight) return false;
    weights.set(address, weight);
    this.pinned.set(service, weights);
    this.commit('weight', [service]);
    return true;
  }

  /** Unpins a weight; false when none was pinned. */
  clearWeight(service: string, address: string): boolean {
    const weights = this.pinned.get(service);
    if (weights?.delete(address) !== true) return false;
    if (weights.size === 0) this.pinned.delete(service);
    this.commit('weight', [service]);
    return true;
  }

  /**
   * Sets the cost and/or weight derived from load reports for one endpoint (replacing what was computed
   * before; `{}` clears). Dropped when the instance is removed; not persisted. A pinned weight wins.
   * @returns false when nothing changed.
   * @throws RangeError when cost is not a finite number > 0 or weight not a finite number > 0.
   */
  setComputed(service: string, address: string, override: ComputedOverride): boolean {
    const { cost, weight } = override;
    if (cost !== undefined && !(Number.isFinite(cost) && cost > 0)) throw new RangeError(`computed cost of ${service} ${address}: expected a number > 0, got ${cost}`);
    if (weight !== undefined && !(Number.isFinite(weight) && weight > 0)) throw new RangeError(`computed weight of ${service} ${address}: expected a number > 0, got ${weight}`);
    const next: ComputedOverride = {
      ...(cost !== undefined ? { cost } : {}),
      ...(weight !== undefined ? { weight: Math.min(MAX_WEIGHT, Math.max(1, Math.round(weight))) } : {}),
    };
    const map = this.computed.get(service) ?? new Map<string, ComputedOverride>();
    const prev = map.get(address);
    const unchanged = prev === undefined ? next.cost === undefined && next.weight === undefined : prev.cost === next.cost && prev.weight === next.weight;
    if (unchanged) return false;
    if (next.cost === undefined && next.weight === undefined) map.delete(address);
    else map.set(address, next);
    if (map.size === 0) this.computed.delete(service);
    else this.computed.set(service, map);
    this.commit('computed', [service]);
    return true;
  }

  /** Drops computed overrides of one endpoint, or of every endpoint of `service`. */
  clearComputed(service: string, address?: string): boolean {
    const map = this.computed.get(service);
    if (map === undefined) return false;
    if (address !== undefined) {
      if (!map.delete(address)) return false;
      if (map.size === 0) this.computed.delete(service);
    } else {
      this.computed.delete(service);
    }
    this.commit('computed', [service]);
    return true;
  }

  // -------------------------------------------------------------------------------------------------------
  // Versions

  /**
   * Makes the version greater than `seen` (a version a sidecar reports in Hello, which may come from before a
   * restart that lost the last saves), so no sidecar ever sees versions go backwards. No listener is called
   * and nothing is saved: the number is saved with the next change, which the control plane makes itself.
   * @throws RangeError unless `seen` is an integer 0..MAX_VERSION (the caller validates what clients send).
   */
  advanceVersion(seen: number): void {
    if (!Number.isSafeInteger(seen) || seen < 0 || seen > MAX_VERSION) throw new RangeError(`version: expected an integer 0..${MAX_VERSION}, got ${seen}`);
    // Shared: the version is the shared store's (the same on every replica); a new stream gets a full snapshot anyway.
    if (this.shared !== undefined || this.currentVersion > seen) return;
    this.currentVersion = seen + 1;
  }

  // -------------------------------------------------------------------------------------------------------
  // Reading

  /**
   * The given services (default: every known one), sorted by name, as the sidecar's `services.NAME` JSON:
   * the policy, with `endpoints` = static endpoints and registered instances that are serving. Names the
   * registry does not know are left out (the sidecar keeps its own static config for them). A service known
   * only by registration gets the default policy `{}` plus its instances.
   */
  snapshot(services?: readonly string[]): RegistrySnapshot {
    const names = services === undefined ? this.knownServices() : [...new Set(services)].filter((n) => this.isKnown(n)).sort(byString);
    return { version: this.currentVersion, services: names.map((name) => ({ name, policyJson: this.policyJson(name) })) };
  }

  /** Every known service with its policy and all endpoints, for the admin API. */
  services(): ServiceView[] {
    return this.knownServices().map((name): ServiceView => {
      const runtime = this.runtimePolicies.get(name);
      const file = this.fileServices.get(name);
      return {
        name,
        policySource: runtime !== undefined ? 'runtime' : file !== undefined ? 'config' : 'default',
        policy: runtime?.input ?? file?.input ?? DEFAULT_POLICY,
        endpoints: this.endpointViews(name),
      };
    });
  }

  /** Registered instances of `service` (default: all), sorted by id. */
  instances(service?: string): InstanceView[] {
    const list = service === undefined ? [...this.byId.values()] : [...(this.byService.get(service)?.values() ?? [])];
    const now = this.clock.now();
    const wall = this.clock.wallNow();
    return list
      .sort((a, b) => byString(a.data.id, b.data.id))
      .map(
        (i): InstanceView => ({
          ...i.data,
          state: i.state === 'draining' ? 'draining' : this.drained.has(i.data.address) ? 'drained' : 'serving',
          registeredAt: i.registeredAtWall,
          lastHeartbeatAt: i.lastSeenWall,
          // Registered through another replica: its TTL runs there (and its lease here), so one TTL from now at most.
          removeAt: wall + (i.remote ? this.instanceTtlMs : (i.state === 'draining' ? i.drainEndsAt : i.lastSeen + this.instanceTtlMs) - now),
        }),
      );
  }

  // -------------------------------------------------------------------------------------------------------
  // Shared state (replicated control plane)

  /** What this replica holds of the shared state, for the replication layer to write what differs. */
  sharedState(): SharedState {
    const p = this.persistedState();
    const computed: Record<string, Record<string, ComputedOverride>> = {};
    for (const [service, map] of [...this.computed].sort(([a], [b]) => byString(a, b))) computed[service] = Object.fromEntries([...map].sort(([a], [b]) => byString(a, b)));
    return {
      policies: p.policies,
      weights: p.weights,
      drained: p.drained ?? [],
      instances: p.instances.map((i) => ({ ...i, owned: this.byId.get(i.id)?.remote === false })),
      computed,
    };
  }

  /**
   * Applies changes read from the shared store at `version` (its revision: the version is the store's
   * revision this replica has seen, the same state on every replica at the same version), then tells the
   * listeners which services changed (none: no notification, only the version moves).
   * `reset`: `changes` is the whole shared state (a fresh listing): what it does not mention is dropped,
   * except instances registered through this replica, which the replication layer writes again.
   * Instances registered here stay here when the store drops them (their lease lapsed): they are written
   * again; one written by another replica (`mine` false) is that replica's from now on.
   */
  applyShared(changes: readonly SharedChange[], version: number, reset = false): void {
    if (!reset && changes.length === 0) {
      this.currentVersion = Math.max(this.currentVersion, version);
      return;
    }
    // A fresh listing may change any service: each one's JSON is compared before and after. Otherwise only
    // the services the changes name are touched (an instance's old and new service, the services of a
    // drained address): with thousands of services (each sidecar registering its own), comparing them all
    // on every watch response was quadratic in the fleet and starved the replica's etcd keepalives.
    const named = reset ? [] : this.servicesNamed(changes);
    const before = reset ? new Map(this.knownServices().map((s) => [s, this.policyJson(s)])) : undefined;
    if (reset) {
      this.runtimePolicies.clear();
      this.pinned.clear();
      this.drained.clear();
      this.computed.clear();
      const listed = new Set(changes.flatMap((c) => (c.kind === 'instance' && c.instance !== undefined ? [c.id] : [])));
      for (const inst of [...this.byId.values()]) if (inst.remote && !listed.has(inst.data.id)) this.drop(inst);
    }
    for (const c of changes) {
      switch (c.kind) {
        case 'policy':
          if (c.input === undefined) this.runtimePolicies.delete(c.service);
          else {
            try {
              this.runtimePolicies.set(c.service, parsePolicy(c.input, `shared policy of ${c.service}`, this.policyRules));
            } catch (err) {
              this.runtimePolicies.delete(c.service);
              this.onError(err, `applying the shared policy of ${c.service} (skipped; cp.yaml's or the default applies)`);
            }
          }
          break;
        case 'weights':
          if (c.weights === undefined || Object.keys(c.weights).length === 0) this.pinned.delete(c.service);
          else this.pinned.set(c.service, new Map(Object.entries(c.weights)));
          break;
        case 'drained':
          if (c.drained) this.drained.add(c.address);
          else this.drained.delete(c.address);
          break;
        case 'computed':
          if (c.computed === undefined || Object.keys(c.computed).length === 0) this.computed.delete(c.service);
          else this.computed.set(c.service, new Map(Object.entries(c.computed)));
          break;
        case 'instance':
          this.applySharedInstance(c.id, c.instance, c.mine);
          break;
      }
    }
    this.currentVersion = Math.max(this.currentVersion, version);
    let changed: string[];
    if (before !== undefined) {
      this.jsonCache.clear();
      changed = this.knownServices().filter((s) => before.get(s) !== this.policyJson(s));
    } else {
      changed = [];
    }
    // Every service named by a change is pushed at the new version, also when this replica held it already
    // (its own change coming back, also inside a fresh listing: it was applied here but not pushed yet).
    for (const s of [...named, ...this.servicesNamed(changes)]) {
      this.jsonCache.delete(s);
      changed.push(s);
    }
    const services = [...new Set(changed)].filter((s) => this.isKnown(s));
    // A revision that changed no service (another key of the store) only moves the version.
    if (reset || services.length > 0) this.notify(reset ? 'restore' : 'sync', services);
  }

  /** The services `changes` touch as the registry stands now (an instance: its service here and in the change). */
  private servicesNamed(changes: readonly SharedChange[]): string[] {
    const out: string[] = [];
    for (const c of changes) {
      if (c.kind === 'policy' || c.kind === 'weights' || c.kind === 'computed') out.push(c.service);
      else if (c.kind === 'instance') {
        const here = this.byId.get(c.id)?.data.service;
        if (here !== undefined) out.push(here);
        if (c.instance !== undefined) out.push(c.instance.service);
      } else out.push(...this.servicesWithAddress(c.address));
    }
    return out;
  }

  private applySharedInstance(id: string, data: RegisteredInstance | undefined, mine: boolean): void {
    const existing = this.byId.get(id);
    if (data === undefined) {
      // Deleted: a remote one goes; one this replica holds is written again (its sidecar is still here).
      if (existing !== undefined && existing.remote) this.drop(existing);
      else if (existing !== undefined && existing.state === 'serving') this.shared?.onLocalChange();
      return;
    }
    if (existing !== undefined && existing.state === 'serving' && sameInstance(existing.data, data)) {
      if (!mine && !existing.remote) {
        existing.remote = true; // its sidecar moved to another replica
        existing.timer.cancel();
      }
      return;
    }
    if (mine) {
      // Written by this replica, which no longer holds it (deregistered, expired): the key is deleted.
      if (existing?.state !== 'serving') this.shared?.onLocalChange();
      return; // else an older write of ours; the newer one follows
    }
    if (existing !== undefined) this.drop(existing);
    for (const other of [...(this.byService.get(data.service)?.values() ?? [])]) if (other.data.address === data.address && other.remote) this.drop(other);
    this.add(Object.freeze({ ...data }), true);
  }

  // -------------------------------------------------------------------------------------------------------
  // Persistence and lifecycle

  /**
   * Loads the saved state: run-time policies, pinned weights, operator drains and registrations (each with
   * a fresh TTL, so live sidecars can heartbeat again). Call once at start, before serving. Continues the
   * version above the saved one. A saved policy that no longer validates is skipped and reported (onError).
   * @returns false when there is no store or nothing was saved.
   * @throws StoreError when the store is unreadable or damaged.
   */
  async restore(): Promise<boolean> {
    if (this.store === undefined) return false;
    const loaded = await this.store.load();
    if (loaded === undefined) return false;
    const state = this.store instanceof FileStore ? loaded : parsePersistedState(loaded, 'state store');
    for (const [name, input] of Object.entries(state.policies)) {
      try {
        this.runtimePolicies.set(name, parsePolicy(input, `saved policy of ${name}`, this.policyRules));
      } catch (err) {
        this.onError(err, `restoring the policy of ${name} (skipped; cp.yaml's or the default applies)`);
      }
    }
    for (const [service, weights] of Object.entries(state.weights)) {
      const map = this.pinned.get(service) ?? new Map<string, number>();
      for (const [address, weight] of Object.entries(weights)) map.set(address, weight);
      if (map.size > 0) this.pinned.set(service, map);
    }
    for (const address of state.drained ?? []) this.drained.add(address);
    for (const inst of state.instances) {
      if (this.byId.has(inst.id)) continue; // registered again already: the live registration wins
      if ([...(this.byService.get(inst.service)?.values() ?? [])].some((o) => o.data.address === inst.address)) continue;
      this.add(Object.freeze({ ...inst }));
    }
    this.currentVersion = Math.max(this.currentVersion, state.version);
    this.jsonCache.clear();
    this.commit('restore', this.knownServices());
    return true;
  }

  /**
   * Resolves once the current state is saved. Waits for a save in flight, then saves once more if anything
   * is unsaved (also right after a failed save instead of waiting for the retry).
   * @throws the store's error when that save fails.
   */
  async flush(): Promise<void> {
    if (this.shared !== undefined) return this.shared.flush();
    if (this.store === undefined) return;
    let attempted = false;
    for (;;) {
      if (this.saveRunning) {
        await this.saveDone;
        continue;
      }
      if (!this.dirty) return;
      if (attempted && this.lastSaveError !== undefined) throw this.lastSaveError;
      this.retryTimer?.cancel();
      this.retryTimer = undefined;
      attempted = true;
      this.startSaving();
    }
  }

  /** Stops every timer (TTLs, drains, save retries) and saves what is unsaved. Do not use the registry after. */
  async close(): Promise<void> {
    this.closed = true;
    for (const inst of this.byId.values()) inst.timer.cancel();
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.listeners.clear();
    // Shared: the replication layer writes what is pending until it closes.
    if (this.shared === undefined) await this.flush();
  }

  // -------------------------------------------------------------------------------------------------------
  // Internals

  private add(data: RegisteredInstance, remote = false): void {
    const now = this.clock.now();
    const wall = this.clock.wallNow();
    const inst: Instance = { data, state: 'serving', registeredAtWall: wall, lastSeen: now, lastSeenWall: wall, drainEndsAt: 0, timer: NO_TIMER, remote };
    this.byId.set(data.id, inst);
    let map = this.byService.get(data.service);
    if (map === undefined) this.byService.set(data.service, (map = new Map()));
    map.set(data.id, inst);
    this.registeredServices.add(data.service);
    if (!remote) this.armTtl(inst, this.instanceTtlMs);
  }

  private armTtl(inst: Instance, ms: number): void {
    if (this.closed) return;
    inst.timer = this.timers.after(ms, () => {
      if (this.byId.get(inst.data.id) !== inst || inst.state !== 'serving' || inst.remote) return;
      const left = inst.lastSeen + this.instanceTtlMs - this.clock.now();
      if (left > 0) {
        this.armTtl(inst, left);
        return;
      }
      this.drop(inst);
      this.commit('expire', [inst.data.service]);
    });
  }

  /** Removes an instance and what was computed for its address. */
  private drop(inst: Instance): void {
    inst.timer.cancel();
    this.byId.delete(inst.data.id);
    const map = this.byService.get(inst.data.service);
    map?.delete(inst.data.id);
    if (map?.size === 0) this.byService.delete(inst.data.service);
    const computed = this.computed.get(inst.data.service);
    computed?.delete(inst.data.address);
    if (computed?.size === 0) this.computed.delete(inst.data.service);
  }

  private commit(reason: ChangeReason, services: Iterable<string>): void {
    if (this.shared !== undefined) {
      // Versioned and pushed when the shared store hands the change back (applyShared).
      this.shared.onLocalChange();
      return;
    }
    this.currentVersion++;
    this.notify(reason, services);
  }

  private notify(reason: ChangeReason, services: Iterable<string>): void {
    const changed = [...new Set(services)].sort(byString);
    for (const s of changed) this.jsonCache.delete(s);
    this.persist();
    const event: ChangeEvent = { version: this.currentVersion, reason, services: changed };
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.onError(err, `change listener (version ${event.version})`);
      }
    }
  }

  private persist(): void {
    if (this.store === undefined) return;
    this.dirty = true;
    if (this.saveRunning || this.saveQueued || this.retryTimer !== undefined) return;
    // Coalesce the changes of one synchronous burst into one save.
    this.saveQueued = true;
    queueMicrotask(() => {
      this.saveQueued = false;
      this.startSaving();
    });
  }

  private startSaving(): void {
    const store = this.store;
    if (store === undefined || this.saveRunning || !this.dirty) return;
    this.saveRunning = true;
    this.saveDone = this.saveLoop(store);
  }

  /** Saves until nothing is unsaved; one save at a time, each of the newest state. Never rejects. */
  private async saveLoop(store: StateStore): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        try {
          await store.save(this.persistedState());
          this.lastSaveError = undefined;
        } catch (err) {
          this.dirty = true;
          this.lastSaveError = err;
          this.onError(err, `saving the control plane state (retrying in ${this.saveRetryMs} ms)`);
          if (!this.closed) {
            this.retryTimer = this.timers.after(this.saveRetryMs, () => {
              this.retryTimer = undefined;
              this.startSaving();
            });
          }
          return;
        }
      }
    } finally {
      this.saveRunning = false;
    }
  }

  private persistedState(): PersistedState {
    const weights: Record<string, Record<string, number>> = {};
    for (const [service, map] of [...this.pinned].sort(([a], [b]) => byString(a, b))) {
      weights[service] = Object.fromEntries([...map].sort(([a], [b]) => byString(a, b)));
    }
    return {
      version: this.currentVersion,
      policies: Object.fromEntries([...this.runtimePolicies].sort(([a], [b]) => byString(a, b)).map(([name, p]) => [name, p.input])),
      weights,
      instances: [...this.byId.values()]
        .filter((i) => i.state === 'serving')
        .map((i) => i.data)
        .sort((a, b) => byString(a.id, b.id)),
      drained: [...this.drained].sort(byString),
    };
  }

  private isKnown(service: string): boolean {
    return this.fileServices.has(service) || this.runtimePolicies.has(service) || this.registeredServices.has(service);
  }

  private knownServices(): string[] {
    return [...new Set([...this.fileServices.keys(), ...this.runtimePolicies.keys(), ...this.registeredServices])].sort(byString);
  }

  private servicesWithAddress(address: string): string[] {
    return this.knownServices().filter((s) => this.endpointViews(s).some((e) => e.address === address));
  }

  private policyInput(service: string): Readonly<Record<string, unknown>> {
    return this.runtimePolicies.get(service)?.input ?? this.fileServices.get(service)?.input ?? DEFAULT_POLICY;
  }

  /** Static endpoints: the effective policy's; a run-time policy without `endpoints` keeps cp.yaml's. */
  private staticEndpoints(service: string): readonly EndpointConfig[] {
    const runtime = this.runtimePolicies.get(service);
    if (runtime !== undefined && 'endpoints' in runtime.input) return runtime.config.endpoints;
    return this.fileServices.get(service)?.config.endpoints ?? [];
  }

  /**
   * All endpoints of a service: static ones in declared order (except those whose address a registered
   * instance holds: the live registration wins), then registered instances by address.
   */
  private endpointViews(service: string): EndpointView[] {
    const instances = [...(this.byService.get(service)?.values() ?? [])].sort((a, b) => byString(a.data.address, b.data.address));
    const registered = new Set(instances.map((i) => i.data.address));
    const out: EndpointView[] = [];
    for (const e of this.staticEndpoints(service)) {
      if (registered.has(e.address)) continue;
      out.push(this.endpointView(service, e, 'static', undefined, this.drained.has(e.address) ? 'drained' : 'serving'));
    }
    for (const i of instances) {
      const base: EndpointBase = { address: i.data.address, weight: i.data.weight, capacity: i.data.capacity, cost: 1, zone: i.data.zone, mesh: i.data.mesh };
      const state: EndpointState = i.state === 'draining' ? 'draining' : this.drained.has(i.data.address) ? 'drained' : 'serving';
      out.push(this.endpointView(service, base, 'registered', i.data.id, state));
    }
    return out;
  }

  private endpointView(service: string, base: EndpointBase, source: EndpointView['source'], instance: string | undefined, state: EndpointState): EndpointView {
    const pinnedWeight = this.pinned.get(service)?.get(base.address);
    const computed = this.computed.get(service)?.get(base.address);
    return {
      address: base.address,
      weight: pinnedWeight ?? computed?.weight ?? base.weight,
      capacity: base.capacity,
      cost: computed?.cost ?? base.cost,
      zone: base.zone,
      ...(base.mesh === true ? { mesh: true as const } : {}),
      source,
      instance,
      state,
      pinnedWeight,
      computed,
    };
  }

  private policyJson(service: string): string {
    const cached = this.jsonCache.get(service);
    if (cached !== undefined) return cached;
    const endpoints = this.endpointViews(service)
      .filter((e) => e.state === 'serving')
      .map((e) => ({ address: e.address, weight: e.weight, capacity: e.capacity, cost: e.cost, ...(e.zone !== undefined ? { zone: e.zone } : {}), ...(e.mesh === true ? { mesh: true } : {}) }));
    const json = JSON.stringify({ ...this.policyInput(service), endpoints });
    this.jsonCache.set(service, json);
    return json;
  }
}

const NO_TIMER: TimerHandle = { cancel: () => undefined };

function sameInstance(a: RegisteredInstance, b: RegisteredInstance): boolean {
  return a.service === b.service && a.id === b.id && a.address === b.address && a.weight === b.weight && a.capacity === b.capacity && a.zone === b.zone;
}

/** Why `service` is not a service name ("expected ..., got ..."), or undefined when it is one. */
function serviceNameProblem(service: string): string | undefined {
  const r = serviceNameSchema.safeParse(service);
  return r.success ? undefined : `${r.error.issues[0]?.message ?? 'expected a service name'}, got ${JSON.stringify(service) ?? String(service)}`;
}

/** @throws RangeError unless `address` is host:port with port 1..65535. */
function checkAddress(address: string): void {
  const r = checkHostPort(address, false);
  if ('problem' in r) throw new RangeError(`${r.problem}, got ${JSON.stringify(address) ?? String(address)}`);
}

/**
 * A change made here was not written because the same key was changed through another replica since (the
 * newer change stands; `keys` are the shared-store keys, e.g. `policies/inventory`).
 */
export class ConflictError extends Error {
  constructor(readonly keys: readonly string[]) {
    super(`changed through another control-plane replica meanwhile (${keys.join(', ')}); that change stands and this one was not taken`);
  }
}
