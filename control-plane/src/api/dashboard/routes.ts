/**
 * The dashboard's HTTP routes on the control plane's admin listener:
 *
 *   GET /                                   the page (control-plane/dashboard/index.html)
 *   GET /dashboard/app.js, /dashboard/style.css
 *   GET /dashboard/vendor/uPlot.iife.min.js, /dashboard/vendor/uPlot.min.css   (from the uplot package)
 *   GET /api/dashboard                      DashboardState as JSON
 *   GET /api/dashboard/events               Server-Sent Events: `event: state` with the DashboardState at once
 *                                           and every `eventIntervalMs`, `retry: 2000`, comment heartbeats
 *
 * Static files are a fixed list (no path from the URL ever reaches the file system). The page needs no build
 * step: plain ES module JS, served as is. One timer serves every event stream, and runs only while at least
 * one client is connected; a client whose socket buffer is full skips events until it drains.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Clock } from '../../../../common/src/clock.js';
import { systemTimers, type TimerHandle, type Timers } from '../../../../common/src/timers.js';
import type { AutoscaleView } from '../../autoscale/types.js';
import type { SubscriberView } from '../../push/server.js';
import type { InstanceView, ServiceView } from '../../registry/registry.js';
import { buildDashboardState, DEFAULT_STALE_AFTER_MS, type DashboardState } from './state.js';

/** What the routes read from the control plane. */
export interface DashboardSource {
  services(): readonly ServiceView[];
  instances(): readonly InstanceView[];
  readonly version: number;
}

export interface DashboardOptions {
  readonly clock: Clock;
  readonly timers?: Timers | undefined;
  /** The autoscaler's views; absent when the control plane runs no autoscaler. */
  readonly autoscale?: (() => readonly AutoscaleView[]) | undefined;
  /** Period of state events on the event stream; default 1 s. */
  readonly eventIntervalMs?: number | undefined;
  /** Period of comment heartbeats on the event stream; default 15 s. */
  readonly heartbeatMs?: number | undefined;
  /** Load reports older than this are ignored; default 15 s (three of the sidecar's default report intervals). */
  readonly staleAfterMs?: number | undefined;
  /** Folder holding index.html, app.js and style.css; default: control-plane/dashboard of this checkout. */
  readonly staticDir?: string | undefined;
  /** Period of the per-service samples kept for the charts of a page opened later; default 2 s. */
  readonly historyIntervalMs?: number | undefined;
  /** How many samples are kept per service; default 150 (5 minutes at 2 s). */
  readonly historyPoints?: number | undefined;
}

/** The charts' series of one service, oldest first: wall-clock ms and the service totals at that time. */
export interface ServiceHistory {
  readonly t: number[];
  readonly rps: number[];
  readonly errorRate: number[];
  readonly p99Ms: number[];
}

export interface DashboardRoutes {
  /** Answers the request if it is one of the dashboard's routes; false leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  state(): DashboardState;
  /** Event-stream clients connected now. */
  clients(): number;
  /** Whether the shared event timer runs (only while clients are connected). */
  ticking(): boolean;
  /** Recent totals per service (what a newly opened page draws before live events arrive). */
  history(): Record<string, ServiceHistory>;
  /** Ends every event stream and stops sampling. */
  close(): void;
}

const here = dirname(fileURLToPath(import.meta.url));

/** The repository (or image) root: the folder above this file holding control-plane/dashboard and package.json. */
function findRoot(): string {
  // Compiled: dist/control-plane/src/api/dashboard/routes.js; from source: control-plane/src/api/dashboard/routes.ts.
  let dir = here;
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'control-plane', 'dashboard', 'index.html'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return join(here, '..', '..', '..', '..', '..');
}

const root = findRoot();

