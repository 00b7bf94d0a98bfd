import type { Cluster, ClusterManager } from '../cluster/cluster.js';
import type { Endpoint } from '../core/endpoint.js';
import { hashKeyFromHeaders } from '../lb/index.js';
import type { ServiceGuard } from '../resilience/guard.js';
import type { Metrics } from '../telemetry/metrics.js';
import { absoluteFormAuthority, Call, type CallDeps, type Route } from './call.js';
import { headerBag, hostName } from './headers.js';
import type { ParseLimits } from './http1/parser.js';
import type { PoolOptions } from './http1/pool.js';
import type { H2PoolOptions } from './http2/pool.js';
import type { UpstreamPoolLike } from './exchange.js';
import type { MeshCredentials, TlsRefusal } from './tls/mesh-tls.js';
import type { ExchangeHandler } from './http1/server.js';
import type { IncomingExchange } from './exchange.js';
import type { PoolRegistry } from './pools.js';

/** Upstream connection settings the whole sidecar shares (per-service ones come from the service's policy). */
export interface UpstreamSettings {
  readonly idleTimeoutMs: number;
  readonly limits: ParseLimits;
}

/** What outbound connections to mesh endpoints present, once this sidecar has its certificate. */
export interface MeshOutbound {
  readonly credentials: MeshCredentials;
  readonly refused: (reason: TlsRefusal) => void;
}

/** Looks up services this sidecar does not know yet (on-demand discovery through the control plane). */
export interface ServiceResolver {
  /** Starts a lookup of `name` if one may start; true when the name is known or being looked up. */
  prefetch(name: string): boolean;
  /** Calls `done` once `name` is known (true), or when it is not (false), within the resolve timeout. */
  resolve(name: string, done: (found: boolean) => void): void;
}

/** HTTP/2 sessions to one endpoint at most (each carries as many calls as the server's SETTINGS allow). */
const H2_SESSIONS_PER_ENDPOINT = 16;

/** The per-cluster route: reads the cluster's current picker and the guard; built once per config. */
class ClusterRoute implements Route {
  readonly direction = 'outbound' as const;
  readonly service: string;
  readonly authority: string;
  readonly timeoutMs: number;
  readonly retry;
  private readonly poolOptions: PoolOptions;
  /** For endpoints marked `mesh`: the same over mutual TLS (plaintext until this sidecar has a certificate). */
  private readonly meshPoolOptions: PoolOptions;
  /** `http2` and `grpc` services: HTTP/2 sessions (h2c, or h2 over mutual TLS to mesh endpoints). */
  private readonly h2Options: H2PoolOptions | undefined;
  private readonly meshH2Options: H2PoolOptions | undefined;

  constructor(
    private readonly cluster: Cluster,
    readonly guard: ServiceGuard | undefined,
    readonly stats: Route['stats'],
    private readonly pools: PoolRegistry,
    upstream: UpstreamSettings,
    mesh: MeshOutbound | undefined,
  ) {
    const cfg = cluster.config;
    this.service = cluster.name;
    this.authority = cluster.name;
    this.timeoutMs = cfg.timeoutMs;
    this.retry = cfg.retry;
    this.poolOptions = { maxConnections: cfg.limits.maxConcurrent, connectTimeoutMs: cfg.connectTimeoutMs, idleTimeoutMs: upstream.idleTimeoutMs, limits: upstream.limits };
    this.meshPoolOptions = mesh === undefined ? this.poolOptions : { ...this.poolOptions, tls: { credentials: mesh.credentials, service: cluster.name, refused: mesh.refused } };
    if (cfg.protocol === 'http2' || cfg.protocol === 'grpc') {
      // A few sessions carry every call; the cap on calls is the guard's.
      const h2: H2PoolOptions = { maxConnections: H2_SESSIONS_PER_ENDPOINT, connectTimeoutMs: cfg.connectTimeoutMs, idleTimeoutMs: upstream.idleTimeoutMs, limits: upstream.limits };
      this.h2Options = h2;
      this.meshH2Options = this.meshPoolOptions.tls === undefined ? h2 : { ...h2, tls: this.meshPoolOptions.tls };
    }
  }

  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    return this.cluster.picker.pick(hashKey, avoid);
  }

  pool(endpoint: Endpoint): UpstreamPoolLike {
    const h2 = endpoint.mesh ? this.meshH2Options : this.h2Options;
    if (h2 !== undefined) return this.pools.getH2(endpoint, h2);
    return this.pools.get(endpoint, endpoint.mesh ? this.meshPoolOptions : this.poolOptions);
  }
}

/**
 * The app's way out: routes each request to a service by its Host header or absolute-form target
 * (HTTP_PROXY style), by the CONNECT tunnel it came through, or by the per-service port it arrived on, and
 * runs it as a Call (pick, forward, retry, fail over).
 */
