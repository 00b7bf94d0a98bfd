import type { IncomingMessage, ServerResponse } from 'node:http';
import { Endpoint } from '../core/endpoint.js';
import type { Metrics } from '../telemetry/metrics.js';
import { Call, type CallDeps, type Route } from './call.js';
import { createPool } from './pools.js';
import { sendProxyError } from './respond.js';
import type { Pool } from './undici-pool.js';

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
  readonly pool: Pool;

  constructor(
    readonly service: string,
    readonly target: string,
    readonly stats: Route['stats'],
    readonly timeoutMs: number,
    connections: number,
  ) {
    const url = new URL(target);
    this.endpoint = new Endpoint({ address: url.host, weight: 1, capacity: connections, cost: 1 });
    this.pool = createPool(url.origin, { connections, connectTimeoutMs: 2_000 });
  }

  pick(): Endpoint {
    return this.endpoint;
  }

  dispatcher(): Pool {
    return this.pool;
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

  constructor(
    options: InboundOptions,
    private readonly metrics: Metrics,
    private readonly deps: CallDeps,
  ) {
    this.limit = options.maxConcurrent;
    this.route = this.makeRoute(options);
  }

  private makeRoute(o: InboundOptions): AppRoute {
    return new AppRoute(o.service, o.target, this.metrics.trafficStats('inbound', o.service), o.timeoutMs, o.maxConcurrent);
  }

  /** Applies a reloaded inbound section; a new target gets a new pool, the old one drains. */
  update(options: InboundOptions): void {
    this.limit = options.maxConcurrent;
    const old = this.route;
    if (options.target !== old.target || options.maxConcurrent !== old.endpoint.capacity || options.timeoutMs !== old.timeoutMs) {
      this.route = this.makeRoute(options);
      old.pool.close().catch(() => {});
    }
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const start = this.deps.clock.now();
    if (this.inflight >= this.limit) {
      const code = sendProxyError(res, 'overloaded', `more than ${this.limit} requests in flight`, { 'retry-after': '1' });
      this.route.stats.record(code, (this.deps.clock.now() - start) / 1000);
      return;
    }
    this.inflight++;
    res.once('close', this.release);
    new Call(req, res, this.route, undefined, this.deps, start).run();
  };

  private readonly release = (): void => {
    this.inflight--;
  };

  async close(): Promise<void> {
    await this.route.pool.close().catch(() => this.route.pool.destroy());
  }
}
