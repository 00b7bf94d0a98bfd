import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import { ChunkedScanner } from '../http1/chunked.js';
import type { ParseLimits, RequestHead } from '../http1/parser.js';
import type { BodyConsumer, DetachedSocket, ExchangeObserver, IncomingExchange, ResponseFraming } from '../exchange.js';
import type { ExchangeHandler } from '../http1/server.js';
import { encodeGrpcMessage, grpcStatusOfReason, isGrpcContentType } from '../grpc.js';
import { headerObject, parseHeaderBlock } from './headers.js';

/**
 * The downstream half of the HTTP/2 engine: node:http2 sessions on sockets the HTTP/1.1 listener handed
 * over after reading the connection preface (h2c with prior knowledge, or h2 after ALPN over mutual TLS).
 * Each stream becomes an Http2Exchange, the same Downstream a Call drives for HTTP/1.1: the request arrives
 * as an HTTP/1-shaped head (a body without content-length is chunked for the Call, so it can go to an
 * HTTP/1.1 upstream as it is) and the response is sent as HTTP/2 headers, data and trailers.
 */

/** The client connection preface of HTTP/2 (RFC 9113 section 3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const {
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_AUTHORITY,
  HTTP2_HEADER_STATUS,
  NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR,
} = http2.constants;

/** How many concurrent streams one client connection may open (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const DOWNSTREAM_MAX_STREAMS = 1000;

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');

/** One HTTP/2 stream (one request and its response) as a Downstream. */
export class Http2Exchange implements IncomingExchange {
  observer: ExchangeObserver | undefined;
  readonly tunnel = undefined;
  readonly version = 2 as const;
  finished = false;
  headSent = false;
  readonly head: RequestHead;
  readonly hasBody: boolean;
  private readonly chunkIn: boolean;
  private readonly grpc: boolean;
  /** The client takes trailers (a gRPC call, or `te: trailers`): the response waits for them. */
  private readonly trailersWanted: boolean;
  private consumer: BodyConsumer | undefined;
  private queued: Buffer[] | undefined;
  private bodyDone: boolean;
  private pending: OutgoingHttpHeaders | undefined;
  private dechunker: ChunkedScanner | undefined;
  private trailersOut: readonly string[] | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: readonly string[],
    readonly remoteAddress: string | undefined,
    readonly peer: string | undefined,
    private readonly limits: ParseLimits,
  ) {
    const method = String(headers[HTTP2_HEADER_METHOD] ?? 'GET');
    const authority = headers[HTTP2_HEADER_AUTHORITY] as string | undefined;
    const flat: string[] = [];
    let host: string | undefined;
    let contentLength = -1;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      if (name.charCodeAt(0) === 58 /* : */) continue;
      const value = rawHeaders[i + 1]!;
      if (name === 'host') host = value;
      else if (name === 'content-length') contentLength = Number(value);
      flat.push(name, value);
    }
    if (host === undefined && authority !== undefined) {
      host = authority;
      flat.push('host', authority);
    }
    this.hasBody = !stream.endAfterHeaders;
    this.bodyDone = !this.hasBody;
    this.chunkIn = this.hasBody && !(contentLength >= 0);
    this.grpc = isGrpcContentType(headers['content-type']);
    this.trailersWanted = this.grpc || headers.te === 'trailers';
    const path = String(headers[HTTP2_HEADER_PATH] ?? (method === 'CONNECT' ? (authority ?? '') : '/'));
    this.head = {
      minor: 1,
      headers: flat,
      contentLength: Number.isFinite(contentLength) ? contentLength : -1,
      chunked: this.chunkIn,
      keepAlive: true,
      connectionUpgrade: false,
      upgrade: undefined,
      headBytes: 0,
      method,
      target: path,
      host,
      expectContinue: false,
    };
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('drain', this.onDrain);
    stream.on('close', this.onClose);
    stream.on('error', noop);
    stream.on('wantTrailers', this.onWantTrailers);
  }

  private readonly onData = (chunk: Buffer): void => {
    const c = this.consumer;
    if (c === undefined) {
      (this.queued ??= []).push(chunk);
      this.stream.pause();
      return;
    }
    if (!this.deliver(c, chunk)) this.stream.pause();
  };

  /** Hands body bytes to `c`, chunked when the body has no length (the Call forwards them framed). */
  private deliver(c: BodyConsumer, chunk: Buffer): boolean {
    if (!this.chunkIn) return c.onBodyData(chunk);
    if (chunk.length === 0) return true;
    return c.onBodyData(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF]));
  }

  private readonly onEnd = (): void => {
    this.bodyDone = true;
    const c = this.consumer;
    if (c === undefined) return;
    if (this.chunkIn) c.onBodyData(LAST_CHUNK);
    c.onBodyEnd();
  };

  private readonly onDrain = (): void => {
    this.observer?.onClientDrain();
  };

  private readonly onClose = (): void => {
    if (this.finished) return;
    this.finished = true;
    this.observer?.onClientClose();
  };

  private readonly onWantTrailers = (): void => {
    const t = this.trailersOut;
    // Empty trailers end the stream cleanly (an empty HEADERS frame with END_STREAM).
    this.stream.sendTrailers(t === undefined || t.length === 0 ? {} : headerObject(t));
  };

  setBodyConsumer(consumer: BodyConsumer): void {
    this.consumer = consumer;
    const q = this.queued;
    this.queued = undefined;
    let more = true;
    if (q !== undefined) for (const b of q) more = this.deliver(consumer, b) && more;
    if (this.bodyDone) {
      if (this.hasBody) {
        if (this.chunkIn) consumer.onBodyData(LAST_CHUNK);
        consumer.onBodyEnd();
      }
      return;
    }
    if (more) this.stream.resume();
  }

  clearBodyConsumer(): void {
    this.consumer = undefined;
  }

  resumeBody(): void {
    if (this.consumer !== undefined) this.stream.resume();
  }

  writeHead(status: number, _reason: string, headerBlock: string, framing: ResponseFraming): void {
    const headers: OutgoingHttpHeaders = { [HTTP2_HEADER_STATUS]: status };
    parseHeaderBlock(headerBlock, 0, headers);
    if (framing === 'chunked') {
      const sc = (this.dechunker = new ChunkedScanner(this.limits));
      sc.onData = (b, s, e) => {
        this.send(b.subarray(s, e));
      };
    }
    this.headSent = true;
    // Held until the first body bytes or the end, so that a bodiless answer is one HEADERS frame.
    this.pending = headers;
  }

  private flush(): void {
    const h = this.pending;
    if (h === undefined) return;
    this.pending = undefined;
    if (this.stream.destroyed) return;
    this.stream.respond(h, { waitForTrailers: this.trailersWanted });
  }

  private send(chunk: Buffer): boolean {
    this.flush();
    if (this.stream.destroyed) return true;
    return this.stream.write(chunk);
  }

  write(chunk: Buffer): boolean {
    const d = this.dechunker;
    if (d !== undefined) {
      this.flush();
      try {
        d.push(chunk, 0, chunk.length);
      } catch {
        this.destroy();
        return true;
      }
      return !this.stream.writableNeedDrain;
    }
    return this.send(chunk);
  }

  end(trailers?: readonly string[]): void {
    if (this.finished) return;
    this.finished = true;
    const stream = this.stream;
    if (stream.destroyed) return;
    const t = trailers ?? this.dechunker?.trailers;
    const h = this.pending;
    if (h !== undefined) {
      // No body: one HEADERS frame ends the stream (gRPC's trailers-only form when there are trailers).
      this.pending = undefined;
      if (t !== undefined) Object.assign(h, headerObject(t));
      stream.respond(h, { endStream: true });
      return;
    }
    this.trailersOut = t;
    stream.end();
  }

  sendError(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>): void {
    if (this.finished) return;
    if (this.headSent) {
      this.destroy();
      return;
    }
    this.finished = true;
    this.headSent = true;
    const stream = this.stream;
    if (stream.destroyed) return;
    if (this.grpc) {
      // A gRPC client reads the status from grpc-status, not from the HTTP status.
      stream.respond(
        {
          [HTTP2_HEADER_STATUS]: 200,
          'content-type': 'application/grpc',
          'grpc-status': String(grpcStatusOfReason(reason)),
          'grpc-message': encodeGrpcMessage(`${reason}: ${message}`),
          'x-outrigger-error': reason,
          ...extraHeaders,
        },
        { endStream: true },
      );
      return;
    }
    const body = JSON.stringify({ error: reason, message });
    stream.respond({
      [HTTP2_HEADER_STATUS]: status,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-outrigger-error': reason,
      ...extraHeaders,
    });
    stream.end(body);
  }

  destroy(code?: string): void {
    this.finished = true;
    const stream = this.stream;
    if (stream.destroyed) return;
    stream.close(rstCodeOf(code));
  }

  detach(): DetachedSocket {
    throw new Error('an HTTP/2 stream cannot be detached');
  }
}

