/**
 * Automatic mutual TLS between sidecars, end to end with real processes: the control plane runs the mesh
 * CA, each sidecar gets a certificate for its service over the discovery stream, and a service whose
 * inbound listener is strict (the mesh-wide default it follows) is reached over mutual TLS only, active
 * health checks included; its app learns the caller's service.
 */
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';
import { systemClock } from '../../common/src/clock.js';

describe('mutual TLS between sidecars, certificates from the control plane', () => {
  let cp: ControlPlaneProcess;
  let app: Upstream;
  const seen: { client: string | undefined }[] = [];
  /** Active health checks that reached the app: the caller's service its sidecar vouched for. */
  const checks: (string | undefined)[] = [];
  let inventory: SidecarProcess;
  let web: SidecarProcess;
  let inboundAddr = '';
  let webOut = '';
  let webAdmin = '';
  let invAdmin = '';

  beforeAll(async () => {
    // inventory takes GET from web, except under /admin; everything else is refused.
    cp = await spawnControlPlane(
      'instanceTtl: 5s\nservices:\n  inventory:\n    healthCheck: { http: { path: /healthz }, interval: 300ms, timeout: 2s }\n' +
        '    authorization:\n      default: deny\n      rules:\n' +
        '        - { action: deny, from: [web], paths: [/admin] }\n        - { from: [web], methods: [GET] }\n',
    );
    app = await startUpstream((req, res) => {
      if (req.url === '/healthz') {
        checks.push(req.headers['x-outrigger-client-service'] as string | undefined);
        res.end('ok');
        return;
      }
      seen.push({ client: req.headers['x-outrigger-client-service'] as string | undefined });
      res.end('inventory says hi');
    });
    const pi = await ports();
    inboundAddr = `127.0.0.1:${pi.inbound}`;
    invAdmin = `127.0.0.1:${pi.admin}`;
    inventory = await spawnSidecar(
      `service: inventory\ninstance: inv-1\nadmin: { listen: ${invAdmin} }\noutbound: { listen: 127.0.0.1:${pi.outbound} }\n` +
        // No `mtls`: the listener follows the control plane's mesh-wide mode, strict by default.
        `inbound: { listen: ${inboundAddr}, target: http://${app.address} }\n` +
        `controlPlane: { addresses: [${cp.grpc}] }\nlog: { level: info, accessLog: { enabled: true } }\nservices: {}\n`,
      pi.admin,
    );
    const pw = await ports();
    webOut = `127.0.0.1:${pw.outbound}`;
    webAdmin = `127.0.0.1:${pw.admin}`;
    web = await spawnSidecar(
      `service: web\nadmin: { listen: ${webAdmin} }\noutbound: { listen: ${webOut} }\n` +
        `controlPlane: { addresses: [${cp.grpc}], subscribe: [inventory] }\nlog: { level: warn }\nservices: {}\n`,
      pw.admin,
    );
  }, 30_000);

  afterAll(async () => {
    await web?.stop();
    await inventory?.stop();
    await cp?.stop();
    await app?.close();
  });

  it('the control plane made a CA beside its state (key readable by its owner only) and issued both certificates', async () => {
    expect(existsSync(join(cp.dir, 'mesh-ca.crt'))).toBe(true);
    expect(statSync(join(cp.dir, 'mesh-ca.key')).mode & 0o777).toBe(0o600);
    await waitFor(() => (cp.stdout.match(/certificate issued/g) ?? []).length >= 2, 10_000);
    for (const admin of [invAdmin, webAdmin]) {
      const expiryOf = async (): Promise<number> => Number(/^outrigger_mesh_certificate_expiry_seconds (\S+)$/m.exec((await send(admin, { path: '/metrics' })).body)?.[1] ?? 0);
      await waitFor(async () => (await expiryOf()) > 0, 10_000);
      const expiry = await expiryOf();
      // About 24 h from now (the default lifetime).
      expect(expiry * 1_000 - systemClock.wallNow()).toBeGreaterThan(23 * 3600_000);
    }
  });

  it('the caller reaches the strict service over mutual TLS, and its app learns the caller\'s service', async () => {
    await waitFor(async () => (await send(webOut, { headers: { host: 'inventory' } })).status === 200, 10_000);
    const r = await send(webOut, { headers: { host: 'inventory', 'x-outrigger-client-service': 'admin' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('inventory says hi');
    // What the app reads was set by its sidecar from the certificate, not taken from the request.
    expect(seen.at(-1)).toEqual({ client: 'web' });
    // The control plane marks the registered endpoint as a mesh endpoint.
    const clusters = JSON.parse((await send(webAdmin, { path: '/config?format=json' })).body) as { services: Record<string, { endpoints: { address: string; mesh?: boolean }[] }> };
    expect(clusters.services['inventory']?.endpoints).toEqual([expect.objectContaining({ address: inboundAddr, mesh: true })]);
  });

  it('the caller\'s active health checks reach the strict service over mutual TLS, and keep it eligible', async () => {
    await waitFor(() => checks.length >= 3, 10_000);
    expect(new Set(checks)).toEqual(new Set(['web']));
    const clusters = JSON.parse((await send(webAdmin, { path: '/clusters' })).body) as { clusters: { service: string; endpoints: { eligible: boolean; health: string[] }[] }[] };
    expect(clusters.clusters.find((c) => c.service === 'inventory')?.endpoints).toEqual([expect.objectContaining({ eligible: true, health: [] })]);
  });

  it('plaintext straight to the strict inbound listener gets 403 mtls-required, counted; the app never sees it', async () => {
    const before = seen.length;
    const r = await send(inboundAddr, { headers: { host: 'inventory' } });
    expect(r.status).toBe(403);
    expect(r.headers['x-outrigger-error']).toBe('mtls-required');
    expect(seen.length).toBe(before);
    const metrics = (await send(invAdmin, { path: '/metrics' })).body;
    expect(metrics).toMatch(/outrigger_mtls_refused_total\{direction="inbound",reason="plaintext"\} [1-9]/);
  });

  it('the callee enforces its authorization policy on the verified caller: 403 forbidden, counted and logged', async () => {
    const before = seen.length;
    const post = await send(webOut, { method: 'POST', path: '/items', headers: { host: 'inventory', 'content-type': 'text/plain' }, body: 'x' });
    expect(post.status).toBe(403);
    expect(post.headers['x-outrigger-error']).toBe('forbidden');
    expect(post.body).toContain('does not allow service \\"web\\" to POST /items');
    const admin = await send(webOut, { path: '/admin/users?token=secret', headers: { host: 'inventory' } });
    expect(admin.status).toBe(403);
    expect(admin.body).not.toContain('secret');
    expect(seen.length).toBe(before);
    expect((await send(webOut, { path: '/items', headers: { host: 'inventory' } })).status).toBe(200);
    // A refusal is the callee's answer, not a failure of the endpoint: the caller keeps it eligible.
    const clusters = JSON.parse((await send(webAdmin, { path: '/clusters' })).body) as { clusters: { service: string; endpoints: { eligible: boolean }[] }[] };
    expect(clusters.clusters.find((c) => c.service === 'inventory')?.endpoints.map((e) => e.eligible)).toEqual([true]);
    const metrics = (await send(invAdmin, { path: '/metrics' })).body;
    expect(metrics).toMatch(/outrigger_authz_decisions_total\{service="inventory",decision="deny"\} 2\n/);
    expect(metrics).toMatch(/outrigger_authz_decisions_total\{service="inventory",decision="allow"\} [1-9]/);
    await waitFor(() => inventory.stdout.includes('"authz":"deny"'), 10_000);
    const line = inventory.stdout.split('\n').find((l) => l.includes('"authz":"deny"') && l.includes('"POST"'));
    expect(line).toContain('"peer":"web"');
    expect(line).toContain('"error":"forbidden"');
  });

  it('openssl s_client against the inbound listener shows the spiffe:// identity of the service', async () => {
    const out = await new Promise<string>((resolve) => {
      execFile('sh', ['-c', `openssl s_client -connect ${inboundAddr} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`], { timeout: 10_000 }, (_e, stdout) => resolve(stdout));
    });
    expect(out).toContain('URI:spiffe://outrigger.local/service/inventory');
  });
});
