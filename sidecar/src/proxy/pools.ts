import { Pool } from './undici-pool.js';
import type { Endpoint } from '../core/endpoint.js';

export interface PoolOptions {
  readonly connections: number;
  readonly connectTimeoutMs: number;
}

/** Keep-alive connection pools, one per upstream endpoint. The proxy is the only owner of sockets. */
export class PoolRegistry {
  private readonly pools = new Map<Endpoint, Pool>();

  get(endpoint: Endpoint, options: PoolOptions): Pool {
    let pool = this.pools.get(endpoint);
    if (pool === undefined) {
      pool = createPool(`http://${endpoint.address}`, options);
      this.pools.set(endpoint, pool);
    }
    return pool;
  }

  /** Stops new requests to these endpoints' pools; requests in flight finish first. */
  release(endpoints: readonly Endpoint[]): void {
    for (const ep of endpoints) {
      const pool = this.pools.get(ep);
      if (pool === undefined) continue;
      this.pools.delete(ep);
      pool.close().catch(() => pool.destroy().catch(() => {}));
    }
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((p) => p.close().catch(() => p.destroy())));
  }
}

export function createPool(origin: string, options: PoolOptions): Pool {
  return new Pool(origin, {
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 30_000,
    connect: { timeout: options.connectTimeoutMs, noDelay: true },
  });
}
