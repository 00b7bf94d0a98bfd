import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Pool } from 'undici';
import type { Metrics } from '../telemetry/metrics.js';
import { forward, type ForwardDeps, type Route } from './forward.js';
import { createPool } from './pools.js';
import { sendProxyError } from './respond.js';

export interface InboundOptions {
  readonly service: string;
  /** URL of the local app, e.g. http://127.0.0.1:8080 */
  readonly target: string;
  readonly maxConcurrent: number;
  readonly timeoutMs: number;
}

/**
 * The service's front door: forwards to the local app and sheds load beyond `maxConcurrent` requests in
 * flight with 503, `retry-after` and `x-outrigger-error: overloaded`, so the app keeps its latency.
 */
export class InboundProxy {
  private pool: Pool;
  private route: Route;
  private limit: number;
  private target: string;
  inflight = 0;

  constructor(
    options: InboundOptions,
    private readonly metrics: Metrics,
    private readonly deps: ForwardDeps,
  ) {
    this.target = options.target;
    this.limit = options.maxConcurrent;
    this.pool = createPool(new URL(options.target).origin, { connections: options.maxConcurrent, connectTimeoutMs: 2_000 });
    this.route = this.makeRoute(options);
  }

  private makeRoute(options: InboundOptions): Route {
    return { direction: 'inbound', service: options.service, stats: this.metrics.trafficStats('inbound', options.service), timeoutMs: options.timeoutMs };
  }

  /** Applies a reloaded inbound section; a new target gets a new pool, the old one drains. */
  update(options: InboundOptions): void {
    this.limit = options.maxConcurrent;
    this.route = this.makeRoute(options);
    if (options.target !== this.target) {
      const old = this.pool;
      this.target = options.target;
      this.pool = createPool(new URL(options.target).origin, { connections: options.maxConcurrent, connectTimeoutMs: 2_000 });
      old.close().catch(() => {});
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
    forward(req, res, this.route, this.pool, undefined, this.deps, start);
  };

  private readonly release = (): void => {
    this.inflight--;
  };

  async close(): Promise<void> {
    await this.pool.close().catch(() => this.pool.destroy());
  }
}
