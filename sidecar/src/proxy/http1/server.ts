import net from 'node:net';
import type { Clock } from '../../../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import { ChunkedScanner } from './chunked.js';
import { HttpParseError, parseRequestHead, type ParseLimits, type RequestHead } from './parser.js';
import type { BodyConsumer, DetachedSocket, ExchangeObserver, IncomingExchange, ResponseFraming } from '../exchange.js';
import { MeshAcceptor, type InboundTls } from '../tls/mesh-tls.js';
import { H2_PREFACE, Http2Front } from '../http2/server.js';

/**
 * The downstream half of the HTTP/1.1 engine: a listener on `net` sockets that parses request heads
 * strictly, frames request bodies, keeps connections alive, answers what it refuses with the proper 4xx,
 * and enforces the header, body and idle timeouts and the connection cap. Each request becomes an
 * Exchange handed to the handler, which forwards it and writes the response back through the Exchange.
 */

export interface ListenerOptions {
  /** A request head must be complete within this time of its first byte (408). */
  readonly headerTimeoutMs: number;
  /** A keep-alive connection with no request in progress is closed after this time. */
  readonly idleTimeoutMs: number;
  /** While a request body is due, the client must send a byte at least this often (408). */
  readonly bodyTimeoutMs: number;
  /** Connections open at once on this listener; more are closed at accept. */
  readonly maxConnections: number;
  readonly limits: ParseLimits;
  /** Mutual TLS from other sidecars (absent or mode off: plaintext). */
  readonly tls?: InboundTls | undefined;
}

export interface ExchangeHandler {
  /** A request head has arrived; the handler now owns the exchange until it ends the response. */
  onRequest(ex: IncomingExchange): void;
  /**
   * A CONNECT request: returns the name of the service the tunnel carries (it is answered 200 and every
   * request inside it goes to that service), or undefined to refuse it.
   */
  onConnect(authority: string): string | undefined;
  /** Answers a request the listener refused itself (counted like any other answer). */
  onRefused(status: number): void;
}

const BODY_NONE = 0;
const BODY_LENGTH = 1;
const BODY_CHUNKED = 2;

const PHASE_IDLE = 0;
const PHASE_HEAD = 1;
const PHASE_BODY = 2;
const PHASE_WAIT = 3;
const PHASE_DETACHED = 4;

const reasonPhrases: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  422: 'Unprocessable Content',
  431: 'Request Header Fields Too Large',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function reasonPhrase(status: number): string {
  return reasonPhrases[status] ?? (status < 300 ? 'OK' : status < 400 ? 'Redirect' : status < 500 ? 'Client Error' : 'Server Error');
}

