import type { Metric } from 'prom-client';
import { Counter, Gauge, Registry, collectProcessMetrics } from './prom.js';
import type { Endpoint } from '../core/endpoint.js';
import { DURATION_BOUNDS, TcpStats, TrafficStats, type Direction } from './stats.js';
// gRPC status code names as the `grpc_code` label shows them (as grpc-go's and Envoy's metrics).
import { grpcStatusName } from '../health/active/grpc-health.js';

/** Read-only view of a service's resilience state (retries by reason, breakers) read at scrape time. */
export interface GuardView {
  readonly cluster: { readonly name: string };
  readonly retries: Readonly<Record<string, number>>;
  breakerViews(): readonly { readonly endpoint: string | null; readonly state: 'closed' | 'open' | 'half-open' }[];
}

/** Read-only view of the inbound replay store (`inbound.idempotency`) read at scrape time. */
export interface IdempotencyView {
  readonly service: string;
  /** Keyed requests by what became of them (stored, replayed, conflict, mismatch, unstored, bypass). */
  readonly results: Readonly<Record<string, number>>;
  readonly bytes: number;
  readonly entries: number;
  /** Entries removed before their time to stay under `maxBytes`. */
  readonly evictions: number;
}

/** Read-only view of the clusters that the metrics read at scrape time. */
export interface ClusterView {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
}

