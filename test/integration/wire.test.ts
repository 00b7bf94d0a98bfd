// The wire contract end to end: the TypeScript that `npm run proto` generates from
// proto/outrigger/v1/discovery.proto (ts-proto, grpc-js stubs) carries every field of the discovery stream
// through a real grpc-js server and client on 127.0.0.1.
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { parseServiceConfig } from '../../common/src/config/load.js';
import {
  type ControlPlaneMessage,
  DiscoveryClient,
  type DiscoveryServer,
  DiscoveryService,
  type SidecarMessage,
} from '../../proto/gen/outrigger/v1/discovery.js';

/** A policy in the shape of `services.NAME` in sidecar.yaml, as the control plane pushes it. */
const catalogPolicy = {
  lb: 'least-request',
  endpoints: [{ address: '127.0.0.1:18081', weight: 3 }, { address: '127.0.0.1:18082' }],
  retry: { attempts: 2 },
  timeout: '2s',
};

const hello: SidecarMessage = {
  msg: {
    $case: 'hello',
    hello: {
      instance: { service: 'web', id: 'web-host1-15006', address: '127.0.0.1:15006', weight: 7, capacity: 250, zone: 'eu-west-1a', mtls: 'strict' },
      subscriptions: ['catalog', 'orders'],
      lastVersion: '41',
      service: 'web',
    },
  },
};

const snapshot: ControlPlaneMessage = {
  msg: {
    $case: 'snapshot',
    snapshot: {
      version: '42',
      nonce: 'n-7f3a',
      services: [
        { name: 'catalog', policyJson: JSON.stringify(catalogPolicy) },
        { name: 'orders', policyJson: '{"endpoints":[{"address":"127.0.0.1:18090"}]}' },
      ],
      instanceTtlMs: 15_000,
      unknownServices: ['payments'],
    },
  },
};

/** What the sidecar sends after the snapshot: one message of every other case of the oneof. */
const afterSnapshot: SidecarMessage[] = [
  { msg: { $case: 'ack', ack: { version: '42', nonce: 'n-7f3a' } } },
  { msg: { $case: 'heartbeat', heartbeat: {} } },
  {
    msg: {
      $case: 'load',
      load: {
        rps: 1234.5,
        inflight: 17,
        latencyEwmaMs: 3.25,
        errorRate: 0.0125,
        cpu: 0.625,
        circuits: [
          { service: 'catalog', endpoint: '', state: 'closed' },
          { service: 'orders', endpoint: '127.0.0.1:18090', state: 'half-open' },
        ],
        latencyP99Ms: 41.5,
        endpoints: [{ service: 'orders', address: '127.0.0.1:18090', eligible: false, health: ['outlier', 'breaker'], inflight: 3, ewmaMs: 12.5 }],
      },
    },
  },
  { msg: { $case: 'nack', nack: { version: '43', nonce: 'n-8b01', reason: 'services.orders.retry.attempts: expected integer 0..10, got 11' } } },
  { msg: { $case: 'subscribe', subscribe: { add: ['payments'], remove: ['catalog'] } } },
  { msg: { $case: 'deregister', deregister: {} } },
];

describe('wire contract (generated ts-proto + grpc-js stubs)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('keeps the gRPC method path of the contract', () => {
    expect(DiscoveryService.stream.path).toBe('/outrigger.v1.Discovery/Stream');
    expect(DiscoveryService.stream.requestStream).toBe(true);
    expect(DiscoveryService.stream.responseStream).toBe(true);
  });

  it('round-trips Hello → Snapshot → Ack (and every other sidecar message) over the bidi stream', async () => {
    const received: SidecarMessage[] = [];
    let serverDone!: () => void;
    const serverFinished = new Promise<void>((resolve) => (serverDone = resolve));

    const impl: DiscoveryServer = {
      stream(call) {
        call.on('data', (message: SidecarMessage) => {
          received.push(message);
          if (message.msg?.$case === 'hello') call.write(snapshot);
        });
        call.on('error', () => {}); // a cancelled call surfaces here; the assertions below catch the outcome
        call.on('end', () => {
          call.end();
          serverDone();
        });
      },
      getCa(_call, callback) {
        callback(null, { caPem: '', signatures: [] });
      },
    };
    const server = new Server();
    server.addService(DiscoveryService, impl);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));

    const client = new DiscoveryClient(`127.0.0.1:${port}`, credentials.createInsecure());
    cleanups.push(() => client.close());

    const call = client.stream();
    const firstReply = new Promise<ControlPlaneMessage>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    const clientFinished = new Promise<void>((resolve, reject) => {
      call.on('end', resolve);
      call.on('error', reject);
    });

    call.write(hello);
    const reply = await firstReply;
    expect(reply).toEqual(snapshot);
    if (reply.msg?.$case !== 'snapshot') throw new Error(`expected a snapshot, got ${reply.msg?.$case ?? 'nothing'}`);
    const pushed = reply.msg.snapshot;
    expect(pushed.version).toBe('42');
    expect(pushed.nonce).toBe('n-7f3a');
    expect(pushed.instanceTtlMs).toBe(15_000);
    expect(pushed.unknownServices).toEqual(['payments']);
    expect(pushed.services.map((s) => s.name)).toEqual(['catalog', 'orders']);

    // policy_json is sidecar.yaml's `services.NAME` shape: the sidecar's own validation accepts it.
    const catalog = pushed.services[0];
    if (catalog === undefined) throw new Error('snapshot lost its services');
    expect(JSON.parse(catalog.policyJson)).toEqual(catalogPolicy);
    const parsed = parseServiceConfig(JSON.parse(catalog.policyJson), 'control plane update v42 for catalog');
    expect(parsed.lb).toBe('least-request');
    expect(parsed.endpoints.map((e) => e.address)).toEqual(['127.0.0.1:18081', '127.0.0.1:18082']);

    for (const message of afterSnapshot) call.write(message);
    call.end();
    await serverFinished;
    await clientFinished;

    expect(received).toEqual([hello, ...afterSnapshot]);
    expect(received.map((m) => m.msg?.$case)).toEqual(['hello', 'ack', 'heartbeat', 'load', 'nack', 'subscribe', 'deregister']);
  }, 2_000);
});
