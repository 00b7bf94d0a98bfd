import type { Endpoint } from '../core/endpoint.js';
import type { TimerHandle } from '../../../common/src/timers.js';
import { UpstreamPool, type PoolDeps, type PoolOptions } from './http1/pool.js';
import { H2Pool, type H2PoolOptions } from './http2/pool.js';


/** How often idle upstream connections are checked against their idle timeout. */
const SWEEP_MS = 1_000;

/**
 * Connection pools, one per upstream endpoint and engine: HTTP/1.1 keep-alive sockets, and HTTP/2 sessions
 * for endpoints spoken to in HTTP/2. The proxy is the only owner of sockets.
 */
export class PoolRegistry {
  private readonly pools = new Map<Endpoint, UpstreamPool>();
  private readonly h2 = new Map<Endpoint, H2Pool>();
  private readonly sweeper: TimerHandle;

  constructor(private readonly deps: PoolDeps) {
    this.sweeper = deps.timers.every(SWEEP_MS, () => {
      const now = deps.clock.now();
      for (const p of this.pools.values()) p.sweep(now);
      for (const p of this.h2.values()) p.sweep(now);
    });
  }

  get(endpoint: Endpoint, options: PoolOptions): UpstreamPool {
    let pool = this.pools.get(endpoint);
    if (pool === undefined) {
      pool = new UpstreamPool(endpoint.host, endpoint.port, options, this.deps);
      this.pools.set(endpoint, pool);
    } else if (pool.options !== options) {
      pool.options = options;
    }
    return pool;
  }

  /** The HTTP/2 sessions of an endpoint. */
  getH2(endpoint: Endpoint, options: H2PoolOptions): H2Pool {
    let pool = this.h2.get(endpoint);
    if (pool === undefined) {
      pool = new H2Pool(endpoint.host, endpoint.port, options, this.deps);
      this.h2.set(endpoint, pool);
    } else if (pool.options !== options) {
      pool.options = options;
    }
    return pool;
  }

  /** Stops new requests to these endpoints' pools; requests in flight finish first. */
  release(endpoints: readonly Endpoint[]): void {
    for (const ep of endpoints) {
      const pool = this.pools.get(ep);
      if (pool !== undefined) {
        this.pools.delete(ep);
        pool.close();
      }
      const h2 = this.h2.get(ep);
      if (h2 !== undefined) {
        this.h2.delete(ep);
        h2.close();
      }
    }
  }

  /** Every pool: idle connections close now, busy ones when their exchange ends (or are cut with `destroy`). */
  close(destroy = false): void {
    this.sweeper.cancel();
    for (const p of [...this.pools.values(), ...this.h2.values()]) {
      if (destroy) p.destroy();
      else p.close();
    }
    this.pools.clear();
    this.h2.clear();
  }
}
