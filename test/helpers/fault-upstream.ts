/**
 * A fault-injecting HTTP upstream for resilience tests: a real node:http server on 127.0.0.1 whose
 * behaviour can be switched while it runs (see {@link FaultMode}).
 *
 * Modes (captured when a request's head arrives; switching later does not change requests already in flight):
 *
 * | mode                  | what a client sees                                                                  |
 * |-----------------------|-------------------------------------------------------------------------------------|
 * | `ok`                  | 200, JSON `{ name, count }` (`count` = this request's 1-based `received` number)     |
 * | `fail`                | `status` for `percent` % of requests (seeded draw per request), `ok` otherwise       |
 * | `slow`                | the `ok` answer after `delayMs`                                                      |
 * | `hang`                | nothing: the request is read, never answered; the socket stays open until the mode  |
 * |                       | becomes `refuse`, or `kill()` / `restart()` / `close()`                               |
 * | `reset`               | TCP RST right after the request head → `ECONNRESET`                                  |
 * | `close-after-headers` | 200 with `content-length: 100`, then the connection closes with no body bytes       |
 * | `refuse`              | `ECONNREFUSED`: the server stops listening and drops its connections; any other mode |
 * |                       | listens again on the same port                                                       |
 *
 * `GET /healthz` (or HEAD): answers 200 `{ name, healthy: true }` at once in `ok`, `slow` and
 * `close-after-headers`; follows the mode in `hang`, `reset` and `refuse` (a wedged or dead process cannot answer a
 * health check either); in `fail` it follows the mode (same probability, same status) unless the upstream was started
 * with `healthzFollowsMode: false`, in which case it answers 200. Health checks are counted in `healthChecks` only,
 * never in the request counters, so a sidecar's active health checks do not disturb a test's assertions.
 *
 * Port: `refuse` and `kill()` release the port (nothing can refuse connections while holding it in Node). Re-listening
 * binds the same port again, retrying briefly on EADDRINUSE; on a loopback test box nothing else takes it in between.
 *
 * `setMode`, `kill`, `restart` and `close` are serialized: each waits for the previous one to finish.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { seededRandom, type Random } from '../../common/src/random.js';

export type FaultMode =
  | { readonly kind: 'ok' }
  | { readonly kind: 'fail'; readonly status: number; readonly percent: number }
  | { readonly kind: 'slow'; readonly delayMs: number }
  | { readonly kind: 'hang' }
  | { readonly kind: 'reset' }
  | { readonly kind: 'close-after-headers' }
  | { readonly kind: 'refuse' };

export interface FaultUpstreamOptions {
  /** Port to listen on; default: a free one chosen by the OS (kept across refuse/kill/restart). */
  readonly port?: number;
  /** Reported in answers (`name`) and in the `x-upstream-name` header; default `fault-upstream`. */
  readonly name?: string;
  /** Source of the `fail` draws; default `seededRandom(1)`, so runs are reproducible. */
  readonly random?: Random;
  /** Whether `/healthz` fails along with `fail` mode; default true. */
  readonly healthzFollowsMode?: boolean;
}

export interface FaultUpstream {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly port: number;
  readonly name: string;
  readonly mode: FaultMode;
  /** False in `refuse` mode, after `kill()` and after `close()`. */
  readonly listening: boolean;
  /** Switches behaviour; resolves once the server is closed (`refuse`) or listening again (any other mode). */
  setMode(mode: FaultMode): Promise<void>;

  /** Requests whose head arrived (excluding `/healthz`). */
  readonly received: number;
  /** `received`, by method. */
  readonly byMethod: ReadonlyMap<string, number>;
  /** Requests answered fully (the whole response handed to the socket). */
  readonly completed: number;
  /**
   * Arrivals per request identity: the `x-test-id` header, else the `idempotency-key` header (both counted when the
   * head arrives), else `sha256:<hex>` of the body (counted when the body has been read; in `reset` mode, where the
   * body is never read, `unread:<METHOD> <url>`). Lets a test prove a POST was delivered once.
   */
  readonly bodiesReceived: ReadonlyMap<string, number>;
  /** Requests open right now (head arrived, response neither finished nor aborted). */
  readonly inflight: number;
  /** Highest `inflight` seen since start or `resetCounters()`. */
  readonly maxInflight: number;
  /** `/healthz` requests whose head arrived. */
  readonly healthChecks: number;
  /** Zeroes the counters (`inflight` is a live gauge and stays; `maxInflight` restarts from it). */
  resetCounters(): void;

