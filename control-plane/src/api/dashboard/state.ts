/**
 * The dashboard's data: one JSON document (`GET /api/dashboard`, and every event of
 * `GET /api/dashboard/events`) built by a pure function from what the control plane already holds — the
 * registry's services and instances, the connected sidecars with their latest load reports, and the
 * autoscaler's views. No clock is read here: the caller passes the times.
 */
import type { AutoscaleView } from '../../autoscale/types.js';
import type { SubscriberView } from '../../push/server.js';
import type { EndpointState, InstanceView, ServiceView } from '../../registry/registry.js';

export type CircuitState = 'closed' | 'half-open' | 'open';

/** How bad a breaker state is: the dashboard shows the worst any caller reports. */
const CIRCUIT_RANK: Readonly<Record<CircuitState, number>> = { closed: 0, 'half-open': 1, open: 2 };

/** One endpoint of a service: what the control plane knows, what it reports itself, how its callers see it. */
export interface DashboardInstance {
  /** The registered instance's id; null for a static endpoint from cp.yaml. */
  readonly id: string | null;
  readonly address: string;
  readonly zone: string | null;
  readonly source: 'static' | 'registered';
  /** serving | draining (deregistered) | drained (by an operator). */
  readonly state: EndpointState;
  /** Effective weight, and where it comes from: pinned by an operator, computed from load, or configured. */
  readonly weight: number;
  readonly weightSource: 'pinned' | 'computed' | 'configured';
  readonly cost: number;
  readonly capacity: number;
  /** A sidecar with this address has a live stream to the control plane. */
  readonly connected: boolean;
  /** The instance's own sidecar sent a load report recently (within `staleAfterMs`). */
  readonly reporting: boolean;
  /** From the instance's own latest fresh load report (inbound side); null without one. */
  readonly rps: number | null;
  readonly inflight: number | null;
  /** Mean latency over the report interval, ms. */
  readonly latencyMs: number | null;
  readonly p99Ms: number | null;
  /** 0..1 */
  readonly errorRate: number | null;
  /** 0..1 of one core. */
  readonly cpu: number | null;
  /**
   * The callers' view, over every other sidecar's fresh report on this service+address: false when ANY of
   * them holds it ineligible, true when all that report it hold it eligible, null when none reports it.
   */
  readonly eligible: boolean | null;
  /** Union of the health flags the callers set on it ("active-check", "outlier", "breaker", "control-plane"). */
  readonly health: readonly string[];
  /** Sidecars whose fresh report lists this endpoint (its callers, and its peers, which hold their own service). */
  readonly callers: number;
  /** Sum of the callers' requests in flight to it now. */
  readonly callerInflight: number;
  /**
   * Worst per-endpoint breaker state any caller reports (open > half-open > closed); null when none has one.
   * The service's own instances' sidecars count only if they subscribed to it (otherwise they never call it).
   */
  readonly circuit: CircuitState | null;
}

/** A service-level breaker (one per calling sidecar; the service's own instances only if they subscribed to it). */
export interface DashboardCircuit {
  /** Instance id of the sidecar that reported it (null when the sidecar registered no instance). */
  readonly reporter: string | null;
  readonly state: CircuitState;
}

export interface DashboardTotals {
  /** Sum of the instances' inbound requests/s. */
  readonly rps: number;
  /** Request-weighted mean of the instances' error rates, 0..1. */
  readonly errorRate: number;
  /** The highest p99 of any instance over its last interval, ms (an upper bound of the service's p99). */
  readonly p99Ms: number;
  readonly instances: number;
  /** Instances in state serving. */
  readonly serving: number;
  /** Instances no caller holds ineligible (eligible !== false). */
  readonly eligible: number;
}

export interface DashboardService {
  readonly name: string;
  /** The load-balancing policy as written, or the default (round-robin). */
  readonly lb: string;
  readonly policySource: ServiceView['policySource'];
  readonly totals: DashboardTotals;
  readonly instances: readonly DashboardInstance[];
  readonly circuits: readonly DashboardCircuit[];
  readonly autoscale: AutoscaleView | null;
}

