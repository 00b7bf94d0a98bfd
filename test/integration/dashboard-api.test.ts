/**
 * The dashboard's HTTP routes on a real admin listener (in process, loopback): the page and its assets with
 * the right types, nothing else under /dashboard/, the JSON state, and the event stream (first event at once,
 * then periodic; one shared timer that stops when the last client leaves, also after many connects).
 */
import { request, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeDashboard, createAdminApi } from '../../control-plane/src/api/http.js';
import type { DashboardState } from '../../control-plane/src/api/dashboard/state.js';
import { PushServer } from '../../control-plane/src/push/server.js';
import { Registry } from '../../control-plane/src/registry/registry.js';
import { systemClock } from '../../common/src/clock.js';
import { systemTimers, type TimerHandle, type Timers } from '../../common/src/timers.js';
import { closeServer, listen } from '../../common/src/listen.js';
import { send, waitFor } from '../helpers/net.js';

describe('dashboard routes', () => {
  let server: Server;
  let address = '';
  let registry: Registry;
  let push: PushServer;
  /** Timers handed out to the dashboard that are still running. */
  const live = new Set<TimerHandle>();
  const counting: Timers = {
    after: (ms, fn) => systemTimers.after(ms, fn),
    every(ms, fn) {
      const h = systemTimers.every(ms, fn);
      const handle: TimerHandle = {
        cancel: () => {
          live.delete(handle);
          h.cancel();
        },
      };
      live.add(handle);
      return handle;
    },
  };

  beforeAll(async () => {
    registry = new Registry({ clock: systemClock, timers: systemTimers, instanceTtlMs: 60_000, drainTimeMs: 1_000 });
    registry.register({ service: 'inventory', id: 'inv-1', address: '127.0.0.1:9001' });
    push = new PushServer(registry, { timers: systemTimers, wallNow: () => systemClock.wallNow(), now: () => systemClock.now() });
    server = createAdminApi(registry, push, {
      clock: systemClock,
      timers: counting,
      eventIntervalMs: 50,
      heartbeatMs: 20,
      historyIntervalMs: 30,
      autoscale: () => [{ service: 'inventory', driver: 'process', min: 1, max: 3, targetUtilization: 0.5, current: 1, desired: 1, utilization: null, state: 'idle', decisions: [] }],
    });
    address = await listen(server, '127.0.0.1:0');
  });

  afterAll(async () => {
    push.close();
    await closeServer(server, 200);
    await registry.close();
  });

  it('serves the page and its assets with types and no-cache; the rest of the admin API still answers', async () => {
    const page = await send(address, { path: '/' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['cache-control']).toBe('no-cache');
    expect(page.body).toContain('/dashboard/app.js');
    for (const [path, type, text] of [
      ['/dashboard/app.js', 'text/javascript; charset=utf-8', 'EventSource'],
      ['/dashboard/style.css', 'text/css; charset=utf-8', '.badge'],
      ['/dashboard/vendor/uPlot.iife.min.js', 'text/javascript; charset=utf-8', 'uPlot'],
      ['/dashboard/vendor/uPlot.min.css', 'text/css; charset=utf-8', '.uplot'],
    ] as const) {
      const r = await send(address, { path });
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type'], path).toBe(type);
      expect(r.body, path).toContain(text);
    }
    expect((await send(address, { path: '/api/version' })).status).toBe(200);
    expect((await send(address, { path: '/nothing' })).status).toBe(404);
  });

  it('answers 404 for any other file under /dashboard/ (no path reaches the file system) and 405 for writes', async () => {
    for (const path of ['/dashboard/index.js', '/dashboard/../package.json', '/dashboard/%2e%2e/%2e%2e/package.json', '/dashboard/vendor/uPlot.cjs.js', '/dashboard/vendor/../../package.json', '/dashboard/app.js/x']) {
      const r = await send(address, { path });
      expect([404], path).toContain(r.status);
      expect(r.body, path).not.toContain('"name": "outrigger"');
    }
    expect((await send(address, { method: 'POST', path: '/api/dashboard' })).status).toBe(405);
  });

  it('GET /api/dashboard returns the state', async () => {
    const r = await send(address, { path: '/api/dashboard' });
    expect(r.status).toBe(200);
    const s = JSON.parse(r.body) as DashboardState;
    expect(s.stateVersion).toBe(registry.version);
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(s.services[0]).toMatchObject({ name: 'inventory', instances: [{ id: 'inv-1', address: '127.0.0.1:9001', state: 'serving', connected: false }], autoscale: { max: 3 } });
  });

  it('the event stream sends retry, the state at once and then periodically, with heartbeats', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: Number(address.split(':')[1]), path: '/api/dashboard/events' }, (res) => {
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
        expect(res.headers['cache-control']).toBe('no-cache');
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
          if ((body.match(/event: state/g) ?? []).length >= 3 && body.includes(': heartbeat')) {
            req.destroy();
            resolve(body);
          }
        });
      });
      req.on('error', reject);
      req.end();
    });
    expect(text.startsWith('retry: 2000\n\nevent: history\n')).toBe(true);
    // The recent samples come first, so a page opened now draws the last minutes at once.
    const history = JSON.parse(/event: history\ndata: (.*)\n\n/.exec(text)![1]!) as Record<string, { t: number[]; rps: number[]; errorRate: number[]; p99Ms: number[] }>;
    expect(history['inventory']?.t.length).toBeGreaterThan(0);
    expect(history['inventory']?.rps.length).toBe(history['inventory']?.t.length);
    const first = /event: state\ndata: (.*)\n\n/.exec(text);
    expect((JSON.parse(first![1]!) as DashboardState).services[0]?.name).toBe('inventory');
  });

  it('many connects and disconnects leave no client and no timer behind', async () => {
    const port = Number(address.split(':')[1]);
    const once = () =>
      new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/api/dashboard/events' }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', reject);
        req.end();
      });
    for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 20 }, once));
    // Only the history sampler keeps running; the event and heartbeat timers stop with the last client.
    await waitFor(() => live.size === 1, 10_000);
    expect(live.size).toBe(1);
    closeDashboard(server);
    expect(live.size).toBe(0);
  });
});