/** The control plane's software version (package.json), or "unknown". */
export function readVersion(): string {
  try {
    const require = createRequire(import.meta.url);
    const pkg = require(join(root, 'package.json')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

interface Asset {
  readonly file: () => string;
  readonly type: string;
}

function assets(staticDir: string): ReadonlyMap<string, Asset> {
  const require = createRequire(import.meta.url);
  const own = (name: string): (() => string) => () => join(staticDir, name);
  const vendor = (name: string): (() => string) => () => require.resolve(`uplot/dist/${name}`);
  return new Map<string, Asset>([
    ['/', { file: own('index.html'), type: 'text/html; charset=utf-8' }],
    ['/dashboard/app.js', { file: own('app.js'), type: 'text/javascript; charset=utf-8' }],
    ['/dashboard/style.css', { file: own('style.css'), type: 'text/css; charset=utf-8' }],
    ['/dashboard/vendor/uPlot.iife.min.js', { file: vendor('uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' }],
    ['/dashboard/vendor/uPlot.min.css', { file: vendor('uPlot.min.css'), type: 'text/css; charset=utf-8' }],
  ]);
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, method: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  res.end(method === 'HEAD' ? undefined : body);
}

function error(res: ServerResponse, status: number, message: string, method: string): void {
  send(res, status, 'application/json', JSON.stringify({ error: message }), method);
}

interface Client {
  readonly res: ServerResponse;
  /** The socket buffer is full: no events until 'drain'. */
  blocked: boolean;
}

export function createDashboardRoutes(registry: DashboardSource, push: { views(): readonly SubscriberView[] }, o: DashboardOptions): DashboardRoutes {
  const timers = o.timers ?? systemTimers;
  const eventIntervalMs = o.eventIntervalMs ?? 1_000;
  const heartbeatMs = o.heartbeatMs ?? 15_000;
  const staleAfterMs = o.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const files = assets(o.staticDir ?? join(root, 'control-plane', 'dashboard'));
  const version = readVersion();
  const clients = new Set<Client>();
  let tick: TimerHandle | undefined;
  let beat: TimerHandle | undefined;
  let eventId = 0;

  // Samples the totals on a timer of their own, so a page opened now shows the last minutes at once.
  const historyPoints = o.historyPoints ?? 150;
  const histories = new Map<string, ServiceHistory>();
  const sample = (): void => {
    const st = state();
    const seen = new Set<string>();
    for (const svc of st.services) {
      seen.add(svc.name);
      let h = histories.get(svc.name);
      if (h === undefined) histories.set(svc.name, (h = { t: [], rps: [], errorRate: [], p99Ms: [] }));
      h.t.push(st.generatedAt);
      h.rps.push(svc.totals.rps);
      h.errorRate.push(svc.totals.errorRate);
      h.p99Ms.push(svc.totals.p99Ms);
      if (h.t.length > historyPoints) for (const k of ['t', 'rps', 'errorRate', 'p99Ms'] as const) h[k].shift();
    }
    for (const name of histories.keys()) if (!seen.has(name)) histories.delete(name);
  };
  let sampler: TimerHandle | undefined = timers.every(o.historyIntervalMs ?? 2_000, sample);
  const historyEvent = (): string => `event: history\ndata: ${JSON.stringify(Object.fromEntries(histories))}\n\n`;

  const state = (): DashboardState =>
    buildDashboardState({
      version,
      stateVersion: registry.version,
      services: registry.services(),
      instances: registry.instances(),
      sidecars: push.views(),
      autoscale: o.autoscale?.() ?? [],
      now: o.clock.now(),
      wallNow: o.clock.wallNow(),
      staleAfterMs,
    });

  const write = (c: Client, chunk: string): void => {
    if (c.blocked || c.res.destroyed) return;
    if (!c.res.write(chunk)) c.blocked = true;
  };

  const event = (): string => `id: ${++eventId}\nevent: state\ndata: ${JSON.stringify(state())}\n\n`;

  const broadcast = (): void => {
    if (clients.size === 0) return;
    const chunk = event();
    for (const c of clients) write(c, chunk);
  };

  const stopTimersIfIdle = (): void => {
    if (clients.size > 0) return;
    tick?.cancel();
    beat?.cancel();
    tick = undefined;
    beat = undefined;
  };

  const drop = (c: Client): void => {
    if (!clients.delete(c)) return;
    stopTimersIfIdle();
  };

  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies in front of the control plane (nginx) must not buffer the stream.
      'x-accel-buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    const c: Client = { res, blocked: false };
    clients.add(c);
    res.on('close', () => drop(c));
    req.on('close', () => drop(c));
    res.on('error', () => drop(c));
    res.on('drain', () => {
      c.blocked = false;
    });
    write(c, `retry: 2000\n\n`);
    write(c, historyEvent());
    write(c, event());
    tick ??= timers.every(eventIntervalMs, broadcast);
    beat ??= timers.every(heartbeatMs, () => {
      for (const x of clients) write(x, `: heartbeat\n\n`);
    });
  };

  const serveFile = (asset: Asset, res: ServerResponse, method: string): void => {
    let path: string;
    try {
      path = asset.file();
    } catch (err) {
      error(res, 500, `dashboard file missing: ${err instanceof Error ? err.message : String(err)}`, method);
      return;
    }
    readFile(path).then(
      (body) => send(res, 200, asset.type, body, method),
      (err: unknown) => error(res, 500, `dashboard file missing: ${err instanceof Error ? err.message : String(err)}`, method),
    );
  };

  return {
    handle(req, res) {
      const path = new URL(req.url ?? '/', 'http://control-plane').pathname;
      const method = req.method ?? 'GET';
      const ours = path === '/' || path === '/dashboard' || path.startsWith('/dashboard/') || path === '/api/dashboard' || path === '/api/dashboard/events';
      if (!ours) return false;
      if (method !== 'GET' && method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        error(res, 405, `${method} is not allowed on ${path}`, method);
        return true;
      }
      if (path === '/api/dashboard') {
        send(res, 200, 'application/json', JSON.stringify(state()), method);
        return true;
      }
      if (path === '/api/dashboard/events') {
        if (method === 'HEAD') send(res, 200, 'text/event-stream; charset=utf-8', '', method);
        else stream(req, res);
        return true;
      }
      const asset = files.get(path === '/dashboard' ? '/' : path);
      if (asset === undefined) error(res, 404, `no such dashboard file ${path}`, method);
      else serveFile(asset, res, method);
      return true;
    },
    state,
    clients: () => clients.size,
    ticking: () => tick !== undefined,
    history: () => Object.fromEntries(histories),
    close() {
      sampler?.cancel();
      sampler = undefined;
      for (const c of [...clients]) c.res.end();
      clients.clear();
      stopTimersIfIdle();
    },
  };
}
