import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Cluster, ClusterManager } from '../cluster/cluster.js';
import { hashKeyFromHeaders } from '../lb/index.js';
import type { Metrics } from '../telemetry/metrics.js';
import { absoluteFormAuthority, forward, type ForwardDeps, type Route } from './forward.js';
import { hostName } from './headers.js';
import type { PoolRegistry } from './pools.js';
import { sendProxyError } from './respond.js';

/**
 * The app's way out: routes each request to a service by its Host header or absolute-form target
 * (HTTP_PROXY style), or by the per-service port it arrived on, picks an endpoint and forwards.
 */
export class OutboundProxy {
  private readonly routes = new Map<Cluster, Route>();

  constructor(
    private readonly clusters: ClusterManager,
    private readonly pools: PoolRegistry,
    private readonly metrics: Metrics,
    private readonly deps: ForwardDeps,
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
      this.countOwn(400);
      sendProxyError(res, 'bad-request', 'request has neither a Host header nor an absolute-form target');
      return;
    }
    const name = hostName(authority);
    const cluster = this.clusters.get(name);
    if (cluster === undefined) {
      this.countOwn(404);
      sendProxyError(res, 'unknown-service', `no service named "${name}" is known to this sidecar`);
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
        this.countOwn(404);
        sendProxyError(res, 'unknown-service', `service "${service}" is no longer configured`);
        return;
      }
      this.send(req, res, cluster, start);
    };
  }

  private send(req: IncomingMessage, res: ServerResponse, cluster: Cluster, start: number): void {
    const route = this.route(cluster);
    const cfg = cluster.config;
    const hashOn = cfg.hashOn;
    const key = hashOn === undefined ? undefined : hashKeyFromHeaders(hashOn, req.headers);
    const endpoint = cluster.picker.pick(key, undefined);
    if (endpoint === undefined) {
      route.stats.record(sendProxyError(res, 'no-healthy-upstream', `service "${cluster.name}" has no eligible endpoint`), (this.deps.clock.now() - start) / 1000);
      return;
    }
    const pool = this.pools.get(endpoint, { connections: cfg.limits.maxConcurrent, connectTimeoutMs: cfg.connectTimeoutMs });
    forward(req, res, route, pool, endpoint, this.deps, start);
  }

  private route(cluster: Cluster): Route {
    let r = this.routes.get(cluster);
    if (r === undefined) {
      r = {
        direction: 'outbound',
        service: cluster.name,
        stats: this.metrics.trafficStats('outbound', cluster.name),
        timeoutMs: cluster.config.timeoutMs,
      };
      this.routes.set(cluster, r);
    }
    return r;
  }

  private countOwn(code: number): void {
    this.metrics.trafficStats('outbound', '-').record(code, 0);
  }
}