/** The RST_STREAM code to pass on for an upstream failure (`RST_n` when the upstream reset the stream). */
function rstCodeOf(code: string | undefined): number {
  if (code !== undefined && code.startsWith('RST_')) {
    const n = Number(code.slice(4));
    if (Number.isInteger(n) && n > 0) return n;
  }
  return code === 'ECLIENTGONE' ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR;
}

function noop(): void {}

export interface Http2FrontOptions {
  readonly limits: ParseLimits;
  /** A session with no open stream for this long is closed (GOAWAY). */
  readonly idleTimeoutMs: number;
}

/**
 * The HTTP/2 side of one listener: a node:http2 server that is never bound to a port; the listener hands it
 * the sockets whose first bytes were the connection preface.
 */
export class Http2Front {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly peers = new WeakMap<net.Socket, string | undefined>();

  constructor(
    private readonly handler: ExchangeHandler,
    public options: Http2FrontOptions,
  ) {
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: DOWNSTREAM_MAX_STREAMS, maxHeaderListSize: options.limits.maxHeadBytes },
      maxSessionMemory: 64,
    });
    this.server.on('session', this.onSession);
    this.server.on('stream', this.onStream);
  }

  private readonly onSession = (session: ServerHttp2Session): void => {
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', noop);
    session.setTimeout(this.options.idleTimeoutMs, () => session.close());
  };

  private readonly onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void => {
    const socket = stream.session?.socket as net.Socket | undefined;
    const ex = new Http2Exchange(stream, headers, rawHeaders, socket?.remoteAddress, socket === undefined ? undefined : this.peers.get(socket), this.options.limits);
    if (ex.head.method === 'CONNECT') {
      this.handler.onRefused(400);
      ex.sendError(400, 'bad-request', 'CONNECT is not proxied over HTTP/2');
      return;
    }
    this.handler.onRequest(ex);
  };

  /** Takes over a socket whose first bytes (`pending`, already read) are the HTTP/2 connection preface. */
  adopt(socket: net.Socket, pending: Buffer, peer: string | undefined): void {
    this.peers.set(socket, peer);
    socket.unshift(pending);
    this.server.emit('connection', socket);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Graceful: every session is told GOAWAY and closes once its streams are done. */
  close(): void {
    for (const s of this.sessions) s.close();
  }

  /** Cuts every session. */
  destroy(): void {
    for (const s of this.sessions) s.destroy();
  }
}
