import { createServer as createHttp2Server, type ServerHttp2Stream } from 'node:http2';
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';

/**
 * The demo's gRPC hop (`npm start -- --grpc`): catalog asks inventory with a unary call
 * `/demo.Demo/Items` instead of `GET /items`. Messages are JSON (no .proto to build). The app takes
 * HTTP/1.1 (health checks, the knob) and h2c (gRPC from its sidecar) on one port, told apart by the HTTP/2
 * connection preface, as the sidecar's own listeners do.
 */

export const ITEMS_PATH = '/demo.Demo/Items';

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString()) as unknown,
};

const definition = {
  Items: { path: ITEMS_PATH, requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
};

const ItemsClientCtor = grpc.makeGenericClientConstructor(definition as unknown as grpc.ServiceDefinition, 'Demo');

/** A gRPC answer of the app: a message, or a status other than OK with its message. */
export type ItemsAnswer = { readonly message: unknown } | { readonly code: number; readonly details: string };

/** Calls `service`'s Items through the sidecar's outbound listener `via` (one channel, kept). */
export class ItemsClient {
  private readonly client: grpc.Client & { Items: (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void };

  constructor(via: string, service: string) {
    // The shared outbound listener routes on :authority, as on Host.
    this.client = new ItemsClientCtor(via, grpc.credentials.createInsecure(), { 'grpc.default_authority': service }) as never;
  }

  call(metadata: Readonly<Record<string, string>>, deadline: Date): Promise<unknown> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    return new Promise((resolve, reject) => {
      this.client.Items({}, md, { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  close(): void {
    this.client.close();
  }
}

/** gRPC status names for the demo's error messages. */
export const grpcStatusName = (code: number): string => grpc.status[code] ?? String(code);

function frame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/**
 * Serves Items over HTTP/2 on `stream` with `answer` (which may take its time): the request's message is
 * read and ignored; the answer is one message and `grpc-status: 0`, or a trailers-only error.
 */
function serveItems(stream: ServerHttp2Stream, path: string, metadata: Record<string, string>, answer: (metadata: Record<string, string>) => Promise<ItemsAnswer>): void {
  stream.on('error', () => {});
  if (path !== ITEMS_PATH) {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpc.status.UNIMPLEMENTED), 'grpc-message': `no method ${path}` }, { endStream: true });
    return;
  }
  stream.resume();
  stream.on('end', () => {
    void answer(metadata).then((a) => {
      if (stream.destroyed) return;
      if ('code' in a) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(a.code), 'grpc-message': encodeURIComponent(a.details) }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(a.message));
    });
  });
}

/**
 * One port for both: a net server that hands each connection to `http1` or to an HTTP/2 server serving Items
 * with `answer`, by its first bytes.
 */
export function dualProtocolServer(
  http1: HttpServer,
  answer: (metadata: Record<string, string>) => Promise<ItemsAnswer>,
  plain: (method: string, path: string, metadata: Record<string, string>) => unknown,
): NetServer {
  const h2 = createHttp2Server();
  h2.on('stream', (stream, headers) => {
    const md: Record<string, string> = {};
    for (const k of ['x-request-id', 'traceparent']) {
      const v = headers[k];
      if (typeof v === 'string') md[k] = v;
    }
    const path = String(headers[':path']);
    if (String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      serveItems(stream, path, md, answer);
      return;
    }
    // Plain HTTP/2 (curl through a sidecar to a grpc service): the usual JSON answer.
    stream.on('error', () => {});
    stream.resume();
    const text = `${JSON.stringify(plain(String(headers[':method']), path, md))}\n`;
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    stream.end(text);
  });
  h2.on('sessionError', () => {});
  const preface = Buffer.from('PRI * HTTP/2.0', 'latin1');
  return createNetServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      const n = Math.min(chunk.length, preface.length);
      // (node:http2 reads the socket itself, the bytes put back included; node:http reads it as a stream.)
      if (chunk.compare(preface, 0, n, 0, n) === 0) {
        h2.emit('connection', socket);
        return;
      }
      http1.emit('connection', socket);
      socket.resume();
    });
  });
}
