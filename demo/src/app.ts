import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { checkHostPort } from '../../common/src/config/address.js';
import { systemRandom, type Random } from '../../common/src/random.js';
import { systemClock } from '../../common/src/clock.js';
import { dualProtocolServer, grpcStatusName, ItemsClient, type ItemsAnswer } from './grpc.js';

/**
 * A demo service instance (`outrigger demo-app`): the app behind a sidecar in `npm start` and in
 * docker-compose.yml. Answers every request with JSON naming its service and instance; `GET /healthz`
 * answers 200. With `calls`, it first asks another service through its sidecar's outbound listener (as
 * `catalog` asks `inventory`) and includes the answer.
 *
 * The knob (`GET /knob` shows it, `POST /knob?delayMs=300&failPercent=20` sets it) makes this one instance
 * slow or failing at run time, to watch the mesh route around it.
 */

export interface DemoAppOptions {
  /** The service name (also the instance name unless `instance` is given). */
  readonly name: string;
  readonly instance?: string | undefined;
  /** host:port to listen on; port 0 binds an ephemeral port. */
  readonly listen: string;
  /** Simulated work per request, ms. */
  readonly delayMs?: number | undefined;
  /** Share of requests answered 500, 0..100. */
  readonly failPercent?: number | undefined;
  /** Another service to call for each request, through the sidecar's outbound listener `via` (host:port). */
  readonly calls?: { readonly service: string; readonly via: string } | undefined;
  readonly random?: Random | undefined;
  /** gRPC: also serve the unary call /demo.Demo/Items (h2c, same port), and ask `calls` with it instead of GET /items. */
  readonly grpc?: boolean | undefined;
}

export interface Knob {
  delayMs: number;
  failPercent: number;
}

export interface DemoApp {
  readonly server: Server;
  /** host:port actually bound. */
  readonly address: string;
  readonly knob: Knob;
  stop(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Parses a knob value from the query: a number within [0, max], or undefined when absent. */
function knobValue(url: URL, key: string, max: number): number | undefined | Error {
  const raw = url.searchParams.get(key);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0 || n > max) return new Error(`${key}: expected a number 0..${max}, got ${JSON.stringify(raw)}`);
  return n;
}

export async function startDemoApp(options: DemoAppOptions): Promise<DemoApp> {
  const hp = checkHostPort(options.listen, true);
  if ('problem' in hp) throw new RangeError(`--listen: ${hp.problem}, got ${JSON.stringify(options.listen)}`);
  const random = options.random ?? systemRandom;
  const instance = options.instance ?? options.name;
  const knob: Knob = { delayMs: options.delayMs ?? 0, failPercent: options.failPercent ?? 0 };
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const host = hostname();

  function handleKnob(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method === 'POST' || req.method === 'PUT') {
      const delay = knobValue(url, 'delayMs', 60_000);
      const fail = knobValue(url, 'failPercent', 100);
      for (const v of [delay, fail]) if (v instanceof Error) return send(res, 400, { error: v.message });
      if (typeof delay === 'number') knob.delayMs = delay;
      if (typeof fail === 'number') knob.failPercent = fail;
    } else if (req.method !== 'GET') {
      return send(res, 405, { error: 'GET shows the knob, POST /knob?delayMs=N&failPercent=P sets it' });
    }
    send(res, 200, { service: options.name, instance, ...knob });
  }

  function answer(req: IncomingMessage, res: ServerResponse, extra: Record<string, unknown>): void {
    if (res.destroyed) return;
    if (knob.failPercent > 0 && random.next() * 100 < knob.failPercent) {
      return send(res, 500, { service: options.name, instance, error: 'failing on purpose (knob failPercent)' });
    }
    send(res, 200, { service: options.name, instance, host, method: req.method, path: req.url, requestId: req.headers['x-request-id'] ?? null, ...extra });
  }

  const itemsClient = options.grpc === true && options.calls !== undefined ? new ItemsClient(options.calls.via, options.calls.service) : undefined;

