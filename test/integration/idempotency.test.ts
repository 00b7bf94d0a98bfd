/**
 * Replay-safe POSTs with a real sidecar process: `inbound.idempotency` in front of an app that counts what
 * it applies, and the sidecar's own outbound side retrying a keyed POST whose answer was lost on the way.
 */
import { writeFileSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarPorts, type SidecarProcess } from '../helpers/sidecar.js';

/** Passes TCP both ways, except that the first connection is cut as soon as its answer starts to come back. */
async function startCutter(target: number): Promise<{ server: Server; port: number; cut: number }> {
  const state = { server: createServer(), port: 0, cut: 0 };
  let connections = 0;
  const open = new Set<Socket>();
  state.server.on('connection', (client) => {
    const upstream = new Socket();
    open.add(client).add(upstream);
    client.on('close', () => open.delete(client));
    upstream.on('close', () => open.delete(upstream));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    const first = ++connections === 1;
    upstream.connect(target, '127.0.0.1', () => {
      client.pipe(upstream);
      if (!first) {
        upstream.pipe(client);
        return;
      }
      upstream.once('data', () => {
        // The app has answered and the sidecar has sent the answer back: it is lost here.
        state.cut++;
        client.destroy();
        upstream.destroy();
      });
    });
  });
  state.server.on('close', () => {
    for (const s of open) s.destroy();
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.port = (state.server.address() as { port: number }).port;
  return state;
}

describe('inbound idempotency (a sidecar process)', () => {
  let app: Upstream;
  let proc: SidecarProcess;
  let p: SidecarPorts;
  let cutter: Awaited<ReturnType<typeof startCutter>>;
  /** Requests the app applied, by idempotency key. */
  const applied = new Map<string, number>();
  const held: ServerResponse[] = [];

  const yaml = (idempotency: string): string => `service: shop
admin: { listen: 127.0.0.1:${p.admin} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address}${idempotency} }
outbound: { listen: 127.0.0.1:${p.outbound} }
log: { level: info }
services:
  shop:
    endpoints: [ { address: 127.0.0.1:${cutter.port} } ]
    retry: { attempts: 2, on: [reset, connect-failure], backoff: { base: 5ms, max: 20ms } }
`;
  const inbound = (): string => `127.0.0.1:${p.inbound}`;
  const post = (key: string, body: string, path = '/orders'): ReturnType<typeof send> =>
    send(inbound(), { method: 'POST', path, headers: { 'idempotency-key': key, 'content-type': 'text/plain' }, body });

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const key = String(req.headers['idempotency-key'] ?? '');
        const n = (applied.get(key) ?? 0) + 1;
        applied.set(key, n);
        const answer = (): void => {
          res.writeHead(201, { 'content-type': 'application/json', 'x-app': 'shop' });
          res.end(JSON.stringify({ applied: n, body: Buffer.concat(chunks).toString(), url: req.url }));
        };
        if (req.url === '/slow') held.push(Object.assign(res, { answer }));
        else answer();
      });
    });
    p = await ports();
    cutter = await startCutter(p.inbound);
    proc = await spawnSidecar(yaml(', idempotency: { ttl: 10m, maxBytes: 16MiB }'), p.admin);
  });

  afterAll(async () => {
    await proc?.stop();
    await new Promise((resolve) => cutter?.server.close(resolve));
    await app?.close();
  });

  it('two POSTs with one key reach the app once; the second gets the same answer marked x-outrigger-replayed', async () => {
    const first = await post('k1', 'order 1');
    expect(first.status).toBe(201);
    expect(first.headers['x-outrigger-replayed']).toBeUndefined();
    const second = await post('k1', 'order 1');
    expect(second.status).toBe(201);
    expect(second.body).toBe(first.body);
    expect(second.headers['x-app']).toBe('shop');
    expect(second.headers['x-outrigger-replayed']).toBe('true');
    expect(applied.get('k1')).toBe(1);
  });

  it('a different key reaches the app; the same key with another body gets 422', async () => {
    expect((await post('k2', 'order 1')).status).toBe(201);
    expect(applied.get('k2')).toBe(1);
    const reused = await post('k1', 'order 2');
    expect(reused.status).toBe(422);
    expect(reused.headers['x-outrigger-error']).toBe('idempotency-mismatch');
    expect(JSON.parse(reused.body)).toMatchObject({ error: 'idempotency-mismatch' });
    const otherPath = await post('k1', 'order 1', '/refunds');
    expect(otherPath.status).toBe(422);
    expect(applied.get('k1')).toBe(1);
  });

  it('a repeat while the first is still being answered gets 409 with retry-after; afterwards it is replayed', async () => {
    const first = post('slow-1', 'order 3', '/slow');
    await waitFor(() => held.length === 1);
    const repeat = await post('slow-1', 'order 3', '/slow');
    expect(repeat.status).toBe(409);
    expect(repeat.headers['x-outrigger-error']).toBe('idempotency-conflict');
    expect(repeat.headers['retry-after']).toBe('1');
    (held.shift() as ServerResponse & { answer: () => void }).answer();
    expect((await first).status).toBe(201);
    const later = await post('slow-1', 'order 3', '/slow');
    expect(later.status).toBe(201);
    expect(later.headers['x-outrigger-replayed']).toBe('true');
    expect(applied.get('slow-1')).toBe(1);
  });

  it('end to end: the outbound side retries a keyed POST whose answer was lost, and the app applies it once', async () => {
    const r = await send(`127.0.0.1:${p.outbound}`, { method: 'POST', path: '/charge', headers: { host: 'shop', 'idempotency-key': 'pay-1', 'content-type': 'text/plain' }, body: 'charge 42' });
    expect(cutter.cut).toBe(1);
    expect(r.status).toBe(201);
    expect(r.headers['x-outrigger-replayed']).toBe('true');
    expect(JSON.parse(r.body)).toMatchObject({ applied: 1, body: 'charge 42' });
    expect(applied.get('pay-1')).toBe(1);
  });

  it('counts the results and the bytes held on /metrics', async () => {
    const m = (await send(`127.0.0.1:${p.admin}`, { path: '/metrics' })).body;
    expect(m).toMatch(/outrigger_idempotency_total\{service="shop",result="stored"\} 4/);
    expect(m).toMatch(/outrigger_idempotency_total\{service="shop",result="replayed"\} 3/);
    expect(m).toMatch(/outrigger_idempotency_total\{service="shop",result="conflict"\} 1/);
    expect(m).toMatch(/outrigger_idempotency_total\{service="shop",result="mismatch"\} 2/);
    expect(m).toMatch(/outrigger_idempotency_entries\{service="shop"\} 4/);
    const bytes = /outrigger_idempotency_bytes\{service="shop"\} (\d+)/.exec(m);
    expect(Number(bytes?.[1])).toBeGreaterThan(0);
  });

  it('logs paths without their query string', async () => {
    expect((await send(inbound(), { path: '/items?token=secret-token' })).status).toBe(201);
    const line = await waitFor(() => proc.stdout.split('\n').find((l) => l.includes('"access"') && l.includes('"/items')));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ access: { direction: 'inbound', path: '/items', status: 201 } });
    expect(proc.stdout).not.toContain('secret-token');
    // A replay is logged too, marked as such.
    expect(proc.stdout.split('\n').some((l) => l.includes('"replayed":true') && l.includes('"/orders"'))).toBe(true);
  });

  it('after a reload without idempotency, nothing is stored: every request reaches the app', async () => {
    writeFileSync(proc.file, yaml(''));
    proc.child.kill('SIGHUP');
    await waitFor(async () => JSON.parse((await send(`127.0.0.1:${p.admin}`, { path: '/config/status' })).body).version === '2');
    expect((await post('k9', 'order 9')).status).toBe(201);
    const again = await post('k9', 'order 9');
    expect(again.headers['x-outrigger-replayed']).toBeUndefined();
    expect(applied.get('k9')).toBe(2);
    // k1 was stored before: the store is gone with its entries.
    await post('k1', 'order 1');
    expect(applied.get('k1')).toBe(2);
    expect((await send(`127.0.0.1:${p.admin}`, { path: '/metrics' })).body).not.toContain('outrigger_idempotency_bytes{');
  });
});
