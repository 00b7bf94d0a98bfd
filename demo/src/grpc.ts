import { credentials, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { systemClock, type Clock } from '../../common/src/clock.js';
import { InventoryClient, ListItemsRequest, ListItemsResponse } from '../../proto/gen/outrigger/demo/v1/inventory.js';

/**
 * The demo's gRPC side (`outrigger demo --grpc`): an app port that speaks HTTP/1.1 and h2c on the same
 * socket (the HTTP/2 connection preface decides), the `outrigger.demo.v1.Inventory/ListItems` unary call
 * answered over node:http2, and the catalog's @grpc/grpc-js client for it.
 */

export const LIST_ITEMS_PATH = '/outrigger.demo.v1.Inventory/ListItems';
const PREFACE_START = Buffer.from('PRI ', 'latin1');

export type AnyRequest = IncomingMessage | Http2ServerRequest;
export type AnyResponse = ServerResponse | Http2ServerResponse;
export type Handler = (req: AnyRequest, res: AnyResponse) => void;

/** A listener for both protocols. */
export interface DualServer {
  readonly server: NetServer;
  /**
   * Stops accepting; HTTP/2 sessions get GOAWAY, idle HTTP/1.1 connections close and busy ones after their
   * response; resolves when all are gone.
   */
  close(): Promise<void>;
  /** Cuts every connection still open. */
  destroyAll(): void;
}

/**
 * One listener for both protocols: a socket whose first bytes are the HTTP/2 preface goes to an h2c server
 * (node:http2's compatibility API, so `handler` serves both), any other to a node:http server.
 */
export function dualProtocolServer(handler: Handler, keepAliveTimeoutMs: number): DualServer {
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  // node:http tracks idle connections only on a server it listens with, so HTTP/1.1 requests in flight are counted here.
  const inflight = new Map<Socket, number>();
  let closing = false;
  const http1 = createHttpServer((req, res) => {
    const socket = req.socket;
    inflight.set(socket, (inflight.get(socket) ?? 0) + 1);
    if (closing) res.shouldKeepAlive = false;
    res.on('close', () => {
      const n = (inflight.get(socket) ?? 1) - 1;
      inflight.set(socket, n);
      if (closing && n === 0) socket.destroySoon();
    });
    handler(req, res);
  });
  http1.keepAliveTimeout = keepAliveTimeoutMs;
  const h2 = createH2Server(handler);
  h2.on('session', (s: ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  const server = createNetServer((socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      inflight.delete(socket);
    });
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE_START.length);
      const isH2 = seen.subarray(0, n).equals(PREFACE_START.subarray(0, n));
      if (isH2 && seen.length < PREFACE_START.length) return; // too short to tell yet
      socket.off('data', onData);
      socket.pause();
      socket.unshift(seen);
      if (isH2) {
        h2.emit('connection', socket); // node:http2 reads the unshifted bytes, then the socket's handle
      } else {
        inflight.set(socket, 0);
        http1.emit('connection', socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
  });
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
        for (const s of sessions) s.close();
        for (const s of sockets) {
          const http1Idle = inflight.get(s) === 0;
          const undecided = !inflight.has(s) && !sessionOf(sessions, s); // no first bytes yet
          if (http1Idle || undecided) s.destroySoon();
        }
      }),
    destroyAll: () => {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
    },
  };
}

/** Whether `socket` carries one of the HTTP/2 sessions (else it has not sent its first bytes yet). */
function sessionOf(sessions: ReadonlySet<ServerHttp2Session>, socket: Socket): boolean {
  for (const s of sessions) if (s.socket === socket) return true;
  return false;
}

export function isGrpc(req: AnyRequest): boolean {
  return (req.headers['content-type'] ?? '').startsWith('application/grpc');
}

/** Answers a gRPC call with a status only: a trailers-only response, one HEADERS frame that ends the stream. */
export function grpcError(res: Http2ServerResponse, code: number, message: string): void {
  if (res.stream.headersSent || res.stream.destroyed) return;
  res.stream.respond(
    { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) },
    { endStream: true },
  );
}

/**
 * Serves `ListItems`: reads the one length-prefixed request message, then calls `answer` with it (after the
 * instance's simulated delay, say), which returns the response or a gRPC status to fail with.
 */
export function serveListItems(
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  answer: (request: ListItemsRequest, reply: (r: ListItemsResponse | { code: number; message: string }) => void) => void,
): void {
  if (req.url !== LIST_ITEMS_PATH) return grpcError(res, GrpcStatus.UNIMPLEMENTED, `unknown method ${req.url}`);
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) {
      return grpcError(res, GrpcStatus.INTERNAL, 'expected one uncompressed length-prefixed message');
    }
    let request: ListItemsRequest;
    try {
      request = ListItemsRequest.decode(body.subarray(5));
    } catch (err) {
      return grpcError(res, GrpcStatus.INTERNAL, `bad request message: ${err instanceof Error ? err.message : String(err)}`);
    }
    answer(request, (r) => {
      if (res.destroyed || res.writableEnded) return;
      if ('code' in r) return grpcError(res, r.code, r.message);
      const message = Buffer.from(ListItemsResponse.encode(r).finish());
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      message.copy(frame, 5);
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.addTrailers({ 'grpc-status': '0' });
      res.end(frame);
    });
  });
}

/** A client for `ListItems` through `via` (a sidecar's outbound listener), which routes it by authority. */
export class InventoryCaller {
  private readonly client: InventoryClient;

  constructor(service: string, via: string, private readonly clock: Clock = systemClock) {
    this.client = new InventoryClient(via, credentials.createInsecure(), { 'grpc.default_authority': service });
  }

  listItems(requestId: string, traceparent: string | undefined, timeoutMs: number, done: (err: ServiceError | null, r?: ListItemsResponse) => void): void {
    const md = new Metadata();
    if (requestId !== '') md.set('x-request-id', requestId);
    if (traceparent !== undefined) md.set('traceparent', traceparent);
    this.client.listItems({ requestId }, md, { deadline: this.clock.wallNow() + timeoutMs }, (err, r) => done(err, r));
  }

  close(): void {
    this.client.close();
  }
}
