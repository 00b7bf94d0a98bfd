/**
 * On-demand discovery with a real control plane, sidecars and apps: a sidecar that subscribes to nothing
 * reaches any registered service on first use (also through CONNECT), concurrent first requests share one
 * subscription, and a name nobody registered gets 404 unknown-service after the wait.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

interface SidecarsView {
  sidecars: { instance: { id: string } | null; subscriptions: string[] }[];
}

/** Lines of the control plane's log saying that `instance` subscribed to `service` on demand. */
function subscribeLines(cp: ControlPlaneProcess, instance: string, service: string): number {
  return cp.stdout
    .split('\n')
    .filter((l) => l.includes('sidecar subscribed') && l.includes(`"instance":"${instance}"`) && l.includes(`"${service}"`)).length;
}

/** Writes `bytes` on a fresh connection and collects everything until the sidecar closes it. */
function rawExchange(address: string, bytes: string): Promise<string> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    let data = '';
    const sock = connect(Number(address.slice(colon + 1)), address.slice(0, colon), () => sock.write(bytes));
    sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => resolve(data));
    setTimeout(() => sock.destroy(), 5_000).unref();
  });
}

describe('on-demand discovery', () => {
  let cp: ControlPlaneProcess;
  let webOut: string;
  let webAdmin: string;
  const apps: Upstream[] = [];
  const sidecars: SidecarProcess[] = [];

  /** An app with its own sidecar, registered with the control plane as `service`. */
  async function instance(service: string, id: string): Promise<void> {
    const app = await startUpstream((_req, res) => res.end(id));
    apps.push(app);
    const p = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: ${service}\ninstance: ${id}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
          `inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }\ncontrolPlane: { addresses: [${cp.grpc}] }\nlog: { level: warn }\n`,
        p.admin,
      ),
    );
  }

  beforeAll(async () => {
    cp = await spawnControlPlane();
    await instance('inventory', 'inv-1');
    await instance('catalog', 'cat-1');
    await waitFor(async () => {
      const r = JSON.parse((await sendApi(cp.http, { path: '/api/instances' })).body) as { instances: unknown[] };
      return r.instances.length === 2;
    });
    // The caller: subscribes to nothing, declares no service.
    const p = await ports();
    webOut = `127.0.0.1:${p.outbound}`;
    webAdmin = `127.0.0.1:${p.admin}`;
    sidecars.push(
      await spawnSidecar(`service: web\ninstance: web-1\nadmin: { listen: ${webAdmin} }\noutbound: { listen: ${webOut} }\ncontrolPlane: { addresses: [${cp.grpc}] }\nlog: { level: warn }\n`, p.admin),
    );
    await waitFor(async () => (await send(webAdmin, { path: '/metrics' })).body.includes('outrigger_control_plane_connected 1'));
  }, 30_000);

  afterAll(async () => {
    for (const s of sidecars) await s.stop();
    await cp?.stop();
    for (const a of apps) await a.close();
  });

  it('concurrent first requests to a registered service it never subscribed to all succeed, with one subscription', async () => {
    const replies = await Promise.all(Array.from({ length: 10 }, () => send(webOut, { headers: { host: 'inventory' } })));
    expect(replies.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(replies.map((r) => r.body)).toEqual(Array(10).fill('inv-1'));
    // The control plane saw one Subscribe for it, and lists it once among web's subscriptions.
    await waitFor(() => subscribeLines(cp, 'web-1', 'inventory') > 0);
    expect(subscribeLines(cp, 'web-1', 'inventory')).toBe(1);
    const view = JSON.parse((await sendApi(cp.http, { path: '/api/sidecars' })).body) as SidecarsView;
    const web = view.sidecars.find((s) => s.instance?.id === 'web-1')!;
    expect(web.subscriptions.filter((s) => s === 'inventory')).toHaveLength(1);
    // From now on it is a cluster like any other (shown on /clusters and /circuits).
    const clusters = JSON.parse((await send(webAdmin, { path: '/clusters' })).body) as { clusters: { service: string }[] };
    expect(clusters.clusters.map((c) => c.service)).toContain('inventory');
    const circuits = JSON.parse((await send(webAdmin, { path: '/circuits' })).body) as { circuits: { service: string; endpoint: string | null }[] };
    expect(circuits.circuits.filter((c) => c.service === 'inventory').map((c) => c.endpoint)).toContain(null);
  });

  it('a name nobody registered gets 404 unknown-service after the wait, then at once while remembered', async () => {
    const first = await send(webOut, { headers: { host: 'nosuch' } });
    expect(first.status).toBe(404);
    expect(first.headers['x-outrigger-error']).toBe('unknown-service');
    expect(first.body).toContain('no service named \\"nosuch\\" is known to this sidecar or its control plane');
    const again = await Promise.all(Array.from({ length: 5 }, () => send(webOut, { headers: { host: 'nosuch' } })));
    expect(again.map((r) => r.status)).toEqual(Array(5).fill(404));
    // One Subscribe for the bad name, however many requests asked for it.
    await waitFor(() => subscribeLines(cp, 'web-1', 'nosuch') > 0);
    expect(subscribeLines(cp, 'web-1', 'nosuch')).toBe(1);
  });

  it('CONNECT to a registered service it never used succeeds, and requests in the tunnel reach it', async () => {
    const raw = await rawExchange(webOut, 'CONNECT catalog:80 HTTP/1.1\r\nHost: catalog:80\r\n\r\nGET /in-tunnel HTTP/1.1\r\nHost: catalog\r\nconnection: close\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
    expect(raw.endsWith('cat-1')).toBe(true);
  });

  it('CONNECT to a name remembered as unknown is refused', async () => {
    const raw = await rawExchange(webOut, 'CONNECT nosuch:443 HTTP/1.1\r\nHost: nosuch:443\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 404 /);
    expect(raw).toContain('x-outrigger-error: unknown-service');
  });
});
