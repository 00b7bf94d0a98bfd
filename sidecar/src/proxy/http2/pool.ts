import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import type { Clock } from '../../../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import { ChunkedScanner } from '../http1/chunked.js';
import type { ParseLimits, ResponseHead } from '../http1/parser.js';
import { UpstreamError, type DetachedSocket, type UpstreamHandler, type UpstreamLink, type UpstreamPoolLike } from '../exchange.js';
import { connectMesh, type UpstreamTls } from '../tls/mesh-tls.js';
import { flatHeaders, requestHeadersOf } from './headers.js';

/**
 * The upstream half of the HTTP/2 engine: per endpoint, a few node:http2 client sessions, each carrying
 * many calls at once (one stream per call). A call takes a stream on the first connected session with room
 * under the server's SETTINGS_MAX_CONCURRENT_STREAMS; when every session is full, another is opened (up to
 * `maxConnections`) and calls wait for room in order. A session that received GOAWAY takes no new stream
 * and closes once its streams are done; streams the server did not process fail with phase `request`, so
 * the Call retries them elsewhere. Flow control is HTTP/2's: a paused response stream stops granting the
 * server window, and `write` returning false waits for 'drain'.
 */

export interface H2PoolOptions {
  /** Sessions per endpoint at most. */
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  /** A session with no stream for this long is closed. */
  readonly idleTimeoutMs: number;
  readonly limits: ParseLimits;
  /** Mutual TLS to a sidecar's inbound listener, ALPN h2 (absent: h2c with prior knowledge). */
  readonly tls?: UpstreamTls | undefined;
}

export interface H2PoolDeps {
  readonly clock: Clock;
  readonly timers: Timers;
}

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, HTTP2_HEADER_STATUS } = http2.constants;

/** Streams a session is assumed to take before the server's SETTINGS arrive (RFC 9113 recommends at least 100). */
const INITIAL_STREAM_LIMIT = 100;

/** One client session to the endpoint. */
class H2Conn {
  active = 0;
  /** Streams it has carried (0 while the first is in flight). */
  uses = 0;
  connected = false;
  draining = false;
  dead = false;
  idleSince = 0;
  lastError: (Error & { code?: string }) | undefined;
  connectTimer: TimerHandle | undefined;

  constructor(readonly session: ClientHttp2Session) {}

  /** Streams the server allows at once. */
  get limit(): number {
    const n = this.session.remoteSettings?.maxConcurrentStreams;
    return n === undefined || n <= 0 ? INITIAL_STREAM_LIMIT : Math.min(n, 10_000);
  }

  get hasRoom(): boolean {
    return this.connected && !this.draining && !this.dead && !this.session.closed && !this.session.destroyed && this.active < this.limit;
  }
}

/** One call's stream on a session. */
export class H2Link implements UpstreamLink {
  requestDone = false;
  private handler: UpstreamHandler | undefined;
  private stream: ClientHttp2Stream | undefined;
  private dechunker: ChunkedScanner | undefined;
  private responseStarted = false;
  private released = false;
  private completed = false;
  private ended = false;

  constructor(
    private readonly pool: H2Pool,
    readonly conn: H2Conn,
  ) {}

  begin(handler: UpstreamHandler): void {
    this.handler = handler;
  }

  private open(head: string, endStream: boolean): ClientHttp2Stream | undefined {
    const parsed = requestHeadersOf(head, this.pool.options.tls === undefined ? 'http' : 'https', this.pool.authority);
    if (parsed.chunked) {
      const sc = (this.dechunker = new ChunkedScanner(this.pool.options.limits));
      sc.onData = (b, s, e) => {
        this.stream?.write(b.subarray(s, e));
      };
    }
    let stream: ClientHttp2Stream;
    try {
      stream = this.conn.session.request(parsed.headers as OutgoingHttpHeaders, { endStream });
    } catch (err) {
      // The session closed under us (GOAWAY or a failure): nothing was sent.
      this.fail(new UpstreamError(`upstream session unusable: ${(err as Error).message}`, 'request', 'ESESSION'));
      return undefined;
    }
    this.stream = stream;
    stream.on('response', this.onResponse);
    stream.on('data', this.onData);
    stream.on('trailers', this.onTrailers);
    stream.on('end', this.onEnd);
    stream.on('drain', this.onDrain);
    stream.on('error', noop);
    stream.on('close', this.onClose);
    return stream;
  }

  write(data: string | Buffer): boolean {
    if (typeof data === 'string') {
      const s = this.open(data, false);
      return s === undefined ? true : !s.writableNeedDrain;
    }
    const s = this.stream;
    if (s === undefined || s.destroyed) return true;
    const d = this.dechunker;
    if (d !== undefined) {
      try {
        d.push(data, 0, data.length);
      } catch {
        this.abort();
        return true;
      }
      return !s.writableNeedDrain;
    }
    return s.write(data);
  }

