import { Endpoint } from '../core/endpoint.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Call, type CallDeps, type Route } from './call.js';
import type { UpstreamSettings } from './outbound.js';
import { UpstreamPool } from './http1/pool.js';
import type { ExchangeHandler } from './http1/server.js';

export interface InboundOptions {
  readonly service: string;
  /** URL of the local app, e.g. http://127.0.0.1:8080 */
  readonly target: string;
  readonly maxConcurrent: number;
  readonly timeoutMs: number;
}

/** The local app as the inbound side's only endpoint. */
class AppRoute implements Route {
  readonly direction = 'inbound' as const;
  readonly retry = undefined;
  readonly guard = undefined;
  readonly endpoint: Endpoint;
  readonly appPool: UpstreamPool;
  readonly authority: string;

  constructor(
    readonly service: string,
    readonly target: string,
    readonly stats: Route['stats'],
    readonly timeoutMs: number,
    connections: number,
    upstream: UpstreamSettings,
    deps: CallDeps,
    readonly release: () => void,
  ) {
    const url = new URL(target);
    this.authority = url.host;
    this.endpoint = new Endpoint({ address: url.host, weight: 1, capacity: connections, cost: 1 });
    this.appPool = new UpstreamPool(this.endpoint.host, this.endpoint.port, { maxConnections: connections, connectTimeoutMs: 2_000, idleTimeoutMs: upstream.idleTimeoutMs, limits: upstream.limits }, deps);
  }

  pick(): Endpoint {
    return this.endpoint;
  }

  pool(): UpstreamPool {
    return this.appPool;
  }
}

/**
 * The service's front door: forwards to the local app and sheds load beyond `maxConcurrent` requests in
 * flight with 503, `retry-after` and `x-outrigger-error: overloaded`, so the app keeps its latency.
 */
export class InboundProxy {
  private route: AppRoute;
  private limit: number;
  inflight = 0;
  private readonly sweeper;

  constructor(
    options: InboundOptions,
    private readonly metrics: Metrics,
    private readonly deps: CallDeps,
    private upstream: UpstreamSettings,
  ) {
    this.limit = options.maxConcurrent;
    this.route = this.makeRoute(options);
    this.sweeper = deps.timers.every(1_000, () => this.route.appPool.sweep(deps.clock.now()));
  }

  private makeRoute(o: InboundOptions): AppRoute {
    return new AppRoute(o.service, o.target, this.metrics.trafficStats('inbound', o.service), o.timeoutMs, o.maxConcurrent, this.upstream, this.deps, this.release);
  }

  /** Applies a reloaded inbound section; a new target gets a new pool, the old one drains. */
  update(options: InboundOptions, upstream: UpstreamSettings): void {
    this.limit = options.maxConcurrent;
    const old = this.route;
    if (options.target !== old.target || options.maxConcurrent !== old.endpoint.capacity || options.timeoutMs !== old.timeoutMs || upstream !== this.upstream) {
      this.upstream = upstream;
      this.route = this.makeRoute(options);
      old.appPool.close();
    }
  }

  readonly handler: ExchangeHandler = {
    onRequest: (ex) => {
      const start = this.deps.clock.now();
      if (this.inflight >= this.limit) {
        ex.sendError(503, 'overloaded', `more than ${this.limit} requests in flight`, { 'retry-after': '1' });
        this.route.stats.record(503, (this.deps.clock.now() - start) / 1000);
        return;
      }
      this.inflight++;
      new Call(ex, this.route, undefined, this.deps, start).run();
    },
    // The inbound side is the service's own door, not a proxy: no tunnels.
    onConnect: () => undefined,
    onRefused: (status) => this.route.stats.record(status, 0),
  };

  private readonly release = (): void => {
    this.inflight--;
  };

  close(): void {
    this.sweeper.cancel();
    this.route.appPool.destroy();
  }
}
