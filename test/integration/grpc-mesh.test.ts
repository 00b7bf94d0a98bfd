/**
 * gRPC through the mesh: real @grpc/grpc-js servers (each in its own process) and clients, through sidecars
 * in this process. Every assertion is about counts, states and statuses, never about how long something took.
 */
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { callsOf, echoClient, startGrpcServer, type EchoClient, type GrpcServerProcess } from '../helpers/grpc.js';
import { freePort, send, waitFor } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

const cleanups: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function servers(...names: string[]): Promise<GrpcServerProcess[]> {
  const s = await Promise.all(names.map((n) => startGrpcServer(n)));
  cleanups.push(() => Promise.all(s.map((x) => x.close())));
  return s;
}

async function sidecar(yaml: string): Promise<Sidecar> {
  const s = await startSidecar(yaml);
  cleanups.push(() => s.stop());
  return s;
}

/** A client-side sidecar whose `echo` service (protocol grpc) has its own port; returns that port's address. */
async function clientSidecar(endpoints: readonly string[], policy = ''): Promise<{ sidecar: Sidecar; address: string; admin: string }> {
  const listen = `127.0.0.1:${await freePort()}`;
  const s = await sidecar(`
service: caller
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
  echo:
    protocol: grpc
    listen: ${listen}
    endpoints: [ ${endpoints.map((e) => `{ address: ${e} }`).join(', ')} ]
${policy}`);
  return { sidecar: s, address: listen, admin: s.addresses.admin };
}

function client(address: string, authority?: string): EchoClient {
  const c = echoClient(address, authority);
  cleanups.push(() => c.close());
  return c;
}

interface EndpointJson {
  address: string;
  eligible: boolean;
  health: string[];
}
async function endpointsOf(admin: string): Promise<EndpointJson[]> {
  const c = JSON.parse((await send(admin, { path: '/clusters' })).body) as { clusters: { service: string; endpoints: EndpointJson[] }[] };
  return c.clusters.find((x) => x.service === 'echo')!.endpoints;
}

