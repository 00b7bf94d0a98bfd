/**
 * What a client on loopback without credentials must not be able to do to the control plane (a real process):
 * take over a live instance's id, poison the state version, keep malformed streams open, drive the HTTP API
 * from a web page (CSRF, DNS rebinding), crash it with bad input, set absurd bounds, or lose acknowledged
 * writes on kill -9.
 */
import { Metadata, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlaneMessage, type Instance, type SidecarMessage } from '../../proto/gen/outrigger/v1/discovery.js';
import { discoveryClient, sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';
import { TEST_ADMIN_TOKEN } from '../helpers/tokens.js';

interface StreamResult {
  /** Snapshots received before the stream ended. */
  readonly snapshots: number;
  /** The status it ended with. */
  readonly code: GrpcStatus;
  readonly details: string;
}

/**
 * Opens a discovery stream, writes `messages`, and waits for the control plane to end it (or `holdMs` to
 * pass: then it is ended by us and reported as CANCELLED with the snapshots seen).
 */
function stream(grpc: string, messages: readonly SidecarMessage[], holdMs = 5_000): Promise<StreamResult> {
  const client = discoveryClient(grpc);
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${TEST_ADMIN_TOKEN}`);
  const call = client.stream(metadata);
  let snapshots = 0;
  return new Promise<StreamResult>((resolve) => {
    const timer = setTimeout(() => {
      call.cancel();
    }, holdMs);
    call.on('data', (m: ControlPlaneMessage) => {
      if (m.msg?.$case === 'snapshot') snapshots++;
    });
    call.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      resolve({ snapshots, code: err.code, details: err.details });
    });
    call.on('end', () => {
      clearTimeout(timer);
      resolve({ snapshots, code: GrpcStatus.OK, details: '' });
    });
    for (const m of messages) call.write(m);
  }).finally(() => client.close());
}

const hello = (instance: Instance | undefined, lastVersion = '', subscriptions: string[] = []): SidecarMessage => ({ msg: { $case: 'hello', hello: { instance, subscriptions, lastVersion, service: instance?.service ?? '' } } });
const heartbeat: SidecarMessage = { msg: { $case: 'heartbeat', heartbeat: {} } };
const instance = (id: string, address: string, extra: Partial<Instance> = {}): Instance => ({ service: 'inventory', id, address, weight: 0, capacity: 0, zone: '', mtls: '', ...extra });

interface InstancesBody {
  instances: { id: string; address: string; service: string }[];
}

const json = (body: unknown): { headers: Record<string, string>; body: string } => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('control plane hardening', () => {
  let cp: ControlPlaneProcess;
  let app: Upstream;
  let real: SidecarProcess;
  let realAddress: string;

  const instances = async (): Promise<InstancesBody['instances']> => (JSON.parse((await sendApi(cp.http, { path: '/api/instances' })).body) as InstancesBody).instances;
  const version = async (): Promise<number> => (JSON.parse((await sendApi(cp.http, { path: '/api/version' })).body) as { version: number }).version;

  beforeAll(async () => {
    cp = await spawnControlPlane(
      'instanceTtl: 3s\ndrainTime: 1s\nweightInterval: 1h\nlimits: { maxReplicas: 10 }\n' +
        'autoscale:\n  scaled: { min: 0, max: 2, targetUtilization: 0.5, interval: 1h, driver: { process: { command: [node, -e, "setInterval(() => {}, 1000)"], ports: 31000-31009 } } }\n',
      undefined,
      'allowedHosts: [control-plane]',
    );
    app = await startUpstream((_req, res) => res.end('real'));
    const p = await ports();
    realAddress = `127.0.0.1:${p.inbound}`;
    real = await spawnSidecar(
      `service: inventory\ninstance: inv-real\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
        `inbound: { listen: ${realAddress}, target: http://${app.address} }\ncontrolPlane: { addresses: [${cp.grpc}] }\nlog: { level: warn }\nservices: {}\n`,
      p.admin,
    );
    await waitFor(async () => (await instances()).some((i) => i.id === 'inv-real'), 10_000);
  }, 30_000);

  afterAll(async () => {
    await real?.stop();
    await cp?.stop();
    await app?.close();
  });

  describe('discovery stream', () => {
    it("refuses a Hello that reuses a live instance's id with ALREADY_EXISTS and changes nothing, also in the state file", async () => {
      const r = await stream(cp.grpc, [hello(instance('inv-real', '127.0.0.1:9'), '', ['inventory'])]);
      expect(r.code).toBe(GrpcStatus.ALREADY_EXISTS);
      expect(r.details).toContain('inv-real');
      expect(r.snapshots).toBe(0);
      // The real sidecar's heartbeats go on keeping its own address alive, and only that one.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const list = (await instances()).filter((i) => i.id === 'inv-real' || i.address === '127.0.0.1:9');
      expect(list).toEqual([expect.objectContaining({ id: 'inv-real', address: realAddress, service: 'inventory' })]);
      // A change is saved before it is acknowledged: the file then holds the real address only.
      expect((await sendApi(cp.http, { method: 'PUT', path: '/api/services/marker/policy', ...json({ lb: 'random' }) })).status).toBe(200);
      const saved = JSON.parse(readFileSync(join(cp.dir, 'state.json'), 'utf8')) as { instances: { id: string; address: string }[] };
      expect(saved.instances.filter((i) => i.id === 'inv-real')).toEqual([expect.objectContaining({ address: realAddress })]);
      expect(saved.instances.some((i) => i.address === '127.0.0.1:9')).toBe(false);
    });

    it('refuses another id at the address a connected sidecar registered, and a stream that registered nothing cannot deregister it', async () => {
      const r = await stream(cp.grpc, [hello(instance('inv-fake', realAddress))]);
      expect(r.code).toBe(GrpcStatus.ALREADY_EXISTS);
      // Same id, no address: a subscriber only; its Deregister and heartbeats do not touch inv-real.
      const sub = await stream(cp.grpc, [hello(instance('inv-real', '')), heartbeat, { msg: { $case: 'deregister', deregister: {} } }], 1_000);
      expect(sub.snapshots).toBe(1);
      const list = await instances();
      expect(list.filter((i) => i.address === realAddress).map((i) => i.id)).toEqual(['inv-real']);
      expect(list.find((i) => i.id === 'inv-real')).toMatchObject({ state: 'serving' });
    });

    it('lets the same sidecar (same service and address) take its id back after its stream ended; another address only after the TTL', async () => {
      const address = '127.0.0.1:19';
      const first = await stream(cp.grpc, [hello(instance('inv-lease', address))], 300);
      expect(first.snapshots).toBe(1);
      // The stream ended; its registration lives out the TTL (3 s).
      const moved = await stream(cp.grpc, [hello(instance('inv-lease', '127.0.0.1:20'))]);
      expect(moved.code).toBe(GrpcStatus.ALREADY_EXISTS);
      expect(moved.details).toContain('registered as inventory at 127.0.0.1:19');
      const again = await stream(cp.grpc, [hello(instance('inv-lease', address), '', []), heartbeat], 300);
      expect(again.snapshots).toBe(1);
      await waitFor(async () => !(await instances()).some((i) => i.id === 'inv-lease'), 10_000);
      const after = await stream(cp.grpc, [hello(instance('inv-lease', '127.0.0.1:20'))], 300);
      expect(after.snapshots).toBe(1);
    }, 20_000);

    it('refuses last_version past 2^50, negative, fractional or not a number with INVALID_ARGUMENT; the version stays and the state file stays loadable', async () => {
      const before = await version();
      for (const v of ['1e300', '9007199254740993', '1125899906842625', '-1', '1.5', 'abc', ' 7']) {
        const r = await stream(cp.grpc, [hello(instance(`probe-${before}`, ''), v)]);
        expect(r.code, `last_version ${v}`).toBe(GrpcStatus.INVALID_ARGUMENT);
        expect(r.details).toContain('last_version');
        expect(r.snapshots).toBe(0);
      }
      expect(await version()).toBe(before);
      // A sane one still works (versions never go backwards for a sidecar that saw more).
      const ok = await stream(cp.grpc, [hello(instance('probe-ok', ''), String(before + 1000))], 500);
      expect(ok.snapshots).toBe(1);
      expect(await version()).toBeGreaterThan(before + 1000);
      // Pushes still advance the version by one, and a restart accepts its own state file.
      const v1 = await version();
      expect((await sendApi(cp.http, { method: 'PUT', path: '/api/services/after-probe/policy', ...json({ lb: 'random' }) })).status).toBe(200);
      expect(await version()).toBe(v1 + 1);
      await cp.stop();
      await cp.restart();
      expect(await version()).toBeGreaterThanOrEqual(v1 + 1);
      await waitFor(async () => (await instances()).some((i) => i.id === 'inv-real' && i.address === realAddress), 10_000);
    }, 30_000);

    it('ends malformed streams at once with INVALID_ARGUMENT', async () => {
      const cases: [string, SidecarMessage[]][] = [
        ['a heartbeat before Hello', [heartbeat]],
        ['an ACK before Hello', [{ msg: { $case: 'ack', ack: { version: '1', nonce: '1' } } }]],
        ['a Hello without instance', [hello(undefined)]],
        ['an unknown message kind', [{ msg: undefined }]],
        ['an unknown message kind after Hello', [hello(instance('malformed-1', '')), { msg: undefined }]],
        ['a second Hello', [hello(instance('malformed-2', '')), hello(instance('malformed-2', ''))]],
        ['an invalid instance', [hello(instance('malformed-3', '127.0.0.1:10', { capacity: 10_000_000 }))]],
      ];
      for (const [what, messages] of cases) {
        const r = await stream(cp.grpc, messages);
        expect(r.code, what).toBe(GrpcStatus.INVALID_ARGUMENT);
      }
      expect((await instances()).some((i) => i.id.startsWith('malformed'))).toBe(false);
    });
  });

  describe('HTTP admin API', () => {
    const drained = async (): Promise<boolean> => {
      const body = JSON.parse((await sendApi(cp.http, { path: '/api/services/inventory' })).body) as { endpoints: { address: string; state: string }[] };
      return body.endpoints.some((e) => e.address === realAddress && e.state === 'drained');
    };

    it('refuses a cross-site text/plain POST (415) and a foreign Origin (403); the endpoint stays in service', async () => {
      const plain = await sendApi(cp.http, { method: 'POST', path: '/api/drain', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ address: realAddress }) });
      expect(plain.status).toBe(415);
      expect(JSON.parse(plain.body)).toEqual({ error: 'expected Content-Type application/json, got text/plain' });
      const form = await sendApi(cp.http, { method: 'POST', path: '/api/drain', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `address=${realAddress}` });
      expect(form.status).toBe(415);
      const foreign = await sendApi(cp.http, { method: 'POST', path: '/api/drain', headers: { 'content-type': 'application/json', origin: 'http://evil.example' }, body: JSON.stringify({ address: realAddress }) });
      expect(foreign.status).toBe(403);
      expect(JSON.parse(foreign.body).error).toContain('evil.example');
      expect((await sendApi(cp.http, { path: '/api/instances', headers: { origin: 'null' } })).status).toBe(403);
      expect(await drained()).toBe(false);
      // The same origin passes (the dashboard), and PATCH takes merge-patch+json.
      const same = await sendApi(cp.http, { method: 'PUT', path: '/api/services/csrf/policy', headers: { 'content-type': 'application/json', origin: `http://${cp.http}` }, body: '{}' });
      expect(same.status).toBe(200);
      const patch = await sendApi(cp.http, { method: 'PATCH', path: '/api/services/csrf/policy', headers: { 'content-type': 'application/merge-patch+json' }, body: '{"lb":"random"}' });
      expect(patch.status).toBe(200);
      expect((await sendApi(cp.http, { method: 'PUT', path: '/api/services/csrf/policy', headers: { 'content-type': 'application/merge-patch+json' }, body: '{}' })).status).toBe(415);
    });

    it('answers only to IP addresses, localhost and listen.allowedHosts (DNS rebinding: 421)', async () => {
      const port = cp.http.split(':')[1];
      for (const host of [`rebind.evil.example:${port}`, 'example.com', 'control-plane.evil.example']) {
        const r = await sendApi(cp.http, { path: '/api/instances', headers: { host } });
        expect(r.status, host).toBe(421);
        expect(JSON.parse(r.body).error).toContain('listen.allowedHosts');
      }
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `control-plane:${port}`, `[::1]:${port}`, '10.1.2.3']) {
        expect((await sendApi(cp.http, { path: '/api/instances', headers: { host } })).status, host).toBe(200);
      }
    });

    it('caps bodies at 1 MiB with 413 and answers bad paths and bodies 400 with a JSON error, never 500', async () => {
      const big = await sendApi(cp.http, { method: 'PUT', path: '/api/services/big/policy', headers: { 'content-type': 'application/json' }, body: `{"lb":"random","x":"${'a'.repeat(2_000_000)}"}` });
      expect(big.status).toBe(413);
      expect(JSON.parse(big.body).error).toContain('1 MiB');
      const bad: [string, string, string | undefined][] = [
        ['GET', '/api/services/%E0%A4%A', undefined],
        ['PUT', '/api/services/%zz/policy', '{}'],
        ['POST', '/api/drain', 'not json'],
        ['POST', '/api/drain', 'null'],
        ['POST', '/api/drain', '[]'],
        ['POST', '/api/drain', '"127.0.0.1:1"'],
        ['POST', '/api/drain', '{"address":5}'],
        ['POST', '/api/drain', '{"address":"no-port"}'],
        ['POST', '/api/drain', ''],
        ['POST', '/api/undrain', '{}'],
        ['PUT', '/api/services/inventory/weights/127.0.0.1:1', '{"weight":"5"}'],
        ['PUT', '/api/services/inventory/weights/127.0.0.1:1', 'null'],
        ['PUT', '/api/services/inventory/policy', '{'],
        ['PUT', '/api/autoscale/scaled', 'nope'],
      ];
      for (const [method, path, body] of bad) {
        const r = await sendApi(cp.http, { method, path, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body }) });
        expect(r.status, `${method} ${path} ${body ?? ''}`).toBe(400);
        expect(typeof (JSON.parse(r.body) as { error: unknown }).error).toBe('string');
      }
    });
  });

  describe('bounds', () => {
    it('refuses an autoscale max above limits.maxReplicas (400) and accepts one within', async () => {
      const r = await sendApi(cp.http, { method: 'PUT', path: '/api/autoscale/scaled', ...json({ max: 100_000 }) });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).error).toBe("max: expected integer 1..10 (limits.maxReplicas in cp.yaml), or null for cp.yaml's; got 100000");
      expect((await sendApi(cp.http, { method: 'PUT', path: '/api/autoscale/scaled', ...json({ min: 11 }) })).status).toBe(400);
      const ok = await sendApi(cp.http, { method: 'PUT', path: '/api/autoscale/scaled', ...json({ max: 10 }) });
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({ max: 10 });
    });

    it('refuses policies with a non-loopback listen, or capacity, cost and concurrency limits past their ceilings, naming the key', async () => {
      const cases: [unknown, string][] = [
        [{ listen: '0.0.0.0:18080' }, 'listen: expected a loopback address'],
        [{ listen: '[::]:18080' }, 'listen: expected a loopback address'],
        [{ endpoints: [{ address: '127.0.0.1:9001', capacity: 10_000_000 }] }, 'endpoints[0].capacity: expected integer 1..1000000, got 10000000'],
        [{ endpoints: [{ address: '127.0.0.1:9001', cost: 1e9 }] }, 'endpoints[0].cost: expected a number > 0 and <= 1000'],
        [{ limits: { maxConcurrent: 1e9 } }, 'limits.maxConcurrent: expected integer 1..1000000, got 1000000000'],
        [{ limits: { maxPending: 2e6 } }, 'limits.maxPending: expected integer 0..1000000'],
        [{ endpoints: [{ address: '127.0.0.1:9001', weight: 100_000 }] }, 'endpoints[0].weight: expected integer 1..1000'],
      ];
      for (const [policy, message] of cases) {
        const r = await sendApi(cp.http, { method: 'PUT', path: '/api/services/bounded/policy', ...json(policy) });
        expect(r.status, JSON.stringify(policy)).toBe(400);
        expect(JSON.parse(r.body).error).toContain(message);
      }
      const weight = await sendApi(cp.http, { method: 'PUT', path: '/api/services/inventory/weights/127.0.0.1:9001', ...json({ weight: 100_000 }) });
      expect(weight.status).toBe(400);
      const ok = await sendApi(cp.http, { method: 'PUT', path: '/api/services/bounded/policy', ...json({ listen: '127.0.0.1:18080', limits: { maxConcurrent: 1_000_000 } }) });
      expect(ok.status).toBe(200);
    });
  });

  describe('durability', () => {
    it('keeps every acknowledged write across kill -9', async () => {
      const n = 40;
      // Concurrent writes (saved together), then a few one after the other, each answered only once saved.
      const concurrent = await Promise.all(
        Array.from({ length: n }, (_, i) => sendApi(cp.http, { method: 'PUT', path: `/api/services/burst-${i}/policy`, ...json({ lb: 'random', retry: { attempts: i % 5 } }) })),
      );
      expect(concurrent.map((r) => r.status)).toEqual(Array.from({ length: n }, () => 200));
      const sequential = [];
      for (let i = 0; i < 5; i++) sequential.push(await sendApi(cp.http, { method: 'PATCH', path: `/api/services/burst-${i}/policy`, ...json({ timeout: `${i + 1}s` }) }));
      expect(sequential.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
      expect((await sendApi(cp.http, { method: 'PUT', path: `/api/services/inventory/weights/${realAddress}`, ...json({ weight: 7 }) })).status).toBe(200);
      expect((await sendApi(cp.http, { method: 'POST', path: '/api/drain', ...json({ address: realAddress }) })).status).toBe(200);
      await cp.kill();
      await cp.restart();
      for (let i = 0; i < n; i++) {
        const r = JSON.parse((await sendApi(cp.http, { path: `/api/services/burst-${i}/policy` })).body) as { policySource: string; policy: Record<string, unknown> };
        expect(r.policySource, `burst-${i}`).toBe('runtime');
        expect(r.policy).toEqual({ lb: 'random', retry: { attempts: i % 5 }, ...(i < 5 ? { timeout: `${i + 1}s` } : {}) });
      }
      const inv = JSON.parse((await sendApi(cp.http, { path: '/api/services/inventory' })).body) as { endpoints: { address: string; state: string; pinnedWeight?: number }[] };
      expect(inv.endpoints.find((e) => e.address === realAddress)?.state).toBe('drained');
      expect(inv.endpoints.find((e) => e.address === realAddress)?.pinnedWeight).toBe(7);
      expect((await sendApi(cp.http, { method: 'POST', path: '/api/undrain', ...json({ address: realAddress }) })).status).toBe(200);
    }, 30_000);
  });
});
