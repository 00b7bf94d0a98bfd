/**
 * Tokens and roles of the control plane (a real process): the HTTP API answers 401 without a token and 403
 * when the token's role may not make the request; the discovery stream refuses streams without a sidecar or
 * admin token and scoped sidecar tokens that register another service; a control plane without `auth`
 * generates an admin and a sidecar token (0600 files) that sidecars and ctl use; ctl prints one line.
 */
import { Metadata, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlaneMessage, type Instance } from '../../proto/gen/outrigger/v1/discovery.js';
import { discoveryClient, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runCtl } from '../helpers/ctl.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';
import { TEST_ADMIN_TOKEN, TEST_AUTH_YAML } from '../helpers/tokens.js';

const READER = 'reader-token-0123456789abcdef';
const OPERATOR = 'operator-token-0123456789abcdef';
const SIDECAR_A = 'sidecar-a-token-0123456789abcdef';

/** Opens a discovery stream with `token` (none when undefined), says Hello as `service`, reports how it went. */
function hello(grpc: string, token: string | undefined, service: string, address: string): Promise<{ code: GrpcStatus; details: string; snapshots: number }> {
  const client = discoveryClient(grpc);
  const metadata = new Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  const call = client.stream(metadata);
  let snapshots = 0;
  return new Promise<{ code: GrpcStatus; details: string; snapshots: number }>((resolve) => {
    call.on('data', (m: ControlPlaneMessage) => {
      if (m.msg?.$case === 'snapshot' && ++snapshots === 1) call.cancel();
    });
    call.on('error', (err: ServiceError) => resolve({ code: err.code, details: err.details, snapshots }));
    call.on('end', () => resolve({ code: GrpcStatus.OK, details: '', snapshots }));
    const instance: Instance = { service, id: `${service}-${address}`, address, weight: 1, capacity: 10, zone: '', mtls: '' };
    call.write({ msg: { $case: 'hello', hello: { instance, subscriptions: [], lastVersion: '', service } } });
  }).finally(() => client.close());
}

const json = (body: unknown): { headers: Record<string, string>; body: string } => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

