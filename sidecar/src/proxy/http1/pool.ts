import net from 'node:net';
import type { Clock } from '../../../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import { ChunkedScanner } from './chunked.js';
import { HttpParseError, parseResponseHead, type ParseLimits, type ResponseHead } from './parser.js';
import { UpstreamError, type DetachedSocket, type UpstreamHandler, type UpstreamLink, type UpstreamPoolLike } from '../exchange.js';
import { connectMesh, type UpstreamTls } from '../tls/mesh-tls.js';

/**
 * The upstream half of the HTTP/1.1 engine: per endpoint, a pool of keep-alive sockets (a cap on
 * connections, a connect timeout, an idle timeout) and, per socket, the reading of one response at a
 * time: head parsed strictly, body framed (Content-Length, chunked, close-delimited, none) and passed
 * on as the bytes arrived.
 */

export interface PoolOptions {
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly limits: ParseLimits;
  /** Mutual TLS to a sidecar's inbound listener (absent: plaintext). */
  readonly tls?: UpstreamTls | undefined;
}

export interface PoolDeps {
  readonly clock: Clock;
  readonly timers: Timers;
}

const R_IDLE = 0;
const R_HEAD = 1;
const R_LENGTH = 2;
const R_CHUNKED = 3;
const R_CLOSE = 4;

/** One socket to an upstream. It serves one exchange at a time. */
export class UpstreamConnection implements UpstreamLink {
  handler: UpstreamHandler | undefined;
  /** Exchanges this connection has started (1 during its first). */
  uses = 0;
  /** Clock time it went back to the pool. */
  idleSince = 0;
  /** Set once any byte of the current response has arrived. */
  responseStarted = false;
  /** The request of the current exchange has been written whole. */
  requestDone = false;
  connected = false;
  dead = false;
  private state = R_IDLE;
  private buf: Buffer | undefined;
  private remaining = 0;
  private scanner: ChunkedScanner | undefined;
  private noBody = false;
  private keepAlive = false;
  private lastError: Error | undefined;
  private connectTimer: TimerHandle | undefined;

