/**
 * The autoscaler's drivers against real counterparts short of the real thing: the process driver with real
 * child processes; the compose driver with a fake `docker` executable first on PATH that records its argv
 * (no container engine here); the kubernetes driver with a local HTTPS server replaying a recorded API
 * server exchange (no cluster here).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Autoscaler } from '../../../control-plane/src/autoscale/controller.js';
import { ComposeDriver } from '../../../control-plane/src/autoscale/drivers/compose.js';
import { KubernetesApiError, KubernetesDriver, type KubernetesDriverConfig } from '../../../control-plane/src/autoscale/drivers/kubernetes.js';
import { ProcessDriver, substitute } from '../../../control-plane/src/autoscale/drivers/process.js';
import { Registry } from '../../../control-plane/src/registry/registry.js';
import { systemClock } from '../../../common/src/clock.js';
import { systemTimers } from '../../../common/src/timers.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { captureLogger } from '../../helpers/logger.js';
import { waitFor } from '../../helpers/net.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'outrigger-autoscale-drivers-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// -----------------------------------------------------------------------------------------------------------

describe('process driver', () => {
  /** A child that prints its port, stays up, and exits on SIGTERM (or ignores it when told to). */
  const SCRIPT = `
const port = process.argv[1];
console.log('up on ' + port + ' env ' + process.env.SLOT);
const ignore = process.argv[2] === 'stubborn';
process.on('SIGTERM', () => { if (!ignore) process.exit(0); });
process.on('disconnect', () => process.exit(0));
setInterval(() => {}, 1000);
`;
  let driver: ProcessDriver | undefined;
  afterEach(async () => {
    await driver?.close();
    driver = undefined;
  });

  const make = (extra: string[] = [], stopGraceMs = 5_000) => {
    const { lines, logger } = captureLogger();
    driver = new ProcessDriver(
      'inv',
      { kind: 'process', command: [process.execPath, '-e', SCRIPT, '{port}', ...extra], ports: { from: 31000, to: 31002 }, host: '127.0.0.1', cwd: tmpdir(), env: { SLOT: '{service}-{index}' }, stopGraceMs },
      logger,
      systemClock,
      systemTimers,
    );
    return { d: driver, lines };
  };

  it('substitutes the template', () => {
    expect(substitute('{node} {service}:{port}/{index}@{host} {other}', { port: '1', service: 's', index: '0', host: 'h', node: '/n' })).toBe('/n s:1/0@h {other}');
  });

  it('starts instances on the lowest free ports, newest first, stops the named ones, reuses freed ports', async () => {
    const { d, lines } = make();
    await d.scaleTo(2, []);
    expect(await d.current()).toBe(2);
    expect(d.addresses()).toEqual(['127.0.0.1:31001', '127.0.0.1:31000']);
    await waitFor(() => lines.some((l) => l['msg'] === 'up on 31001 env inv-1'), 5_000);
    await d.scaleTo(1, ['127.0.0.1:31000']);
    expect(d.addresses()).toEqual(['127.0.0.1:31001']);
    expect(d.pids()).toHaveLength(1);
    await d.scaleTo(3, []);
    expect(d.addresses()).toEqual(['127.0.0.1:31002', '127.0.0.1:31000', '127.0.0.1:31001']);
    // Without names: newest first.
    await d.scaleTo(1, []);
    expect(d.addresses()).toEqual(['127.0.0.1:31001']);
    await expect(d.scaleTo(4, [])).rejects.toThrow('no free port in 31000-31002 for another instance of inv');
  });

  it('forgets an instance that dies unexpectedly, with a warning', async () => {
    const { d, lines } = make();
    await d.scaleTo(2, []);
    const [pid] = d.pids();
    process.kill(pid!, 'SIGKILL');
    await waitFor(async () => (await d.current()) === 1, 5_000);
    const warn = lines.find((l) => l['level'] === 40);
    expect(warn?.['msg']).toMatch(/^instance of inv at 127\.0\.0\.1:3100\d exited unexpectedly; the autoscaler replaces it at its next evaluation$/);
    expect(warn).toMatchObject({ signal: 'SIGKILL', service: 'inv' });
  });

  it('sends SIGKILL after stopGrace to an instance that ignores SIGTERM; close() stops every child', async () => {
    const { d, lines } = make(['stubborn'], 300);
    await d.scaleTo(2, []);
    await waitFor(() => lines.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('up on')).length === 2, 5_000);
    const pids = d.pids();
    await d.close();
    expect(lines.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('ignored SIGTERM for 300 ms; SIGKILL'))).toHaveLength(2);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    await expect(d.scaleTo(1, [])).rejects.toThrow('closed');
  });

  it('reports a command that cannot start', async () => {
    const { logger } = captureLogger();
    driver = new ProcessDriver('inv', { kind: 'process', command: ['/nonexistent/program'], ports: { from: 31000, to: 31000 }, host: '127.0.0.1', cwd: tmpdir(), env: {}, stopGraceMs: 100 }, logger, systemClock, systemTimers);
    await expect(driver.scaleTo(1, [])).rejects.toThrow('cannot start "/nonexistent/program" for inv: spawn /nonexistent/program ENOENT');
    expect(await driver.current()).toBe(0);
  });
});