/**
 * The Prometheus metrics of docs/operations.md. The request path never calls prom-client: it counts into
 * TrafficStats (plain numbers, the duration histogram's buckets included); counters, gauges and the
 * histogram are filled from those numbers when Prometheus scrapes.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly traffic = new Map<string, TrafficStats>();
  private readonly tcp = new Map<string, TcpStats>();
  private clusters: () => Iterable<ClusterView> = () => [];
  private guards: () => Iterable<GuardView> = () => [];
  private idempotency: () => IdempotencyView | undefined = () => undefined;
  private readonly ejections: Counter<'service'>;
  private readonly tlsRefused: Counter<'direction' | 'reason'>;
  private authz: () => { service: string; allowed: number; denied: number } | undefined = () => undefined;
  private certNotAfter = 0;
  private configVersion = 0;
  private cpConnected = 0;

  constructor(readonly enabled: boolean) {
    // Process metrics (resident memory, heap, event-loop lag, GC) with prom-client's standard names.
    if (enabled) collectProcessMetrics(this.registry, 20);
    const traffic = this.traffic;
    new Counter({
      name: 'outrigger_requests_total',
      help: 'Requests handled by the sidecar, by direction, service and response status code.',
      labelNames: ['direction', 'service', 'code'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of traffic.values()) {
          const codes = s.codes;
          for (let c = 100; c < 600; c++) {
            const n = codes[c]!;
            if (n > 0) this.inc({ direction: s.direction, service: s.service, code: String(c) }, n);
          }
        }
      },
    });
    new Counter({
      name: 'outrigger_grpc_calls_total',
      help: 'gRPC calls (content-type application/grpc) handled by the sidecar, by direction, service and grpc-status code.',
      labelNames: ['direction', 'service', 'grpc_code'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of traffic.values()) {
          if (s.grpcCalls === 0) continue;
          const codes = s.grpcCodes;
          for (let c = 0; c < codes.length; c++) {
            const n = codes[c]!;
            if (n > 0) this.inc({ direction: s.direction, service: s.service, grpc_code: grpcStatusName(c) }, n);
          }
        }
      },
    });
    new Gauge({
      name: 'outrigger_upgrades_active',
      help: 'Upgraded connections (101 Switching Protocols, e.g. WebSocket) joined to their upstream and open now.',
      labelNames: ['direction', 'service'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of traffic.values()) if (s.upgradesTotal > 0) this.set({ direction: s.direction, service: s.service }, s.upgradesActive);
      },
    });
    new Counter({
      name: 'outrigger_upgrades_total',
      help: 'Connections upgraded (101 Switching Protocols) and joined to their upstream.',
      labelNames: ['direction', 'service'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of traffic.values()) if (s.upgradesTotal > 0) this.inc({ direction: s.direction, service: s.service }, s.upgradesTotal);
      },
    });
    // The request-duration histogram is counted with plain numbers per request (TrafficStats) and written
    // out at scrape time, in prom-client's histogram format.
    if (enabled) this.registry.registerMetric(durationHistogram(traffic) as unknown as Metric);
    // Arrow functions keep the Metrics instance; inside collect() `this` is the prom-client metric.
    const self = {
      clusters: () => this.clusters(),
      guards: () => this.guards(),
      idempotency: () => this.idempotency(),
      version: () => this.configVersion,
      connected: () => this.cpConnected,
      certNotAfter: () => this.certNotAfter,
      authz: () => this.authz(),
    };
    new Gauge({
      name: 'outrigger_upstream_inflight',
      help: 'Requests in flight to each upstream endpoint.',
      labelNames: ['service', 'endpoint'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const c of self.clusters()) for (const e of c.endpoints) this.set({ service: c.name, endpoint: e.address }, e.inflight);
      },
    });
    new Gauge({
      name: 'outrigger_endpoint_eligible',
      help: '1 when no health source marks the endpoint bad, else 0.',
      labelNames: ['service', 'endpoint'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const c of self.clusters()) for (const e of c.endpoints) this.set({ service: c.name, endpoint: e.address }, e.flags === 0 ? 1 : 0);
      },
    });
    new Counter({
      name: 'outrigger_retries_total',
      help: 'Retries made, by service and what triggered them (connect-failure, reset, timeout, status).',
      labelNames: ['service', 'reason'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const g of self.guards()) for (const [reason, n] of Object.entries(g.retries)) if (n > 0) this.inc({ service: g.cluster.name, reason }, n);
      },
    });
    const stateValue = { closed: 0, 'half-open': 1, open: 2 } as const;
    new Gauge({
      name: 'outrigger_circuit_state',
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open. endpoint="" is the service breaker.',
      labelNames: ['service', 'endpoint'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const g of self.guards()) for (const b of g.breakerViews()) this.set({ service: g.cluster.name, endpoint: b.endpoint ?? '' }, stateValue[b.state]);
      },
    });
    new Counter({
      name: 'outrigger_idempotency_total',
      help: 'Inbound requests with an Idempotency-Key, by result: stored, replayed, conflict (409), mismatch (422), unstored (answer not kept), bypass (safe method).',
      labelNames: ['service', 'result'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.idempotency();
        if (v !== undefined) for (const [result, n] of Object.entries(v.results)) this.inc({ service: v.service, result }, n);
      },
    });
    new Gauge({
      name: 'outrigger_idempotency_bytes',
      help: 'Bytes held by the inbound replay store (stored responses and their keys).',
      labelNames: ['service'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.idempotency();
        if (v !== undefined) this.set({ service: v.service }, v.bytes);
      },
    });
    new Gauge({
      name: 'outrigger_idempotency_entries',
      help: 'Responses held by the inbound replay store.',
      labelNames: ['service'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.idempotency();
        if (v !== undefined) this.set({ service: v.service }, v.entries);
      },
    });
    new Counter({
      name: 'outrigger_idempotency_evictions_total',
      help: 'Stored responses evicted before their TTL to stay under inbound.idempotency.maxBytes.',
      labelNames: ['service'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.idempotency();
        if (v !== undefined) this.inc({ service: v.service }, v.evictions);
      },
    });
    this.ejections = new Counter({
      name: 'outrigger_outlier_ejections_total',
      help: 'Endpoints ejected by outlier detection, by service.',
      labelNames: ['service'],
      registers: [this.registry],
    });
    new Counter({
      name: 'outrigger_authz_decisions_total',
      help: "Requests to this sidecar's service checked against its authorization policy, by decision (allow, deny).",
      labelNames: ['service', 'decision'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.authz();
        if (v === undefined) return;
        this.inc({ service: v.service, decision: 'allow' }, v.allowed);
        this.inc({ service: v.service, decision: 'deny' }, v.denied);
      },
    });
    this.tlsRefused = new Counter({
      name: 'outrigger_mtls_refused_total',
      help: 'Mesh connections refused: inbound (plaintext to a strict listener, failed handshake or certificate, no identity) and outbound (the peer was not the service meant).',
      labelNames: ['direction', 'reason'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'outrigger_mesh_certificate_expiry_seconds',
      help: "End of validity of the sidecar's mesh certificate, seconds since the epoch (0: none yet).",
      registers: [this.registry],
      collect() {
        this.set(self.certNotAfter() / 1_000);
      },
    });
    const tcp = this.tcp;
    new Gauge({
      name: 'outrigger_tcp_connections_active',
      help: 'Client connections open on the port of each TCP pass-through service (protocol: tcp).',
      labelNames: ['service'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of tcp.values()) this.set({ service: s.service }, s.active);
      },
    });
    new Counter({
      name: 'outrigger_tcp_connections_total',
      help: 'Client connections of each TCP pass-through service, by result: connected (an endpoint was reached) or failed (reset).',
      labelNames: ['service', 'result'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of tcp.values()) {
          this.inc({ service: s.service, result: 'connected' }, s.connected);
          this.inc({ service: s.service, result: 'failed' }, s.failed);
        }
      },
    });
    new Gauge({
      name: 'outrigger_config_version',
      help: 'Version of the configuration in effect (static config counts reloads).',
      registers: [this.registry],
      collect() {
        this.set(self.version());
      },
    });
    new Gauge({
      name: 'outrigger_control_plane_connected',
      help: '1 while the sidecar holds a stream to the control plane, else 0.',
      registers: [this.registry],
      collect() {
        this.set(self.connected());
      },
    });
  }

  /** The counters for one (direction, service); created once, then reused by the request path. */
  trafficStats(direction: Direction, service: string): TrafficStats {
    const key = `${direction}\u0000${service}`;
    let s = this.traffic.get(key);
    if (!s) {
      s = new TrafficStats(direction, service, this.enabled);
      this.traffic.set(key, s);
    }
    return s;
  }

  /** The connection counters of one TCP pass-through service; created once, kept across listener reopenings. */
  tcpStats(service: string): TcpStats {
    let s = this.tcp.get(service);
    if (!s) {
      s = new TcpStats(service);
      this.tcp.set(service, s);
    }
    return s;
  }

  watchGuards(source: () => Iterable<GuardView>): void {
    this.guards = source;
  }

  watchIdempotency(source: () => IdempotencyView | undefined): void {
    this.idempotency = source;
  }

  watchAuthorization(source: () => { service: string; allowed: number; denied: number } | undefined): void {
    this.authz = source;
  }

  countTlsRefused(direction: 'inbound' | 'outbound', reason: string): void {
    this.tlsRefused.inc({ direction, reason });
  }

  setCertificateNotAfter(wallMs: number): void {
    this.certNotAfter = wallMs;
  }

  countEjection(service: string): void {
    this.ejections.inc({ service });
  }

  watchClusters(source: () => Iterable<ClusterView>): void {
    this.clusters = source;
  }

  setConfigVersion(v: number): void {
    this.configVersion = v;
  }

  setControlPlaneConnected(connected: boolean): void {
    this.cpConnected = connected ? 1 : 0;
  }

  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** `outrigger_request_duration_seconds` from the counts of every TrafficStats, as prom-client writes a histogram. */
function durationHistogram(traffic: ReadonlyMap<string, TrafficStats>) {
  const name = 'outrigger_request_duration_seconds';
  const help = 'Time from request arrival to the end of the response, by direction and service.';
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      for (const s of traffic.values()) {
        if (s.requests === 0) continue;
        const labels = { direction: s.direction, service: s.service };
        let cumulative = 0;
        for (let i = 0; i < DURATION_BOUNDS.length; i++) {
          cumulative += s.durationBuckets[i]!;
          values.push({ metricName: `${name}_bucket`, labels: { le: DURATION_BOUNDS[i]!, ...labels }, value: cumulative });
        }
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels }, value: s.requests });
        values.push({ metricName: `${name}_sum`, labels, value: s.durationSum });
        values.push({ metricName: `${name}_count`, labels, value: s.requests });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
    reset() {},
  };
}