  constructor(
    readonly socket: net.Socket,
    readonly pool: UpstreamPool,
  ) {
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  startConnectTimer(ms: number, timers: Timers): void {
    this.connectTimer = timers.after(ms, () => {
      this.connectTimer = undefined;
      if (this.connected || this.dead) return;
      this.lastError = Object.assign(new Error(`connect timeout after ${ms} ms`), { code: 'ETIMEDOUT' });
      this.socket.destroy();
    });
  }

  readonly onConnect = (): void => {
    this.connectTimer?.cancel();
    this.connectTimer = undefined;
    this.connected = true;
    this.pool.connected(this);
  };

  /** Starts an exchange: the response to a HEAD request has no body. */
  begin(handler: UpstreamHandler, head: boolean): void {
    this.handler = handler;
    this.uses++;
    this.noBody = head;
    this.responseStarted = false;
    this.requestDone = false;
    this.state = R_HEAD;
  }

  write(data: string | Buffer): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  writeRequest(head: string, body: Buffer | undefined): void {
    const s = this.socket;
    if (body === undefined) {
      s.write(head, 'latin1');
      return;
    }
    s.cork();
    s.write(head, 'latin1');
    s.write(body);
    s.uncork();
  }

  release(): void {
    this.pool.release(this);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Gives up the exchange: the socket is closed (its response can no longer be trusted to end cleanly). */
  abort(): void {
    this.handler = undefined;
    this.destroy();
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
  }

  /** Takes the socket out of the pool for another protocol (after 101): returns it with bytes already read. */
  detach(): DetachedSocket {
    const s = this.socket;
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    this.handler = undefined;
    this.dead = true;
    this.pool.forget(this);
    const pending = this.buf;
    this.buf = undefined;
    return { socket: s, pending };
  }

  private readonly onData = (chunk: Buffer): void => {
    const h = this.handler;
    if (h === undefined || this.state === R_IDLE) {
      // Bytes nobody asked for (an idle socket): this connection cannot be trusted any more.
      this.destroy();
      return;
    }
    this.responseStarted = true;
    if (this.state === R_HEAD) {
      this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
      this.readHeads();
      return;
    }
    this.body(chunk, 0);
  };

  private readHeads(): void {
    for (;;) {
      const buf = this.buf!;
      let head: ResponseHead | null;
      try {
        head = parseResponseHead(buf, 0, buf.length, this.pool.options.limits);
      } catch (err) {
        this.fail(new UpstreamError(`malformed response: ${(err as Error).message}`, 'request', err instanceof HttpParseError ? err.code : 'bad-response'));
        return;
      }
      if (head === null) return;
      const h = this.handler!;
      const status = head.status;
      const rest = head.headBytes < buf.length ? buf.subarray(head.headBytes) : undefined;
      this.buf = rest;
      if (status >= 100 && status < 200 && status !== 101) {
        // Interim responses (100 Continue was already answered to the client; 103 hints are dropped).
        if (rest === undefined) return;
        continue;
      }
      this.keepAlive = head.keepAlive;
      if (status === 101) {
        this.state = R_IDLE;
        h.onResponseHead(head);
        return;
      }
      if (this.noBody || status === 204 || status === 304) {
        this.state = R_IDLE;
        h.onResponseHead(head);
        this.complete();
        return;
      }
      if (head.chunked) {
        this.state = R_CHUNKED;
        const sc = (this.scanner ??= new ChunkedScanner(this.pool.options.limits));
        sc.reset();
      } else if (head.contentLength >= 0) {
        this.state = R_LENGTH;
        this.remaining = head.contentLength;
      } else {
        this.state = R_CLOSE;
        this.keepAlive = false;
      }
      this.buf = undefined;
      h.onResponseHead(head);
      if (this.handler !== h) return;
      if (this.state === R_LENGTH && this.remaining === 0) {
        if (rest !== undefined) this.keepAlive = false;
        this.complete();
        return;
      }
      if (rest !== undefined) this.body(rest, 0);
      return;
    }
  }

  private body(chunk: Buffer, start: number): void {
    const h = this.handler!;
    switch (this.state) {
      case R_LENGTH: {
        const avail = chunk.length - start;
        if (avail <= this.remaining) {
          this.remaining -= avail;
          h.onResponseData(start === 0 ? chunk : chunk.subarray(start));
        } else {
          // More than the response holds: the upstream broke the framing.
          h.onResponseData(chunk.subarray(start, start + this.remaining));
          this.remaining = 0;
          this.keepAlive = false;
        }
        if (this.remaining === 0 && this.handler === h) this.complete();
        return;
      }
      case R_CHUNKED: {
        const sc = this.scanner!;
        let n: number;
        try {
          n = sc.push(chunk, start, chunk.length);
        } catch (err) {
          this.fail(new UpstreamError(`malformed chunked response: ${(err as Error).message}`, 'response', 'bad-chunk'));
          return;
        }
        if (n > 0) h.onResponseData(start === 0 && n === chunk.length ? chunk : chunk.subarray(start, start + n));
        if (sc.done && this.handler === h) {
          if (start + n < chunk.length) this.keepAlive = false;
          this.complete();
        }
        return;
      }
      case R_CLOSE:
        h.onResponseData(start === 0 ? chunk : chunk.subarray(start));
        return;
      default:
        return;
    }
  }

  private complete(): void {
    const h = this.handler;
    this.state = R_IDLE;
    this.handler = undefined;
    h?.onResponseEnd();
    // Back to the pool when both sides are done and the upstream keeps the connection.
    if (this.keepAlive && this.requestDone && !this.dead && this.buf === undefined) this.pool.release(this);
    else this.destroy();
  }

  private fail(err: UpstreamError): void {
    const h = this.handler;
    this.handler = undefined;
    this.destroy();
    h?.onUpstreamError(err);
  }

  private readonly onDrain = (): void => {
    this.handler?.onUpstreamDrain();
  };

  private readonly onEnd = (): void => {
    if (this.state === R_CLOSE && this.handler !== undefined) {
      this.complete();
      return;
    }
    this.socket.end();
  };

  private readonly onError = (err: Error): void => {
    this.lastError = err;
  };

  private readonly onClose = (): void => {
    this.dead = true;
    this.connectTimer?.cancel();
    this.connectTimer = undefined;
    const h = this.handler;
    this.handler = undefined;
    const wasConnected = this.connected;
    this.pool.forget(this);
    if (!wasConnected) {
      const e = this.lastError as (Error & { code?: string }) | undefined;
      const err = new UpstreamError(e?.message ?? 'connection closed before it was established', 'connect', e?.code ?? 'ECONNREFUSED');
      this.pool.connectFailed(err);
      return;
    }
    if (h === undefined) return;
    if (this.state === R_CLOSE) {
      h.onResponseEnd();
      return;
    }
    const e = this.lastError as (Error & { code?: string }) | undefined;
    const phase = this.responseStarted ? 'response' : 'request';
    h.onUpstreamError(new UpstreamError(e?.message ?? (phase === 'response' ? 'upstream closed the connection mid-response' : 'upstream closed the connection before answering'), phase, e?.code ?? 'ECONNRESET'));
  };
}

/** Keep-alive connections to one endpoint; exchanges wait in order when every connection is busy. */
export class UpstreamPool implements UpstreamPoolLike {
  private readonly idle: UpstreamConnection[] = [];
  private readonly waiters: UpstreamHandler[] = [];
  private readonly all = new Set<UpstreamConnection>();
  /** Connections being opened (each serves the first waiter when it is up). */
  private connecting = 0;
  private closed = false;

  constructor(
    readonly host: string,
    readonly port: number,
    public options: PoolOptions,
    private readonly deps: PoolDeps,
  ) {}

  /** Open connections (busy, idle or connecting). */
  get size(): number {
    return this.all.size;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Hands `h` a connection now (an idle one), soon (a new one), or when one is released. */
  acquire(h: UpstreamHandler): void {
    const idle = this.idle;
    while (idle.length > 0) {
      const c = idle.pop()!;
      if (c.dead) continue;
      h.onUpstreamConnected(c, true);
      return;
    }
    this.waiters.push(h);
    if (this.all.size < this.options.maxConnections && this.connecting < this.waiters.length) this.open();
  }

  /** Withdraws a handler still waiting for a connection. */
  cancel(h: UpstreamHandler): void {
    const i = this.waiters.indexOf(h);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private open(): void {
    this.connecting++;
    const t = this.options.tls;
    const socket = t === undefined ? net.connect({ host: this.host, port: this.port, noDelay: true }) : connectMesh(this.host, this.port, t);
    const conn = new UpstreamConnection(socket, this);
    this.all.add(conn);
    // Over TLS the connection is usable once the handshake (and the peer's identity check) succeeded.
    socket.once(t === undefined ? 'connect' : 'secureConnect', conn.onConnect);
    conn.startConnectTimer(this.options.connectTimeoutMs, this.deps.timers);
  }

  connected(conn: UpstreamConnection): void {
    this.connecting--;
    if (this.closed) {
      conn.destroy();
      return;
    }
    this.release(conn, false);
  }

  /** A connection attempt failed: the oldest waiter learns it (others keep waiting for busy ones). */
  connectFailed(err: UpstreamError): void {
    this.connecting--;
    const h = this.waiters.shift();
    if (h !== undefined) h.onUpstreamError(err);
    // Waiters beyond what is open or being opened would wait forever: open for them (or fail them too).
    if (this.waiters.length > this.connecting && this.all.size < this.options.maxConnections && !this.closed) this.open();
  }

  /** A connection is free: the next waiter gets it, or it waits in the pool. */
  release(conn: UpstreamConnection, reused = true): void {
    if (this.closed) {
      conn.destroy();
      return;
    }
    const h = this.waiters.shift();
    if (h !== undefined) {
      h.onUpstreamConnected(conn, reused);
      return;
    }
    conn.idleSince = this.deps.clock.now();
    this.idle.push(conn);
  }

  forget(conn: UpstreamConnection): void {
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    // A slot freed up: a waiter may now get a new connection.
    if (!this.closed && this.waiters.length > this.connecting && this.all.size < this.options.maxConnections) this.open();
  }

  /** Closes connections idle for longer than the idle timeout (called by the registry's sweep). */
  sweep(now: number): void {
    const idle = this.idle;
    const limit = this.options.idleTimeoutMs;
    // The oldest are at the bottom of the stack.
    while (idle.length > 0 && now - idle[0]!.idleSince >= limit) idle.shift()!.destroy();
  }

  /** No new exchanges; idle sockets close now, busy ones after their exchange. */
  close(): void {
    this.closed = true;
    for (const c of this.idle) c.destroy();
    this.idle.length = 0;
    const waiters = this.waiters.splice(0);
    for (const h of waiters) h.onUpstreamError(new UpstreamError('the endpoint was removed', 'connect', 'EPOOLCLOSED'));
  }

  /** Cuts every connection at once. */
  destroy(): void {
    this.close();
    for (const c of [...this.all]) c.destroy();
  }
}
