/**
 * The replicated control plane, all real processes: an etcd this test starts (free ports, temporary data
 * directory), two control-plane replicas sharing it, two inventory instances and an edge sidecar (`web`)
 * that list both replicas. A policy set through one replica reaches a sidecar connected to the other; the
 * leader (computed weights, autoscaler) is killed under steady load: its sidecars move to the other replica
 * without a failed request, their registrations survive, and the other replica takes the leader's work over;
 * etcd is killed and started again on its data directory: the watches come back and changes still propagate.
 * No timing is asserted (generous waits); propagation times are printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { HAVE_ETCD, startEtcd, startPartition, type EtcdProcess } from '../helpers/etcd.js';
import { runLoad } from '../helpers/load.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

interface VersionInfo {
  version: number;
  store: string;
  leader: boolean;
  replica?: string;
}
interface EndpointInfo {
  address: string;
  computed?: { weight?: number; cost?: number };
}
interface AutoscaleInfo {
  decisions: unknown[];
}

describe.skipIf(!HAVE_ETCD)('replicated control plane on etcd', () => {
  let etcd: EtcdProcess;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  const apps: Upstream[] = [];
  const sidecars: SidecarProcess[] = [];
  let webAdmin = '';
  let webOut = '';

  const cpYaml = (endpoint = etcd.endpoint): string =>
    `store: { etcd: { endpoints: [${endpoint}], prefix: /ha-test, leaseTtl: 3s } }\n` +
    'instanceTtl: 10s\nweightInterval: 500ms\n' +
    // A driver that cannot reach its API: each evaluation leaves a driver-error decision, on the leader only.
    'autoscale:\n  inventory: { min: 1, max: 2, targetUtilization: 0.5, interval: 300ms, driver: { kubernetes: { apiServer: "http://127.0.0.1:1" } } }\n';
  const info = async (cp: ControlPlaneProcess): Promise<VersionInfo> => JSON.parse((await send(cp.http, { path: '/api/version' })).body) as VersionInfo;
  const endpoints = async (cp: ControlPlaneProcess): Promise<EndpointInfo[]> =>
    (JSON.parse((await sendApi(cp.http, { path: '/api/services/inventory' })).body) as { endpoints: EndpointInfo[] }).endpoints;
  const decisions = async (cp: ControlPlaneProcess): Promise<number> =>
    (JSON.parse((await sendApi(cp.http, { path: '/api/autoscale' })).body) as { services: AutoscaleInfo[] }).services[0]?.decisions.length ?? 0;
  const applied = async (): Promise<Record<string, unknown> | undefined> =>
    (JSON.parse((await send(webAdmin, { path: '/config?format=json' })).body) as { services: Record<string, Record<string, unknown>> }).services['inventory'];
  const setPolicy = (cp: ControlPlaneProcess, policy: unknown) =>
    sendApi(cp.http, { method: 'PUT', path: '/api/services/inventory/policy', headers: { 'content-type': 'application/json' }, body: JSON.stringify(policy) });
  const sidecarIds = async (cp: ControlPlaneProcess): Promise<string[]> =>
    (JSON.parse((await sendApi(cp.http, { path: '/api/sidecars' })).body) as { sidecars: { instance: { id: string } | null }[] }).sidecars.map((s) => s.instance?.id ?? '');

  /** Sets a policy through `via` and waits until the web sidecar applies it; returns ms taken. */
  async function propagate(via: ControlPlaneProcess, timeout: string): Promise<number> {
    const t0 = performance.now();
    const r = await setPolicy(via, { lb: 'round-robin', timeout });
    expect(r.status).toBe(200);
    await waitFor(async () => (await applied())?.['timeout'] === timeout, 15_000);
    return Math.round(performance.now() - t0);
  }

  /** A sidecar for `web` (subscribed to inventory) on the given control planes; returns its outbound address. */
  async function edge(name: string, addresses: string): Promise<{ out: string; admin: string }> {
    const p = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: web\ninstance: ${name}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
          `controlPlane: { addresses: [${addresses}], subscribe: [inventory], reportInterval: 300ms }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    return { out: `127.0.0.1:${p.outbound}`, admin: `127.0.0.1:${p.admin}` };
  }

  async function instance(name: string, addresses: string): Promise<string> {
    const app = await startUpstream((_req, res) => res.end(name));
    apps.push(app);
    const p = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: inventory\ninstance: ${name}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
          `inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }\n` +
          `controlPlane: { addresses: [${addresses}], capacity: 10, reportInterval: 300ms }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    return `127.0.0.1:${p.inbound}`;
  }

  beforeAll(async () => {
    etcd = await startEtcd();
    a = await spawnControlPlane(cpYaml());
    await waitFor(async () => (await info(a)).leader, 15_000);
    b = await spawnControlPlane(cpYaml());
    await instance('inv-0', `${a.grpc}, ${b.grpc}`);
    await instance('inv-1', `${b.grpc}, ${a.grpc}`);
    const p = await ports();
    webAdmin = `127.0.0.1:${p.admin}`;
    webOut = `127.0.0.1:${p.outbound}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\ninstance: web-1\nadmin: { listen: ${webAdmin} }\noutbound: { listen: ${webOut} }\n` +
          `controlPlane: { addresses: [${a.grpc}, ${b.grpc}], subscribe: [inventory], reportInterval: 300ms }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    // Both instances (one registered through each replica) reach the web sidecar connected to a.
    await waitFor(async () => ((await applied())?.['endpoints'] as unknown[] | undefined)?.length === 2, 15_000);
  }, 60_000);

  afterAll(async () => {
    for (const s of sidecars) await s.stop();
    await a?.stop();
    await b?.stop();
    for (const app of apps) await app.close();
    await etcd?.destroy();
  }, 60_000);

  it('both replicas serve the same state at the same version; exactly one leads', async () => {
    const [ia, ib] = [await info(a), await info(b)];
    expect(ia.store).toBe('etcd');
    expect([ia.leader, ib.leader]).toEqual([true, false]);
    await waitFor(async () => (await info(a)).version === (await info(b)).version, 10_000);
    const metrics = (await send(b.http, { path: '/metrics' })).body;
    expect(metrics).toMatch(/^outrigger_cp_leader 0$/m);
  });

  it('a policy set through one replica reaches a sidecar connected to the other', async () => {
    const ms = await propagate(b, '3s');
    console.log(`policy set through b reached the sidecar on a in ${ms} ms`);
    expect((await applied())?.['lb']).toBe('round-robin');
  });

  it('the leader computes weights from the load reports of every replica; only it runs the autoscaler', async () => {
    for (let i = 0; i < 20; i++) expect((await send(webOut, { headers: { host: 'inventory' } })).status).toBe(200);
    // Read from the replica that does not lead: the computed weights travelled through etcd.
    await waitFor(async () => {
      const eps = await endpoints(b);
      return eps.length === 2 && eps.every((e) => e.computed?.weight !== undefined);
    }, 15_000);
    await waitFor(async () => (await decisions(a)) > 0, 10_000);
    expect(await decisions(b)).toBe(0);
  });

  it('killing the leader under load: no failed request, sidecars move, registrations survive, the other replica leads', async () => {
    const load = runLoad({ target: webOut, host: 'inventory', rps: 40, durationMs: 8_000 });
    await new Promise((r) => setTimeout(r, 1_500));
    const t0 = performance.now();
    await a.kill();
    await waitFor(async () => (await info(b)).leader, 20_000);
    console.log(`b took the leadership over ${Math.round(performance.now() - t0)} ms after a was killed`);
    const result = await load;
    console.log(`load through the web sidecar while a was killed: ${result.sent} sent, ${result.failed} failed`);
    expect(result.sent).toBeGreaterThan(0);
    expect(result.failed).toBe(0);
    // Every sidecar is on b now, and both instances are still registered after a's lease (3 s) expired.
    await waitFor(async () => {
      const ids = await sidecarIds(b);
      return ['inv-0', 'inv-1', 'web-1'].every((id) => ids.includes(id));
    }, 20_000);
    await new Promise((r) => setTimeout(r, 4_000));
    expect((await endpoints(b)).length).toBe(2);
    // The autoscaler runs on b now.
    await waitFor(async () => (await decisions(b)) > 0, 10_000);
    // And the weights: a new instance gets a computed weight from b.
    const address = await instance('inv-2', `${b.grpc}`);
    await waitFor(async () => (await endpoints(b)).some((e) => e.address === address && e.computed?.weight !== undefined), 15_000);
    const ms = await propagate(b, '4s');
    console.log(`policy set through b reached the sidecar (now on b) in ${ms} ms`);
  }, 90_000);

  it('survives an etcd restart: the watches come back and changes still propagate, also from a replica started again', async () => {
    await etcd.kill();
    await etcd.restart();
    const ms = await propagate(b, '5s').catch(async (err: unknown) => {
      // What the replica said about etcd, what it sent the sidecars, and what the sidecar holds.
      console.log(b.stdout.split('\n').filter((l) => l.includes('etcd')).slice(-30).join('\n'));
      console.log(JSON.stringify(await info(b)), (await sendApi(b.http, { path: '/api/sidecars' })).body.slice(0, 2000));
      console.log((await send(webAdmin, { path: '/config/status' })).body, JSON.stringify(await applied()));
      throw err;
    });
    console.log(`after the etcd restart, a policy set through b reached the sidecar in ${ms} ms`);
    await a.restart();
    await waitFor(async () => (await info(a)).version >= (await info(b)).version, 15_000);
    expect((await info(a)).leader).toBe(false);
    const ms2 = await propagate(a, '6s');
    console.log(`a policy set through the restarted a reached the sidecar on b in ${ms2} ms`);
    expect((await endpoints(a)).length).toBe(3);
  }, 90_000);

  it('a replica cut off from etcd sends its sidecars to the other one: no failed request, registrations kept', async () => {
    const partition = await startPartition(etcd.endpoint);
    const c = await spawnControlPlane(cpYaml(partition.endpoint));
    try {
      const address = await instance('inv-3', `${c.grpc}, ${b.grpc}`);
      const e = await edge('edge-1', `${c.grpc}, ${b.grpc}`);
      await waitFor(async () => (await sidecarIds(c)).includes('edge-1') && (await endpoints(b)).some((ep) => ep.address === address), 15_000);
      const load = runLoad({ target: e.out, host: 'inventory', rps: 40, durationMs: 10_000 });
      await new Promise((r) => setTimeout(r, 1_000));
      partition.cut();
      const t0 = performance.now();
      await waitFor(async () => {
        const ids = await sidecarIds(b);
        return ids.includes('edge-1') && ids.includes('inv-3');
      }, 20_000);
      console.log(`the sidecars of the cut-off replica were on b ${Math.round(performance.now() - t0)} ms after the cut`);
      const result = await load;
      console.log(`load through a sidecar of the cut-off replica: ${result.sent} sent, ${result.failed} failed`);
      expect(result.sent).toBeGreaterThan(0);
      expect(result.failed).toBe(0);
      // c's lease (3 s) has expired in etcd by now; inv-3 is registered through b.
      await new Promise((r) => setTimeout(r, 4_000));
      expect((await endpoints(b)).some((ep) => ep.address === address)).toBe(true);
      expect((await info(c)).leader).toBe(false);
      partition.heal();
      // c comes back: it lists the state again and serves the same version as b.
      await waitFor(async () => (await info(c)).version === (await info(b)).version && (await endpoints(c)).length === (await endpoints(b)).length, 30_000).catch(
        async (err: unknown) => {
          console.log(c.stdout.split('\n').filter((l) => l.includes('etcd')).slice(-30).join('\n'));
          console.log(JSON.stringify(await info(c)), JSON.stringify(await info(b)));
          throw err;
        },
      );
    } finally {
      await c.stop();
      await partition.close();
    }
  }, 120_000);
});