  /** Like kill -9: stops listening and resets (RST) every connection at once; mode reads `refuse` afterwards. */
  kill(): Promise<void>;
  /** Like a process restart: kills if running, then listens again on the same port in mode `ok`. Counters stay. */
  restart(): Promise<void>;
  /** Stops for good (for afterAll): closes the server and every connection. Idempotent. */
  close(): Promise<void>;
}

const OK: FaultMode = { kind: 'ok' };
const REFUSE: FaultMode = { kind: 'refuse' };
const CLOSE_AFTER_HEADERS_LENGTH = 100;

export async function startFaultUpstream(options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
  const up = new FaultUpstreamImpl(options);
  await up.start(options.port ?? 0);
  return up;
}

function validate(mode: FaultMode): void {
  switch (mode.kind) {
    case 'fail':
      if (!Number.isInteger(mode.status) || mode.status < 200 || mode.status > 599) throw new RangeError(`fail: status must be an integer in 200..599, got ${mode.status}`);
      if (!Number.isFinite(mode.percent) || mode.percent < 0 || mode.percent > 100) throw new RangeError(`fail: percent must be in 0..100, got ${mode.percent}`);
      return;
    case 'slow':
      if (!Number.isFinite(mode.delayMs) || mode.delayMs < 0) throw new RangeError(`slow: delayMs must be >= 0, got ${mode.delayMs}`);
      return;
    default:
      return;
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function isHealthz(req: IncomingMessage): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const url = req.url ?? '';
  const q = url.indexOf('?');
  return (q < 0 ? url : url.slice(0, q)) === '/healthz';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class FaultUpstreamImpl implements FaultUpstream {
  readonly name: string;
  #port = 0;
  #mode: FaultMode = OK;
  #server: Server | undefined;
  #closed = false;
  #queue: Promise<void> = Promise.resolve();
  readonly #random: Random;
  readonly #healthzFollowsMode: boolean;
  readonly #sockets = new Set<Socket>();
  readonly #timers = new Set<NodeJS.Timeout>();

  #received = 0;
  readonly #byMethod = new Map<string, number>();
  #completed = 0;
  readonly #bodies = new Map<string, number>();
  #inflight = 0;
  #maxInflight = 0;
  #healthChecks = 0;

  constructor(options: FaultUpstreamOptions) {
    this.name = options.name ?? 'fault-upstream';
    this.#random = options.random ?? seededRandom(1);
    this.#healthzFollowsMode = options.healthzFollowsMode ?? true;
  }

  get port(): number {
    return this.#port;
  }
  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }
  get mode(): FaultMode {
    return this.#mode;
  }
  get listening(): boolean {
    return this.#server !== undefined;
  }
  get received(): number {
    return this.#received;
  }
  get byMethod(): ReadonlyMap<string, number> {
    return this.#byMethod;
  }
  get completed(): number {
    return this.#completed;
  }
  get bodiesReceived(): ReadonlyMap<string, number> {
    return this.#bodies;
  }
  get inflight(): number {
    return this.#inflight;
  }
  get maxInflight(): number {
    return this.#maxInflight;
  }
  get healthChecks(): number {
    return this.#healthChecks;
  }

  async start(port: number): Promise<void> {
    await this.#listen(port);
  }

  setMode(mode: FaultMode): Promise<void> {
    return this.#enqueue(async () => {
      validate(mode);
      this.#assertOpen();
      if (mode.kind === 'refuse') {
        this.#mode = mode;
        await this.#stop(false);
      } else {
        if (!this.#server) await this.#listen(this.#port);
        this.#mode = mode;
      }
    });
  }

  resetCounters(): void {
    this.#received = 0;
    this.#byMethod.clear();
    this.#completed = 0;
    this.#bodies.clear();
    this.#maxInflight = this.#inflight;
    this.#healthChecks = 0;
  }

  kill(): Promise<void> {
    return this.#enqueue(async () => {
      this.#assertOpen();
      this.#mode = REFUSE;
      await this.#stop(true);
    });
  }

  restart(): Promise<void> {
    return this.#enqueue(async () => {
      this.#assertOpen();
      await this.#stop(true);
      await this.#listen(this.#port);
      this.#mode = OK;
    });
  }

  close(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#closed) return;
      this.#closed = true;
      this.#mode = REFUSE;
      await this.#stop(false);
    });
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`fault upstream ${this.name} is closed`);
  }

  async #listen(port: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const server = createServer((req, res) => this.#onRequest(req, res));
      server.on('connection', (socket: Socket) => {
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
      });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        // The port was released by refuse/kill; something may hold it for a moment.
        if (port !== 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 40) {
          await sleep(25);
          continue;
        }
        throw err;
      }
      this.#server = server;
      this.#port = (server.address() as AddressInfo).port;
      return;
    }
  }

  /** Stops listening, cancels pending slow answers and drops every connection (RST when `abortive`). */
  async #stop(abortive: boolean): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const socket of this.#sockets) {
      if (socket.destroyed) continue;
      if (abortive) socket.resetAndDestroy();
      else socket.destroy();
    }
    this.#sockets.clear();
    await closed;
  }

  #count(key: string): void {
    this.#bodies.set(key, (this.#bodies.get(key) ?? 0) + 1);
  }

  /** What a health check sees in `mode`. */
  #healthMode(mode: FaultMode): FaultMode {
    switch (mode.kind) {
      case 'hang':
      case 'reset':
      case 'refuse':
        return mode;
      case 'fail':
        return this.#healthzFollowsMode ? mode : OK;
      default:
        return OK;
    }
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const health = isHealthz(req);
    const mode = health ? this.#healthMode(this.#mode) : this.#mode;
    let seq: number;
    let id: string | undefined;
    if (health) {
      seq = ++this.#healthChecks;
    } else {
      seq = ++this.#received;
      const method = req.method ?? 'GET';
      this.#byMethod.set(method, (this.#byMethod.get(method) ?? 0) + 1);
      this.#inflight++;
      if (this.#inflight > this.#maxInflight) this.#maxInflight = this.#inflight;
      res.once('close', () => this.#inflight--);
      res.once('finish', () => this.#completed++);
      id = header(req, 'x-test-id') ?? header(req, 'idempotency-key');
      if (id !== undefined) this.#count(id);
    }

    if (mode.kind === 'reset' || mode.kind === 'refuse') {
      // `refuse` only races here (a request parsed while the server was being closed).
      if (!health && id === undefined) this.#count(`unread:${req.method ?? 'GET'} ${req.url ?? ''}`);
      if (mode.kind === 'reset') req.socket.resetAndDestroy();
      else req.socket.destroy();
      return;
    }

    // Decide a failure in arrival order, so the sequence of outcomes depends only on the seed.
    const failing = mode.kind === 'fail' && this.#random.next() * 100 < mode.percent;
    const hash = !health && id === undefined ? createHash('sha256') : undefined;
    req.on('data', (chunk: Buffer) => hash?.update(chunk));
    req.once('end', () => {
      if (hash) this.#count(`sha256:${hash.digest('hex')}`);
      switch (mode.kind) {
        case 'ok':
          this.#answer(res, health, seq, undefined);
          return;
        case 'fail':
          this.#answer(res, health, seq, failing ? mode.status : undefined);
          return;
        case 'slow': {
          const timer = setTimeout(() => {
            this.#timers.delete(timer);
            this.#answer(res, health, seq, undefined);
          }, mode.delayMs);
          this.#timers.add(timer);
          res.once('close', () => {
            clearTimeout(timer);
            this.#timers.delete(timer);
          });
          return;
        }
        case 'hang':
          return;
        case 'close-after-headers':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': CLOSE_AFTER_HEADERS_LENGTH, 'x-upstream-name': this.name });
          res.flushHeaders();
          // Flush the head, then close: the client is owed CLOSE_AFTER_HEADERS_LENGTH bytes it never gets.
          req.socket.destroySoon();
          return;
      }
    });
  }

  #answer(res: ServerResponse, health: boolean, seq: number, failStatus: number | undefined): void {
    if (res.destroyed) return;
    const status = failStatus ?? 200;
    const payload = health
      ? failStatus === undefined
        ? { name: this.name, healthy: true }
        : { name: this.name, healthy: false, fault: 'fail' }
      : failStatus === undefined
        ? { name: this.name, count: seq }
        : { name: this.name, count: seq, fault: 'fail' };
    const body = JSON.stringify(payload);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-upstream-name': this.name });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }
}