/** A small JSON answer the sidecar makes itself, with `x-outrigger-error` (the connection stays usable). */
export function errorResponse(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>, close = false): string {
  const body = JSON.stringify({ error: reason, message });
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-outrigger-error: ${reason}\r\n`;
  if (extraHeaders !== undefined) for (const k in extraHeaders) head += `${k}: ${extraHeaders[k]}\r\n`;
  if (close) head += 'connection: close\r\n';
  return `${head}\r\n${body}`;
}

/**
 * One request on a client connection and the response to it. The request body is delivered to one
 * BodyConsumer; the response is written with `writeHead`, `write` and `end`.
 */
export class Exchange implements IncomingExchange {
  observer: ExchangeObserver | undefined;
  /** Set once the response head has been written. */
  headSent = false;
  finished = false;
  /** Request body fully received. */
  bodyDone: boolean;
  /** The connection closes after this response (client asked, HTTP/1.0, listener draining, or framing). */
  private closeAfter: boolean;
  private readonly bodyKind: number;
  private remaining: number;
  private scanner: ChunkedScanner | undefined;
  private consumer: BodyConsumer | undefined;
  private queued: Buffer | undefined;
  private dechunker: ChunkedScanner | undefined;
  private continueSent = false;
  private pendingHead: string | undefined;
  /** A `stream`-framed body (from HTTP/2) is chunked here for an HTTP/1.1 client. */
  private chunkOut = false;

  constructor(
    readonly head: RequestHead,
    private readonly conn: ClientConnection,
    /** The service a CONNECT tunnel carries, if the request came through one. */
    readonly tunnel: string | undefined,
  ) {
    this.closeAfter = !head.keepAlive || conn.draining;
    if (head.chunked) {
      this.bodyKind = BODY_CHUNKED;
      this.remaining = 0;
      this.bodyDone = false;
    } else if (head.contentLength > 0) {
      this.bodyKind = BODY_LENGTH;
      this.remaining = head.contentLength;
      this.bodyDone = false;
    } else {
      this.bodyKind = BODY_NONE;
      this.remaining = 0;
      this.bodyDone = true;
    }
  }

  get hasBody(): boolean {
    return this.bodyKind !== BODY_NONE;
  }

  get peer(): string | undefined {
    return this.conn.peer;
  }

  get remoteAddress(): string | undefined {
    return this.conn.socket.remoteAddress;
  }

  /** Takes bytes of the request body from `buf[start..end)`; returns how many belonged to it. */
  feed(buf: Buffer, start: number, end: number): number {
    let n: number;
    if (this.bodyKind === BODY_LENGTH) {
      n = Math.min(this.remaining, end - start);
      this.remaining -= n;
      if (this.remaining === 0) this.bodyDone = true;
    } else {
      const sc = (this.scanner ??= new ChunkedScanner(this.conn.listener.options.limits));
      n = sc.push(buf, start, end);
      if (sc.done) this.bodyDone = true;
    }
    if (n > 0) {
      const chunk = start === 0 && n === buf.length ? buf : buf.subarray(start, start + n);
      const c = this.consumer;
      if (c === undefined) {
        this.queued = this.queued === undefined ? chunk : Buffer.concat([this.queued, chunk]);
        this.conn.pauseReading();
      } else if (!c.onBodyData(chunk)) {
        this.conn.pauseReading();
      }
    }
    if (this.bodyDone) this.consumer?.onBodyEnd();
    return n;
  }

  /** Starts the flow of the request body to `consumer` (answers `Expect: 100-continue` first). */
  setBodyConsumer(consumer: BodyConsumer): void {
    this.consumer = consumer;
    if (this.head.expectContinue && !this.continueSent && !this.headSent && !this.bodyDone) {
      this.continueSent = true;
      this.conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    }
    const q = this.queued;
    this.queued = undefined;
    const more = q === undefined || consumer.onBodyData(q);
    if (this.bodyDone) {
      if (this.bodyKind !== BODY_NONE) consumer.onBodyEnd();
      return;
    }
    if (more) this.conn.resumeReading();
  }

  /** Stops delivering the body (the consumer went away); what is left is read and dropped. */
  clearBodyConsumer(): void {
    this.consumer = undefined;
  }

  resumeBody(): void {
    if (this.consumer !== undefined) this.conn.resumeReading();
  }

  /**
   * Writes the response head: `statusLine` without CRLF, `headerBlock` as `name: value\r\n` lines (hop-by-hop
   * fields already removed). Framing decides the connection's fate and the framing fields added.
   */
  writeHead(status: number, reason: string, headerBlock: string, framing: ResponseFraming): void {
    let head = `HTTP/1.1 ${status} ${reason}\r\n${headerBlock}`;
    if (framing === 'chunked') {
      if (this.head.minor === 1) head += 'transfer-encoding: chunked\r\n';
      else {
        // An HTTP/1.0 client cannot read chunks: send the payload alone and close.
        this.closeAfter = true;
        const sc = (this.dechunker = new ChunkedScanner(this.conn.listener.options.limits));
        const socket = this.conn.socket;
        sc.onData = (b, s, e) => {
          socket.write(b.subarray(s, e));
        };
      }
    } else if (framing === 'close') {
      this.closeAfter = true;
    } else if (framing === 'stream') {
      if (this.head.minor === 1) {
        head += 'transfer-encoding: chunked\r\n';
        this.chunkOut = true;
      } else {
        this.closeAfter = true;
      }
    }
    if (this.conn.draining) this.closeAfter = true;
    if (framing === 'upgrade') head += '\r\n';
    else if (this.closeAfter) head += 'connection: close\r\n\r\n';
    else head += this.head.minor === 0 ? 'connection: keep-alive\r\n\r\n' : '\r\n';
    this.headSent = true;
    // The head waits for the first body bytes of the same read, so that a small response leaves in one
    // write of one string; if none come in this tick, it leaves alone.
    this.pendingHead = head;
    process.nextTick(flushHead, this);
  }

  /** Writes a head still held back by `writeHead`. */
  flushHead(): void {
    const h = this.pendingHead;
    if (h !== undefined) {
      this.pendingHead = undefined;
      this.conn.socket.write(h, 'latin1');
    }
  }

  /** Writes response body bytes (as framed upstream); false means wait for the observer's onClientDrain. */
  write(chunk: Buffer): boolean {
    if (this.chunkOut) return this.writeChunk(chunk);
    const h = this.pendingHead;
    if (h !== undefined) {
      this.pendingHead = undefined;
      if (chunk.length <= SMALL_BODY && this.dechunker === undefined) return this.conn.socket.write(h + chunk.toString('latin1'), 'latin1');
      this.conn.socket.write(h, 'latin1');
    }
    const d = this.dechunker;
    if (d !== undefined) {
      d.push(chunk, 0, chunk.length);
      return this.conn.socket.writableNeedDrain === false;
    }
    return this.conn.socket.write(chunk);
  }

  /** One chunk of a `stream`-framed body. */
  private writeChunk(chunk: Buffer): boolean {
    if (chunk.length === 0) return true;
    const h = this.pendingHead ?? '';
    this.pendingHead = undefined;
    const socket = this.conn.socket;
    socket.write(`${h}${chunk.length.toString(16)}\r\n`, 'latin1');
    socket.write(chunk);
    return socket.write('\r\n', 'latin1');
  }

  /** The response is complete; the connection takes the next request or closes. */
  end(trailers?: readonly string[]): void {
    if (this.finished) return;
    if (this.chunkOut) {
      let last = `${this.pendingHead ?? ''}0\r\n`;
      this.pendingHead = undefined;
      if (trailers !== undefined) for (let i = 0; i < trailers.length; i += 2) last += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
      this.conn.socket.write(`${last}\r\n`, 'latin1');
    }
    this.flushHead();
    this.finished = true;
    this.conn.exchangeDone(this, this.closeAfter || !this.bodyDone);
  }

  /** Writes a whole response the sidecar makes itself and ends the exchange. */
  sendRaw(response: string): void {
    if (this.headSent) {
      this.destroy();
      return;
    }
    this.headSent = true;
    if (this.conn.draining || !this.bodyDone) this.closeAfter = true;
    this.conn.socket.write(response, 'latin1');
    this.end();
  }

  /** A JSON error answer (`x-outrigger-error: reason`); cuts the connection if the response had started. */
  sendError(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>): void {
    if (this.finished) return;
    if (this.headSent) {
      this.destroy();
      return;
    }
    const close = this.closeAfter || this.conn.draining || !this.bodyDone;
    this.sendRaw(errorResponse(status, reason, message, extraHeaders, close));
  }

  /** Cuts the client connection (a response that cannot be completed honestly). */
  destroy(): void {
    this.finished = true;
    this.conn.socket.destroy();
  }

  /**
   * Takes the socket out of HTTP handling (after a 101 Switching Protocols was written): returns it with
   * any bytes the client sent beyond the request, which belong to the new protocol.
   */
  detach(): DetachedSocket {
    this.flushHead();
    this.finished = true;
    return this.conn.detach();
  }
}

/** One accepted client connection: reads requests one after another (pipelined ones wait their turn). */
export class ClientConnection {
  private buf: Buffer | undefined;
  private phase = PHASE_IDLE;
  /** The clock time the current phase's timeout counts from. */
  since: number;
  current: Exchange | undefined;
  private tunnel: string | undefined;
  private pausedByUs = false;
  draining = false;
  /** The client's verified mesh identity (its service), when it connected over mutual TLS. */
  peer: string | undefined;
  /** No request has been read yet: the first bytes may be the HTTP/2 connection preface. */
  private fresh = true;

  constructor(
    readonly socket: net.Socket,
    readonly listener: Http1Listener,
  ) {
    this.since = listener.clock.now();
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('end', this.onEnd);
    socket.on('error', noop);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    const phase = this.phase;
    if (phase === PHASE_BODY) {
      this.since = this.listener.clock.now();
      const ex = this.current!;
      let n: number;
      try {
        n = ex.feed(chunk, 0, chunk.length);
      } catch (err) {
        this.bodyError(err);
        return;
      }
      if (ex.bodyDone) {
        this.phase = PHASE_WAIT;
        if (n < chunk.length) this.hold(chunk.subarray(n));
      }
      return;
    }
    if (phase === PHASE_WAIT) {
      // A pipelined request: it waits until the current response is complete.
      this.hold(chunk);
      return;
    }
    if (phase === PHASE_DETACHED) return;
    if (phase === PHASE_IDLE) {
      this.phase = PHASE_HEAD;
      this.since = this.listener.clock.now();
    }
    this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
    this.parse();
  };

  private hold(bytes: Buffer): void {
    this.buf = this.buf === undefined ? bytes : Buffer.concat([this.buf, bytes]);
    this.pauseReading();
  }

  /** Parses what is buffered: a head, then as much of its body as is there. */
  private parse(): void {
    const buf = this.buf!;
    if (this.fresh) {
      if (buf[0] === 0x50 /* P */) {
        const n = Math.min(buf.length, H2_PREFACE.length);
        if (buf.compare(H2_PREFACE, 0, n, 0, n) === 0) {
          // HTTP/2 with prior knowledge (or after ALPN h2): the connection goes to the HTTP/2 engine.
          if (n === H2_PREFACE.length) this.toHttp2(buf);
          return;
        }
      }
      this.fresh = false;
    }
    let head: RequestHead | null;
    try {
      head = parseRequestHead(buf, 0, buf.length, this.listener.options.limits);
    } catch (err) {
      this.refuse(err);
      return;
    }
    if (head === null) return;
    const rest = head.headBytes < buf.length ? buf.subarray(head.headBytes) : undefined;
    this.buf = undefined;
    if (head.method === 'CONNECT') {
      this.connect(head, rest);
      return;
    }
    const ex = new Exchange(head, this, this.tunnel);
    this.current = ex;
    if (ex.bodyDone) {
      this.phase = PHASE_WAIT;
      if (rest !== undefined) this.hold(rest);
    } else {
      this.phase = PHASE_BODY;
      this.since = this.listener.clock.now();
      if (rest !== undefined) {
        let n: number;
        try {
          n = ex.feed(rest, 0, rest.length);
        } catch (err) {
          this.bodyError(err);
          return;
        }
        if (ex.bodyDone) {
          this.phase = PHASE_WAIT;
          if (n < rest.length) this.hold(rest.subarray(n));
        }
      }
    }
    this.listener.handler.onRequest(ex);
  }

  private connect(head: RequestHead, rest: Buffer | undefined): void {
    const service = this.tunnel === undefined ? this.listener.handler.onConnect(head.target) : undefined;
    if (service === undefined) {
      this.listener.handler.onRefused(this.tunnel === undefined ? 404 : 400);
      const msg = this.tunnel === undefined ? `CONNECT is accepted only for a service of the mesh, not "${head.target}"` : 'CONNECT inside a tunnel';
      this.closeWith(errorResponse(this.tunnel === undefined ? 404 : 400, this.tunnel === undefined ? 'unknown-service' : 'bad-request', msg, undefined, true));
      return;
    }
    this.tunnel = service;
    this.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    this.phase = PHASE_IDLE;
    this.since = this.listener.clock.now();
    if (rest !== undefined) this.onData(rest);
  }

  /** A request the parser refused: its status, then close (the stream cannot be trusted any more). */
  private refuse(err: unknown): void {
    const status = err instanceof HttpParseError ? err.status : 400;
    const code = err instanceof HttpParseError ? err.code : 'bad-request';
    const message = err instanceof Error ? err.message : String(err);
    this.listener.handler.onRefused(status);
    this.closeWith(errorResponse(status, 'bad-request', `${code}: ${message}`, undefined, true));
  }

  /** A malformed request body: the request in flight is abandoned and the connection closed. */
  private bodyError(err: unknown): void {
    const ex = this.current;
    if (ex !== undefined && !ex.finished) {
      const message = err instanceof Error ? err.message : String(err);
      // The response may not have started: answer 400 when we still can.
      if (!ex.headSent) {
        ex.finished = true;
        this.listener.handler.onRefused(400);
        ex.observer?.onClientClose();
        this.closeWith(errorResponse(400, 'bad-request', message, undefined, true));
        return;
      }
      ex.observer?.onClientClose();
    }
    this.socket.destroy();
  }

  private closeWith(response: string): void {
    this.phase = PHASE_DETACHED;
    this.buf = undefined;
    this.socket.end(response, 'latin1');
    // A client that keeps sending gets cut rather than read forever.
    this.socket.pause();
  }

  /** The current response is complete: take the next request, or close. */
  exchangeDone(ex: Exchange, close: boolean): void {
    if (this.current !== ex) return;
    this.current = undefined;
    if (close) {
      this.phase = PHASE_DETACHED;
      this.socket.end();
      return;
    }
    if (this.phase === PHASE_BODY) {
      // Answered before the body was read: the rest of the body cannot be skipped reliably.
      this.phase = PHASE_DETACHED;
      this.socket.end();
      return;
    }
    this.phase = PHASE_IDLE;
    this.since = this.listener.clock.now();
    if (this.buf !== undefined) {
      this.phase = PHASE_HEAD;
      this.parse();
    }
    if (this.phase === PHASE_IDLE || this.phase === PHASE_HEAD) this.resumeReading();
  }

  pauseReading(): void {
    if (!this.pausedByUs) {
      this.pausedByUs = true;
      this.socket.pause();
    }
  }

  resumeReading(): void {
    if (this.pausedByUs && this.phase !== PHASE_DETACHED) {
      // A pipelined request stays buffered until its turn.
      if (this.phase === PHASE_WAIT && this.buf !== undefined) return;
      this.pausedByUs = false;
      this.since = this.listener.clock.now();
      this.socket.resume();
    }
  }

  /** Hands the connection to the listener's HTTP/2 engine with the bytes read so far. */
  private toHttp2(pending: Buffer): void {
    this.phase = PHASE_DETACHED;
    this.buf = undefined;
    const s = this.socket;
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    s.off('error', noop);
    s.pause();
    this.listener.forget(this);
    this.listener.http2().adopt(s, pending, this.peer);
  }

  detach(): DetachedSocket {
    this.phase = PHASE_DETACHED;
    this.current = undefined;
    const s = this.socket;
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    this.listener.forget(this);
    this.listener.adoptUpgraded(s);
    const pending = this.buf;
    this.buf = undefined;
    return { socket: s, pending };
  }

  private readonly onDrain = (): void => {
    this.current?.observer?.onClientDrain();
  };

  private readonly onEnd = (): void => {
    // The client finished sending. A response in progress still goes out; then the connection closes.
    const ex = this.current;
    if (this.phase === PHASE_BODY && ex !== undefined) {
      // The body was cut short: the request can never complete.
      this.socket.destroy();
      return;
    }
    if (ex !== undefined && !ex.finished) {
      this.draining = true;
      return;
    }
    if (this.phase === PHASE_HEAD && this.buf !== undefined) {
      this.listener.handler.onRefused(400);
      this.closeWith(errorResponse(400, 'bad-request', 'the connection ended inside a request head', undefined, true));
      return;
    }
    this.socket.end();
  };

  private readonly onClose = (): void => {
    this.listener.forget(this);
    this.phase = PHASE_DETACHED;
    const ex = this.current;
    this.current = undefined;
    if (ex !== undefined && !ex.finished) {
      ex.finished = true;
      ex.observer?.onClientClose();
    }
  };

  /** Applies the phase's timeout (called by the listener's sweep). */
  checkTimeout(now: number): void {
    const o = this.listener.options;
    switch (this.phase) {
      case PHASE_IDLE:
        if (now - this.since >= o.idleTimeoutMs) this.socket.destroy();
        break;
      case PHASE_HEAD:
        if (now - this.since >= o.headerTimeoutMs) {
          this.listener.handler.onRefused(408);
          this.closeWith(errorResponse(408, 'request-timeout', `no complete request head within ${o.headerTimeoutMs} ms`, undefined, true));
        }
        break;
      case PHASE_BODY:
        // Only when the client is the slow one: a body we paused waits on the upstream, not on the client.
        if (!this.pausedByUs && now - this.since >= o.bodyTimeoutMs) {
          const ex = this.current;
          if (ex !== undefined && !ex.headSent && !ex.finished) {
            ex.finished = true;
            ex.observer?.onClientClose();
            this.listener.handler.onRefused(408);
            this.closeWith(errorResponse(408, 'request-timeout', `no request body bytes for ${o.bodyTimeoutMs} ms`, undefined, true));
          } else {
            this.socket.destroy();
          }
        }
        break;
      default:
        break;
    }
  }

  /** Shutdown: idle connections close now, busy ones after their current response. */
  drain(): void {
    this.draining = true;
    if (this.phase === PHASE_IDLE) this.socket.destroy();
  }
}

function noop(): void {}

function flushHead(ex: Exchange): void {
  ex.flushHead();
}

/** A first body chunk up to this size leaves in the same write as the response head. */
const SMALL_BODY = 4_096;

export interface Http1ListenerDeps {
  readonly clock: Clock;
  readonly timers: Timers;
}

/** A listening socket for HTTP/1.1 traffic and the connections it accepted. */
export class Http1Listener {
  readonly server: net.Server;
  private readonly conns = new Set<ClientConnection>();
  private readonly upgraded = new Set<net.Socket>();
  private sweeper: TimerHandle | undefined;
  readonly clock: Clock;
  private readonly timers: Timers;
  private closed: (() => void) | undefined;

  constructor(
    readonly handler: ExchangeHandler,
    public options: ListenerOptions,
    deps: Http1ListenerDeps,
  ) {
    this.clock = deps.clock;
    this.timers = deps.timers;
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const mesh = this.mesh;
      if (mesh === undefined) {
        const t = this.options.tls;
        if (t !== undefined && t.mode === 'strict') {
          // Mutual TLS is required but this sidecar has no certificate yet.
          t.refused('handshake');
          socket.destroy();
          return;
        }
        this.conns.add(new ClientConnection(socket, this));
        return;
      }
      // The first bytes and the handshake count against the header timeout.
      mesh.accept(socket, this.handshakeDeadline);
    });
    this.mesh = this.acceptorFor(options.tls);
    this.server.maxConnections = options.maxConnections;
    this.startSweeper();
  }

  /** Mutual TLS from other sidecars, when the listener's settings ask for it. */
  private mesh: MeshAcceptor | undefined;
  /** The HTTP/2 engine, made when the first client sends the HTTP/2 connection preface. */
  private h2: Http2Front | undefined;

  http2(): Http2Front {
    return (this.h2 ??= new Http2Front(this.handler, { limits: this.options.limits, idleTimeoutMs: this.options.idleTimeoutMs }));
  }

  /** HTTP/2 client connections open now. */
  get http2Connections(): number {
    return this.h2?.size ?? 0;
  }

  private readonly handshakeDeadline = (fn: () => void): TimerHandle => this.timers.after(this.options.headerTimeoutMs, fn);

  private acceptorFor(t: InboundTls | undefined): MeshAcceptor | undefined {
    if (t === undefined || t.mode === 'off' || t.credentials === undefined) return undefined;
    if (this.mesh !== undefined && this.mesh.settings === t) return this.mesh;
    return new MeshAcceptor(t, t.credentials, this.options.headerTimeoutMs, this.acceptSecured);
  }

  private readonly acceptSecured = (socket: net.Socket, peer: string | undefined): void => {
    if (this.closed !== undefined || !this.server.listening) {
      socket.destroy();
      return;
    }
    const c = new ClientConnection(socket, this);
    c.peer = peer;
    this.conns.add(c);
  };

  /** New timeouts and limits apply to every connection from now on. */
  configure(options: ListenerOptions): void {
    this.options = options;
    const mesh = this.acceptorFor(options.tls);
    if (mesh !== this.mesh) this.mesh?.close();
    this.mesh = mesh;
    this.server.maxConnections = options.maxConnections;
    if (this.h2 !== undefined) this.h2.options = { limits: options.limits, idleTimeoutMs: options.idleTimeoutMs };
    this.sweeper?.cancel();
    this.startSweeper();
  }

  private startSweeper(): void {
    const o = this.options;
    const every = Math.max(50, Math.min(1_000, Math.floor(Math.min(o.headerTimeoutMs, o.idleTimeoutMs, o.bodyTimeoutMs) / 4)));
    this.sweeper = this.timers.every(every, this.sweep);
  }

  private readonly sweep = (): void => {
    const now = this.clock.now();
    for (const c of this.conns) c.checkTimeout(now);
  };

  /** A socket taken over by another protocol (after 101): closed with the listener. */
  adoptUpgraded(socket: net.Socket): void {
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
  }

  get connections(): number {
    return this.conns.size;
  }

  forget(conn: ClientConnection): void {
    this.conns.delete(conn);
    if (this.closed !== undefined && this.conns.size === 0) this.closed();
  }

  /** Stops accepting, lets responses in flight finish for up to `graceMs`, then cuts what is left. */
  close(graceMs: number): Promise<void> {
    this.sweeper?.cancel();
    this.mesh?.close();
    return new Promise((resolve) => {
      const grace: { timer?: TimerHandle } = {};
      const done = (): void => {
        grace.timer?.cancel();
        this.closed = undefined;
        resolve();
      };
      if (this.server.listening) this.server.close();
      for (const s of this.upgraded) s.destroy();
      const h2 = this.h2;
      if (h2 !== undefined) {
        h2.close();
        this.timers.after(graceMs, () => h2.destroy());
      }
      if (this.conns.size === 0) {
        done();
        return;
      }
      this.closed = done;
      for (const c of [...this.conns]) c.drain();
      if (this.conns.size === 0) {
        done();
        return;
      }
      grace.timer = this.timers.after(graceMs, () => {
        for (const c of [...this.conns]) c.socket.destroy();
      });
    });
  }
}
