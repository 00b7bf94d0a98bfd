/**
 * TCP pass-through (`protocol: tcp`): a sidecar in this process in front of echo-style TCP backends on
 * loopback. Every assertion is about counts and states (which backend answered, what was ejected, what
 * the counters say), never about how long something took.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseSidecarConfig } from '../../common/src/config/load.js';
import { systemTimers, type Timers } from '../../common/src/timers.js';
import { Sidecar } from '../../sidecar/src/main.js';
import { createLogger } from '../../common/src/logger.js';
import { freePort, send, waitFor } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

interface Backend {
  readonly name: string;
  readonly address: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Stops listening and cuts every connection it holds (a killed backend). */
  kill(): Promise<void>;
}

const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A TCP backend: greets each connection with its name and a newline, echoes every byte back (with
 * back-pressure), and when the client half-closes answers `bye from NAME` and closes its side.
 */
async function backend(name: string): Promise<Backend> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    b.accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s, { end: false });
    s.on('end', () => s.end(`bye from ${name}\n`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kill = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  const b: Backend = { name, address: `127.0.0.1:${(server.address() as AddressInfo).port}`, accepted: 0, kill };
  cleanups.push(kill);
  return b;
}

async function backends(...names: string[]): Promise<Backend[]> {
  return Promise.all(names.map(backend));
}

/** A loopback address nothing listens on. */
async function deadAddress(): Promise<string> {
  return `127.0.0.1:${await freePort()}`;
}

async function sidecarWith(services: string): Promise<Sidecar> {
  const sidecar = await startSidecar(`
service: app
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
${services}`);
  cleanups.push(() => sidecar.stop(0));
  return sidecar;
}

interface Dialed {
  readonly socket: Socket;
  /** Everything received, and the socket error code if it closed with one. */
  readonly done: Promise<{ readonly data: Buffer; readonly error: string | undefined }>;
}

/** Connects to `address`, writes `payload` and half-closes (unless `end` is false). */
function dial(address: string, payload: Buffer | string = '', end = true): Dialed {
  const colon = address.lastIndexOf(':');
  const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)) });
  cleanups.push(async () => socket.destroy());
  const chunks: Buffer[] = [];
  let error: string | undefined;
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', (e: Error & { code?: string }) => (error = e.code ?? e.message));
  const done = new Promise<{ data: Buffer; error: string | undefined }>((resolve) => socket.on('close', () => resolve({ data: Buffer.concat(chunks), error })));
  if (payload.length > 0) socket.write(payload);
  if (end) socket.end();
  return { socket, done };
}

/** One short conversation: returns the name of the backend that answered (throws unless it answered in full). */
async function hello(address: string): Promise<string> {
  const { data, error } = await dial(address, 'hi').done;
  const text = data.toString();
  const name = text.slice(0, text.indexOf('\n'));
  if (error !== undefined || text !== `${name}\nhibye from ${name}\n`) throw new Error(`conversation failed (${error ?? 'no error'}): ${JSON.stringify(text)}`);
  return name;
}