describe('control plane tokens and roles', () => {
  let cp: ControlPlaneProcess;

  beforeAll(async () => {
    cp = await spawnControlPlane(
      `${TEST_AUTH_YAML}    - { name: ops, secret: ${OPERATOR}, role: operator }\n    - { name: viewer, secret: ${READER}, role: reader }\n    - { name: a-only, secret: ${SIDECAR_A}, role: sidecar, services: [a] }\n` +
        'services:\n  a: { endpoints: [{ address: 127.0.0.1:1 }] }\n',
    );
  });
  afterAll(async () => {
    await cp?.stop();
  });

  it('answers 401 without a token or with an unknown one, and keeps /healthz, /metrics and /api/version open', async () => {
    const none = await send(cp.http, { path: '/api/services' });
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(JSON.parse(none.body)).toEqual({ error: 'authentication required: send Authorization: Bearer TOKEN' });
    expect((await send(cp.http, { path: '/api/services', headers: bearer('not-a-token-of-this-control-plane') })).status).toBe(401);
    expect((await send(cp.http, { method: 'POST', path: '/api/drain', ...json({ address: '127.0.0.1:1' }) })).status).toBe(401);
    expect((await send(cp.http, { path: '/healthz' })).status).toBe(200);
    expect((await send(cp.http, { path: '/metrics' })).status).toBe(200);
    expect((await send(cp.http, { path: '/api/version' })).status).toBe(200);
    // The dashboard's data needs a token too; the page's static files do not.
    expect((await send(cp.http, { path: '/api/dashboard' })).status).toBe(401);
    expect((await send(cp.http, { path: '/dashboard/app.js' })).status).toBe(200);
  });

  it('lets a reader read but not drain (403), and an operator drain', async () => {
    expect((await send(cp.http, { path: '/api/services', headers: bearer(READER) })).status).toBe(200);
    const denied = await send(cp.http, { method: 'POST', path: '/api/drain', ...json({ address: '127.0.0.1:1' }), headers: { ...bearer(READER), 'content-type': 'application/json' } });
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toEqual({ error: 'token "viewer" (role reader) may not POST /api/drain' });
    const drained = await send(cp.http, { method: 'POST', path: '/api/drain', ...json({ address: '127.0.0.1:1' }), headers: { ...bearer(OPERATOR), 'content-type': 'application/json' } });
    expect(drained.status).toBe(200);
    const undrained = await send(cp.http, { method: 'POST', path: '/api/undrain', ...json({ address: '127.0.0.1:1' }), headers: { ...bearer(OPERATOR), 'content-type': 'application/json' } });
    expect(undrained.status).toBe(200);
    // A sidecar token has no business on the HTTP API.
    expect((await send(cp.http, { path: '/api/services', headers: bearer(SIDECAR_A) })).status).toBe(403);
  });

  it('opens the dashboard with ?token= once, then by an HttpOnly cookie', async () => {
    const r = await send(cp.http, { path: `/?token=${READER}` });
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/');
    const cookie = String(r.headers['set-cookie']?.[0]);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    // Served over HTTPS: the browser keeps it off plain HTTP.
    expect(cookie).toContain('; Secure');
    const pair = cookie.split(';')[0]!;
    expect((await send(cp.http, { path: '/', headers: { cookie: pair } })).status).toBe(200);
    expect((await send(cp.http, { path: '/api/dashboard', headers: { cookie: pair } })).status).toBe(200);
    expect((await send(cp.http, { path: '/' })).status).toBe(401);
    expect((await send(cp.http, { path: `/?token=wrong-token-0123456789` })).status).toBe(401);
  });

  it('refuses a discovery stream without a token (UNAUTHENTICATED) or with a reader token (PERMISSION_DENIED)', async () => {
    const none = await hello(cp.grpc, undefined, 'a', '127.0.0.1:40001');
    expect(none.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(none.snapshots).toBe(0);
    expect((await hello(cp.grpc, 'unknown-token-0123456789', 'a', '127.0.0.1:40001')).code).toBe(GrpcStatus.UNAUTHENTICATED);
    const reader = await hello(cp.grpc, READER, 'a', '127.0.0.1:40001');
    expect(reader.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(reader.details).toContain('expected a sidecar or admin token');
  });

  it('lets a sidecar token scoped to [a] register a but not b', async () => {
    const b = await hello(cp.grpc, SIDECAR_A, 'b', '127.0.0.1:40002');
    expect(b.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(b.details).toBe('token "a-only" may not register or identify as service "b": it is for a');
    const a = await hello(cp.grpc, SIDECAR_A, 'a', '127.0.0.1:40003');
    expect(a.snapshots).toBe(1);
    const instances = JSON.parse((await send(cp.http, { path: '/api/instances', headers: bearer(TEST_ADMIN_TOKEN) })).body) as { instances: { service: string; address: string }[] };
    expect(instances.instances.map((i) => `${i.service} ${i.address}`)).toContain('a 127.0.0.1:40003');
    expect(instances.instances.some((i) => i.service === 'b')).toBe(false);
  });

  it('ctl sends --token; without one it fails with one clear line', async () => {
    const ok = await runCtl(['--server', cp.http, '--token', READER, 'services']);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^SERVICE/);
    const none = await runCtl(['--server', cp.http, 'services'], { env: { OUTRIGGER_TOKEN: '' } });
    expect(none.status).toBe(1);
    expect(none.stderr).toBe(`outrigger ctl: the control plane at ${cp.http} requires a token: give --token, --token-file or OUTRIGGER_TOKEN (its admin.token file, or a token of cp.yaml's auth.tokens)\n`);
    const denied = await runCtl(['--server', cp.http, '--token', READER, 'drain', '127.0.0.1:1']);
    expect(denied.status).toBe(1);
    expect(denied.stderr).toBe('outrigger ctl: permission denied: token "viewer" (role reader) may not POST /api/drain\n');
  });
});

describe('generated tokens', () => {
  let cp: ControlPlaneProcess;
  let app: Upstream;
  let sidecar: SidecarProcess | undefined;
  afterAll(async () => {
    await sidecar?.stop();
    await cp?.stop();
    await app?.close();
  });

  it('writes admin.token and sidecar.token (0600) on first start, keeps them across restarts, and they work', async () => {
    cp = await spawnControlPlane('instanceTtl: 3s\n', undefined, '', false);
    const adminFile = join(cp.dir, 'admin.token');
    const sidecarFile = join(cp.dir, 'sidecar.token');
    for (const f of [adminFile, sidecarFile]) {
      expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(readFileSync(f, 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
    const admin = readFileSync(adminFile, 'utf8').trim();
    // Paths are logged, secrets never.
    expect(cp.stdout).toContain(adminFile);
    expect(cp.stdout).not.toContain(admin);
    expect((await send(cp.http, { path: '/api/services' })).status).toBe(401);
    expect((await send(cp.http, { path: '/api/services', headers: bearer(admin) })).status).toBe(200);
    // The test admin token is not one of this control plane's.
    expect((await runCtl(['--server', cp.http, 'services'])).status).toBe(1);
    const ctl = await runCtl(['--server', cp.http, '--token-file', adminFile, 'services']);
    expect(ctl.status).toBe(0);

    await cp.stop();
    await cp.restart();
    expect(readFileSync(adminFile, 'utf8').trim()).toBe(admin);
    expect((await send(cp.http, { path: '/api/services', headers: bearer(admin) })).status).toBe(200);

    app = await startUpstream((_req, res) => res.end('ok'));
    const p = await ports();
    sidecar = await spawnSidecar(
      `service: inventory\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\ninbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }\n` +
        `controlPlane: { addresses: [${cp.grpc}], tokenFile: ${sidecarFile} }\nlog: { level: warn }\nservices: {}\n`,
      p.admin,
    );
    await waitFor(async () => {
      const body = JSON.parse((await send(cp.http, { path: '/api/instances', headers: bearer(admin) })).body) as { instances: { address: string }[] };
      return body.instances.some((i) => i.address === `127.0.0.1:${p.inbound}`);
    }, 10_000);
  });
});