  writeRequest(head: string, body: Buffer | undefined): void {
    if (body === undefined) {
      this.open(head, true);
      return;
    }
    const s = this.open(head, false);
    if (s === undefined) return;
    this.write(body);
    s.end();
  }

  endRequest(): void {
    const s = this.stream;
    if (s !== undefined && !s.destroyed) s.end();
  }

  pause(): void {
    this.stream?.pause();
  }

  resume(): void {
    this.stream?.resume();
  }

  /** Gives up the call: the stream is reset with CANCEL (the session goes on serving others). */
  abort(): void {
    this.handler = undefined;
    const s = this.stream;
    if (s !== undefined && !s.destroyed) s.close(NGHTTP2_CANCEL);
    this.free();
  }

  /** Gives back a stream slot handed over but not used. */
  release(): void {
    this.handler = undefined;
    this.free();
  }

  detach(): DetachedSocket {
    throw new Error('an HTTP/2 stream cannot be detached');
  }

  private free(): void {
    if (this.released) return;
    this.released = true;
    this.pool.streamDone(this.conn);
  }

  private fail(err: UpstreamError): void {
    const h = this.handler;
    this.handler = undefined;
    this.free();
    h?.onUpstreamError(err);
  }

  private readonly onResponse = (headers: IncomingHttpHeaders, flags: number): void => {
    const h = this.handler;
    if (h === undefined) return;
    this.responseStarted = true;
    const cl = headers['content-length'];
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const head: ResponseHead = {
      minor: 1,
      headers: flatHeaders(headers),
      contentLength: cl !== undefined && !endStream ? Number(cl) : -1,
      chunked: false,
      keepAlive: true,
      connectionUpgrade: false,
      upgrade: undefined,
      headBytes: 0,
      status: Number(headers[HTTP2_HEADER_STATUS]),
      reason: '',
      closeDelimited: false,
      streamed: true,
    };
    h.onResponseHead(head);
  };

  private readonly onData = (chunk: Buffer): void => {
    this.handler?.onResponseData(chunk);
  };

  private readonly onTrailers = (trailers: IncomingHttpHeaders): void => {
    this.handler?.onResponseTrailers?.(flatHeaders(trailers));
  };

  private readonly onEnd = (): void => {
    if (this.handler === undefined || !this.responseStarted) return;
    this.ended = true;
    // node:http2 also ends the readable side of a stream that was reset or whose session was lost, just before
    // it closes the stream: the response is complete only if neither happened by then.
    setImmediate(this.afterEnd);
  };

  private readonly afterEnd = (): void => {
    const h = this.handler;
    if (h === undefined || !this.endedCleanly()) return;
    this.completed = true;
    this.handler = undefined;
    this.free();
    h.onResponseEnd();
  };

  /** The response ended, and the stream was not reset nor its session lost. */
  private endedCleanly(): boolean {
    return this.ended && !this.conn.session.destroyed && (this.stream?.rstCode ?? 0) === 0;
  }

  private readonly onDrain = (): void => {
    this.handler?.onUpstreamDrain();
  };

  private readonly onClose = (): void => {
    if (this.handler !== undefined && !this.completed && this.endedCleanly()) {
      this.afterEnd();
      return;
    }
    const h = this.handler;
    this.handler = undefined;
    this.free();
    if (h === undefined || this.completed) return;
    // A session that is going away takes no new stream (its GOAWAY event may come after this).
    const session = this.conn.session;
    if (session.closed || session.destroyed) this.conn.draining = true;
    const s = this.stream!;
    const rst = s.rstCode ?? 0;
    const e = this.conn.lastError;
    // REFUSED_STREAM, or a stream the server never answered (GOAWAY, a closed connection): nothing was processed
    // as far as a response tells; `request` lets the Call retry it.
    const phase = this.responseStarted ? 'response' : 'request';
    const code = rst !== 0 ? `RST_${rst}` : (e?.code ?? 'ECONNRESET');
    const what = rst === NGHTTP2_REFUSED_STREAM ? 'upstream refused the stream' : rst !== 0 ? `upstream reset the stream (code ${rst})` : (e?.message ?? 'upstream closed the connection');
    h.onUpstreamError(new UpstreamError(what, phase, code));
  };
}

/** HTTP/2 sessions to one endpoint, multiplexed. */
export class H2Pool implements UpstreamPoolLike {
  private readonly conns: H2Conn[] = [];
  private readonly waiters: UpstreamHandler[] = [];
  private connecting = 0;
  private closed = false;
  readonly authority: string;