describe('gRPC through a sidecar', () => {
  it('carries unary, server-streaming, client-streaming and bidirectional calls', async () => {
    const [a] = await servers('a');
    const { address } = await clientSidecar([a!.address]);
    const c = client(address);
    expect(await c.unary({ msg: 'hi' })).toMatchObject({ server: 'a', msg: 'hi' });
    const streamed = await c.serverStream(50);
    expect(streamed.map((m) => m.i)).toEqual([...Array(50).keys()]);
    expect(await c.clientStream([1, 2, 3, 4])).toEqual({ server: 'a', sum: 10 });
    const echoed = await c.bidi(['x', 'y', 'z']);
    expect(echoed.map((m) => m.msg)).toEqual(['x', 'y', 'z']);
  });

  it('balances per call: 300 unary calls over one client channel reach all 3 servers', async () => {
    const ups = await servers('a', 'b', 'c');
    const { address } = await clientSidecar(ups.map((u) => u.address));
    const c = client(address);
    const seen = new Map<string, number>();
    for (let batch = 0; batch < 30; batch++) {
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => c.unary({ msg: `${batch}-${i}` })));
      for (const r of replies) seen.set(String(r.server), (seen.get(String(r.server)) ?? 0) + 1);
    }
    expect([...seen.values()].reduce((x, y) => x + y, 0)).toBe(300);
    expect([...seen.keys()].sort()).toEqual(['a', 'b', 'c']);
    // Round-robin: each server gets a fair share, none all of them.
    for (const n of seen.values()) expect(n).toBeGreaterThanOrEqual(50);
    const direct = await Promise.all(ups.map(callsOf));
    expect(direct.reduce((x, y) => x + y, 0)).toBe(300);
  });

  it('kill -9 of one of 3 servers under a steady call rate: no unary call fails', async () => {
    const ups = await servers('a', 'b', 'c');
    const { address } = await clientSidecar(
      ups.map((u) => u.address),
      '    outlierDetection: { consecutiveGatewayFailure: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50 }',
    );
    const c = client(address);
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          await c.unary({ msg: 'x' });
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const loops = Array.from({ length: 8 }, loop);
    await waitFor(() => ok >= 300, 20_000);
    await ups[1]!.kill9();
    const killedAt = ok;
    await waitFor(() => ok >= killedAt + 600, 30_000);
    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThanOrEqual(killedAt + 600);
  });

  it('a server answering UNAVAILABLE is ejected; one answering NOT_FOUND is not', async () => {
    const unavailable = await startGrpcServer('down', 'unavailable');
    const notFound = await startGrpcServer('nf', 'not-found');
    const healthy = await startGrpcServer('ok');
    cleanups.push(() => Promise.all([unavailable.close(), notFound.close(), healthy.close()]));
    const { address, admin } = await clientSidecar(
      [unavailable.address, notFound.address, healthy.address],
      '    outlierDetection: { consecutiveGatewayFailure: 3, consecutive5xx: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50 }\n    retry: { attempts: 0 }',
    );
    const c = client(address);
    const codes = new Map<number, number>();
    for (let i = 0; i < 60; i++) {
      try {
        await c.unary({ msg: 'x' });
        codes.set(0, (codes.get(0) ?? 0) + 1);
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    expect(codes.get(grpc.status.NOT_FOUND)).toBeGreaterThan(0);
    const eps = await endpointsOf(admin);
    expect(eps.find((e) => e.address === unavailable.address)!.eligible).toBe(false);
    expect(eps.find((e) => e.address === notFound.address)!.eligible).toBe(true);
    expect(eps.find((e) => e.address === healthy.address)!.eligible).toBe(true);
    // The metrics carry the gRPC code.
    const metrics = (await send(admin, { path: '/metrics' })).body;
    expect(metrics).toMatch(/outrigger_grpc_calls_total\{direction="outbound",service="echo",grpc_code="NOT_FOUND"\} [1-9]/);
    expect(metrics).toMatch(/outrigger_grpc_calls_total\{direction="outbound",service="echo",grpc_code="UNAVAILABLE"\} [1-9]/);
  });

  it('retries UNAVAILABLE on another server when retry.on has unavailable', async () => {
    const unavailable = await startGrpcServer('down', 'unavailable');
    const healthy = await startGrpcServer('ok');
    cleanups.push(() => Promise.all([unavailable.close(), healthy.close()]));
    const { address } = await clientSidecar(
      [unavailable.address, healthy.address],
      '    retry: { attempts: 2, on: [connect-failure, unavailable], backoff: { base: 1ms, max: 5ms } }\n    outlierDetection: { consecutiveGatewayFailure: 1000, consecutive5xx: 1000 }',
    );
    const c = client(address);
    // Round-robin sends every first try to the failing server here: 10 calls stay within the retry budget.
    for (let i = 0; i < 10; i++) expect(await c.unary({ msg: "x" })).toMatchObject({ server: "ok" });
    expect(await callsOf(unavailable)).toBeGreaterThan(0);
  });

  it('an all-down service answers a gRPC client with UNAVAILABLE naming the reason', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const { address } = await clientSidecar([dead], '    retry: { attempts: 1, backoff: { base: 1ms, max: 5ms } }');
    const c = client(address);
    const err = await c.unary({ msg: 'x' }).then(
      () => undefined,
      (e: unknown) => e as grpc.ServiceError,
    );
    expect(err).toBeDefined();
    expect(err!.code).toBe(grpc.status.UNAVAILABLE);
    expect(err!.details).toMatch(/connect-failure/);
    expect(err!.metadata.get('x-outrigger-error')).toEqual(['connect-failure']);
  });

  it('grpc-timeout is the deadline and shrinks across two sidecars', async () => {
    const [a] = await servers('a');
    const server = await sidecar(`
service: echo
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0, target: http://${a!.address} }
log: { level: silent }
services: {}
`);
    const { address } = await clientSidecar([server.addresses.inbound!]);
    const c = client(address);
    const r = await c.unary({ msg: 'x' }, { deadlineMs: 5_000 });
    expect(r.server).toBe('a');
    const seen = Number(r.deadlineMs);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(5_000);
    // A deadline shorter than the server's work: the sidecar answers DEADLINE_EXCEEDED itself.
    const late = await c.unary({ msg: 'x', delayMs: 3_000 }, { deadlineMs: 300 }).then(
      () => undefined,
      (e: unknown) => e as grpc.ServiceError,
    );
    expect(late?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });
});

describe('HTTP/2 and HTTP/1.1 on one port', () => {
  it('serves an h2c client with prior knowledge and an HTTP/1.1 client on the outbound listener', async () => {
    const [a] = await servers('a');
    const s = await sidecar(`
service: caller
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
  echo:
    protocol: grpc
    endpoints: [ { address: ${a!.address} } ]
`);
    const out = s.addresses.outbound;
    // gRPC (h2c) on the shared listener, routed by :authority.
    const c = client(out, 'echo');
    expect(await c.unary({ msg: 'h2' })).toMatchObject({ server: 'a', msg: 'h2' });
    // Plain HTTP/2 on the same port: an unknown service is answered by the sidecar itself.
    const session = http2.connect(`http://${out}`);
    cleanups.push(() => void session.close());
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': '/', ':authority': 'nosuch' });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    expect(status).toBe(404);
    // HTTP/1.1 on the same port.
    const r = await send(out, { path: '/', headers: { host: 'nosuch' } });
    expect(r.status).toBe(404);
    expect(r.headers['x-outrigger-error']).toBe('unknown-service');
  });
});
