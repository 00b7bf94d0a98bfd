import type { Socket } from 'node:net';
import type { RequestHead, ResponseHead } from './http1/parser.js';

/**
 * What a Call needs of the two sides it joins, whatever protocol engine runs them: the client's request and
 * a way to answer it (Downstream), and an endpoint's connections (UpstreamPoolLike, UpstreamLink). The
 * HTTP/1.1 engine implements them on sockets; unit tests drive a Call through fakes of them.
 */

/** Why an upstream exchange failed; `phase` tells what the upstream had done by then. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    /** connect: no connection was made; request: connected, no response byte yet; response: mid-response. */
    readonly phase: 'connect' | 'request' | 'response',
    readonly code: string,
  ) {
    super(message);
  }
}

/** Receives a request body's bytes as they arrive (framing kept: a chunked body stays chunked). */
export interface BodyConsumer {
  /** Returns false to stop the flow until `Downstream.resumeBody()`. */
  onBodyData(chunk: Buffer): boolean;
  onBodyEnd(): void;
}

/** What the forwarding side hears of the client while an exchange runs. */
export interface ExchangeObserver {
  /** The client went away before the response ended. */
  onClientClose(): void;
  /** The client accepted everything written so far (after `write` returned false). */
  onClientDrain(): void;
}

/**
 * How the response body bytes handed to `Downstream.write` are framed: as received from an HTTP/1.1 upstream
 * (`length`, `chunked` bytes, `close`-delimited, `none`), or `stream`: plain payload bytes whose end is the
 * end of an HTTP/2 stream, possibly followed by trailers (the HTTP/1.1 engine chunks them itself).
 */
export type ResponseFraming = 'length' | 'chunked' | 'close' | 'none' | 'upgrade' | 'stream';

/** A socket taken out of HTTP handling after 101, with the bytes already read from it. */
export interface DetachedSocket {
  readonly socket: Socket;
  readonly pending: Buffer | undefined;
}

/** The client side of one request. */
export interface Downstream {
  readonly head: RequestHead;
  readonly hasBody: boolean;
  readonly remoteAddress: string | undefined;
  /** The client's verified mesh identity (its service name) when it connected over mutual TLS. */
  readonly peer: string | undefined;
  observer: ExchangeObserver | undefined;
  /** Starts the flow of the request body to `consumer` (answers `Expect: 100-continue` first). */
  setBodyConsumer(consumer: BodyConsumer): void;
  /** Stops delivering the body. */
  clearBodyConsumer(): void;
  resumeBody(): void;
  /** The response head: `headerBlock` is `name: value\r\n` lines without hop-by-hop fields. */
  writeHead(status: number, reason: string, headerBlock: string, framing: ResponseFraming): void;
  /** Response body bytes; false means wait for the observer's onClientDrain. */
  write(chunk: Buffer): boolean;
  /** The response is complete; `trailers` (flat [name, value, ...]) follow a `stream`-framed body. */
  end(trailers?: readonly string[]): void;
  /** A JSON error answer (a gRPC answer with grpc-status to a gRPC call) (`x-outrigger-error: reason`); cuts the connection if the response had started. */
  sendError(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>): void;
  /** Cuts the client connection (HTTP/2: resets the stream; `code` is the upstream failure's, e.g. `RST_8`). */
  destroy(code?: string): void;
  detach(): DetachedSocket;
  /** 2 for an HTTP/2 stream (the inbound side then speaks HTTP/2 to the app too); absent for HTTP/1.x. */
  readonly version?: 2 | undefined;
}

/** A request as a listener hands it to its handler. */
export interface IncomingExchange extends Downstream {
  /** The service a CONNECT tunnel carries, if the request came through one. */
  readonly tunnel: string | undefined;
  /** The response has ended (or the client left). */
  readonly finished: boolean;
}

/** What one exchange on an upstream connection hears back. */
export interface UpstreamHandler {
  /** A connection is ready for this exchange; `reused` when it served an earlier one. */
  onUpstreamConnected(conn: UpstreamLink, reused: boolean): void;
  /** A response head (1xx other than 101 are skipped). */
  onResponseHead(head: ResponseHead): void;
  /** Response body bytes as framed by the upstream (a chunked body stays chunked). */
  onResponseData(chunk: Buffer): void;
  /** Trailers of an HTTP/2 response (flat [name, value, ...]), before `onResponseEnd`. */
  onResponseTrailers?(trailers: string[]): void;
  /** The response is complete. */
  onResponseEnd(): void;
  /** The exchange failed (no connection, a reset, a malformed response, or the connection closed early). */
  onUpstreamError(err: UpstreamError): void;
  /** The connection accepted everything written so far (request-body back-pressure). */
  onUpstreamDrain(): void;
}

/** One endpoint's connections. */
export interface UpstreamPoolLike {
  /** Hands `h` a connection now, soon, or when one is free (`onUpstreamConnected` or `onUpstreamError`). */
  acquire(h: UpstreamHandler): void;
  /** Withdraws a handler still waiting for a connection. */
  cancel(h: UpstreamHandler): void;
}

/** One upstream connection while an exchange holds it. */
export interface UpstreamLink {
  /** The request of the current exchange has been written whole. */
  requestDone: boolean;
  /** Starts an exchange: the response to a HEAD request has no body. */
  begin(handler: UpstreamHandler, head: boolean): void;
  write(data: string | Buffer): boolean;
  /** Writes the request head and a body in one go. */
  writeRequest(head: string, body: Buffer | undefined): void;
  /** The request body (streamed with `write` after the head) is complete (HTTP/2 ends its stream). */
  endRequest?(): void;
  pause(): void;
  resume(): void;
  /** Gives up the exchange and closes the connection. */
  abort(): void;
  /** Gives back a connection handed over but not used. */
  release(): void;
  detach(): DetachedSocket;
}
