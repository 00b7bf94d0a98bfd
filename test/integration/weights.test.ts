/**
 * Computed weights end to end: sidecars report load, the control plane turns it into weights and costs,
 * and an instance far slower than its peers (60 ms against 5 ms, a gap no busy machine closes) ends up
 * with clearly less traffic.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runLoad } from '../helpers/load.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

describe('weights computed from load reports', () => {
  let cp: ControlPlaneProcess;
  const apps: Upstream[] = [];
  const sidecars: SidecarProcess[] = [];
  let webOut = '';
  const addresses: string[] = [];

  beforeAll(async () => {
    cp = await spawnControlPlane('instanceTtl: 5s\nweightInterval: 500ms\n');
    for (const [i, delay] of [5, 5, 60].entries()) {
      const app = await startUpstream((_req, res) => {
        setTimeout(() => res.end(`inv-${i}`), delay);
      });
      apps.push(app);
      const p = await ports();
      addresses.push(`127.0.0.1:${p.inbound}`);
      sidecars.push(
        await spawnSidecar(
          `service: inventory\ninstance: inv-${i}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
            `inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }\n` +
            `controlPlane: { addresses: [${cp.grpc}], capacity: 10, reportInterval: 500ms }\nlog: { level: warn }\nservices: {}\n`,
          p.admin,
        ),
      );
    }
    const p = await ports();
    webOut = `127.0.0.1:${p.outbound}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: ${webOut} }\ncontrolPlane: { addresses: [${cp.grpc}], subscribe: [inventory], reportInterval: 500ms }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    await waitFor(async () => (await send(webOut, { headers: { host: 'inventory' } })).status === 200, 10_000);
  }, 30_000);

  afterAll(async () => {
    for (const s of sidecars) await s.stop();
    await cp.stop();
    for (const a of apps) await a.close();
  });

  const setPolicy = (policy: unknown) =>
    sendApi(cp.http, { method: 'PUT', path: '/api/services/inventory/policy', headers: { 'content-type': 'application/json' }, body: JSON.stringify(policy) });

  /** Share of requests each app received during a load run. */
  async function shares(seconds: number): Promise<number[]> {
    const before = apps.map((a) => a.count);
    const r = await runLoad({ target: webOut, host: 'inventory', rps: 150, durationMs: seconds * 1_000 });
    expect(r.failed).toBe(0);
    const got = apps.map((a, i) => a.count - before[i]!);
    const total = got.reduce((x, y) => x + y, 0);
    return got.map((g) => g / total);
  }

  it('weighted-round-robin with computed weights sends the much slower instance clearly less', async () => {
    expect((await setPolicy({ lb: 'weighted-round-robin', slowStart: '0s' })).status).toBe(200);
    // Let reports and weights settle (well within the 30 s the design allows).
    await shares(8);
    const svc = JSON.parse((await sendApi(cp.http, { path: '/api/services/inventory' })).body) as { endpoints: { address: string; weight: number; computed?: { weight?: number } }[] };
    const weight = (a: string): number => svc.endpoints.find((e) => e.address === a)!.weight;
    expect(weight(addresses[2]!)).toBeLessThan(0.7 * Math.min(weight(addresses[0]!), weight(addresses[1]!)));
    const s = await shares(3);
    expect(s[2]).toBeLessThan(0.25);
  }, 30_000);

  it('least-load sends the much slower instance clearly less', async () => {
    expect((await setPolicy({ lb: 'least-load', slowStart: '0s' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    const s = await shares(4);
    expect(s[2]).toBeLessThan(0.28);
  }, 30_000);
  it('load reports carry each instance p99 and how the caller sees every endpoint', async () => {
    interface View {
      instance: { service: string; address: string } | null;
      lastLoad: { latencyP99Ms: number; endpoints: { service: string; address: string; eligible: boolean; health: string[] }[] } | null;
    }
    // Round-robin: every instance gets its share (the tests above leave the slow one little traffic).
    expect((await setPolicy({ lb: 'round-robin', slowStart: '0s' })).status).toBe(200);
    const read = async () => (JSON.parse((await sendApi(cp.http, { path: '/api/sidecars' })).body) as { sidecars: View[] }).sidecars;
    // A report covers one interval: the views are read while the load runs, and the highest p99 each instance
    // reported is kept. The slow instance answers after 60 ms, the others after 5 ms: lower bounds only.
    const highest = new Map<string, number>();
    let web: View | undefined;
    const load = runLoad({ target: webOut, host: 'inventory', rps: 100, durationMs: 8_000 });
    await waitFor(async () => {
      const views = await read();
      for (const v of views) {
        if (v.instance !== null && v.lastLoad !== null) highest.set(v.instance.address, Math.max(highest.get(v.instance.address) ?? 0, v.lastLoad.latencyP99Ms));
        if (v.instance?.service === 'web' && (v.lastLoad?.endpoints.length ?? 0) === addresses.length) web = v;
      }
      return web !== undefined && (highest.get(addresses[2]!) ?? 0) >= 60 && (highest.get(addresses[0]!) ?? 0) >= 5;
    }, 15_000, 200);
    const r = await load;
    expect(r.failed).toBe(0);
    expect(web?.lastLoad?.endpoints.map((e) => e.address).sort()).toEqual([...addresses].sort());
    for (const e of web?.lastLoad?.endpoints ?? []) {
      expect(e).toMatchObject({ service: 'inventory', eligible: true, health: [] });
    }
  }, 30_000);
});
