/**
 * Policies that are safe to change, with a real control plane, a real sidecar subscribed to the service and
 * `outrigger ctl` as a real process (needs `npm run build`): `policy patch` (JSON merge patch) keeps what it
 * does not mention, null deletes a key, an invalid result is refused; `--dry-run` prints the diff and changes
 * nothing; `policy delete` falls back to cp.yaml's policy, and the sidecar receives every change.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSidecarConfig, parseServiceConfig, parseSidecarConfig } from '../../common/src/config/load.js';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runCtl, type CtlRun } from '../helpers/ctl.js';
import { send, waitFor } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

const CP_POLICY = {
  lb: 'round-robin',
  healthCheck: { tcp: {}, interval: '5s' },
  retry: { attempts: 3, on: ['connect-failure', 'reset'] },
  circuitBreaker: { volumeThreshold: 4, resetTimeout: '1m' },
  endpoints: [{ address: '127.0.0.1:9001' }, { address: '127.0.0.1:9002' }],
};

describe('policy patch, dry runs and delete', () => {
  let cp: ControlPlaneProcess;
  let sidecar: SidecarProcess;
  let admin: string;
  const ctl = (...args: string[]): Promise<CtlRun> => runCtl(['--server', cp.http, ...args]);
  const file = (name: string, text: string): string => {
    const path = join(cp.dir, name);
    writeFileSync(path, text);
    return path;
  };
  const policy = async (): Promise<unknown> => parse((await ctl('policy', 'get', 'orders')).stdout);
  const version = async (): Promise<number> => (JSON.parse((await sendApi(cp.http, { path: '/api/version' })).body) as { version: number }).version;
  /** services.orders as the sidecar applies it, from its GET /config. */
  const applied = async (): Promise<Record<string, unknown> | undefined> =>
    (JSON.parse((await send(admin, { path: '/config?format=json' })).body) as { services: Record<string, Record<string, unknown>> }).services['orders'];
  const sidecarVersion = async (): Promise<string> => (JSON.parse((await send(admin, { path: '/config/status' })).body) as { version: string }).version;
  const stateFile = (): string => readFileSync(join(cp.dir, 'state.json'), 'utf8');

  beforeAll(async () => {
    cp = await spawnControlPlane(`services:\n  orders: ${JSON.stringify(CP_POLICY)}\n`);
    const p = await ports();
    admin = `127.0.0.1:${p.admin}`;
    sidecar = await spawnSidecar(
      `service: web\ninstance: web-1\nadmin: { listen: ${admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
        `controlPlane: { addresses: [${cp.grpc}], subscribe: [orders] }\nlog: { level: warn }\nservices: {}\n`,
      p.admin,
    );
    await waitFor(async () => (await applied()) !== undefined, 10_000);
  }, 30_000);

  afterAll(async () => {
    await sidecar.stop();
    await cp.stop();
  });

  it('patch with only lb keeps the health check, retries and breaker; the sidecar applies the merged policy', async () => {
    const r = await ctl('policy', 'patch', 'orders', '-f', file('lb.yaml', 'lb: least-load\n'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^policy of orders patched \(state version \d+\)\n$/);
    expect(await policy()).toEqual({ ...CP_POLICY, lb: 'least-load' });
    expect(row((await ctl('services')).stdout, 'orders')).toEqual(['orders', 'least-load', '2/2', 'runtime']);
    await waitFor(async () => (await applied())?.['lb'] === 'least-load', 10_000);
    const svc = await applied();
    expect(svc?.['healthCheck']).toMatchObject({ tcp: {}, interval: '5s' });
    expect(svc?.['retry']).toMatchObject({ attempts: 3, on: ['connect-failure', 'reset'] });
    expect(svc?.['circuitBreaker']).toMatchObject({ volumeThreshold: 4, resetTimeout: '1m' });
  });

  it('null in a patch deletes the key; nested mappings merge; a patch read from stdin as JSON', async () => {
    const r = await runCtl(['--server', cp.http, 'policy', 'patch', 'orders', '-f', '-'], { input: '{"circuitBreaker": null, "retry": {"attempts": 1}}' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { circuitBreaker: _, ...rest } = CP_POLICY;
    expect(await policy()).toEqual({ ...rest, lb: 'least-load', retry: { attempts: 1, on: ['connect-failure', 'reset'] } });
    // Without the policy's breaker the service keeps the default one (breakers are on by default).
    const breaker = async (): Promise<Record<string, unknown> | undefined> => (await applied())?.['circuitBreaker'] as Record<string, unknown> | undefined;
    await waitFor(async () => (await breaker())?.['volumeThreshold'] === 20, 10_000);
    expect(await breaker()).toMatchObject({ errorThresholdPercentage: 50, volumeThreshold: 20, resetTimeout: '5s' });
    expect((await applied())?.['retry']).toMatchObject({ attempts: 1 });
  });

  it('--dry-run prints the diff and "valid" and changes nothing: version, policy, state file, sidecar', async () => {
    // The last change is saved (saves are asynchronous).
    const current = await policy();
    await waitFor(() => JSON.stringify((JSON.parse(stateFile()) as { policies: Record<string, unknown> }).policies['orders']) === JSON.stringify(current), 10_000);
    const before = { version: await version(), policy: await policy(), state: stateFile(), sidecar: await sidecarVersion() };
    const [set, patch] = await Promise.all([
      ctl('policy', 'set', 'orders', '-f', file('only-lb.yaml', 'lb: maglev\nhashOn: { header: x-user }\n'), '--dry-run'),
      ctl('policy', 'patch', 'orders', '--dry-run', '-f', file('timeout.yaml', 'timeout: 3s\n')),
    ]);
    expect(set.stderr).toBe('');
    expect(set.status).toBe(0);
    const setLines = set.stdout.split('\n');
    expect(setLines.slice(0, 2)).toEqual(['--- orders (in force)', '+++ orders (after policy set)']);
    // `set` replaces the whole policy: the health check and the endpoints would go.
    expect(setLines).toEqual(expect.arrayContaining(['-lb: least-load', '+lb: maglev', '+hashOn:', '+  header: x-user', '-healthCheck:', '-  tcp: {}', '-endpoints:']));
    expect(setLines.at(-2)).toBe('valid (dry run: nothing was changed)');
    expect(patch.status).toBe(0);
    expect(patch.stdout.split('\n').filter((l) => /^[-+]/.test(l))).toEqual(['--- orders (in force)', '+++ orders (after policy patch)', '+timeout: 3s']);
    expect(patch.stdout).toContain('\n lb: least-load\n');
    // A dry run of delete shows the way back to cp.yaml's policy.
    const del = await ctl('policy', 'delete', 'orders', '--dry-run');
    expect(del.status).toBe(0);
    expect(del.stdout).toContain('\n-lb: least-load\n+lb: round-robin\n');
    expect(await version()).toBe(before.version);
    expect(await policy()).toEqual(before.policy);
    expect(stateFile()).toBe(before.state);
    expect(await sidecarVersion()).toBe(before.sidecar);
  });

  it('an invalid patch is refused with the key path (exit 1), also in a dry run with its diff; the old policy stays', async () => {
    const before = { version: await version(), policy: await policy() };
    const bad = file('bad.yaml', 'retry: { attempts: three }\n');
    const [dry, real, notMapping, unknown] = await Promise.all([
      ctl('policy', 'patch', 'orders', '-f', bad, '--dry-run'),
      ctl('policy', 'patch', 'orders', '-f', bad),
      ctl('policy', 'patch', 'orders', '-f', file('list.yaml', '- lb\n')),
      ctl('policy', 'patch', 'billing', '-f', bad),
    ]);
    expect(dry.status).toBe(1);
    expect(dry.stdout).toContain('\n-  attempts: 1\n+  attempts: three\n');
    expect(dry.stdout).not.toContain('valid (dry run');
    expect(dry.stderr).toBe(`outrigger ctl: the control plane would refuse the patched policy in ${bad} for orders:\n  retry.attempts: expected integer 0..10, got "three"\n`);
    expect(real.status).toBe(1);
    expect(real.stdout).toBe('');
    expect(real.stderr).toBe(`outrigger ctl: the control plane refused the patched policy in ${bad} for orders:\n  retry.attempts: expected integer 0..10, got "three"\n`);
    expect(notMapping.status).toBe(1);
    expect(notMapping.stderr).toMatch(/list\.yaml: expected a mapping of the policy keys to change/);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toBe('outrigger ctl: no service "billing"\n');
    expect(await version()).toBe(before.version);
    expect(await policy()).toEqual(before.policy);
  });

  it('PATCH over HTTP takes application/merge-patch+json and application/json, and refuses other types (415)', async () => {
    const patch = (type: string, body: string) => sendApi(cp.http, { method: 'PATCH', path: '/api/services/orders/policy', headers: { 'content-type': type }, body });
    const form = await patch('application/x-www-form-urlencoded', '{"timeout": "4s"}');
    expect(form.status).toBe(415);
    expect((JSON.parse(form.body) as { error: string }).error).toBe('expected Content-Type application/merge-patch+json or application/json, got application/x-www-form-urlencoded');
    const merge = await patch('application/merge-patch+json', '{"timeout": "4s"}');
    expect(merge.status).toBe(200);
    expect(JSON.parse(merge.body)).toMatchObject({ service: 'orders', changed: true, policySource: 'runtime', policy: { timeout: '4s', lb: 'least-load' } });
    const same = await patch('application/json', '{"timeout": "4s"}');
    expect(JSON.parse(same.body)).toMatchObject({ changed: false });
    const back = await patch('application/json', '{"timeout": null}');
    expect(back.status).toBe(200);
  });

  it("the sidecar's GET /config shows the pushed policy and loads back as a sidecar.yaml", async () => {
    // The sidecar has applied the newest state version.
    await waitFor(async () => (await sidecarVersion()) === String(await version()), 10_000);
    const [yaml, json] = await Promise.all([send(admin, { path: '/config' }), send(admin, { path: '/config', headers: { accept: 'application/json' } })]);
    expect(yaml.status).toBe(200);
    expect(yaml.headers['content-type']).toBe('application/yaml; charset=utf-8');
    expect(json.headers['content-type']).toBe('application/json');
    const saved = join(cp.dir, 'web-effective.yaml');
    writeFileSync(saved, yaml.body);
    const loaded = await loadSidecarConfig(saved);
    expect(loaded).toEqual(parseSidecarConfig(json.body, 'config.json'));
    expect(loaded.instance).toBe('web-1');
    expect(loaded.controlPlane?.subscribe).toEqual(['orders']);
    const inForce = JSON.parse((await sendApi(cp.http, { path: '/api/services/orders/policy' })).body) as { policy: unknown };
    expect(loaded.services['orders']).toEqual(parseServiceConfig(inForce.policy, 'orders'));
  });

  it('delete drops the run-time policy: cp.yaml\'s applies again, the sidecar receives it, the state file forgets it', async () => {
    const r = await ctl('policy', 'delete', 'orders');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^run-time policy of orders deleted, cp\.yaml's policy applies \(state version \d+\)\n$/);
    expect(await policy()).toEqual(CP_POLICY);
    expect(row((await ctl('services')).stdout, 'orders')).toEqual(['orders', 'round-robin', '2/2', 'config']);
    await waitFor(async () => (await applied())?.['lb'] === 'round-robin', 10_000);
    expect((await applied())?.['circuitBreaker']).toMatchObject({ volumeThreshold: 4 });
    await waitFor(() => (JSON.parse(stateFile()) as { policies: Record<string, unknown> }).policies['orders'] === undefined, 10_000);
    const again = await ctl('policy', 'delete', 'orders');
    expect(again.status).toBe(0);
    expect(again.stdout).toBe('orders has no run-time policy; nothing changed\n');
  });
});

/** The table row whose first column is `first`, split into columns. */
function row(table: string, first: string): string[] | undefined {
  return table
    .split('\n')
    .map((l) => l.split(/ {2,}/))
    .find((cols) => cols[0] === first);
}
