/**
 * Changes to the same key through two replicas (store.etcd), all real processes: a single-member etcd, and
 * replica a reaching it through a relay the test can cut. A change is written only over the revision it was
 * made on: of two concurrent changes one is taken (200) and the other is answered 409, and both replicas
 * end on the one taken; a change left pending on a cut-off replica (answered 503) does not overwrite a
 * newer change made through the other replica meanwhile. States and answers are asserted, never times.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { HAVE_ETCD, startEtcd, startPartition, type EtcdProcess, type Partition } from '../helpers/etcd.js';
import { waitFor } from '../helpers/net.js';

describe.skipIf(!HAVE_ETCD)('concurrent changes through two replicas', () => {
  let etcd: EtcdProcess;
  let relay: Partition;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;

  const yaml = (endpoint: string): string => `store: { etcd: { endpoints: [${endpoint}], prefix: /conflict, leaseTtl: 3s } }\n`;
  const put = (cp: ControlPlaneProcess, service: string, timeout: string) =>
    sendApi(cp.http, { method: 'PUT', path: `/api/services/${service}/policy`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeout }) });
  const timeoutOf = async (cp: ControlPlaneProcess, service: string): Promise<unknown> => {
    const r = await sendApi(cp.http, { path: `/api/services/${service}/policy` });
    return r.status === 200 ? (JSON.parse(r.body) as { policy: { timeout?: unknown } }).policy.timeout : undefined;
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    relay = await startPartition(etcd.endpoint);
    a = await spawnControlPlane(yaml(relay.endpoint));
    b = await spawnControlPlane(yaml(etcd.endpoint));
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await relay?.close();
    await etcd?.destroy();
  }, 30_000);

  it('two changes at once: each is taken (200) or refused (409), and both replicas end on one that was taken', async () => {
    const answers: string[] = [];
    for (let round = 0; round < 5; round++) {
      const [ra, rb] = await Promise.all([put(a, 'inventory', `${round + 1}1s`), put(b, 'inventory', `${round + 1}2s`)]);
      answers.push(`${ra.status}/${rb.status}`);
      expect([200, 409]).toContain(ra.status);
      expect([200, 409]).toContain(rb.status);
      const taken = [ra.status === 200 ? `${round + 1}1s` : undefined, rb.status === 200 ? `${round + 1}2s` : undefined].filter((t) => t !== undefined);
      expect(taken.length).toBeGreaterThan(0);
      if (ra.status === 409) expect(ra.body).toContain('another control-plane replica');
      let seen: unknown[] = [];
      expect(await waitFor(async () => (seen = [await timeoutOf(a, 'inventory'), await timeoutOf(b, 'inventory')])[0] === seen[1] && taken.includes(String(seen[0])), 10_000)).toBe(true);
    }
    console.log(`answers through a/b, round by round: ${answers.join(', ')}`);
  }, 120_000);

  it('a change left pending on a cut-off replica (503) does not overwrite a newer one made through the other', async () => {
    expect((await put(a, 'catalog', '1s')).status).toBe(200);
    expect(await waitFor(async () => (await timeoutOf(b, 'catalog')) === '1s', 10_000)).toBe(true);
    relay.cut();
    const pending = put(a, 'catalog', '2s'); // cannot be written: answered 503 after 10 s
    expect((await put(b, 'catalog', '3s')).status).toBe(200);
    expect((await pending).status).toBe(503);
    relay.heal();
    // a is back once a change through it is taken; by then it has listed the state again.
    expect(await waitFor(async () => (await put(a, 'other', '5s')).status === 200, 30_000)).toBe(true);
    expect(await waitFor(async () => (await timeoutOf(a, 'catalog')) === '3s', 10_000)).toBe(true);
    expect(await timeoutOf(b, 'catalog')).toBe('3s');
    expect(a.stdout).toContain('the key was changed through another replica meanwhile');
  }, 120_000);
});
