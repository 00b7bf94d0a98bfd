import { randomInt } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';

/** A port that was free a moment ago (bound on 127.0.0.1 and released). */
/** Ports this test process handed out: never the same one twice. */
const handedOut = new Set<number>();

async function canBind(port: number): Promise<boolean> {
  const srv = createNetServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise<void>((resolve) => srv.close(() => resolve()));
  return ok;
}

/**
 * A port free on 127.0.0.1 for a server or process the test starts. It is picked at random below the
 * kernel's ephemeral range (32768 and up), so the outgoing connections of a busy machine cannot take it
 * between this check and the bind, and a test process never gets the same port twice.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const port = randomInt(20_000, 32_000);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20000..31999');
}

export interface Upstream {
  readonly server: Server;
  readonly address: string;
  readonly port: number;
  /** Requests received so far. */
  count: number;
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1 with a free port. */
export async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void, port = 0): Promise<Upstream> {
  const up: { count: number } = { count: 0 };
  const server = createServer((req, res) => {
    up.count++;
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const p = (server.address() as AddressInfo).port;
  return Object.assign(up, {
    server,
    address: `127.0.0.1:${p}`,
    port: p,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** Answers with a JSON echo of what arrived, tagged with `name`. */
export function echo(name: string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: string;
}

/**
 * Addresses served over HTTPS with the CA (PEM file) that signs their certificate: spawnControlPlane
 * registers its HTTP API here, so `send` (and `runOutrigger` for `--server ADDRESS`, with
 * $OUTRIGGER_CA_FILE) reach it over TLS pinned to that control plane's own mesh CA.
 */
const tlsAddresses = new Map<string, { readonly caFile: string; readonly caPem: string }>();

/** Marks `address` as HTTPS with the CA in `caFile` (read now). */
export function trustHttps(address: string, caFile: string, caPem: string): void {
  tlsAddresses.set(address, { caFile, caPem });
}

/** The CA file of an address registered with trustHttps. */
export function caFileOf(address: string): string | undefined {
  return tlsAddresses.get(address)?.caFile;
}

/**
 * One HTTP/1.1 request with node:http (no pooling, so each test controls its own connection); HTTPS pinned
 * to the registered CA for an address registered with trustHttps (a control plane's API).
 */
export function send(
  address: string,
  options: { method?: string; path?: string; headers?: Record<string, string | string[]>; body?: string | Buffer; agent?: false } = {},
): Promise<Reply> {
  const colon = address.lastIndexOf(':');
  const tls = tlsAddresses.get(address);
  const request = tls === undefined ? httpRequest : httpsRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: address.slice(0, colon),
        port: Number(address.slice(colon + 1)),
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: options.headers,
        agent: false,
        // servername '': the certificate is checked against the address, not a Host header a test sets.
        ...(tls === undefined ? {} : { ca: tls.caPem, servername: '' }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 25): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
