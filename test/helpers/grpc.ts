import { spawn, type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { systemClock } from '../../common/src/clock.js';
import { freePort, waitFor } from './net.js';

/**
 * A gRPC Echo service for tests, without a .proto: messages are JSON. Servers run in their own processes
 * (real @grpc/grpc-js servers that a test can kill -9); clients run in the test with @grpc/grpc-js.
 *
 * Methods: Unary ({ msg } → { server, msg, deadlineMs }), ServerStream ({ count } → count messages),
 * ClientStream (stream of { n } → { sum }), Bidi (each message echoed with the server's name).
 * A server started with `mode: 'unavailable'` or `'not-found'` answers every unary call with that status.
 */

export type EchoMessage = Record<string, unknown>;

const json = {
  serialize: (v: EchoMessage): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): EchoMessage => JSON.parse(b.toString()) as EchoMessage,
};

export const echoService = {
  Unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  ServerStream: { path: '/test.Echo/ServerStream', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  ClientStream: { path: '/test.Echo/ClientStream', requestStream: true, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Bidi: { path: '/test.Echo/Bidi', requestStream: true, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
} as const;

const EchoClientCtor = grpc.makeGenericClientConstructor(echoService as unknown as grpc.ServiceDefinition, 'Echo');

export interface EchoClient {
  readonly raw: grpc.Client;
  unary(msg: EchoMessage, options?: { deadlineMs?: number }): Promise<EchoMessage>;
  serverStream(count: number): Promise<EchoMessage[]>;
  clientStream(ns: readonly number[]): Promise<EchoMessage>;
  bidi(msgs: readonly string[]): Promise<EchoMessage[]>;
  close(): void;
}

/** A client with one channel (one HTTP/2 connection) to `address`; `authority` sets :authority. */
export function echoClient(address: string, authority?: string): EchoClient {
  const options: grpc.ChannelOptions = authority === undefined ? {} : { 'grpc.default_authority': authority };
  const c = new EchoClientCtor(address, grpc.credentials.createInsecure(), options) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  const method = (name: string) => (c[name] as (...args: unknown[]) => unknown).bind(c);
  return {
    raw: c,
    unary: (msg, o) =>
      new Promise((resolve, reject) => {
        const opts: grpc.CallOptions = o?.deadlineMs === undefined ? {} : { deadline: systemClock.wallNow() + o.deadlineMs };
        method('Unary')(msg, new grpc.Metadata(), opts, (err: grpc.ServiceError | null, res: EchoMessage) => (err ? reject(err) : resolve(res)));
      }),
    serverStream: (count) =>
      new Promise((resolve, reject) => {
        const out: EchoMessage[] = [];
        const call = method('ServerStream')({ count }) as grpc.ClientReadableStream<EchoMessage>;
        call.on('data', (m: EchoMessage) => out.push(m));
        call.on('error', reject);
        call.on('end', () => resolve(out));
      }),
    clientStream: (ns) =>
      new Promise((resolve, reject) => {
        const call = method('ClientStream')((err: grpc.ServiceError | null, res: EchoMessage) => (err ? reject(err) : resolve(res))) as grpc.ClientWritableStream<EchoMessage>;
        for (const n of ns) call.write({ n });
        call.end();
      }),
    bidi: (msgs) =>
      new Promise((resolve, reject) => {
        const out: EchoMessage[] = [];
        const call = method('Bidi')() as grpc.ClientDuplexStream<EchoMessage, EchoMessage>;
        let i = 0;
        // One message at a time: each is written after the previous one came back (a real conversation).
        const next = (): void => {
          if (i < msgs.length) call.write({ msg: msgs[i++] });
          else call.end();
        };
        call.on('data', (m: EchoMessage) => {
          out.push(m);
          next();
        });
        call.on('error', reject);
        call.on('end', () => resolve(out));
        next();
      }),
    close: () => c.close(),
  };
}

/** The server program (CommonJS, run with `node -e` from the repository root so that it finds @grpc/grpc-js). */
const SERVER = `
const grpc = require('@grpc/grpc-js');
const [port, name, mode] = process.argv.slice(1);
const ser = (v) => Buffer.from(JSON.stringify(v));
const de = (b) => JSON.parse(b.toString());
const m = (path, requestStream, responseStream) => ({ path, requestStream, responseStream, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de });
const def = { Unary: m('/test.Echo/Unary', false, false), ServerStream: m('/test.Echo/ServerStream', false, true), ClientStream: m('/test.Echo/ClientStream', true, false), Bidi: m('/test.Echo/Bidi', true, true) };
let calls = 0;
const server = new grpc.Server();
server.addService(def, {
  Unary(call, cb) {
    if (call.request.stats) { cb(null, { server: name, calls }); return; }
    calls++;
    if (mode === 'unavailable') { cb({ code: grpc.status.UNAVAILABLE, details: name + ' is unavailable' }); return; }
    if (mode === 'not-found') { cb({ code: grpc.status.NOT_FOUND, details: 'no such thing on ' + name }); return; }
    const d = call.getDeadline();
    const deadlineMs = d instanceof Date ? d.getTime() - Date.now() : (d === Infinity ? -1 : Number(d) - Date.now());
    const reply = () => cb(null, { server: name, msg: call.request.msg, deadlineMs });
    if (call.request.delayMs) setTimeout(reply, call.request.delayMs); else reply();
  },
  ServerStream(call) {
    for (let i = 0; i < call.request.count; i++) call.write({ server: name, i });
    call.end();
  },
  ClientStream(call, cb) {
    let sum = 0;
    call.on('data', (x) => { sum += x.n; });
    call.on('end', () => cb(null, { server: name, sum }));
  },
  Bidi(call) {
    call.on('data', (x) => call.write({ server: name, msg: x.msg }));
    call.on('end', () => call.end());
  },
});
server.bindAsync('127.0.0.1:' + port, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.error(err); process.exit(1); }
  process.stdout.write('ready\\n');
});
`;

const repoRoot = new URL('../../', import.meta.url).pathname;

export interface GrpcServerProcess {
  readonly name: string;
  readonly port: number;
  readonly address: string;
  child: ChildProcess;
  kill9(): Promise<void>;
  close(): Promise<void>;
}

function exited(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve();
    else c.once('exit', () => resolve());
  });
}

/** Starts an Echo server in its own process on a free loopback port. */
export async function startGrpcServer(name: string, mode: 'ok' | 'unavailable' | 'not-found' = 'ok'): Promise<GrpcServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', SERVER, String(port), name, mode], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`gRPC server ${name} exited with ${String(code)} before it was ready`)));
    child.stdout?.once('data', () => resolve());
  });
  const s: GrpcServerProcess = {
    name,
    port,
    address: `127.0.0.1:${port}`,
    child,
    async kill9() {
      const done = exited(s.child);
      s.child.kill('SIGKILL');
      await done;
    },
    async close() {
      const done = exited(s.child);
      s.child.kill('SIGKILL');
      await done;
    },
  };
  return s;
}

/** The unary calls a server has answered so far (asked directly, not through a sidecar). */
export async function callsOf(server: GrpcServerProcess): Promise<number> {
  const c = echoClient(server.address);
  try {
    const r = await waitFor(() => c.unary({ stats: true }), 10_000);
    return Number(r.calls);
  } finally {
    c.close();
  }
}
