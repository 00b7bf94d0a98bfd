import type { IncomingMessage, Server, ServerResponse } from 'node:http';

// Not `import ... from 'node:http'`: an ESM import of node:http evaluates all its lazy exports, which loads
// Node's bundled undici (about 6 MB of resident memory) that the sidecar never uses.
const { createServer } = process.getBuiltinModule('node:http');
import type { SidecarConfig } from '../../../common/src/config/types.js';
import { healthFlagList } from '../core/endpoint.js';
import { configAsFile } from './config-view.js';
import type { Cluster } from '../cluster/cluster.js';
import type { Metrics } from '../telemetry/metrics.js';

/** What the admin endpoint reads; it changes nothing except through these hooks. */
export interface AdminSource {
  clusters(): Iterable<Cluster>;
  /** The effective configuration: the file's, with the services the control plane pushed laid over it. */
  config(): SidecarConfig;
  /** Where the configuration came from and its version, the last reload error and NACK. */
  configStatus(): ConfigStatus;
  ready(): boolean;
  circuits(): unknown[];
  readonly metrics: Metrics;
}

export interface ConfigStatus {
  /** The control plane's version when services came from it, else the file's. */
  readonly version: string;
  readonly source: 'static' | 'control-plane' | 'cache';
  readonly file: string | null;
  readonly fileVersion: number;
  readonly loadedAt: string;
  readonly lastReloadError: string | null;
  readonly lastNack: { readonly version: string; readonly reason: string } | null;
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
  send(res, status, 'application/json', JSON.stringify(body, null, 2));
}

function send(res: ServerResponse, status: number, type: string, text: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * `GET /config`: the effective configuration as a sidecar.yaml (YAML, or JSON with ?format=json or
 * Accept: application/json), with a comment saying where it came from.
 */
async function sendConfig(req: IncomingMessage, res: ServerResponse, source: AdminSource, query: string): Promise<void> {
  const format = new URLSearchParams(query).get('format');
  if (format !== null && format !== 'json' && format !== 'yaml') {
    json(res, 400, { error: `format: expected json or yaml, got ${JSON.stringify(format)}` });
    return;
  }
  const config = configAsFile(source.config());
  const wantsJson = format === 'json' || (format === null && /\bapplication\/json\b/i.test(req.headers.accept ?? ''));
  if (wantsJson) {
    json(res, 200, config);
    return;
  }
  const s = source.configStatus();
  const origin = s.source === 'static' ? `${s.file ?? 'the given configuration'} (file version ${s.fileVersion})` : `${s.file ?? 'the given configuration'} with services from the ${s.source === 'cache' ? "control plane's cached" : 'control plane'} version ${s.version}`;
  // yaml is loaded on the first YAML answer, not at start: a sidecar that is never asked keeps it out of memory.
  const { stringify } = await import('yaml');
  send(res, 200, 'application/yaml; charset=utf-8', `# effective configuration of ${source.config().instance}: ${origin}; see /config/status\n${stringify(config)}`);
}

/** The sidecar's admin HTTP endpoint (127.0.0.1:15000 by default). */
export function createAdminServer(source: AdminSource): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
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
        sendConfig(req, res, source, q < 0 ? '' : url.slice(q + 1)).catch((err: unknown) => json(res, 500, { error: String(err) }));
        return;
      case '/config/status':
        json(res, 200, source.configStatus());
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
        json(res, 200, { endpoints: ['/clusters', '/circuits', '/config', '/config/status', '/metrics', '/ready', '/live'] });
        return;
      default:
        json(res, 404, { error: `no admin endpoint ${path}` });
    }
  });
}