// -----------------------------------------------------------------------------------------------------------

describe('compose driver (fake docker on PATH)', () => {
  const dir = tempDir();
  const log = join(dir, 'argv.log');
  // Records each run's argv (tab-separated); answers `ps -q` from ps.out; fails when the file "fail" exists.
  writeFileSync(
    join(dir, 'docker'),
    `#!/bin/sh
for a in "$@"; do printf '%s\\t' "$a"; done >> "${log}"
echo >> "${log}"
if [ -e "${dir}/fail" ]; then echo "service \\"inventory\\" has neither an image nor a build context specified" >&2; exit 15; fi
case " $* " in *" ps "*) cat "${dir}/ps.out" ;; esac
exit 0
`,
  );
  chmodSync(join(dir, 'docker'), 0o755);
  const env = { ...process.env, PATH: `${dir}:${process.env['PATH'] ?? ''}` };
  const runs = (): string[][] =>
    readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t').slice(0, -1));

  it('runs docker compose up -d --scale SERVICE=N --no-recreate SERVICE, and counts ps -q', async () => {
    writeFileSync(log, '');
    writeFileSync(join(dir, 'ps.out'), 'c0ffee1\nc0ffee2\n');
    const { logger } = captureLogger();
    const d = new ComposeDriver('inventory', { kind: 'compose', command: ['docker', 'compose'], file: '/srv/mesh/docker-compose.yml', project: 'mesh', service: 'inventory' }, logger, { env });
    expect(await d.current()).toBe(2);
    await d.scaleTo(3, ['10.0.0.1:8080']);
    const plain = new ComposeDriver('orders', { kind: 'compose', command: ['docker', 'compose'], service: 'orders-app' }, logger, { env });
    await plain.scaleTo(1, []);
    // Another compose program and its global flags (`command`): here the same fake, as `docker` with no subcommand.
    const other = new ComposeDriver('orders', { kind: 'compose', command: ['docker', '--ansi', 'never'], project: 'p', service: 'orders' }, logger, { env });
    await other.scaleTo(2, []);
    expect(runs()).toEqual([
      ['compose', '-f', '/srv/mesh/docker-compose.yml', '-p', 'mesh', 'ps', '-q', 'inventory'],
      ['compose', '-f', '/srv/mesh/docker-compose.yml', '-p', 'mesh', 'up', '-d', '--scale', 'inventory=3', '--no-recreate', 'inventory'],
      ['compose', 'up', '-d', '--scale', 'orders-app=1', '--no-recreate', 'orders-app'],
      ['--ansi', 'never', '-p', 'p', 'up', '-d', '--scale', 'orders=2', '--no-recreate', 'orders'],
    ]);
    expect(d.addresses()).toEqual([]);
  });

  it("says what docker said when it fails; current() falls back to the replicas last set", async () => {
    writeFileSync(log, '');
    const { logger } = captureLogger();
    const d = new ComposeDriver('inventory', { kind: 'compose', command: ['docker', 'compose'], service: 'inventory' }, logger, { env });
    writeFileSync(join(dir, 'fail'), '');
    try {
      await expect(d.current()).rejects.toThrow('docker compose ps -q inventory failed: service "inventory" has neither an image nor a build context specified');
      await expect(d.scaleTo(2, [])).rejects.toThrow('docker compose up -d --scale inventory=2 --no-recreate inventory failed: service "inventory" has neither');
      rmSync(join(dir, 'fail'));
      await d.scaleTo(2, []);
      writeFileSync(join(dir, 'fail'), '');
      expect(await d.current()).toBe(2);
    } finally {
      rmSync(join(dir, 'fail'), { force: true });
    }
  });
});

