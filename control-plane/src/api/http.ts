import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { systemClock } from '../../../common/src/clock.js';
import { ConfigError } from '../../../common/src/errors.js';
import { AutoscaleInputError } from '../autoscale/controller.js';
import type { AutoscaleView } from '../autoscale/types.js';
import type { PushServer } from '../push/server.js';
import type { ControlPlaneMetrics } from './metrics.js';
import type { Registry } from '../registry/registry.js';
import { createDashboardRoutes, readVersion, type DashboardOptions } from './dashboard/routes.js';

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const MAX_BODY = 1024 * 1024;
const SOFTWARE = readVersion();

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('body larger than 1 MiB'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text.trim() === '' ? {} : (JSON.parse(text) as unknown));
      } catch (err) {
        reject(new Error(`body is not JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

const dashboards = new WeakMap<Server, { close(): void }>();

/** Ends the dashboard's event streams and sampling, so the server can close without waiting for them. */
export function closeDashboard(server: Server): void {
  dashboards.get(server)?.close();
}

/**
 * The control plane's HTTP admin API (JSON), used by `outrigger ctl` and the dashboard:
 *
 *   GET    /api/services                          services, policies, endpoints with state and weights
 *   GET    /api/services/NAME                     one service
 *   GET    /api/services/NAME/policy              its policy as written, and where it comes from
 *   PUT    /api/services/NAME/policy              set it (JSON in the sidecar.yaml `services.NAME` shape)
 *   PATCH  /api/services/NAME/policy              merge a JSON merge patch (RFC 7386) into the policy in force
 *   DELETE /api/services/NAME/policy              drop the run-time policy: cp.yaml's (or none) applies again
 *          (PUT, PATCH and DELETE take ?dryRun=true: validated and answered, nothing changed)
 *   PUT    /api/services/NAME/weights/ADDRESS     { "weight": N } pins a weight; DELETE unpins
 *   POST   /api/drain                             { "address": "host:port" } drains an endpoint
 *   POST   /api/undrain                           { "address": "host:port" } brings it back
 *   GET    /api/instances                         registered instances
 *   GET    /api/sidecars                          connected sidecars: versions sent and ACKed, last NACK, load
 *   GET    /api/circuits                          circuit states reported by sidecars
 *   GET    /api/version                           current state version, and the software version (`software`)
 *   GET    /metrics                               Prometheus metrics of the control plane (outrigger_cp_*, process_*)
 *   GET    /, /dashboard/*, /api/dashboard[/events]   the live dashboard (dashboard/routes.ts)
 *   GET    /api/autoscale                         autoscaled services: bounds, sizes, state, last decisions
 *   PUT    /api/autoscale/NAME                    { "min"?, "max"?, "targetUtilization"? } overrides until restart
 */
export function createAdminApi(
  registry: Registry,
  push: PushServer,
  dashboard: DashboardOptions = { clock: systemClock },
  autoscaler?: { views(): AutoscaleView[]; override(service: string, input: unknown): AutoscaleView },
  metrics?: ControlPlaneMetrics,
): Server {
  const dash = createDashboardRoutes(registry, push, dashboard);
  const server = createServer((req, res) => {
    if (dash.handle(req, res)) return;
    handle(req, res).catch((err: unknown) => json(res, 500, { error: err instanceof Error ? err.message : String(err) }));
  });
  dashboards.set(server, dash);
  return server;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://control-plane');
    const parts = url.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
    const method = req.method ?? 'GET';
    if (parts[0] === 'healthz') return json(res, 200, { ok: true });
    if (parts[0] === 'metrics' && parts.length === 1 && metrics !== undefined && method === 'GET') {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (parts[0] !== 'api') return json(res, 404, { error: `no such path ${url.pathname}` });
    const [, kind, name, sub, arg] = parts;
    if (kind === 'version' && method === 'GET') return json(res, 200, { version: registry.version, software: SOFTWARE });
    if (kind === 'autoscale' && name === undefined && method === 'GET') return json(res, 200, { services: autoscaler?.views() ?? [] });
    if (kind === 'autoscale' && name !== undefined && sub === undefined && method === 'PUT') {
      try {
        const body = await readJson(req);
        if (autoscaler === undefined) return json(res, 404, { error: `no autoscaled service ${JSON.stringify(name)}` });
        return json(res, 200, autoscaler.override(name, body));
      } catch (err) {
        if (err instanceof AutoscaleInputError) return json(res, err.status, { error: err.message });
        return json(res, 400, { error: (err as Error).message });
      }
    }
    if (kind === 'instances' && method === 'GET') return json(res, 200, { instances: registry.instances(url.searchParams.get('service') ?? undefined) });
    if (kind === 'sidecars' && method === 'GET') return json(res, 200, { sidecars: push.views() });
    if (kind === 'circuits' && method === 'GET') {
      const service = url.searchParams.get('service');
      const circuits = push.views().flatMap((s) =>
        (s.lastLoad?.circuits ?? []).filter((c) => service === null || c.service === service).map((c) => ({ reporter: s.instance?.id ?? null, ...c })),
      );
      return json(res, 200, { circuits });
    }
    if (kind === 'drain' && method === 'POST') {
      const body = (await readJson(req)) as { address?: unknown };
      if (typeof body.address !== 'string') return json(res, 400, { error: 'expected { "address": "host:port" }' });
      const changed = registry.drain(body.address);
      return changed || registry.services().some((s) => s.endpoints.some((e) => e.address === body.address))
        ? json(res, 200, { drained: body.address, version: registry.version })
        : json(res, 404, { error: `no endpoint ${body.address}` });
    }
    if (kind === 'undrain' && method === 'POST') {
      const body = (await readJson(req)) as { address?: unknown };
      if (typeof body.address !== 'string') return json(res, 400, { error: 'expected { "address": "host:port" }' });
      return registry.undrain(body.address) ? json(res, 200, { undrained: body.address, version: registry.version }) : json(res, 404, { error: `${body.address} is not drained` });
    }
    if (kind === 'services') {
      if (name === undefined) return json(res, 200, { services: registry.services() });
      const svc = registry.services().find((s) => s.name === name);
      if (sub === undefined && method === 'GET') return svc ? json(res, 200, svc) : json(res, 404, { error: `no service ${name}` });
      if (sub === 'policy') {
        if (method === 'GET') return svc ? json(res, 200, { service: name, policySource: registry.policySource(name), policy: svc.policy }) : json(res, 404, { error: `no service ${name}` });
        if (method === 'PUT' || method === 'PATCH' || method === 'DELETE') return changePolicy(req, res, method, name, url.searchParams.get('dryRun'));
      }
      if (sub === 'weights' && arg !== undefined) {
        if (method === 'DELETE') {
          registry.clearWeight(name, arg);
          return json(res, 200, { service: name, endpoint: arg, version: registry.version });
        }
        if (method === 'PUT') {
          const body = (await readJson(req)) as { weight?: unknown };
          try {
            registry.setWeight(name, arg, Number(body.weight));
          } catch (err) {
            return json(res, 400, { error: (err as Error).message });
          }
          return json(res, 200, { service: name, endpoint: arg, weight: body.weight, version: registry.version });
        }
      }
    }
    return json(res, 404, { error: `no such endpoint: ${method} ${url.pathname}` });
  }

  /**
   * PUT sets the policy, PATCH merges a JSON merge patch into the policy in force, DELETE drops the
   * run-time policy (cp.yaml's applies again). With ?dryRun=true nothing changes: the answer says what the
   * policy would be (`policy`), what it is (`current`) and whether it is valid.
   */
  async function changePolicy(req: IncomingMessage, res: ServerResponse, method: 'PUT' | 'PATCH' | 'DELETE', name: string, dryRunParam: string | null): Promise<void> {
    const dryRun = dryRunParam === null || dryRunParam === 'false' ? false : dryRunParam === '' || dryRunParam === 'true' ? true : undefined;
    if (dryRun === undefined) return json(res, 400, { error: `dryRun: expected true or false, got ${JSON.stringify(dryRunParam)}` });
    const current = registry.policyOf(name);
    if (current === undefined && method !== 'PUT') return json(res, 404, { error: `no service ${name}` });
    let input: unknown;
    let patch: unknown;
    if (method === 'DELETE') input = registry.policyOf(name, true);
    else {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (method === 'PATCH' && type !== '' && type !== 'application/merge-patch+json' && type !== 'application/json') {
        return json(res, 415, { error: `expected Content-Type application/merge-patch+json or application/json, got ${type}` });
      }
      let body: unknown;
      try {
        body = await readJson(req);
      } catch (err) {
        return json(res, 400, { error: (err as Error).message });
      }
      if (method === 'PATCH' && (body === null || typeof body !== 'object' || Array.isArray(body))) {
        return json(res, 400, { error: 'expected a JSON merge patch: an object whose keys change the policy (null deletes a key)' });
      }
      patch = body;
      input = method === 'PATCH' ? registry.patchedPolicy(name, body) : body;
    }
    if (dryRun) {
      const base = { service: name, dryRun: true, current: current ?? null };
      try {
        const policy = registry.checkPolicy(name, input).input;
        return json(res, 200, { ...base, valid: true, policy });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        return json(res, 400, { ...base, valid: false, policy: input, error: err.issues.join('\n'), issues: err.issues });
      }
    }
    let changed: boolean;
    try {
      changed = method === 'DELETE' ? registry.clearPolicy(name) : method === 'PATCH' ? registry.patchPolicy(name, patch) : registry.setPolicy(name, input);
    } catch (err) {
      if (err instanceof ConfigError) return json(res, 400, { error: err.issues.join('\n'), issues: err.issues });
      throw err;
    }
    return json(res, 200, { service: name, changed, version: registry.version, policySource: registry.policySource(name), policy: registry.policyOf(name) ?? null });
  }
}