export interface DashboardState {
  /** The control plane's software version. */
  readonly version: string;
  /** The registry's state version. */
  readonly stateVersion: number;
  /** Wall-clock ms when this state was built. */
  readonly generatedAt: number;
  /** Load reports older than this are ignored. */
  readonly staleAfterMs: number;
  readonly sidecars: { readonly connected: number; readonly reporting: number };
  readonly services: readonly DashboardService[];
}

export interface DashboardInputs {
  readonly version: string;
  readonly stateVersion: number;
  readonly services: readonly ServiceView[];
  readonly instances: readonly InstanceView[];
  readonly sidecars: readonly SubscriberView[];
  readonly autoscale: readonly AutoscaleView[];
  /** The control plane's monotonic clock now (same clock as `SubscriberView.lastLoadAt`). */
  readonly now: number;
  /** Wall-clock ms now. */
  readonly wallNow: number;
  readonly staleAfterMs: number;
}

/** Three report intervals at the sidecar's default of 5 s. */
export const DEFAULT_STALE_AFTER_MS = 15_000;
export const DEFAULT_LB = 'round-robin';

function asCircuitState(s: string): CircuitState | undefined {
  return s === 'closed' || s === 'open' || s === 'half-open' ? s : undefined;
}

function worse(a: CircuitState | null, b: CircuitState): CircuitState {
  return a === null || CIRCUIT_RANK[b] > CIRCUIT_RANK[a] ? b : a;
}

const finite = (n: number): number => (Number.isFinite(n) ? n : 0);

/**
 * Whether a sidecar's breakers for `service` can have seen traffic: an instance's sidecar calls its own
 * service only when it subscribed to it (this release's sidecars do not even build it otherwise; the check
 * keeps reports of any other sidecar honest).
 */
function calls(s: SubscriberView, service: string): boolean {
  return s.instance?.service !== service || s.subscriptions.includes(service);
}