// -----------------------------------------------------------------------------------------------------------

/** A self-signed certificate for 127.0.0.1 (EC P-256, valid until 2126), as an API server's CA would issue. */
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoqIvK/qWVCBp1E+B
KiktxwQuYQGoUWD7dWH8U54xqnqhRANCAAS/FzHMfZTfAgEJUqVb3K1rGY02e9AS
OhGuCxr2bjFgOP/hbTSlGU+vF38CrGy+kSYIlVOED3XRCWZ9Ee9NfK8t
-----END PRIVATE KEY-----
`;
const CERT = `-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUaAUvuY+y+ruMqla2IM2LLXtmA64wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEzMDA3MjMwN1oYDzIxMjYxMTA2
MDcyMzA3WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS/FzHMfZTfAgEJUqVb3K1rGY02e9ASOhGuCxr2bjFgOP/hbTSlGU+v
F38CrGy+kSYIlVOED3XRCWZ9Ee9NfK8to2QwYjAdBgNVHQ4EFgQUV8ZvCrgHGUSb
U8R8VVMFvz1go0owHwYDVR0jBBgwFoAUV8ZvCrgHGUSbU8R8VVMFvz1go0owDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IQDxR1OHb6SwXfDtvcuvryPWBw+dTA84zxk7KUmJ4m09FwIgUII1IzQlP4wyUVUv
EZyPGNIlNTibhWXdxg6yv0zVydk=
-----END CERTIFICATE-----
`;

/** An autoscaling/v1 Scale as the API server answers GET and PATCH on deployments/scale. */
function scaleBody(replicas: number, statusReplicas: number): string {
  return JSON.stringify({
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: 'inventory', namespace: 'shop', uid: '8d1c7f0e-5a55-4b8e-9a1f-0c3d2b7e6f41', resourceVersion: '48213', creationTimestamp: '2026-11-02T09:14:27Z' },
    spec: { replicas },
    status: { replicas: statusReplicas, selector: 'app=inventory' },
  });
}

const FORBIDDEN = JSON.stringify({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message: 'deployments.apps "inventory" is forbidden: User "system:serviceaccount:shop:outrigger" cannot patch resource "deployments/scale" in API group "apps" in the namespace "shop"',
  reason: 'Forbidden',
  details: { name: 'inventory', group: 'apps', kind: 'deployments' },
  code: 403,
});

const CONFLICT = JSON.stringify({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message: 'Operation cannot be fulfilled on deployments.apps "inventory": the object has been modified; please apply your changes to the latest version and try again',
  reason: 'Conflict',
  details: { name: 'inventory', group: 'apps', kind: 'deployments' },
  code: 409,
});

describe('kubernetes driver (recorded API server exchange over HTTPS)', () => {
  interface Seen {
    method: string;
    url: string;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }
  const seen: Seen[] = [];
  let answer: (req: Seen) => { status: number; body: string } = () => ({ status: 200, body: scaleBody(2, 2) });
  let server: Server;
  let apiServer = '';
  const dir = tempDir();
  writeFileSync(join(dir, 'token'), 'eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token\n');
  writeFileSync(join(dir, 'ca.crt'), CERT);
  const config = (extra: Partial<KubernetesDriverConfig> = {}): KubernetesDriverConfig => ({
    kind: 'kubernetes',
    apiServer,
    namespace: 'shop',
    deployment: 'inventory',
    tokenFile: join(dir, 'token'),
    caFile: join(dir, 'ca.crt'),
    insecureSkipTlsVerify: false,
    ...extra,
  });

  beforeAll(async () => {
    server = createServer({ key: KEY, cert: CERT }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
        seen.push(s);
        const a = answer(s);
        res.writeHead(a.status, { 'content-type': 'application/json', 'audit-id': 'c2b9d1a4-7d2e-4b7a-9e1c-3f5a6b7c8d90' });
        res.end(a.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    apiServer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  afterEach(() => {
    seen.length = 0;
    answer = () => ({ status: 200, body: scaleBody(2, 2) });
  });

  it('GETs and PATCHes the scale subresource with the token, as a merge patch, verifying the CA', async () => {
    const { logger } = captureLogger();
    const d = new KubernetesDriver('inventory', config(), logger);
    answer = (s) => (s.method === 'GET' ? { status: 200, body: scaleBody(2, 1) } : { status: 200, body: scaleBody(JSON.parse(s.body).spec.replicas as number, 2) });
    expect(await d.current()).toBe(2);
    await d.scaleTo(4, ['10.1.2.3:15006']);
    expect(seen.map((s) => [s.method, s.url])).toEqual([
      ['GET', '/apis/apps/v1/namespaces/shop/deployments/inventory/scale'],
      ['PATCH', '/apis/apps/v1/namespaces/shop/deployments/inventory/scale'],
    ]);
    expect(seen[0]?.headers).toMatchObject({ authorization: 'Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token', accept: 'application/json' });
    expect(seen[0]?.body).toBe('');
    expect(seen[1]?.headers).toMatchObject({
      authorization: 'Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token',
      'content-type': 'application/merge-patch+json',
      'content-length': '23',
      accept: 'application/json',
    });
    expect(seen[1]?.body).toBe('{"spec":{"replicas":4}}');
    expect(d.addresses()).toEqual([]);
  });

  it('refuses a server its CA did not sign unless insecureSkipTlsVerify', async () => {
    const { logger } = captureLogger();
    await expect(new KubernetesDriver('inventory', config({ caFile: undefined }), logger).current()).rejects.toThrow(/^kubernetes: GET \/apis\/apps\/v1\/namespaces\/shop\/deployments\/inventory\/scale at https:\/\/127\.0\.0\.1:\d+ failed: self[- ]signed certificate/);
    expect(await new KubernetesDriver('inventory', config({ caFile: undefined, insecureSkipTlsVerify: true }), logger).current()).toBe(2);
  });

  it('turns 403 and 409 into clear errors', async () => {
    const { logger } = captureLogger();
    const d = new KubernetesDriver('inventory', config(), logger);
    answer = () => ({ status: 403, body: FORBIDDEN });
    const err = await d.scaleTo(3, []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubernetesApiError);
    expect((err as KubernetesApiError).status).toBe(403);
    expect((err as Error).message).toBe(
      'kubernetes: PATCH /apis/apps/v1/namespaces/shop/deployments/inventory/scale answered 403 Forbidden: deployments.apps "inventory" is forbidden: User "system:serviceaccount:shop:outrigger" cannot patch resource "deployments/scale" in API group "apps" in the namespace "shop" (the control plane\'s service account needs a Role with get and patch on deployments/scale; see docs/autoscaling.md)',
    );
    answer = () => ({ status: 409, body: CONFLICT });
    await expect(d.scaleTo(3, [])).rejects.toThrow(
      'answered 409 Conflict: Operation cannot be fulfilled on deployments.apps "inventory": the object has been modified; please apply your changes to the latest version and try again (someone else changed the Deployment at the same time; the next evaluation tries again)',
    );
    await expect(new KubernetesDriver('inventory', config({ tokenFile: join(dir, 'missing') }), logger).current()).rejects.toThrow(`kubernetes: cannot read tokenFile ${join(dir, 'missing')}: ENOENT`);
  });

  it('a refused PATCH is a failed decision, logged at error, and the size stays', async () => {
    const { lines, logger } = captureLogger();
    const clock = new FakeClock();
    const registry = new Registry({ clock, timers: clock, instanceTtlMs: 60_000, drainTimeMs: 0 });
    answer = (s) => (s.method === 'GET' ? { status: 200, body: scaleBody(1, 1) } : { status: 403, body: FORBIDDEN });
    const driver = new KubernetesDriver('inventory', config(), logger);
    const scaler = new Autoscaler({
      registry,
      loads: () => [],
      services: { inventory: { min: 2, max: 4, targetUtilization: 0.5, intervalMs: 1_000, stabilizationWindowMs: 0, cooldownMs: 0, driver: config() } },
      drivers: new Map([['inventory', driver]]),
      clock,
      timers: clock,
      logger,
    });
    expect(await scaler.evaluate('inventory')).toMatchObject({ action: 'scale-up', current: 1, desired: 2, reason: 'below min 2' });
    await scaler.settled('inventory');
    const v = scaler.views()[0]!;
    expect(v).toMatchObject({ driver: 'kubernetes', current: 1, desired: 1 });
    expect(v.decisions[0]?.error).toMatch(/^kubernetes: PATCH \S+ answered 403 Forbidden: /);
    expect(lines.find((l) => l['level'] === 50)).toMatchObject({ service: 'inventory', action: 'scale-up', current: 1, desired: 2, error: v.decisions[0]?.error });
  });
});