  /** The gRPC hop: Items on `calls.service`, answered as JSON like the HTTP one. */
  function callUpstreamGrpc(req: IncomingMessage, res: ServerResponse, service: string, client: ItemsClient): void {
    const md: Record<string, string> = {};
    for (const h of ['x-request-id', 'traceparent']) {
      const v = req.headers[h];
      if (typeof v === 'string') md[h] = v;
    }
    client.call(md, new Date(systemClock.wallNow() + 10_000)).then(
      (body) => answer(req, res, { [service]: body }),
      (err: { code?: number; details?: string }) => {
        if (!res.headersSent) send(res, 502, { service: options.name, instance, error: `${service}: gRPC ${grpcStatusName(err.code ?? 2)}: ${err.details ?? ''}` });
      },
    );
  }

  /** Items over gRPC: the same answer as GET, after the same knob delay and failures. */
  function itemsAnswer(metadata: Record<string, string>): Promise<ItemsAnswer> {
    return new Promise((resolve) => {
      const reply = (): void => {
        if (knob.failPercent > 0 && random.next() * 100 < knob.failPercent) {
          resolve({ code: 13, details: `${instance} is failing on purpose (knob failPercent)` });
          return;
        }
        resolve({ message: { service: options.name, instance, host, method: 'gRPC', path: '/demo.Demo/Items', requestId: metadata['x-request-id'] ?? null } });
      };
      if (knob.delayMs > 0) setTimeout(reply, knob.delayMs);
      else reply();
    });
  }

  function callUpstream(req: IncomingMessage, res: ServerResponse, calls: { service: string; via: string }): void {
    if (itemsClient !== undefined) return callUpstreamGrpc(req, res, calls.service, itemsClient);
    const via = checkHostPort(calls.via, false);
    if ('problem' in via) return send(res, 500, { error: `calls.via: ${via.problem}` });
    const headers: Record<string, string> = { host: calls.service };
    // Pass the trace along, as an instrumented service would.
    for (const h of ['x-request-id', 'traceparent']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const up = request({ host: via.host, port: via.port, path: '/items', method: 'GET', agent, headers, timeout: 10_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          // not JSON: pass the text on
        }
        if ((r.statusCode ?? 502) >= 400) return send(res, 502, { service: options.name, instance, error: `${calls.service} answered ${r.statusCode ?? '?'}`, [calls.service]: body });
        answer(req, res, { [calls.service]: body });
      });
      r.on('error', () => send(res, 502, { service: options.name, instance, error: `${calls.service}: response cut` }));
    });
    up.on('timeout', () => up.destroy(new Error('timeout')));
    up.on('error', (err) => {
      if (!res.headersSent) send(res, 502, { service: options.name, instance, error: `${calls.service}: ${err.message}` });
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    up.end();
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      res.end('ok\n');
      return;
    }
    if (url.pathname === '/knob') return handleKnob(req, res, url);
    req.resume();
    const work = (): void => {
      if (options.calls) callUpstream(req, res, options.calls);
      else answer(req, res, {});
    };
    if (knob.delayMs > 0) setTimeout(work, knob.delayMs);
    else work();
  });
  server.keepAliveTimeout = 30_000;
  // With gRPC, one port takes both HTTP/1.1 and h2c.
  const plain = (method: string, path: string, md: Record<string, string>): unknown => ({ service: options.name, instance, host, method, path, requestId: md['x-request-id'] ?? null });
  const listener = options.grpc === true ? dualProtocolServer(server, itemsAnswer, plain) : server;
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(hp.port, hp.host, () => resolve());
  });
  const bound = listener.address() as AddressInfo;
  const boundHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    server,
    address: `${boundHost}:${bound.port}`,
    knob,
    stop: () =>
      new Promise<void>((resolve) => {
        listener.close(() => resolve());
        if (listener !== server) server.close();
        server.closeIdleConnections();
        agent.destroy();
        itemsClient?.close();
        // Requests still running get a moment to finish, then their connections are cut.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}