export function buildDashboardState(input: DashboardInputs): DashboardState {
  const fresh = input.sidecars.filter((s) => s.lastLoad !== null && s.lastLoadAt !== null && input.now - s.lastLoadAt <= input.staleAfterMs);
  const connected = new Set(input.sidecars.map((s) => s.instance?.address ?? '').filter((a) => a !== ''));
  const instanceById = new Map(input.instances.map((i) => [i.id, i]));
  const autoscale = new Map(input.autoscale.map((a) => [a.service, a]));

  /** The instance's own report: the freshest from a sidecar registered with this service and address. */
  const own = new Map<string, SubscriberView>();
  for (const s of fresh) {
    const inst = s.instance;
    if (inst === null || inst.address === '') continue;
    const key = `${inst.service}\u0000${inst.address}`;
    const prev = own.get(key);
    if (prev === undefined || (s.lastLoadAt ?? 0) > (prev.lastLoadAt ?? 0)) own.set(key, s);
  }

  /** What the callers report about each endpoint (service + address), gathered in one pass over the reports. */
  interface CallerView {
    eligible: boolean | null;
    readonly health: Set<string>;
    callers: number;
    callerInflight: number;
    circuit: CircuitState | null;
    /** The last sidecar counted in `callers` (a sidecar listing an endpoint twice counts once). */
    lastCaller: SubscriberView | undefined;
  }
  const byEndpoint = new Map<string, CallerView>();
  const view = (key: string): CallerView => {
    let v = byEndpoint.get(key);
    if (v === undefined) byEndpoint.set(key, (v = { eligible: null, health: new Set(), callers: 0, callerInflight: 0, circuit: null, lastCaller: undefined }));
    return v;
  };
  for (const s of fresh) {
    const load = s.lastLoad;
    if (load === null) continue;
    // The instance's own sidecar never calls itself: it is not a caller of its own address.
    const self = s.instance?.address;
    for (const ep of load.endpoints) {
      if (ep.address === self) continue;
      const v = view(`${ep.service}\u0000${ep.address}`);
      v.eligible = (v.eligible ?? true) && ep.eligible;
      for (const f of ep.health) v.health.add(f);
      v.callerInflight += finite(ep.inflight);
      if (v.lastCaller !== s) {
        v.callers++;
        v.lastCaller = s;
      }
    }
    for (const c of load.circuits) {
      if (c.endpoint === '' || c.endpoint === self || !calls(s, c.service)) continue;
      const st = asCircuitState(c.state);
      if (st !== undefined) {
        const v = view(`${c.service}\u0000${c.endpoint}`);
        v.circuit = worse(v.circuit, st);
      }
    }
  }

  // By name (a lookup per service in the list was quadratic: with every sidecar registering its own service,
  // 10,000 services took seconds of a replica's CPU every 2 s sample and starved its etcd keepalives).
  const serviceByName = new Map(input.services.map((s) => [s.name, s]));
  const names = [...new Set([...serviceByName.keys(), ...input.autoscale.map((a) => a.service)])].sort();
  const services = names.map((name): DashboardService => {
    const svc = serviceByName.get(name);
    const instances = (svc?.endpoints ?? []).map((e): DashboardInstance => {
      const report = own.get(`${name}\u0000${e.address}`)?.lastLoad ?? null;
      const callers = byEndpoint.get(`${name}\u0000${e.address}`);
      const inst = e.instance === undefined ? undefined : instanceById.get(e.instance);
      return {
        id: e.instance ?? null,
        address: e.address,
        zone: e.zone ?? inst?.zone ?? null,
        source: e.source,
        state: e.state,
        weight: e.weight,
        weightSource: e.pinnedWeight !== undefined ? 'pinned' : e.computed?.weight !== undefined ? 'computed' : 'configured',
        cost: e.cost,
        capacity: e.capacity,
        connected: connected.has(e.address),
        reporting: report !== null,
        rps: report === null ? null : finite(report.rps),
        inflight: report === null ? null : finite(report.inflight),
        latencyMs: report === null ? null : finite(report.latencyEwmaMs),
        p99Ms: report === null ? null : finite(report.latencyP99Ms),
        errorRate: report === null ? null : finite(report.errorRate),
        cpu: report === null ? null : finite(report.cpu),
        eligible: callers?.eligible ?? null,
        health: callers === undefined ? [] : [...callers.health].sort(),
        callers: callers?.callers ?? 0,
        callerInflight: callers?.callerInflight ?? 0,
        circuit: callers?.circuit ?? null,
      };
    });

    const circuits: DashboardCircuit[] = [];
    for (const s of fresh) {
      if (!calls(s, name)) continue;
      for (const c of s.lastLoad?.circuits ?? []) {
        const st = c.service === name && c.endpoint === '' ? asCircuitState(c.state) : undefined;
        if (st !== undefined) circuits.push({ reporter: s.instance?.id ?? null, state: st });
      }
    }
    circuits.sort((a, b) => CIRCUIT_RANK[b.state] - CIRCUIT_RANK[a.state] || (a.reporter ?? '').localeCompare(b.reporter ?? ''));

    let rps = 0;
    let errors = 0;
    let p99Ms = 0;
    for (const i of instances) {
      rps += i.rps ?? 0;
      errors += (i.rps ?? 0) * (i.errorRate ?? 0);
      p99Ms = Math.max(p99Ms, i.p99Ms ?? 0);
    }
    const lb = svc?.policy['lb'];
    return {
      name,
      lb: typeof lb === 'string' ? lb : DEFAULT_LB,
      policySource: svc?.policySource ?? 'default',
      totals: {
        rps,
        errorRate: rps > 0 ? errors / rps : 0,
        p99Ms,
        instances: instances.length,
        serving: instances.filter((i) => i.state === 'serving').length,
        eligible: instances.filter((i) => i.eligible !== false).length,
      },
      instances,
      circuits,
      autoscale: autoscale.get(name) ?? null,
    };
  });

  return {
    version: input.version,
    stateVersion: input.stateVersion,
    generatedAt: input.wallNow,
    staleAfterMs: input.staleAfterMs,
    sidecars: { connected: input.sidecars.length, reporting: fresh.length },
    services,
  };
}
