import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { echo, send, startUpstream, type Upstream } from '../helpers/net.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

describe('configuration pushed by the control plane', () => {
  let a: Upstream;
  let b: Upstream;
  let sidecar: Sidecar;
  let localPort = 0;

  beforeAll(async () => {
    a = await startUpstream(echo('a'));
    b = await startUpstream(echo('b'));
    const p = await ports();
    localPort = (await ports()).outbound;
    sidecar = await startSidecar(`
service: web
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
controlPlane: { addresses: [127.0.0.1:1], subscribe: [pushed] }
log: { level: silent }
services:
  local: { endpoints: [ { address: ${a.address} } ] }
  catalog: { listen: 127.0.0.1:${localPort} }
`);
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await Promise.all([a.close(), b.close()]);
  });

  it('lays pushed services over the file, validated like sidecar.yaml, and shows version and source', async () => {
    const out = sidecar.addresses.outbound;
    expect((await send(out, { headers: { host: 'pushed' } })).status).toBe(404);
    const nack = await sidecar.applyPushed('7', [{ name: 'pushed', policyJson: JSON.stringify({ lb: 'least-load', endpoints: [{ address: b.address }] }) }], 'control-plane');
    expect(nack).toBeUndefined();
    const r = await send(out, { headers: { host: 'pushed' } });
    expect(JSON.parse(r.body)).toMatchObject({ name: 'b' });
    // The file's own services stay.
    expect((await send(out, { headers: { host: 'local' } })).status).toBe(200);
    const cfg = JSON.parse((await send(sidecar.addresses.admin, { path: '/config/status' })).body) as { version: string; source: string; lastNack: unknown };
    expect(cfg).toMatchObject({ version: '7', source: 'control-plane', lastNack: null });
  });

  it('NACKs a policy it cannot apply, naming the key, and keeps the previous configuration whole', async () => {
    const reason = await sidecar.applyPushed(
      '8',
      [
        { name: 'pushed', policyJson: JSON.stringify({ endpoints: [{ address: a.address }] }) },
        { name: 'other', policyJson: JSON.stringify({ retry: { attempts: 'three' }, endpoints: [{ address: a.address }] }) },
      ],
      'control-plane',
    );
    expect(reason).toBe('services.other: retry.attempts: expected integer 0..10, got "three"');
    // Nothing of version 8 was applied: "pushed" still goes to b.
    const r = await send(sidecar.addresses.outbound, { headers: { host: 'pushed' } });
    expect(JSON.parse(r.body)).toMatchObject({ name: 'b' });
    const cfg = JSON.parse((await send(sidecar.addresses.admin, { path: '/config/status' })).body) as { version: string; lastNack: { version: string; reason: string } };
    expect(cfg.version).toBe('7');
    expect(cfg.lastNack).toEqual({ version: '8', reason });
    expect(await sidecar.applyPushed('9', [{ name: 'x', policyJson: '{not json' }], 'control-plane')).toMatch(/^services\.x: policy is not valid JSON/);
  });
  it("keeps the file's local port of a service when the pushed policy has none", async () => {
    const local = `127.0.0.1:${localPort}`;
    // Before any push the service has no endpoints: the local port answers, but with no upstream.
    expect((await send(local)).status).toBeGreaterThanOrEqual(500);
    const nack = await sidecar.applyPushed('20', [{ name: 'catalog', policyJson: JSON.stringify({ lb: 'round-robin', endpoints: [{ address: a.address }] }) }], 'control-plane');
    expect(nack).toBeUndefined();
    const r = await send(local, { headers: { host: 'anything' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ name: 'a' });
  });
});
