import type { IncomingMessage, Server, ServerResponse } from 'node:http';

// Not `import ... from 'node:http'`: an ESM import of node:http evaluates all its lazy exports, which loads
// Node's bundled undici (about 6 MB of resident memory) that the sidecar never uses.
const { createServer } = process.getBuiltinModule('node:http');
import { healthFlagList } from '../core/endpoint.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Metrics } from '../telemetry/metrics.js';

/** What the admin endpoint reads; it changes nothing except through these hooks. */
export interface AdminSource {
  clusters(): Iterable<Cluster>;
  configView(): unknown;
  ready(): boolean;
  circuits(): unknown[];
  readonly metrics: Metrics;
}


export function clustersView(clusters: Iterable<Cluster>): unknown {
  const out: unknown[] = [];
  for (const c of clusters) {
    out.push({
      service: c.name,
      lb: c.config.lb,
      panic: c.panic,
      eligible: c.eligibleCount,
      endpoints: c.endpoints.map((e) => ({
        address: e.address,
        weight: e.weight,
        cost: e.cost,
        capacity: e.capacity,
        zone: e.zone ?? null,
        inflight: e.inflight,
        completed: e.completed,
        ewmaMs: Math.round(e.ewmaMs * 1000) / 1000,
        slowStartFactor: Math.round(e.rampFactor * 1000) / 1000,
        health: healthFlagList(e.flags),
        eligible: e.eligible,
      })),
    });
  }
  return { clusters: out };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The sidecar's admin HTTP endpoint (127.0.0.1:15000 by default). */
export function createAdminServer(source: AdminSource): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'method not allowed' });
      return;
    }
    switch (path) {
      case '/clusters':
        json(res, 200, clustersView(source.clusters()));
        return;
      case '/circuits':
        json(res, 200, { circuits: source.circuits() });
        return;
      case '/config':
        json(res, 200, source.configView());
        return;
      case '/metrics':
        source.metrics.render().then(
          (text) => {
            res.writeHead(200, { 'content-type': source.metrics.contentType });
            res.end(text);
          },
          (err: unknown) => json(res, 500, { error: String(err) }),
        );
        return;
      case '/ready':
        if (source.ready()) json(res, 200, { ready: true });
        else json(res, 503, { ready: false });
        return;
      case '/live':
        json(res, 200, { live: true });
        return;
      case '/':
        json(res, 200, { endpoints: ['/clusters', '/circuits', '/config', '/metrics', '/ready', '/live'] });
        return;
      default:
        json(res, 404, { error: `no admin endpoint ${path}` });
    }
  });
}
