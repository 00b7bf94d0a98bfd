import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { systemClock } from '../../../common/src/clock.js';
import { ConfigError } from '../../../common/src/errors.js';
import { AutoscaleInputError } from '../autoscale/controller.js';
import type { AutoscaleView } from '../autoscale/types.js';
import type { PushServer } from '../push/server.js';
import type { ControlPlaneMetrics } from './metrics.js';
import { ConflictError, type Registry } from '../registry/registry.js';
import { createDashboardRoutes, readVersion, type DashboardOptions } from './dashboard/routes.js';
import { createGuard, type GuardOptions } from './guard.js';
import { createAccessCheck } from './access.js';
import type { Authenticator } from '../auth/tokens.js';

function json(res: ServerResponse, status: number, body: unknown, close = false): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) });
  res.end(text);
}

/** A request the API refuses with `status` (4xx) and a message naming what was wrong. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Largest request body: 1 MiB (413 beyond). */
export const MAX_BODY = 1024 * 1024;
const SOFTWARE = readVersion();

/**
 * Reads a JSON body of at most MAX_BODY bytes.
 * @throws HttpError 413 when larger (the connection closes after the answer), 400 when empty or not JSON.
 */
function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY) return Promise.reject(new HttpError(413, `request body of ${declared} bytes: expected at most ${MAX_BODY} bytes (1 MiB)`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > MAX_BODY) {
        // Stop keeping it; node:http discards the rest once the answer is sent.
        req.off('data', onData);
        chunks.length = 0;
        reject(new HttpError(413, `request body: expected at most ${MAX_BODY} bytes (1 MiB)`));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return reject(new HttpError(400, 'expected a JSON body'));
      try {
        resolve(JSON.parse(text) as unknown);
      } catch (err) {
        reject(new HttpError(400, `body is not JSON: ${(err as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

/** A JSON object body (not an array, string or null). */
async function readObject(req: IncomingMessage, expected: string): Promise<Record<string, unknown>> {
  const body = await readJson(req);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, `expected ${expected}`);
  return body as Record<string, unknown>;
}

/** Path segments, percent-decoded. @throws HttpError 400 for a malformed escape. */
function pathParts(pathname: string): string[] {
  try {
    return pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  } catch {
    throw new HttpError(400, `malformed percent escape in the path ${JSON.stringify(pathname)}`);
  }
}

/** The admin API's server: HTTPS by default, plain HTTP with cp.yaml `tls: { enabled: false }`. */
export type Server = HttpServer | HttpsServer;

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
 *   GET    /api/version                           current state version, the software version (`software`), the store and leadership
 *   GET    /metrics                               Prometheus metrics of the control plane (outrigger_cp_*, process_*)
 *   GET    /, /dashboard/*, /api/dashboard[/events]   the live dashboard (dashboard/routes.ts)
 *   GET    /api/autoscale                         autoscaled services: bounds, sizes, state, last decisions
 *   PUT    /api/autoscale/NAME                    { "min"?, "max"?, "targetUtilization"? } overrides until restart
 *
 * Every request passes guard.ts first (Host, Origin, Content-Type), then access.ts (a bearer token whose role
 * may make the request; /healthz, /metrics, /api/version and the dashboard's static files are open). Bodies are capped at 1 MiB (413); every
 * bad input is a 400 with a JSON `error`. A change that is persisted (policies, weights, drains) is answered
 * only once it is saved (group commit: concurrent changes share one save); 503 when the save failed.
 */
export function createAdminApi(
  registry: Registry,
  push: PushServer,
  dashboard: DashboardOptions = { clock: systemClock },
  autoscaler?: { views(): AutoscaleView[]; override(service: string, input: unknown): AutoscaleView },
  metrics?: ControlPlaneMetrics,
  guardOptions: GuardOptions = { listen: '127.0.0.1:0', allowedHosts: [] },
  /** Tokens; undefined: no authentication (cp.yaml `auth: { disabled: true }`). */
  auth?: Authenticator,
  /** Key and certificate (PEM): served over HTTPS; undefined: plain HTTP. */
  tls?: { readonly key: string; readonly cert: string },
  /** Added to `GET /api/version`: where the state lives and whether this replica leads (docs/ha.md). */
  replication?: () => { readonly store: 'file' | 'etcd'; readonly leader: boolean; readonly replica?: string | undefined; readonly leaderReplica?: string | undefined },
): Server {
  const dash = createDashboardRoutes(registry, push, dashboard);
  const guard = createGuard(guardOptions);
  const access = auth === undefined ? undefined : createAccessCheck(auth);
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const refusal = guard(req);
    if (refusal !== undefined) return json(res, refusal.status, { error: refusal.message });
    if (access?.(req, res) === true) return;
    if (dash.handle(req, res)) return;
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) json(res, err.status, { error: err.message }, err.status === 413);
      else json(res, 500, { error: err instanceof Error ? err.message : String(err) });
    });
  };
  const server: Server = tls === undefined ? createServer(onRequest) : createHttpsServer({ key: tls.key, cert: tls.cert }, onRequest);
  dashboards.set(server, dash);
  return server;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://control-plane');
    const parts = pathParts(url.pathname);
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
    if (kind === 'version' && method === 'GET') return json(res, 200, { version: registry.version, software: SOFTWARE, ...(replication?.() ?? { store: 'file', leader: true }) });
    if (kind === 'autoscale' && name === undefined && method === 'GET') return json(res, 200, { services: autoscaler?.views() ?? [] });
    if (kind === 'autoscale' && name !== undefined && sub === undefined && method === 'PUT') {
      const body = await readJson(req);
      if (autoscaler === undefined) return json(res, 404, { error: `no autoscaled service ${JSON.stringify(name)}` });
      try {
        return json(res, 200, autoscaler.override(name, body));
      } catch (err) {
        if (err instanceof AutoscaleInputError) return json(res, err.status, { error: err.message });
        throw err;
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
    if ((kind === 'drain' || kind === 'undrain') && name === undefined && method === 'POST') {
      const { address } = await readObject(req, '{ "address": "host:port" }');
      if (typeof address !== 'string') throw new HttpError(400, 'expected { "address": "host:port" }');
      if (kind === 'undrain') {
        if (!registry.undrain(address)) return json(res, 404, { error: `${address} is not drained` });
        await durable([`drained/${address}`]);
        return json(res, 200, { undrained: address, version: registry.version });
      }
      let changed: boolean;
      try {
        changed = registry.drain(address);
      } catch (err) {
        if (err instanceof RangeError) throw new HttpError(400, `address: ${err.message}`);
        throw err;
      }
      if (!changed && !registry.services().some((s) => s.endpoints.some((e) => e.address === address))) return json(res, 404, { error: `no endpoint ${address}` });
      await durable([`drained/${address}`]);
      return json(res, 200, { drained: address, version: registry.version });
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
          await durable([`weights/${name}`]);
          return json(res, 200, { service: name, endpoint: arg, version: registry.version });
        }
        if (method === 'PUT') {
          const { weight } = await readObject(req, '{ "weight": N } with N an integer 1..1000');
          try {
            registry.setWeight(name, arg, typeof weight === 'number' ? weight : NaN);
          } catch (err) {
            if (err instanceof RangeError) throw new HttpError(400, err.message);
            throw err;
          }
          await durable([`weights/${name}`]);
          return json(res, 200, { service: name, endpoint: arg, weight, version: registry.version });
        }
      }
    }
    return json(res, 404, { error: `no such endpoint: ${method} ${url.pathname}` });
  }

  /**
   * Resolves once every change made so far is saved (a burst of requests shares one save).
   * @throws HttpError 503 when the save failed: the change is in force but may not survive a restart;
   *   409 when one of `keys` (shared-store keys this request changed) was changed through another replica
   *   meanwhile (store.etcd): that change stands, this one was not taken.
   */
  async function durable(keys: readonly string[] = []): Promise<void> {
    try {
      await registry.flush();
    } catch (err) {
      if (err instanceof ConflictError) {
        const lost = err.keys.filter((k) => keys.includes(k));
        if (lost.length === 0) return; // another request's key: this change was taken
        throw new HttpError(409, new ConflictError(lost).message);
      }
      throw new HttpError(503, `the change is in force but could not be saved, so a restart may lose it: ${err instanceof Error ? err.message : String(err)}`);
    }
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
      // guard.ts checked the Content-Type.
      const body = await readJson(req);
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
    await durable([`policies/${name}`]);
    return json(res, 200, { service: name, changed, version: registry.version, policySource: registry.policySource(name), policy: registry.policyOf(name) ?? null });
  }
}