function countBy(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

interface EndpointView {
  readonly address: string;
  readonly health: readonly string[];
  readonly eligible: boolean;
  readonly inflight: number;
}

/** An endpoint as the admin endpoint's `/clusters` shows it. */
async function adminEndpoint(sidecar: Sidecar, service: string, address: string): Promise<EndpointView | undefined> {
  const res = await fetch(`http://${sidecar.addresses.admin}/clusters`);
  const body = (await res.json()) as { clusters: { service: string; endpoints: EndpointView[] }[] };
  return body.clusters.find((c) => c.service === service)?.endpoints.find((e) => e.address === address);
}

/** The value of one sample of the sidecar's Prometheus metrics (0 when absent). */
async function metric(sidecar: Sidecar, sample: string): Promise<number> {
  const text = await sidecar.metrics.render();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

const inflight = (sidecar: Sidecar, service: string): number => (sidecar.clusters.get(service)?.endpoints ?? []).reduce((n, e) => n + e.inflight, 0);

describe('TCP pass-through', () => {
  it('spreads connections over every endpoint (round-robin) and counts them', async () => {
    const bs = await backends('a', 'b', 'c');
    const sidecar = await sidecarWith(`
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    lb: round-robin
    slowStart: 0s
    endpoints: [${bs.map((b) => `{ address: ${b.address} }`).join(', ')}]
`);
    const address = sidecar.addresses.services['db']!;
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const names: string[] = [];
    for (let i = 0; i < 30; i++) names.push(await hello(address));
    expect(countBy(names)).toEqual({ a: 10, b: 10, c: 10 });
    expect(bs.map((b) => b.accepted)).toEqual([10, 10, 10]);

    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="connected"}')).toBe(30);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="failed"}')).toBe(0);
    await waitFor(() => inflight(sidecar, 'db') === 0);
    expect(await metric(sidecar, 'outrigger_tcp_connections_active{service="db"}')).toBe(0);
  });

  it('counts an open connection in the endpoint in-flight count and the active gauge while it lasts', async () => {
    const [a] = await backends('a');
    const sidecar = await sidecarWith(`
  db: { protocol: tcp, listen: 127.0.0.1:0, endpoints: [{ address: ${a!.address} }] }
`);
    const open = dial(sidecar.addresses.services['db']!, '', false);
    const greeted = new Promise<void>((resolve) => open.socket.once('data', () => resolve()));
    await greeted;
    expect(inflight(sidecar, 'db')).toBe(1);
    expect(await metric(sidecar, 'outrigger_tcp_connections_active{service="db"}')).toBe(1);
    open.socket.end();
    expect((await open.done).data.toString()).toBe('a\nbye from a\n');
    await waitFor(() => inflight(sidecar, 'db') === 0);
    expect(await metric(sidecar, 'outrigger_tcp_connections_active{service="db"}')).toBe(0);
  });

  it('fails over from a closed port, and outlier detection ejects it', async () => {
    const [a, b] = await backends('a', 'b');
    const dead = await deadAddress();
    const sidecar = await sidecarWith(`
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    lb: round-robin
    slowStart: 0s
    endpoints: [{ address: ${a!.address} }, { address: ${dead} }, { address: ${b!.address} }]
    outlierDetection: { consecutiveGatewayFailure: 1, baseEjectionTime: 5m }
    retry: { attempts: 2 }
`);
    const address = sidecar.addresses.services['db']!;
    const names: string[] = [];
    for (let i = 0; i < 12; i++) names.push(await hello(address));
    expect(names).toHaveLength(12);
    expect(Object.keys(countBy(names)).sort()).toEqual(['a', 'b']);

    // One failed connect was enough (consecutiveGatewayFailure: 1): the port is out of the rotation.
    const ejected = await adminEndpoint(sidecar, 'db', dead);
    expect(ejected).toMatchObject({ health: ['outlier'], eligible: false, inflight: 0 });
    expect(await adminEndpoint(sidecar, 'db', a!.address)).toMatchObject({ health: [], eligible: true });
    expect(await metric(sidecar, 'outrigger_retries_total{service="db",reason="connect-failure"}')).toBe(1);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="connected"}')).toBe(12);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="failed"}')).toBe(0);
    expect(await metric(sidecar, 'outrigger_outlier_ejections_total{service="db"}')).toBe(1);
  });

  it('keeps every new connection working when a backend is killed mid-run', async () => {
    const bs = await backends('a', 'b', 'c');
    const [, , c] = bs;
    const sidecar = await sidecarWith(`
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    lb: round-robin
    slowStart: 0s
    endpoints: [${bs.map((b) => `{ address: ${b.address} }`).join(', ')}]
    outlierDetection: { consecutiveGatewayFailure: 1, baseEjectionTime: 5m }
`);
    const address = sidecar.addresses.services['db']!;
    const before: string[] = [];
    for (let i = 0; i < 9; i++) before.push(await hello(address));
    expect(countBy(before)).toEqual({ a: 3, b: 3, c: 3 });

    // A connection held open to each backend; c's is cut with it.
    const held = [dial(address, '', false), dial(address, '', false), dial(address, '', false)];
    await waitFor(() => bs.every((b) => b.accepted === 4));
    await c!.kill();

    const after: string[] = [];
    for (let i = 0; i < 20; i++) after.push(await hello(address));
    expect(after).toHaveLength(20);
    expect(after).not.toContain('c');
    expect(countBy(after)['a']! + countBy(after)['b']!).toBe(20);
    expect(c!.accepted).toBe(4);
    expect(await adminEndpoint(sidecar, 'db', c!.address)).toMatchObject({ health: ['outlier'], eligible: false });
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="failed"}')).toBe(0);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="connected"}')).toBe(9 + 3 + 20);

    // The held connections to a and b still pass bytes; the one to c was closed.
    const results = await Promise.all(
      held.map(async (h) => {
        h.socket.end();
        return (await h.done).data.toString();
      }),
    );
    expect(results.filter((t) => t === 'a\nbye from a\n' || t === 'b\nbye from b\n')).toHaveLength(2);
    expect(results.filter((t) => t === 'c\n')).toHaveLength(1);
    await waitFor(() => inflight(sidecar, 'db') === 0);
  });

  it('counts a connect that does not finish within connectTimeout as a failure and fails over', async () => {
    const [a, b] = await backends('a', 'b');
    // Injected timers: the first connect timeout (1234 ms, the value configured below) fires at once, before
    // the loopback connect can complete; everything else runs on the real timers.
    let fired = 0;
    const timers: Timers = {
      after: (ms, fn) => {
        if (ms !== 1234 || fired > 0) return systemTimers.after(ms, fn);
        fired++;
        let cancelled = false;
        queueMicrotask(() => {
          if (!cancelled) fn();
        });
        return { cancel: () => (cancelled = true) };
      },
      every: (ms, fn) => systemTimers.every(ms, fn),
    };
    const config = parseSidecarConfig(
      `
service: app
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
services:
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    connectTimeout: 1234ms
    endpoints: [{ address: ${a!.address} }, { address: ${b!.address} }]
    outlierDetection: { consecutiveGatewayFailure: 1, baseEjectionTime: 5m, maxEjectionPercent: 50 }
`,
      'sidecar.yaml',
    );
    const sidecar = await Sidecar.start({ config, timers, logger: createLogger('silent') });
    cleanups.push(() => sidecar.stop(0));
    const first = await hello(sidecar.addresses.services['db']!);
    expect(fired).toBe(1);
    const timedOut = first === 'a' ? b! : a!;
    expect(await adminEndpoint(sidecar, 'db', timedOut.address)).toMatchObject({ health: ['outlier'], eligible: false, inflight: 0 });
    expect(await metric(sidecar, 'outrigger_retries_total{service="db",reason="connect-failure"}')).toBe(1);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="db",result="connected"}')).toBe(1);
    for (let i = 0; i < 4; i++) expect(await hello(sidecar.addresses.services['db']!)).toBe(first);
  });

  it('resets the client when no endpoint can be reached', async () => {
    const sidecar = await sidecarWith(`
  gone:
    protocol: tcp
    listen: 127.0.0.1:0
    endpoints: [{ address: ${await deadAddress()} }, { address: ${await deadAddress()} }]
    retry: { attempts: 1 }
`);
    const { data, error } = await dial(sidecar.addresses.services['gone']!, 'hello?', false).done;
    expect(data.length).toBe(0);
    expect(error).toBe('ECONNRESET');
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="gone",result="failed"}')).toBe(1);
    expect(await metric(sidecar, 'outrigger_tcp_connections_total{service="gone",result="connected"}')).toBe(0);
    expect(await metric(sidecar, 'outrigger_retries_total{service="gone",reason="connect-failure"}')).toBe(1);
    await waitFor(() => inflight(sidecar, 'gone') === 0);
  });

  it('moves 1 MB each way intact, on several connections at once', async () => {
    const bs = await backends('a', 'b', 'c');
    const sidecar = await sidecarWith(`
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    slowStart: 0s
    endpoints: [${bs.map((b) => `{ address: ${b.address} }`).join(', ')}]
`);
    const address = sidecar.addresses.services['db']!;
    const payloads = [randomBytes(1024 * 1024), randomBytes(1024 * 1024), randomBytes(1024 * 1024)];
    // Written at once, before the sidecar has connected upstream: those bytes must be held, not lost.
    const replies = await Promise.all(payloads.map((p) => dial(address, p).done));
    replies.forEach(({ data, error }, i) => {
      expect(error).toBeUndefined();
      const name = data.subarray(0, data.indexOf(10)).toString();
      expect(['a', 'b', 'c']).toContain(name);
      const expected = Buffer.concat([Buffer.from(`${name}\n`), payloads[i]!, Buffer.from(`bye from ${name}\n`)]);
      expect(data.length).toBe(expected.length);
      expect(data.equals(expected)).toBe(true);
    });
    await waitFor(() => inflight(sidecar, 'db') === 0);
  });

  it('passes a half-close on: the server still answers after the client ended its side, then closes', async () => {
    const [a] = await backends('a');
    const sidecar = await sidecarWith(`
  db: { protocol: tcp, listen: 127.0.0.1:0, endpoints: [{ address: ${a!.address} }] }
`);
    const { socket, done } = dial(sidecar.addresses.services['db']!, '', false);
    const received: string[] = [];
    socket.on('data', (c: Buffer) => received.push(c.toString()));
    await waitFor(() => received.join('') === 'a\n');
    socket.write('one');
    await waitFor(() => received.join('') === 'a\none');
    socket.end('two');
    // Our side is closed for writing; the backend saw the FIN and still answered on the open direction.
    expect(socket.writableEnded).toBe(true);
    const { data, error } = await done;
    expect(error).toBeUndefined();
    expect(data.toString()).toBe('a\nonetwobye from a\n');
  });

  it('health-checks the endpoints of a tcp service with the configured check and leaves failing ones out', async () => {
    const [a] = await backends('a');
    const dead = await deadAddress();
    const sidecar = await sidecarWith(`
  db:
    protocol: tcp
    listen: 127.0.0.1:0
    panicThreshold: 0
    endpoints: [{ address: ${a!.address} }, { address: ${dead} }]
    healthCheck: { tcp: {}, interval: 50ms, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1 }
`);
    await waitFor(async () => (await adminEndpoint(sidecar, 'db', dead))?.health.includes('active-check'));
    expect(await adminEndpoint(sidecar, 'db', a!.address)).toMatchObject({ health: [], eligible: true });
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push(await hello(sidecar.addresses.services['db']!));
    expect(countBy(names)).toEqual({ a: 6 });
    expect(await metric(sidecar, 'outrigger_retries_total{service="db",reason="connect-failure"}')).toBe(0);
  });

  it('reopens the port when a reload moves it, and gives it to HTTP when the protocol changes', async () => {
    const [a] = await backends('a');
    const [first, second] = [await freePort(), await freePort()];
    const dir = await mkdtemp(join(tmpdir(), 'outrigger-tcp-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'sidecar.yaml');
    const yaml = (listen: number, protocol: string): string => `
service: app
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
  db: { protocol: ${protocol}, listen: 127.0.0.1:${listen}, endpoints: [{ address: ${a!.address} }] }
`;
    await writeFile(file, yaml(first, 'tcp'));
    const sidecar = await Sidecar.start({ configFile: file, logger: createLogger('silent') });
    cleanups.push(() => sidecar.stop(0));
    expect(sidecar.addresses.services['db']).toBe(`127.0.0.1:${first}`);
    expect(await hello(`127.0.0.1:${first}`)).toBe('a');

    await writeFile(file, yaml(second, 'tcp'));
    expect(await sidecar.reload()).toBe(true);
    expect(sidecar.addresses.services['db']).toBe(`127.0.0.1:${second}`);
    expect(await hello(`127.0.0.1:${second}`)).toBe('a');
    expect((await dial(`127.0.0.1:${first}`).done).error).toBe('ECONNREFUSED');

    await writeFile(file, yaml(second, 'http'));
    expect(await sidecar.reload()).toBe(true);
    expect(sidecar.addresses.services['db']).toBe(`127.0.0.1:${second}`);
    // An HTTP listener holds the port now: it answers in HTTP (an error, since the backend does not speak it).
    const reply = await send(`127.0.0.1:${second}`);
    expect(reply.status).toBeGreaterThanOrEqual(400);

    await writeFile(file, yaml(second, 'tcp'));
    expect(await sidecar.reload()).toBe(true);
    expect(await hello(`127.0.0.1:${second}`)).toBe('a');
  });
});
