/**
 * The replicated control plane on a three-member etcd cluster, all real processes: two replicas that list
 * every member, an instance and an edge sidecar. Losing one member (a minority) changes nothing visible: a
 * policy set through one replica still reaches the sidecar on the other. Losing the majority stops changes
 * (the API answers 503) but not traffic; once the members are back, the pending change and new ones
 * propagate. States and counts are asserted, never times.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { HAVE_ETCD, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { runLoad } from '../helpers/load.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

describe.skipIf(!HAVE_ETCD)('replicated control plane on a three-member etcd', () => {
  let etcd: EtcdCluster;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  let app: Upstream;
  const sidecars: SidecarProcess[] = [];
  let webAdmin = '';
  let webOut = '';

  const cpYaml = (): string =>
    `store: { etcd: { endpoints: [${etcd.endpoints.join(', ')}], prefix: /ha3, leaseTtl: 3s } }\n`;
  const applied = async (): Promise<Record<string, unknown> | undefined> =>
    (JSON.parse((await send(webAdmin, { path: '/config?format=json' })).body) as { services: Record<string, Record<string, unknown>> }).services['inventory'];
  const setPolicy = (cp: ControlPlaneProcess, timeout: string) =>
    sendApi(cp.http, { method: 'PUT', path: '/api/services/inventory/policy', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeout }) });
  const reaches = (timeout: string): Promise<boolean> => waitFor(async () => (await applied())?.['timeout'] === timeout, 20_000);

  beforeAll(async () => {
    etcd = await startEtcdCluster(3);
    a = await spawnControlPlane(cpYaml());
    b = await spawnControlPlane(cpYaml());
    app = await startUpstream((_req, res) => res.end('inv'));
    const pi = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: inventory\ninstance: inv-0\nadmin: { listen: 127.0.0.1:${pi.admin} }\noutbound: { listen: 127.0.0.1:${pi.outbound} }\n` +
          `inbound: { listen: 127.0.0.1:${pi.inbound}, target: http://${app.address} }\n` +
          `controlPlane: { addresses: [${b.grpc}, ${a.grpc}] }\nlog: { level: warn }\nservices: {}\n`,
        pi.admin,
      ),
    );
    const p = await ports();
    webAdmin = `127.0.0.1:${p.admin}`;
    webOut = `127.0.0.1:${p.outbound}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\ninstance: web-1\nadmin: { listen: ${webAdmin} }\noutbound: { listen: ${webOut} }\n` +
          `controlPlane: { addresses: [${a.grpc}, ${b.grpc}], subscribe: [inventory] }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    await waitFor(async () => ((await applied())?.['endpoints'] as unknown[] | undefined)?.length === 1, 15_000);
  }, 90_000);

  afterAll(async () => {
    for (const s of sidecars) await s.stop();
    await a?.stop();
    await b?.stop();
    await app?.close();
    await etcd?.destroy();
  }, 60_000);

  it('a minority lost: every member in turn is killed, and changes through b still reach the sidecar on a', async () => {
    for (const [i, m] of etcd.members.entries()) {
      await m.kill();
      const r = await setPolicy(b, `${i + 2}s`);
      if (r.status !== 200) console.log(r.body, b.stdout.split('\n').filter((l) => l.includes('etcd')).slice(-20).join('\n'));
      expect(r.status).toBe(200);
      expect(await reaches(`${i + 2}s`)).toBe(true);
      await m.restart();
    }
  }, 120_000);

  it('the majority lost: changes are refused (503) but traffic flows; once it is back, changes propagate again', async () => {
    const [m0, m1] = etcd.members;
    await Promise.all([m0?.kill(), m1?.kill()]);
    const load = runLoad({ target: webOut, host: 'inventory', rps: 20, durationMs: 4_000 });
    const r = await setPolicy(b, '9s');
    expect(r.status).toBe(503);
    const result = await load;
    console.log(`load while etcd had no majority: ${result.sent} sent, ${result.failed} failed`);
    expect(result.sent).toBeGreaterThan(0);
    expect(result.failed).toBe(0);
    await Promise.all([m0?.restart(), m1?.restart()]);
    // The refused change was kept pending and is written once etcd takes writes again.
    expect(await reaches('9s')).toBe(true);
    expect((await setPolicy(a, '8s')).status).toBe(200);
    expect(await reaches('8s')).toBe(true);
  }, 120_000);
});
