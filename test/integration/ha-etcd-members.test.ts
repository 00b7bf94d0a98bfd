/**
 * Member failures on a three-member etcd cluster, all real processes: two control-plane replicas reach each
 * member through a relay that the test can cut like a network partition (connections held open, never
 * answered, no reset), an instance sidecar on b and an edge sidecar on a. With one member cut off from both
 * replicas, or etcd's raft leader killed, a policy set through one replica is taken (200) and reaches the
 * sidecar on the other: writes, the watch and the lease move to the members that answer. The time this
 * takes is measured by `npm run chaos:hosts` (bench/CHAOS-HOSTS.md); here states and counts are asserted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { HAVE_ETCD, startEtcdCluster, startPartition, type EtcdCluster, type Partition } from '../helpers/etcd.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

describe.skipIf(!HAVE_ETCD)('replicated control plane when an etcd member is cut off or killed', () => {
  let etcd: EtcdCluster;
  const relays: Partition[] = [];
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  let app: Upstream;
  const sidecars: SidecarProcess[] = [];
  let webAdmin = '';
  let n = 0;

  const cpYaml = (): string => `store: { etcd: { endpoints: [${relays.map((r) => r.endpoint).join(', ')}], prefix: /hamembers, leaseTtl: 3s } }\n`;
  const applied = async (): Promise<Record<string, unknown> | undefined> =>
    (JSON.parse((await send(webAdmin, { path: '/config?format=json' })).body) as { services: Record<string, Record<string, unknown>> }).services['inventory'];
  /** Sets a timeout not used before through `cp`; resolves to the API status and whether the edge sidecar (on a) got it. */
  const change = async (cp: ControlPlaneProcess): Promise<{ status: number; reached: boolean }> => {
    const timeout = `${10 + ++n}s`;
    const r = await sendApi(cp.http, { method: 'PUT', path: '/api/services/inventory/policy', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeout }) });
    if (r.status !== 200) console.log(r.body, cp.stdout.split('\n').filter((l) => l.includes('etcd')).slice(-20).join('\n'));
    const reached = r.status === 200 && (await waitFor(async () => (await applied())?.['timeout'] === timeout, 10_000));
    return { status: r.status, reached };
  };
  /** outrigger_cp_etcd_member_serving of `member` on `cp` (undefined when not listed). */
  const serving = async (cp: ControlPlaneProcess, member: string): Promise<number | undefined> => {
    const text = (await sendApi(cp.http, { path: '/metrics' })).body;
    const line = text.split('\n').find((l) => l.startsWith(`outrigger_cp_etcd_member_serving{member="${member}"}`));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const leaderIndex = async (): Promise<number> => {
    for (const [i, m] of etcd.members.entries()) {
      const r = await fetch(`${m.endpoint}/v3/maintenance/status`, { method: 'POST', body: '{}' }).catch(() => undefined);
      const s = (await r?.json().catch(() => undefined)) as { leader?: string; header?: { member_id?: string } } | undefined;
      if (s?.leader !== undefined && s.leader === s.header?.member_id) return i;
    }
    return -1;
  };

  beforeAll(async () => {
    etcd = await startEtcdCluster(3);
    for (const e of etcd.endpoints) relays.push(await startPartition(e));
    a = await spawnControlPlane(cpYaml());
    b = await spawnControlPlane(cpYaml());
    app = await startUpstream((_req, res) => res.end('inv'));
    const pi = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: inventory\ninstance: inv-0\nadmin: { listen: 127.0.0.1:${pi.admin} }\noutbound: { listen: 127.0.0.1:${pi.outbound} }\n` +
          `inbound: { listen: 127.0.0.1:${pi.inbound}, target: http://${app.address} }\n` +
          `controlPlane: { addresses: [${b.grpc}] }\nlog: { level: warn }\nservices: {}\n`,
        pi.admin,
      ),
    );
    const p = await ports();
    webAdmin = `127.0.0.1:${p.admin}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\ninstance: web-1\nadmin: { listen: ${webAdmin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
          `controlPlane: { addresses: [${a.grpc}], subscribe: [inventory] }\nlog: { level: warn }\nservices: {}\n`,
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
    for (const r of relays) await r.close();
    await etcd?.destroy();
  }, 60_000);

  it('each member in turn cut off from both replicas: changes through either replica are taken and reach the sidecar on a', async () => {
    for (const relay of relays) {
      relay.cut();
      // Right after the cut (the replicas have not noticed yet) and once they have.
      expect(await change(b)).toEqual({ status: 200, reached: true });
      // Both replicas see that the member does not answer (their metrics), and keep taking changes.
      for (const cp of [a, b]) expect(await waitFor(async () => (await serving(cp, relay.endpoint)) === 0, 10_000)).toBe(true);
      expect(await change(b)).toEqual({ status: 200, reached: true });
      expect(await change(a)).toEqual({ status: 200, reached: true });
      relay.heal();
      for (const cp of [a, b]) expect(await waitFor(async () => (await serving(cp, relay.endpoint)) === 1, 10_000)).toBe(true);
    }
    // Both replicas said which member stopped answering.
    expect(a.stdout).toContain('member does not answer');
    expect(b.stdout).toContain('member does not answer');
  }, 180_000);

  it("etcd's raft leader killed: a change made right after is taken and reaches the sidecar on a", async () => {
    let i = -1;
    await waitFor(async () => (i = await leaderIndex()) >= 0, 10_000);
    const victim = etcd.members[i];
    expect(victim).toBeDefined();
    await victim?.kill();
    expect(await change(b)).toEqual({ status: 200, reached: true });
    expect(await change(a)).toEqual({ status: 200, reached: true });
    await victim?.restart();
    expect(await change(b)).toEqual({ status: 200, reached: true });
  }, 120_000);
});
