import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Cluster, ClusterManager } from '../cluster/cluster.js';
import type { Endpoint } from '../core/endpoint.js';
import { hashKeyFromHeaders } from '../lb/index.js';
import type { ServiceGuard } from '../resilience/guard.js';
import type { Metrics } from '../telemetry/metrics.js';
import { absoluteFormAuthority, Call, type CallDeps, type Route } from './call.js';
import { hostName } from './headers.js';
import type { PoolRegistry } from './pools.js';
import { sendProxyError } from './respond.js';

/** The per-cluster route: reads the cluster's current picker and the guard; built once per config. */
class ClusterRoute implements Route {
  readonly direction = 'outbound' as const;
  readonly service: string;
  readonly timeoutMs: number;
  readonly retry;
  private readonly poolOptions;

  constructor(
    private readonly cluster: Cluster,
    readonly guard: ServiceGuard | undefined,
    readonly stats: Route['stats'],
    private readonly pools: PoolRegistry,
  ) {
    const cfg = cluster.config;
    this.service = cluster.name;
    this.timeoutMs = cfg.timeoutMs;
    this.retry = cfg.retry;
    this.poolOptions = { connections: cfg.limits.maxConcurrent, connectTimeoutMs: cfg.connectTimeoutMs };
  }

  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    return this.cluster.picker.pick(hashKey, avoid);
  }

  dispatcher(endpoint: Endpoint): Dispatcher {
    return this.pools.get(endpoint, this.poolOptions);
  }
}

/**
 * The app's way out: routes each request to a service by its Host header or absolute-form target
 * (HTTP_PROXY style), or by the per-service port it arrived on, and runs it as a Call (pick, forward,
 * retry, fail over).
 */
export class OutboundProxy {
  private readonly routes = new Map<Cluster, ClusterRoute>();

  constructor(
    private readonly clusters: ClusterManager,
    private readonly pools: PoolRegistry,
    private readonly metrics: Metrics,
    private readonly guards: (cluster: Cluster) => ServiceGuard | undefined,
    private readonly deps: CallDeps,
  ) {}

  /** Drops cached per-cluster routes after a configuration change. */
  invalidate(): void {
    this.routes.clear();
  }

  /** Request handler of the shared outbound listener. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const start = this.deps.clock.now();
    const target = req.url ?? '/';
    const authority = absoluteFormAuthority(target) ?? req.headers.host;
    if (authority === undefined || authority === '') {
      this.countOwn(sendProxyError(res, 'bad-request', 'request has neither a Host header nor an absolute-form target'));
      return;
    }
    const name = hostName(authority);
    const cluster = this.clusters.get(name);
    if (cluster === undefined) {
      this.countOwn(sendProxyError(res, 'unknown-service', `no service named "${name}" is known to this sidecar`));
      return;
    }
    this.send(req, res, cluster, start);
  };

  /** Request handler of a per-service listener (Consul-style upstream port). */
  handlerFor(service: string): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      const start = this.deps.clock.now();
      const cluster = this.clusters.get(service);
      if (cluster === undefined) {
        this.countOwn(sendProxyError(res, 'unknown-service', `service "${service}" is no longer configured`));
        return;
      }
      this.send(req, res, cluster, start);
    };
  }

  private send(req: IncomingMessage, res: ServerResponse, cluster: Cluster, start: number): void {
    const route = this.route(cluster);
    const hashOn = cluster.config.hashOn;
    const key = hashOn === undefined ? undefined : hashKeyFromHeaders(hashOn, req.headers);
    new Call(req, res, route, key, this.deps, start).run();
  }

  private route(cluster: Cluster): ClusterRoute {
    let r = this.routes.get(cluster);
    if (r === undefined) {
      r = new ClusterRoute(cluster, this.guards(cluster), this.metrics.trafficStats('outbound', cluster.name), this.pools);
      this.routes.set(cluster, r);
    }
    return r;
  }

  private countOwn(code: number): void {
    this.metrics.trafficStats('outbound', '-').record(code, 0);
  }
}
