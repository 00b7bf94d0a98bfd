import { Agent, request, type ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { AddressInfo, Server } from 'node:net';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { checkHostPort } from '../../common/src/config/address.js';
import { systemRandom, type Random } from '../../common/src/random.js';
import { dualProtocolServer, InventoryCaller, isGrpc, serveListItems, type AnyRequest, type AnyResponse } from './grpc.js';

/**
 * A demo service instance (`outrigger demo-app`): the app behind a sidecar in `npm start` and in
 * docker-compose.yml. Answers every request with JSON naming its service and instance; `GET /healthz`
 * answers 200. With `calls`, it first asks another service through its sidecar's outbound listener (as
 * `catalog` asks `inventory`) and includes the answer.
 *
 * It speaks HTTP/1.1 and h2c (prior knowledge) on one port: over HTTP/2 it also answers the gRPC call
 * `outrigger.demo.v1.Inventory/ListItems`. With `calls.protocol: grpc` it asks the other service with that
 * call instead of `GET /items` (`outrigger demo --grpc`).
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
  /**
   * Another service to call for each request, through the sidecar's outbound listener `via` (host:port):
   * `GET /items` over HTTP/1.1 (`protocol: http`, the default) or the gRPC call ListItems (`grpc`).
   */
  readonly calls?: { readonly service: string; readonly via: string; readonly protocol?: 'http' | 'grpc' | undefined } | undefined;
  readonly random?: Random | undefined;
}

export interface Knob {
  delayMs: number;
  failPercent: number;
}

export interface DemoApp {
  /** The listener (HTTP/1.1 and h2c). */
  readonly server: Server;
  /** host:port actually bound. */
  readonly address: string;
  readonly knob: Knob;
  stop(): Promise<void>;
}

function send(res: AnyResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const header = (req: AnyRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
};

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

  function handleKnob(req: AnyRequest, res: AnyResponse, url: URL): void {
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

  function answer(req: AnyRequest, res: AnyResponse, extra: Record<string, unknown>): void {
    if (res.destroyed) return;
    if (knob.failPercent > 0 && random.next() * 100 < knob.failPercent) {
      return send(res, 500, { service: options.name, instance, error: 'failing on purpose (knob failPercent)' });
    }
    send(res, 200, { service: options.name, instance, host, method: req.method, path: req.url, requestId: req.headers['x-request-id'] ?? null, ...extra });
  }

  let caller: InventoryCaller | undefined;
  function callOverGrpc(req: AnyRequest, res: AnyResponse, calls: { service: string; via: string }): void {
    caller ??= new InventoryCaller(calls.service, calls.via);
    caller.listItems(header(req, 'x-request-id') ?? '', header(req, 'traceparent'), 10_000, (err, r) => {
      if (res.destroyed) return;
      if (err !== null) {
        return send(res, 502, { service: options.name, instance, error: `${calls.service} answered gRPC status ${err.code} (${GrpcStatus[err.code] ?? '?'}): ${err.details}` });
      }
      answer(req, res, { [calls.service]: r });
    });
  }

  function callUpstream(req: AnyRequest, res: AnyResponse, calls: { service: string; via: string; protocol?: 'http' | 'grpc' | undefined }): void {
    const via = checkHostPort(calls.via, false);
    if ('problem' in via) return send(res, 500, { error: `calls.via: ${via.problem}` });
    if (calls.protocol === 'grpc') return callOverGrpc(req, res, calls);
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

  /** The gRPC call: the same knob and answer as `GET /items`, as a ListItems response or a gRPC status. */
  function handleGrpc(req: Http2ServerRequest, res: Http2ServerResponse): void {
    serveListItems(req, res, (request, reply) => {
      const work = (): void => {
        if (knob.failPercent > 0 && random.next() * 100 < knob.failPercent) {
          return reply({ code: GrpcStatus.UNAVAILABLE, message: `${instance} failing on purpose (knob failPercent)` });
        }
        reply({ service: options.name, instance, host, items: ['anchor', 'oar', 'paddle'], requestId: request.requestId });
      };
      if (knob.delayMs > 0) setTimeout(work, knob.delayMs);
      else work();
    });
  }

  const handler = (req: AnyRequest, res: AnyResponse): void => {
    if (isGrpc(req)) {
      if (req.httpVersionMajor === 2) return handleGrpc(req as Http2ServerRequest, res as Http2ServerResponse);
      return send(res, 415, { error: 'gRPC needs HTTP/2' });
    }
    const url = new URL(req.url ?? '/', 'http://app');
    if (url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      (res as ServerResponse).writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
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
  };
  const dual = dualProtocolServer(handler, 30_000);
  const server = dual.server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const boundHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    server,
    address: `${boundHost}:${bound.port}`,
    knob,
    stop: () =>
      new Promise<void>((resolve) => {
        void dual.close().then(resolve);
        agent.destroy();
        caller?.close();
        // Requests still running get a moment to finish, then their connections are cut.
        setTimeout(() => dual.destroyAll(), 2_000).unref();
      }),
  };
}