export class OutboundProxy {
  private readonly routes = new Map<Cluster, ClusterRoute>();
  /** Set while the sidecar has a control plane that resolves unknown names on demand. */
  resolver: ServiceResolver | undefined;
  /** Mutual TLS to mesh endpoints (set, then routes rebuilt, when the sidecar gets its certificate). */
  private mesh: MeshOutbound | undefined;

  constructor(
    private readonly clusters: ClusterManager,
    private readonly pools: PoolRegistry,
    private readonly metrics: Metrics,
    private readonly guards: (cluster: Cluster) => ServiceGuard | undefined,
    private readonly deps: CallDeps,
    private upstream: UpstreamSettings,
  ) {}

  /** Mesh endpoints are reached over mutual TLS with these credentials from now on. */
  setMesh(mesh: MeshOutbound): void {
    this.mesh = mesh;
    this.routes.clear();
  }

  /** Drops cached per-cluster routes after a configuration change. */
  invalidate(upstream?: UpstreamSettings): void {
    if (upstream !== undefined) this.upstream = upstream;
    this.routes.clear();
  }

  /** The shared outbound listener: the service is named by Host, an absolute-form target, or a tunnel. */
  readonly handler: ExchangeHandler = {
    onRequest: (ex) => {
      const start = this.deps.clock.now();
      let name = ex.tunnel;
      if (name === undefined) {
        const authority = absoluteFormAuthority(ex.head.target) ?? ex.head.host;
        if (authority === undefined || authority === '') {
          this.refuse(ex, 400, 'bad-request', 'request has neither a Host header nor an absolute-form target');
          return;
        }
        name = hostName(authority);
      }
      const cluster = this.clusters.get(name);
      if (cluster !== undefined) this.send(ex, cluster, start);
      else this.lookUp(ex, name, start);
    },
    onConnect: (authority) => {
      // A tunnel only to a service of the mesh: the sidecar is not an open proxy. A name the control plane
      // is being asked about is accepted; requests inside the tunnel wait for the answer.
      const name = hostName(authority);
      return this.clusters.get(name) !== undefined || this.resolver?.prefetch(name) === true ? name : undefined;
    },
    onRefused: (status) => this.countOwn(status),
  };

  /** A per-service listener (Consul-style upstream port): every request goes to `service`. */
  handlerFor(service: string): ExchangeHandler {
    return {
      onRequest: (ex) => {
        const start = this.deps.clock.now();
        const cluster = this.clusters.get(service);
        if (cluster === undefined) {
          this.refuse(ex, 404, 'unknown-service', `service "${service}" is no longer configured`);
          return;
        }
        this.send(ex, cluster, start);
      },
      onConnect: (authority) => (hostName(authority) === service && this.clusters.get(service) !== undefined ? service : undefined),
      onRefused: (status) => this.countOwn(status),
    };
  }

  /** The slow path of a name this sidecar does not know: asks the control plane, then routes or answers 404. */
  private lookUp(ex: IncomingExchange, name: string, start: number): void {
    const resolver = this.resolver;
    if (resolver === undefined) {
      this.refuse(ex, 404, 'unknown-service', `no service named "${name}" is known to this sidecar`);
      return;
    }
    resolver.resolve(name, () => {
      if (ex.finished) {
        // The client left while the control plane was asked.
        this.countOwn(499);
        return;
      }
      const cluster = this.clusters.get(name);
      if (cluster !== undefined) this.send(ex, cluster, start);
      else this.refuse(ex, 404, 'unknown-service', `no service named "${name}" is known to this sidecar or its control plane`);
    });
  }

  private send(ex: IncomingExchange, cluster: Cluster, start: number): void {
    if (cluster.config.protocol === 'tcp') {
      this.refuse(ex, 400, 'bad-request', `service "${cluster.name}" is a TCP service: connect to its own port`);
      return;
    }
    const route = this.route(cluster);
    const hashOn = cluster.config.hashOn;
    const key = hashOn === undefined ? undefined : hashKeyFromHeaders(hashOn, headerBag(ex.head.headers));
    new Call(ex, route, key, this.deps, start).run();
  }

  private route(cluster: Cluster): ClusterRoute {
    let r = this.routes.get(cluster);
    if (r === undefined) {
      r = new ClusterRoute(cluster, this.guards(cluster), this.metrics.trafficStats('outbound', cluster.name), this.pools, this.upstream, this.mesh);
      this.routes.set(cluster, r);
    }
    return r;
  }

  private refuse(ex: IncomingExchange, status: number, reason: string, message: string): void {
    ex.sendError(status, reason, message);
    this.countOwn(status);
  }

  private countOwn(code: number): void {
    this.metrics.trafficStats('outbound', '-').record(code, 0);
  }
}
