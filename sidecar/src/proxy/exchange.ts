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

export type ResponseFraming = 'length' | 'chunked' | 'close' | 'none' | 'upgrade';

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
  end(): void;
  /** A JSON error answer (`x-outrigger-error: reason`); cuts the connection if the response had started. */
  sendError(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>): void;
  /** Cuts the client connection. */
  destroy(): void;
  detach(): DetachedSocket;
}

/** What one exchange on an upstream connection hears back. */
export interface UpstreamHandler {
  /** A connection is ready for this exchange; `reused` when it served an earlier one. */
  onUpstreamConnected(conn: UpstreamLink, reused: boolean): void;
  /** A response head (1xx other than 101 are skipped). */
  onResponseHead(head: ResponseHead): void;
  /** Response body bytes as framed by the upstream (a chunked body stays chunked). */
  onResponseData(chunk: Buffer): void;
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
  pause(): void;
  resume(): void;
  /** Gives up the exchange and closes the connection. */
  abort(): void;
  /** Gives back a connection handed over but not used. */
  release(): void;
  detach(): DetachedSocket;
}