  constructor(
    readonly host: string,
    readonly port: number,
    public options: H2PoolOptions,
    private readonly deps: H2PoolDeps,
  ) {
    this.authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** Open sessions (connecting included). */
  get size(): number {
    return this.conns.length;
  }

  /** Streams open on every session. */
  get activeStreams(): number {
    let n = 0;
    for (const c of this.conns) n += c.active;
    return n;
  }

  acquire(h: UpstreamHandler): void {
    if (this.waiters.length === 0) {
      const c = this.withRoom();
      if (c !== undefined) {
        this.give(c, h);
        return;
      }
    }
    this.waiters.push(h);
    this.openIfNeeded();
  }

  cancel(h: UpstreamHandler): void {
    const i = this.waiters.indexOf(h);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  private withRoom(): H2Conn | undefined {
    for (const c of this.conns) if (c.hasRoom) return c;
    return undefined;
  }

  private give(c: H2Conn, h: UpstreamHandler): void {
    c.active++;
    const reused = c.uses > 0;
    c.uses++;
    h.onUpstreamConnected(new H2Link(this, c), reused);
  }

  /** Opens a session when the waiting calls exceed what the sessions being opened will take. */
  private openIfNeeded(): void {
    if (this.closed) return;
    if (this.waiters.length > this.connecting * INITIAL_STREAM_LIMIT && this.conns.length < Math.max(1, this.options.maxConnections)) this.open();
  }

  private open(): void {
    this.connecting++;
    const t = this.options.tls;
    const host = this.host;
    const port = this.port;
    const session = http2.connect(`${t === undefined ? 'http' : 'https'}://${this.authority}`, {
      createConnection: () => (t === undefined ? net.connect({ host, port, noDelay: true }) : connectMesh(host, port, t, ['h2'])),
      maxSessionMemory: 64,
      settings: { enablePush: false },
    });
    const c = new H2Conn(session);
    this.conns.push(c);
    c.connectTimer = this.deps.timers.after(this.options.connectTimeoutMs, () => {
      c.connectTimer = undefined;
      if (c.connected || c.dead) return;
      c.lastError = Object.assign(new Error(`connect timeout after ${this.options.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' });
      session.destroy();
    });
    session.once('connect', () => {
      c.connectTimer?.cancel();
      c.connectTimer = undefined;
      c.connected = true;
      this.connecting--;
      if (this.closed) {
        session.close();
        return;
      }
      this.serve();
    });
    // The server's SETTINGS may allow more (or fewer) streams than assumed: serve the waiters again.
    session.on('remoteSettings', () => this.serve());
    session.on('error', (err: Error & { code?: string }) => {
      c.lastError = err;
    });
    session.on('goaway', () => {
      c.draining = true;
      if (c.active === 0) session.close();
      this.openIfNeeded();
    });
    session.on('close', () => this.onSessionClose(c));
  }

  private onSessionClose(c: H2Conn): void {
    c.dead = true;
    c.connectTimer?.cancel();
    c.connectTimer = undefined;
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
    if (!c.connected) {
      this.connecting--;
      const e = c.lastError;
      const err = new UpstreamError(e?.message ?? 'connection closed before it was established', 'connect', e?.code ?? 'ECONNREFUSED');
      // Every call waiting for this endpoint learns it, unless another session will take them.
      if (this.connecting === 0 && this.withRoom() === undefined) {
        const waiters = this.waiters.splice(0);
        for (const h of waiters) h.onUpstreamError(err);
      }
      return;
    }
    this.openIfNeeded();
  }

  /** Hands waiting calls the room there is. */
  private serve(): void {
    while (this.waiters.length > 0) {
      const c = this.withRoom();
      if (c === undefined) break;
      this.give(c, this.waiters.shift()!);
    }
    this.openIfNeeded();
  }

  /** A stream of `c` is over (or its slot was given back). */
  streamDone(c: H2Conn): void {
    c.active--;
    if (c.active === 0) {
      c.idleSince = this.deps.clock.now();
      if (c.draining || this.closed) {
        c.session.close();
        return;
      }
    }
    if (this.waiters.length > 0 && c.hasRoom) this.give(c, this.waiters.shift()!);
  }

  /** Closes sessions without a stream for longer than the idle timeout. */
  sweep(now: number): void {
    for (const c of [...this.conns]) {
      if (c.connected && c.active === 0 && now - c.idleSince >= this.options.idleTimeoutMs) {
        c.draining = true;
        c.session.close();
      }
    }
  }

  /** No new calls; idle sessions close now, busy ones once their streams are done. */
  close(): void {
    this.closed = true;
    for (const c of this.conns) if (c.active === 0) c.session.close();
    const waiters = this.waiters.splice(0);
    for (const h of waiters) h.onUpstreamError(new UpstreamError('the endpoint was removed', 'connect', 'EPOOLCLOSED'));
  }

  destroy(): void {
    this.close();
    for (const c of [...this.conns]) c.session.destroy();
  }
}

function noop(): void {}
