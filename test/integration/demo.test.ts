/**
 * The demo's pieces as a newcomer meets them: the demo app (knob, calls through a sidecar) and the
 * demo instance (an app and its sidecar under one supervisor that restarts the app and leaves nothing
 * behind when it goes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { startDemoApp, type DemoApp } from '../../demo/src/app.js';
import { InventoryCaller } from '../../demo/src/grpc.js';
import { seededRandom } from '../../common/src/random.js';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { freePort, send, waitFor } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

const bin = new URL('../../bin/outrigger.js', import.meta.url).pathname;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function timed(address: string, path: string): Promise<{ status: number; ms: number; body: string }> {
  const t0 = performance.now();
  const r = await send(address, { path });
  return { status: r.status, ms: performance.now() - t0, body: r.body };
}

describe('demo app', () => {
  const apps: DemoApp[] = [];
  afterEach(async () => {
    for (const a of apps.splice(0)) await a.stop();
  });

  it('turns slow or failing at run time through its knob, and refuses a bad knob value', async () => {
    const app = await startDemoApp({ name: 'inventory', instance: 'inventory-1', listen: '127.0.0.1:0', random: seededRandom(7) });
    apps.push(app);
    expect((await timed(app.address, '/items')).status).toBe(200);
    const set = await send(app.address, { method: 'POST', path: '/knob?delayMs=1500' });
    expect(set.status).toBe(200);
    expect(JSON.parse(set.body)).toEqual({ service: 'inventory', instance: 'inventory-1', delayMs: 1500, failPercent: 0 });
    // Health checks stay fast: the knob slows the work, not the health endpoint. A health check sent
    // after a slowed request answers before it.
    const order: string[] = [];
    const slowP = timed(app.address, '/items').then((r) => (order.push('items'), r));
    await new Promise((r) => setTimeout(r, 20));
    const health = await timed(app.address, '/healthz').then((r) => (order.push('healthz'), r));
    const slow = await slowP;
    expect(slow.status).toBe(200);
    expect(slow.ms).toBeGreaterThanOrEqual(1_495);
    expect(health.status).toBe(200);
    expect(order).toEqual(['healthz', 'items']);

    await send(app.address, { method: 'POST', path: '/knob?delayMs=0&failPercent=50' });
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await send(app.address, { path: '/items' })).status);
    const failed = statuses.filter((s) => s === 500).length;
    expect(failed).toBeGreaterThan(8);
    expect(failed).toBeLessThan(32);
    expect(statuses.every((s) => s === 200 || s === 500)).toBe(true);

    const bad = await send(app.address, { method: 'POST', path: '/knob?failPercent=150' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toEqual({ error: 'failPercent: expected a number 0..100, got "150"' });
    expect(JSON.parse((await send(app.address, { path: '/knob' })).body)).toMatchObject({ failPercent: 50 });
  });

  it('asks the service it calls through the given listener with that Host, and answers 502 when it cannot', async () => {
    const inventory = await startDemoApp({ name: 'inventory', listen: '127.0.0.1:0' });
    apps.push(inventory);
    const catalog = await startDemoApp({ name: 'catalog', listen: '127.0.0.1:0', calls: { service: 'inventory', via: inventory.address } });
    apps.push(catalog);
    const r = await send(catalog.address, { path: '/items', headers: { 'x-request-id': 'r-1' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ service: 'catalog', requestId: 'r-1', inventory: { service: 'inventory', path: '/items', requestId: 'r-1' } });

    await send(inventory.address, { method: 'POST', path: '/knob?failPercent=100' });
    const failing = await send(catalog.address, { path: '/items' });
    expect(failing.status).toBe(502);
    expect(JSON.parse(failing.body)).toMatchObject({ service: 'catalog', error: 'inventory answered 500' });

    const orphan = await startDemoApp({ name: 'catalog', listen: '127.0.0.1:0', calls: { service: 'inventory', via: `127.0.0.1:${await freePort()}` } });
    apps.push(orphan);
    const refused = await send(orphan.address, { path: '/items' });
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.body).error).toMatch(/^inventory: connect ECONNREFUSED/);
  });
  it('answers gRPC ListItems over h2c and HTTP/1.1 on one port, and asks over gRPC with --grpc, a failing instance answering UNAVAILABLE', async () => {
    const inventory = await startDemoApp({ name: 'inventory', instance: 'inventory-1', listen: '127.0.0.1:0' });
    apps.push(inventory);
    const direct = new InventoryCaller('inventory', inventory.address);
    try {
      const r = await new Promise<{ err: ServiceError | null; res: unknown }>((resolve) => direct.listItems('g-1', undefined, 5_000, (err, res) => resolve({ err, res })));
      expect(r.err).toBeNull();
      expect(r.res).toMatchObject({ service: 'inventory', instance: 'inventory-1', items: ['anchor', 'oar', 'paddle'], requestId: 'g-1' });
    } finally {
      direct.close();
    }
    expect((await send(inventory.address, { path: '/healthz' })).status).toBe(200);

    const catalog = await startDemoApp({ name: 'catalog', listen: '127.0.0.1:0', calls: { service: 'inventory', via: inventory.address, protocol: 'grpc' } });
    apps.push(catalog);
    const ok = await send(catalog.address, { path: '/items', headers: { 'x-request-id': 'g-2' } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ service: 'catalog', requestId: 'g-2', inventory: { service: 'inventory', requestId: 'g-2' } });

    await send(inventory.address, { method: 'POST', path: '/knob?failPercent=100' });
    const failing = await send(catalog.address, { path: '/items' });
    expect(failing.status).toBe(502);
    expect(JSON.parse(failing.body).error).toBe('inventory answered gRPC status 14 (UNAVAILABLE): inventory-1 failing on purpose (knob failPercent)');
  });
});

describe('demo app over gRPC (npm start -- --grpc)', () => {
  const apps: DemoApp[] = [];
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const a of apps.splice(0)) await a.stop();
    for (const s of stops.splice(0)) await s();
  });

  it('serves HTTP/1.1 and gRPC on one port, and catalog asks inventory with a gRPC call through a sidecar', async () => {
    const inventory = await startDemoApp({ name: 'inventory', instance: 'inventory-1', listen: '127.0.0.1:0' });
    apps.push(inventory);
    // HTTP/1.1 still answers on the same port (health checks, the knob).
    expect((await send(inventory.address, { path: '/healthz' })).status).toBe(200);
    const sidecar = await startSidecar(`
service: catalog
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
  inventory:
    protocol: grpc
    endpoints: [ { address: ${inventory.address} } ]
    retry: { attempts: 0 }
`);
    stops.push(() => sidecar.stop());
    const catalog = await startDemoApp({ name: 'catalog', listen: '127.0.0.1:0', calls: { service: 'inventory', via: sidecar.addresses.outbound, protocol: 'grpc' } });
    apps.push(catalog);
    const r = await send(catalog.address, { path: '/items', headers: { 'x-request-id': 'g-1' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ service: 'catalog', inventory: { service: 'inventory', instance: 'inventory-1', items: ['anchor', 'oar', 'paddle'], requestId: 'g-1' } });
    // A plain HTTP/1.1 request for inventory through the same sidecar reaches the app over HTTP/2.
    const plain = await send(sidecar.addresses.outbound, { path: '/items', headers: { host: 'inventory' } });
    expect(JSON.parse(plain.body)).toMatchObject({ service: 'inventory', method: 'GET', path: '/items' });

    await send(inventory.address, { method: 'POST', path: '/knob?failPercent=100' });
    const failing = await send(catalog.address, { path: '/items' });
    expect(failing.status).toBe(502);
    expect(JSON.parse(failing.body).error).toBe('inventory answered gRPC status 14 (UNAVAILABLE): inventory-1 failing on purpose (knob failPercent)');
    const metrics = (await send(sidecar.addresses.admin, { path: '/metrics' })).body;
    expect(metrics).toMatch(/outrigger_grpc_calls_total\{direction="outbound",service="inventory",grpc_code="UNAVAILABLE"\} 1\n/);
  });
});

describe('demo instance', () => {
  let cp: ControlPlaneProcess | undefined;
  const children: ChildProcess[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cp?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('registers through its sidecar, restarts a killed app, and takes app and sidecar with it when killed', async () => {
    // The instance's inbound listener follows the mesh-wide mode: permissive here, so the test can reach it
    // in plaintext (the default, strict, is covered by the mTLS tests).
    cp = await spawnControlPlane('instanceTtl: 3s\ndrainTime: 0s\nmtls: { mode: permissive }\n');
    const runDir = mkdtempSync(join(tmpdir(), 'outrigger-demo-instance-'));
    dirs.push(runDir);
    const port = await freePort();
    const child = spawn(process.execPath, [bin, 'demo-instance', '--service', 'inventory', '--port', String(port), '--control-plane', cp.grpc, '--run-dir', runDir, '--capacity', '7'], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const address = `127.0.0.1:${port}`;

    const instances = async () => (JSON.parse((await sendApi(cp!.http, { path: '/api/instances' })).body) as { instances: { id: string; address: string; capacity: number; state: string }[] }).instances;
    await waitFor(async () => (await instances()).some((i) => i.address === address && i.state === 'serving'), 15_000);
    expect((await instances()).find((i) => i.address === address)).toMatchObject({ id: `inventory-${port}`, capacity: 7 });
    expect(JSON.parse((await send(address, { path: '/items' })).body)).toMatchObject({ service: 'inventory', instance: `inventory-${port}` });

    const pid = (name: string) => Number(readFileSync(join(runDir, `inventory-${port}.${name}.pid`), 'utf8'));
    const appPid = pid('app');
    const sidecarPid = pid('sidecar');
    process.kill(appPid, 'SIGKILL');
    await waitFor(async () => (await send(address, { path: '/items' })).status === 502, 10_000);
    // Its supervisor brings it back (5 s later), under a new pid, on the same port.
    await waitFor(async () => (await send(address, { path: '/items' })).status === 200, 12_000, 100);
    expect(pid('app')).not.toBe(appPid);
    expect(stderr).toContain(`inventory-${port}: app exited (SIGKILL); restarting it in 5000 ms`);

    const newAppPid = pid('app');
    child.kill('SIGKILL');
    // Both children notice their supervisor is gone (the IPC channel closes) and stop.
    await waitFor(() => !alive(newAppPid) && !alive(sidecarPid), 10_000, 50);
    // The sidecar deregistered on its way out.
    await waitFor(async () => !(await instances()).some((i) => i.address === address && i.state === 'serving'), 10_000);
  }, 40_000);
});

describe('outrigger demo --grpc', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child?.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
  });

  it('runs the catalog->inventory hop over gRPC through the sidecars, each call balanced on its own, and Ctrl-C stops it all', async () => {
    child = spawn(process.execPath, [bin, 'demo', '--grpc', '--rps', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('Stop everything with Ctrl-C.'), 90_000, 100);
    expect(out).toContain('Outrigger demo mesh is up.');
    expect(out).toContain('(catalog, which asks inventory over gRPC)');
    const catalog = /curl http:\/\/(127\.0\.0\.1:\d+)\/items/.exec(out)?.[1];
    const runDir = /\((?:HTTPS with the demo's own CA, )(\/\S+)\/mesh-ca\.crt/.exec(out)?.[1];
    expect(catalog).toBeDefined();
    expect(runDir).toBeDefined();

    // Each catalog instance holds one gRPC channel to its sidecar; the sidecar spreads the calls over all
    // three inventory instances (once their health checks pass and slow start lets them in).
    const seen = new Map<string, number>();
    const bad: string[] = [];
    await waitFor(async () => {
      const r = await send(catalog!, { path: '/items' });
      const body = r.status === 200 ? (JSON.parse(r.body) as { inventory?: { instance?: string; items?: string[] } }) : undefined;
      if (body?.inventory?.instance === undefined || body.inventory.items?.join() !== 'anchor,oar,paddle') bad.push(`${r.status} ${r.body}`);
      else seen.set(body.inventory.instance, (seen.get(body.inventory.instance) ?? 0) + 1);
      return seen.size === 3;
    }, 40_000, 50);
    expect(bad).toEqual([]);

    const pids = readdirSync(runDir!)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => Number(readFileSync(join(runDir!, f), 'utf8')));
    expect(pids.length).toBeGreaterThanOrEqual(10); // 5 instances: app and sidecar each
    child.kill('SIGINT');
    await waitFor(() => child!.exitCode !== null || child!.signalCode !== null, 30_000, 100);
    await waitFor(() => pids.every((p) => !alive(p)), 15_000, 100);
    expect(existsSync(runDir!)).toBe(false);
  }, 150_000);
});
