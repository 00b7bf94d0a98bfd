import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseControlPlaneConfig } from '../../../control-plane/src/config/load.js';
import { type ChangeEvent, Registry, type RegistryOptions } from '../../../control-plane/src/registry/registry.js';
import { FileStore, MemoryStore, type PersistedState, type StateStore, StoreError } from '../../../control-plane/src/registry/store.js';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import type { EndpointConfig } from '../../../common/src/config/types.js';
import { ConfigError } from '../../../common/src/errors.js';
import type { Instance } from '../../../proto/gen/outrigger/v1/discovery.js';
import type { PushSource } from '../../../control-plane/src/push/server.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const TTL = 10_000;
const DRAIN = 5_000;

const CP_YAML = `
services:
  inventory:
    lb: least-load
    hashOn: { header: x-user-id }
    endpoints:
      - { address: 10.0.0.1:9001, weight: 5, capacity: 200, cost: 2.5, zone: a }
      - { address: 10.0.0.2:9001 }
    healthCheck: { http: { path: /healthz }, interval: 2s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3 }
    outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 3, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 5s }
    limits: { maxConcurrent: 1024, maxPending: 1024, maxRetries: 64 }
    retry: { attempts: 2, on: [connect-failure, reset, gateway-error], perTryTimeout: 1s, backoff: { base: 25ms, max: 250ms }, budget: { ratio: 0.2, minPerSecond: 10 } }
    timeout: 15s
    slowStart: 30s
    panicThreshold: 50
  orders:
    lb: round-robin
    retry: { attempts: 1 }
`;

function setup(options: Partial<RegistryOptions> = {}) {
  const clock = new FakeClock();
  const errors: { err: unknown; context: string }[] = [];
  const events: ChangeEvent[] = [];
  const registry = new Registry({
    clock,
    timers: clock,
    instanceTtlMs: TTL,
    drainTimeMs: DRAIN,
    services: parseControlPlaneConfig(CP_YAML, 'cp.yaml').services,
    onError: (err, context) => errors.push({ err, context }),
    ...options,
  });
  registry.onChange((e) => events.push(e));
  return { clock, registry, errors, events };
}

/** The service's policy as pushed, parsed back as JSON (undefined when the service is not in the snapshot). */
function pushed(registry: Registry, service: string): ({ endpoints: EndpointConfig[] } & Record<string, unknown>) | undefined {
  const s = registry.snapshot([service]).services[0];
  return s === undefined ? undefined : (JSON.parse(s.policyJson) as { endpoints: EndpointConfig[] } & Record<string, unknown>);
}

function addresses(registry: Registry, service: string): string[] | undefined {
  return pushed(registry, service)?.endpoints.map((e) => e.address);
}

const catalog1 = { service: 'catalog', id: 'catalog-1', address: '10.1.0.1:15006', weight: 2, capacity: 50, zone: 'a' };
const catalog2 = { service: 'catalog', id: 'catalog-2', address: '10.1.0.2:15006' };

/** Lets queued microtasks and I/O callbacks run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Registry: registration, heartbeats, TTL', () => {
  it('puts a registered instance into the snapshot of its service, with defaults for what it did not say', () => {
    const { registry } = setup();
    expect(pushed(registry, 'catalog')).toBeUndefined(); // unknown: left out, the sidecar keeps its own config
    const v0 = registry.version;
    registry.register(catalog1);
    registry.register(catalog2);
    expect(registry.version).toBe(v0 + 2);
    expect(pushed(registry, 'catalog')).toEqual({
      // Known only by registration: the default policy plus its instances.
      endpoints: [
        { address: '10.1.0.1:15006', weight: 2, capacity: 50, cost: 1, zone: 'a' },
        { address: '10.1.0.2:15006', weight: 1, capacity: 100, cost: 1 },
      ],
    });
    expect(registry.instances('catalog').map((i) => [i.id, i.state])).toEqual([
      ['catalog-1', 'serving'],
      ['catalog-2', 'serving'],
    ]);
  });

  it('adds registered instances after the static endpoints of a cp.yaml service', () => {
    const { registry } = setup();
    // A proto Instance as the push server passes it: 0 and "" are proto3's unset values.
    const fromWire: Instance = { service: 'inventory', id: 'inv-9', address: '10.0.0.9:9001', weight: 0, capacity: 0, zone: '', mtls: '' };
    registry.register(fromWire);
    expect(pushed(registry, 'inventory')?.endpoints).toEqual([
      { address: '10.0.0.1:9001', weight: 5, capacity: 200, cost: 2.5, zone: 'a' },
      { address: '10.0.0.2:9001', weight: 1, capacity: 100, cost: 1 },
      { address: '10.0.0.9:9001', weight: 1, capacity: 100, cost: 1 },
    ]);
  });

  it('removes an instance whose heartbeats stop for the TTL, bumping the version', () => {
    const { registry, clock, events } = setup();
    registry.register(catalog1);
    const v = registry.version;
    clock.advance(TTL - 1);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
    clock.advance(1);
    expect(addresses(registry, 'catalog')).toEqual([]);
    expect(registry.instances('catalog')).toEqual([]);
    expect(registry.version).toBe(v + 1);
    expect(events.at(-1)).toEqual({ version: v + 1, reason: 'expire', services: ['catalog'] });
    // Once known, the service stays known, now with no endpoints: sidecars answer 503, not "unknown service".
    expect(registry.snapshot(['catalog']).services).toHaveLength(1);
    expect(registry.heartbeat('catalog-1')).toBe(false);
  });

  it('keeps an instance alive while heartbeats arrive, and removes it one TTL after the last', () => {
    const { registry, clock } = setup();
    registry.register(catalog1);
    const v = registry.version;
    for (let i = 0; i < 10; i++) {
      clock.advance(TTL / 3);
      expect(registry.heartbeat('catalog-1')).toBe(true);
    }
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
    expect(registry.version).toBe(v); // heartbeats change nothing that is pushed
    const [view] = registry.instances('catalog');
    expect(view?.lastHeartbeatAt).toBe(clock.wallNow());
    expect(view?.removeAt).toBe(clock.wallNow() + TTL);
    clock.advance(TTL - 1);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
    clock.advance(1);
    expect(addresses(registry, 'catalog')).toEqual([]);
  });

  it('treats an identical re-registration as a heartbeat, and a changed one as a change', () => {
    const { registry, clock } = setup();
    registry.register(catalog1);
    const v = registry.version;
    clock.advance(TTL - 1);
    registry.register(catalog1);
    expect(registry.version).toBe(v);
    clock.advance(TTL - 1);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
    registry.register({ ...catalog1, weight: 9 });
    expect(registry.version).toBe(v + 1);
    expect(pushed(registry, 'catalog')?.endpoints[0]?.weight).toBe(9);
  });

  it('lets a new instance at the same address supersede the old one', () => {
    const { registry } = setup();
    registry.register(catalog1);
    registry.register({ ...catalog1, id: 'catalog-1-restarted' });
    expect(registry.instances('catalog').map((i) => i.id)).toEqual(['catalog-1-restarted']);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
  });

  it('refuses a bad registration with a ConfigError naming the field', () => {
    const { registry } = setup();
    const v = registry.version;
    expect(() => registry.register({ ...catalog1, weight: 1001 })).toThrow(new ConfigError('registration of catalog-1', ['weight: expected integer 1..1000, got 1001']));
    expect(() => registry.register({ ...catalog1, capacity: 2.5 })).toThrow(new ConfigError('registration of catalog-1', ['capacity: expected integer 1..1000000, got 2.5']));
    expect(() => registry.register({ ...catalog1, capacity: 10_000_000 })).toThrow(new ConfigError('registration of catalog-1', ['capacity: expected integer 1..1000000, got 10000000']));
    expect(() => registry.register({ ...catalog1, address: 'catalog' })).toThrow(/^registration of catalog-1: address: expected host:port/);
    expect(() => registry.register({ ...catalog1, service: 'Catalog' })).toThrow(/^registration of catalog-1: service: expected a service name/);
    expect(() => registry.register({ ...catalog1, id: '' })).toThrow(/^registration: id: expected an instance id/);
    expect(registry.version).toBe(v);
  });
});

describe('Registry: draining', () => {
  it('takes a deregistered instance out of snapshots at once and removes it after the drain time', () => {
    const { registry, clock, events } = setup();
    registry.register(catalog1);
    registry.register(catalog2);
    const v = registry.version;
    expect(registry.deregister('catalog-1')).toBe(true);
    expect(registry.version).toBe(v + 1);
    expect(events.at(-1)?.reason).toBe('deregister');
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.2:15006']);
    expect(registry.instances('catalog').map((i) => [i.id, i.state])).toEqual([
      ['catalog-1', 'draining'],
      ['catalog-2', 'serving'],
    ]);
    expect(registry.instances('catalog')[0]?.removeAt).toBe(clock.wallNow() + DRAIN);
    // Heartbeats during the drain do not keep it.
    clock.advance(DRAIN - 1);
    expect(registry.heartbeat('catalog-1')).toBe(true);
    expect(registry.deregister('catalog-1')).toBe(true); // idempotent
    expect(registry.version).toBe(v + 1);
    clock.advance(1);
    expect(registry.instances('catalog').map((i) => i.id)).toEqual(['catalog-2']);
    expect(registry.version).toBe(v + 2);
    expect(events.at(-1)).toEqual({ version: v + 2, reason: 'remove', services: ['catalog'] });
    expect(registry.deregister('catalog-1')).toBe(false);
    clock.advance(TTL * 2); // catalog-2 had no heartbeats either
    expect(registry.instances()).toEqual([]);
  });

  it('revives a draining instance that registers again', () => {
    const { registry, clock } = setup();
    registry.register(catalog1);
    registry.deregister('catalog-1');
    clock.advance(DRAIN - 1);
    registry.register(catalog1);
    clock.advance(DRAIN);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);
    expect(registry.instances('catalog')[0]?.state).toBe('serving');
  });

  it('removes at once when the drain time is 0', () => {
    const { registry } = setup({ drainTimeMs: 0 });
    registry.register(catalog1);
    registry.deregister('catalog-1');
    expect(registry.instances()).toEqual([]);
  });

  it('keeps an operator-drained endpoint (registered or static) out of snapshots until undrained', () => {
    const { registry, clock, events } = setup();
    registry.register(catalog1);
    expect(registry.drain('10.1.0.1:15006')).toBe(true);
    expect(registry.drain('10.1.0.1:15006')).toBe(false);
    expect(events.at(-1)).toMatchObject({ reason: 'drain', services: ['catalog'] });
    expect(addresses(registry, 'catalog')).toEqual([]);
    // Still registered, still alive by heartbeats.
    clock.advance(TTL - 1);
    registry.heartbeat('catalog-1');
    clock.advance(TTL - 1);
    expect(registry.instances('catalog').map((i) => i.state)).toEqual(['drained']);
    expect(registry.undrain('10.1.0.1:15006')).toBe(true);
    expect(addresses(registry, 'catalog')).toEqual(['10.1.0.1:15006']);

    registry.drain('10.0.0.1:9001');
    expect(addresses(registry, 'inventory')).toEqual(['10.0.0.2:9001']);
    expect(registry.services().find((s) => s.name === 'inventory')?.endpoints.map((e) => [e.address, e.state])).toEqual([
      ['10.0.0.1:9001', 'drained'],
      ['10.0.0.2:9001', 'serving'],
    ]);
    expect(() => registry.drain('nowhere')).toThrow(RangeError);
  });
});

describe('Registry: policies', () => {
  it('replaces a policy at run time, keeping the static endpoints of cp.yaml unless the policy lists its own', () => {
    const { registry, events } = setup();
    const v = registry.version;
    expect(registry.setPolicy('inventory', { lb: 'peak-ewma', timeout: '3s' })).toBe(true);
    expect(registry.version).toBe(v + 1);
    expect(events.at(-1)).toEqual({ version: v + 1, reason: 'policy', services: ['inventory'] });
    expect(pushed(registry, 'inventory')).toEqual({
      lb: 'peak-ewma',
      timeout: '3s',
      endpoints: [
        { address: '10.0.0.1:9001', weight: 5, capacity: 200, cost: 2.5, zone: 'a' },
        { address: '10.0.0.2:9001', weight: 1, capacity: 100, cost: 1 },
      ],
    });
    expect(registry.setPolicy('inventory', { lb: 'peak-ewma', timeout: '3s' })).toBe(false); // the same: no new version
    expect(registry.version).toBe(v + 1);

    registry.setPolicy('inventory', { lb: 'random', endpoints: [{ address: '10.0.0.7:9001' }] });
    expect(addresses(registry, 'inventory')).toEqual(['10.0.0.7:9001']);

    expect(registry.clearPolicy('inventory')).toBe(true);
    expect(pushed(registry, 'inventory')?.['lb']).toBe('least-load');
    expect(registry.clearPolicy('inventory')).toBe(false);
  });

  it('creates a service from a policy alone', () => {
    const { registry } = setup();
    registry.setPolicy('payments', { lb: 'maglev', hashOn: { cookie: 'session' } });
    expect(pushed(registry, 'payments')).toEqual({ lb: 'maglev', hashOn: { cookie: 'session' }, endpoints: [] });
    expect(registry.services().map((s) => [s.name, s.policySource])).toEqual([
      ['inventory', 'config'],
      ['orders', 'config'],
      ['payments', 'runtime'],
    ]);
  });

  it('refuses an invalid policy with a ConfigError naming the key, and keeps the old one', () => {
    const { registry, events } = setup();
    registry.setPolicy('orders', { lb: 'least-request', retry: { attempts: 3 } });
    const before = registry.snapshot(['orders']);
    const n = events.length;
    let err: unknown;
    try {
      registry.setPolicy('orders', { lb: 'least-request', retry: { attempts: 'three' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual(['retry.attempts: expected integer 0..10, got "three"']);
    expect((err as ConfigError).message).toBe('services.orders: retry.attempts: expected integer 0..10, got "three"');
    expect(registry.snapshot(['orders'])).toEqual(before);
    expect(events).toHaveLength(n);

    expect(() => registry.setPolicy('orders', { lb: 'ring-hash' })).toThrow(/^services\.orders: hashOn: expected hashOn/);
    expect(() => registry.setPolicy('orders', { timout: '2s' })).toThrow(/unknown key "timout" \(did you mean "timeout"\?\)/);
    expect(() => registry.setPolicy('Bad Name', {})).toThrow(ConfigError);
    expect(registry.snapshot(['orders'])).toEqual(before);
  });
});

describe('Registry: policy patches, checks and fallbacks', () => {
  it('patches the policy in force (cp.yaml\'s at first): what the patch leaves out stays, null deletes', () => {
    const { registry, events } = setup();
    const v = registry.version;
    expect(registry.patchPolicy('inventory', { lb: 'round-robin', circuitBreaker: null, retry: { attempts: 4 } })).toBe(true);
    expect(registry.version).toBe(v + 1);
    expect(events.at(-1)).toEqual({ version: v + 1, reason: 'policy', services: ['inventory'] });
    expect(registry.policySource('inventory')).toBe('runtime');
    const policy = registry.policyOf('inventory');
    expect(policy?.['lb']).toBe('round-robin');
    expect(policy?.['circuitBreaker']).toBeUndefined();
    expect(policy?.['retry']).toEqual({ attempts: 4, on: ['connect-failure', 'reset', 'gateway-error'], perTryTimeout: '1s', backoff: { base: '25ms', max: '250ms' }, budget: { ratio: 0.2, minPerSecond: 10 } });
    expect(policy?.['healthCheck']).toEqual({ http: { path: '/healthz' }, interval: '2s', timeout: '1s', healthyThreshold: 2, unhealthyThreshold: 3 });
    expect(registry.policyOf('inventory', true)?.['lb']).toBe('least-load'); // cp.yaml's, what clearPolicy leaves
    // Patching again merges into the run-time policy; a patch that changes nothing is no change.
    expect(registry.patchPolicy('inventory', { timeout: '5s' })).toBe(true);
    expect(registry.policyOf('inventory')?.['retry']).toMatchObject({ attempts: 4 });
    expect(registry.patchPolicy('inventory', { timeout: '5s' })).toBe(false);
    expect(registry.patchPolicy('orders', { retry: { attempts: 1 } })).toBe(false); // cp.yaml's already
    expect(registry.policySource('orders')).toBe('config');
    expect(registry.version).toBe(v + 2);
  });

  it('refuses a patch whose result is invalid and keeps the policy; checkPolicy and patchedPolicy change nothing', () => {
    const { registry, events } = setup();
    const before = registry.snapshot();
    const n = events.length;
    expect(() => registry.patchPolicy('orders', { lb: 'ring-hash' })).toThrow(/^services\.orders: hashOn: expected hashOn/);
    expect(registry.patchedPolicy('orders', { retry: { attempts: 'three' } })).toEqual({ lb: 'round-robin', retry: { attempts: 'three' } });
    expect(() => registry.checkPolicy('orders', registry.patchedPolicy('orders', { retry: { attempts: 'three' } }))).toThrow(ConfigError);
    expect(registry.checkPolicy('orders', { lb: 'random' }).input).toEqual({ lb: 'random' });
    expect(() => registry.checkPolicy('Bad Name', {})).toThrow(ConfigError);
    expect(registry.snapshot()).toEqual(before);
    expect(events).toHaveLength(n);
    expect(registry.policyOf('nope')).toBeUndefined();
  });

  it('clearing a run-time policy of a service only it made known forgets the service', () => {
    const { registry } = setup();
    registry.setPolicy('payments', { lb: 'random' });
    expect(registry.policyOf('payments', true)).toEqual({});
    expect(registry.clearPolicy('payments')).toBe(true);
    expect(registry.policyOf('payments')).toBeUndefined();
    expect(registry.snapshot(['payments']).services).toEqual([]);
  });
});

describe('Registry: weights and cost', () => {
  it('uses pinned over computed over registered weight, and computed cost or the declared one', () => {
    const { registry, events } = setup();
    registry.register(catalog1); // weight 2
    const weight = (): number | undefined => pushed(registry, 'catalog')?.endpoints[0]?.weight;
    const cost = (): number | undefined => pushed(registry, 'catalog')?.endpoints[0]?.cost;
    expect([weight(), cost()]).toEqual([2, 1]);

    expect(registry.setComputed('catalog', '10.1.0.1:15006', { weight: 40.4, cost: 3.5 })).toBe(true);
    expect(events.at(-1)).toMatchObject({ reason: 'computed', services: ['catalog'] });
    expect([weight(), cost()]).toEqual([40, 3.5]);
    expect(registry.setComputed('catalog', '10.1.0.1:15006', { weight: 40, cost: 3.5 })).toBe(false);

    expect(registry.setWeight('catalog', '10.1.0.1:15006', 700)).toBe(true);
    expect(events.at(-1)).toMatchObject({ reason: 'weight', services: ['catalog'] });
    expect([weight(), cost()]).toEqual([700, 3.5]);
    registry.setComputed('catalog', '10.1.0.1:15006', { weight: 5 });
    expect([weight(), cost()]).toEqual([700, 1]); // pinned still wins; the new computed value has no cost

    expect(registry.clearWeight('catalog', '10.1.0.1:15006')).toBe(true);
    expect(registry.clearWeight('catalog', '10.1.0.1:15006')).toBe(false);
    expect(weight()).toBe(5);
    registry.setComputed('catalog', '10.1.0.1:15006', { weight: 5000 });
    expect(weight()).toBe(1000); // clamped
    expect(registry.clearComputed('catalog')).toBe(true);
    expect(weight()).toBe(2);

    // Static endpoints: the declared cost until a computed one comes.
    registry.setComputed('inventory', '10.0.0.1:9001', { cost: 0.5 });
    expect(pushed(registry, 'inventory')?.endpoints[0]).toEqual({ address: '10.0.0.1:9001', weight: 5, capacity: 200, cost: 0.5, zone: 'a' });
  });

  it('refuses weights outside 1..1000 and non-positive computed values', () => {
    const { registry } = setup();
    const v = registry.version;
    expect(() => registry.setWeight('catalog', '10.1.0.1:15006', 0)).toThrow(new RangeError('weight of catalog 10.1.0.1:15006: expected integer 1..1000, got 0'));
    expect(() => registry.setWeight('catalog', '10.1.0.1:15006', 1001)).toThrow(RangeError);
    expect(() => registry.setWeight('catalog', '10.1.0.1:15006', 1.5)).toThrow(RangeError);
    expect(() => registry.setWeight('catalog', 'nowhere', 5)).toThrow(RangeError);
    expect(() => registry.setWeight('Catalog', '10.1.0.1:15006', 5)).toThrow(/expected a service name/);
    expect(() => registry.setComputed('catalog', '10.1.0.1:15006', { cost: 0 })).toThrow(RangeError);
    expect(() => registry.setComputed('catalog', '10.1.0.1:15006', { weight: Number.NaN })).toThrow(RangeError);
    expect(registry.version).toBe(v);
  });

  it('forgets what was computed for an instance when it is removed', () => {
    const { registry, clock } = setup();
    registry.register(catalog1);
    registry.setComputed('catalog', catalog1.address, { weight: 50 });
    clock.advance(TTL);
    registry.register(catalog1);
    expect(pushed(registry, 'catalog')?.endpoints[0]?.weight).toBe(2);
  });
});

describe('Registry: snapshots', () => {
  it('renders JSON that the sidecar parses back to the same policy with the merged endpoints', () => {
    const { registry } = setup();
    registry.register({ service: 'inventory', id: 'inv-3', address: '10.0.0.3:9001', weight: 4, capacity: 10, zone: 'b' });
    registry.register({ service: 'inventory', id: 'inv-4', address: '10.0.0.4:9001' });
    registry.register({ service: 'inventory', id: 'inv-5', address: '10.0.0.5:9001' });
    registry.deregister('inv-5');
    registry.setWeight('inventory', '10.0.0.2:9001', 9);
    registry.setComputed('inventory', '10.0.0.3:9001', { cost: 1.75, weight: 8 });
    registry.setComputed('inventory', '10.0.0.1:9001', { weight: 3 });
    registry.register(catalog1);

    const snap = registry.snapshot(['orders', 'inventory', 'catalog', 'nonexistent', 'inventory']);
    expect(snap.version).toBe(registry.version);
    expect(snap.services.map((s) => s.name)).toEqual(['catalog', 'inventory', 'orders']);
    const declared = parseControlPlaneConfig(CP_YAML, 'cp.yaml').services;
    for (const s of snap.services) {
      const parsed = parseServiceConfig(JSON.parse(s.policyJson), `services.${s.name}`);
      const policy = declared[s.name]?.config ?? parseServiceConfig({}, 'default');
      expect({ ...parsed, endpoints: [] }).toEqual({ ...policy, endpoints: [] });
    }
    const inventory = parseServiceConfig(JSON.parse(snap.services[1]?.policyJson ?? ''), 'services.inventory');
    expect(inventory.endpoints).toEqual([
      { address: '10.0.0.1:9001', weight: 3, capacity: 200, cost: 2.5, zone: 'a' },
      { address: '10.0.0.2:9001', weight: 9, capacity: 100, cost: 1, zone: undefined },
      { address: '10.0.0.3:9001', weight: 8, capacity: 10, cost: 1.75, zone: 'b' },
      { address: '10.0.0.4:9001', weight: 1, capacity: 100, cost: 1, zone: undefined },
      // inv-5 is draining: not pushed.
    ]);
    expect(inventory.lb).toBe('least-load');
    expect(inventory.hashOn).toEqual({ header: 'x-user-id' });
    // Every known service when no list is given.
    expect(registry.snapshot().services.map((s) => s.name)).toEqual(['catalog', 'inventory', 'orders']);
  });

  it('lets a registration at a static address win over the declared endpoint', () => {
    const { registry } = setup();
    registry.register({ service: 'inventory', id: 'inv-1', address: '10.0.0.1:9001', weight: 7 });
    expect(pushed(registry, 'inventory')?.endpoints).toEqual([
      { address: '10.0.0.2:9001', weight: 1, capacity: 100, cost: 1 },
      { address: '10.0.0.1:9001', weight: 7, capacity: 100, cost: 1 },
    ]);
    registry.deregister('inv-1');
    expect(addresses(registry, 'inventory')).toEqual(['10.0.0.2:9001']);
  });

  it('shows services and instances for the admin API', () => {
    const { registry, clock } = setup();
    registry.register(catalog1);
    registry.setWeight('catalog', catalog1.address, 30);
    registry.setComputed('catalog', catalog1.address, { cost: 2 });
    const catalog = registry.services().find((s) => s.name === 'catalog');
    expect(catalog).toEqual({
      name: 'catalog',
      policySource: 'default',
      policy: {},
      endpoints: [
        {
          address: catalog1.address,
          weight: 30,
          capacity: 50,
          cost: 2,
          zone: 'a',
          source: 'registered',
          instance: 'catalog-1',
          state: 'serving',
          pinnedWeight: 30,
          computed: { cost: 2 },
        },
      ],
    });
    expect(registry.instances('catalog')).toEqual([
      { ...catalog1, state: 'serving', registeredAt: clock.wallNow(), lastHeartbeatAt: clock.wallNow(), removeAt: clock.wallNow() + TTL },
    ]);
    expect(registry.instances('nothing')).toEqual([]);
  });
});

describe('Registry: versions and listeners', () => {
  it('is what the push server needs', () => {
    const { registry } = setup();
    const source: PushSource = registry; // checked by tsc
    expect(source.instanceTtlMs).toBe(TTL);
  });

  it('increases the version strictly with every change, and tells listeners which services changed', () => {
    const { registry, clock, events } = setup();
    const versions = [registry.version];
    const step = (fn: () => unknown): void => {
      fn();
      versions.push(registry.version);
    };
    step(() => registry.register(catalog1));
    step(() => registry.register({ service: 'orders', id: 'orders-1', address: '10.2.0.1:80' }));
    step(() => registry.setPolicy('orders', { lb: 'random' }));
    step(() => registry.setWeight('orders', '10.2.0.1:80', 3));
    step(() => registry.setComputed('orders', '10.2.0.1:80', { cost: 2 }));
    step(() => registry.drain('10.2.0.1:80'));
    step(() => registry.undrain('10.2.0.1:80'));
    step(() => registry.deregister('orders-1'));
    step(() => clock.advance(DRAIN));
    step(() => clock.advance(TTL));
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBe((versions[i - 1] ?? 0) + 1);
    expect(events.map((e) => e.version)).toEqual(versions.slice(1));
    expect(events.map((e) => [e.reason, e.services])).toEqual([
      ['register', ['catalog']],
      ['register', ['orders']],
      ['policy', ['orders']],
      ['weight', ['orders']],
      ['computed', ['orders']],
      ['drain', ['orders']],
      ['undrain', ['orders']],
      ['deregister', ['orders']],
      ['remove', ['orders']],
      ['expire', ['catalog']],
    ]);
  });

  it('unsubscribes, and survives a throwing listener', () => {
    const { registry, errors } = setup();
    const seen: number[] = [];
    registry.onChange(() => {
      throw new Error('listener bug');
    });
    const off = registry.onChange((e) => seen.push(e.version));
    registry.register(catalog1);
    expect(seen).toEqual([registry.version]);
    expect(errors.map((e) => (e.err as Error).message)).toEqual(['listener bug']);
    off();
    registry.register(catalog2);
    expect(seen).toHaveLength(1);
  });

  it('moves the version past one a sidecar reports, without notifying', () => {
    const { registry, events } = setup();
    registry.register(catalog1);
    const n = events.length;
    registry.advanceVersion(500);
    expect(registry.version).toBe(501);
    registry.advanceVersion(12);
    expect(registry.version).toBe(501);
    expect(events).toHaveLength(n);
    registry.register(catalog2);
    expect(registry.version).toBe(502);
  });

  it('refuses to advance to a version that is not an integer 0..2^50, and saves an advance only with the next change', async () => {
    const store = new MemoryStore();
    const { registry } = setup({ store });
    registry.register(catalog1);
    await registry.flush();
    const saves = store.saves;
    for (const bad of [1e300, 2 ** 50 + 1, -1, 1.5, Number.NaN]) expect(() => registry.advanceVersion(bad)).toThrow(RangeError);
    registry.advanceVersion(2 ** 50);
    expect(registry.version).toBe(2 ** 50 + 1);
    await registry.flush();
    expect(store.saves).toBe(saves);
    registry.register(catalog2);
    await registry.flush();
    expect(store.saved?.version).toBe(2 ** 50 + 2);
  });
});

/** A store whose saves finish only when the test says so. */
class GatedStore implements StateStore {
  readonly saved: PersistedState[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failNext = 0;
  private readonly gates: (() => void)[] = [];

  load(): Promise<PersistedState | undefined> {
    return Promise.resolve(this.saved.at(-1));
  }

  save(state: PersistedState): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const copy = structuredClone(state);
    return new Promise((resolve, reject) => {
      this.gates.push(() => {
        this.inFlight--;
        if (this.failNext > 0) {
          this.failNext--;
          reject(new Error('disk full'));
        } else {
          this.saved.push(copy);
          resolve();
        }
      });
    });
  }

  get waiting(): number {
    return this.gates.length;
  }

  /** Lets the oldest save finish. */
  async release(): Promise<void> {
    this.gates.shift()?.();
    await settle();
  }
}

describe('Registry: persistence', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outrigger-registry-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('coalesces: one save per burst, at most one in flight, the newest state saved after it', async () => {
    const store = new GatedStore();
    const { registry } = setup({ store });
    registry.register(catalog1);
    registry.register(catalog2);
    registry.setWeight('catalog', catalog1.address, 3);
    await settle();
    expect(store.waiting).toBe(1); // the three changes of one burst: one save
    registry.setPolicy('orders', { lb: 'random' });
    await settle();
    registry.deregister('catalog-2');
    await settle();
    expect(store.waiting).toBe(1); // still the first one; nothing else started
    await store.release();
    expect(store.saved.map((s) => s.version)).toEqual([4]);
    expect(store.waiting).toBe(1); // the newest state, once
    await store.release();
    expect(store.waiting).toBe(0);
    expect(store.maxInFlight).toBe(1);
    const last = store.saved.at(-1);
    expect(last?.version).toBe(registry.version);
    expect(last?.instances.map((i) => i.id)).toEqual(['catalog-1']); // draining instances are not kept
    expect(last?.policies).toEqual({ orders: { lb: 'random' } });
    expect(last?.weights).toEqual({ catalog: { [catalog1.address]: 3 } });
    await registry.flush();
    expect(store.saved).toHaveLength(2);
  });

  it('retries a failed save after saveRetryMs, reporting the failure; flush throws it', async () => {
    const store = new GatedStore();
    const { registry, clock, errors } = setup({ store, saveRetryMs: 2_000 });
    store.failNext = 1;
    registry.register(catalog1);
    await settle();
    await store.release();
    expect(errors.map((e) => e.context)).toEqual(['saving the control plane state (retrying in 2000 ms)']);
    registry.register(catalog2); // waits for the retry rather than hammering a failing disk
    await settle();
    expect(store.waiting).toBe(0);
    clock.advance(2_000);
    await settle();
    expect(store.waiting).toBe(1);
    await store.release();
    expect(store.saved.at(-1)?.instances.map((i) => i.id)).toEqual(['catalog-1', 'catalog-2']);

    store.failNext = 1;
    registry.register({ ...catalog2, weight: 5 });
    const flushed = registry.flush().catch((e: unknown) => e);
    await settle();
    await store.release();
    expect(await flushed).toEqual(new Error('disk full'));
  });

  it('saves atomically to a file and restores policies, weights, drains and instances in a new registry', async () => {
    const file = join(dir, 'state.json');
    const first = setup({ store: new FileStore(file) });
    first.registry.register(catalog1);
    first.registry.register(catalog2);
    first.registry.register({ service: 'orders', id: 'orders-1', address: '10.2.0.1:80' });
    first.registry.deregister('orders-1'); // on its way out: not kept
    first.registry.setPolicy('orders', { lb: 'least-request', retry: { attempts: 4 } });
    first.registry.setWeight('catalog', catalog2.address, 250);
    first.registry.setComputed('catalog', catalog1.address, { weight: 99 }); // derived: not kept
    first.registry.drain('10.0.0.2:9001');
    await first.registry.flush();
    const savedVersion = first.registry.version;
    expect(await readdir(dir)).toEqual(['state.json']);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      version: savedVersion,
      policies: { orders: { lb: 'least-request', retry: { attempts: 4 } } },
      weights: { catalog: { [catalog2.address]: 250 } },
      instances: [
        { service: 'catalog', id: 'catalog-1', address: catalog1.address, weight: 2, capacity: 50, zone: 'a' },
        { service: 'catalog', id: 'catalog-2', address: catalog2.address, weight: 1, capacity: 100 },
      ],
      drained: ['10.0.0.2:9001'],
    });
    const before = first.registry.snapshot();
    await first.registry.close();

    // A restarted control plane, later.
    const second = setup({ store: new FileStore(file) });
    second.clock.advance(60_000);
    expect(await second.registry.restore()).toBe(true);
    expect(second.registry.version).toBeGreaterThan(savedVersion);
    expect(second.events.at(-1)).toMatchObject({ reason: 'restore', services: ['catalog', 'inventory', 'orders'] });
    const after = second.registry.snapshot();
    // The same, except what was computed from load reports.
    expect(after.services.filter((s) => s.name !== 'catalog')).toEqual(before.services.filter((s) => s.name !== 'catalog'));
    expect(pushed(second.registry, 'catalog')?.endpoints).toEqual([
      { address: catalog1.address, weight: 2, capacity: 50, cost: 1, zone: 'a' },
      { address: catalog2.address, weight: 250, capacity: 100, cost: 1 },
    ]);
    expect(pushed(second.registry, 'orders')?.['lb']).toBe('least-request');
    expect(addresses(second.registry, 'inventory')).toEqual(['10.0.0.1:9001']);

    // Restored registrations get a fresh TTL: live sidecars heartbeat, the others expire.
    second.clock.advance(TTL - 1);
    expect(second.registry.heartbeat('catalog-1')).toBe(true);
    second.clock.advance(1);
    expect(second.registry.instances().map((i) => i.id)).toEqual(['catalog-1']);
    await second.registry.close();
  });

  it('refuses to restore from a corrupt file, naming it', async () => {
    const file = join(dir, 'state.json');
    await writeFile(file, '{ "version": 3, ');
    const { registry } = setup({ store: new FileStore(file) });
    const err = await registry.restore().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toContain(`${file}: the state file is not valid JSON`);
  });

  it('starts empty without a saved state, and skips a saved policy that no longer validates', async () => {
    expect(await setup({ store: new FileStore(join(dir, 'none.json')) }).registry.restore()).toBe(false);
    expect(await setup().registry.restore()).toBe(false);

    const store = new MemoryStore({ version: 9, policies: { orders: { lb: 'fastest' }, payments: { lb: 'random' } }, weights: {}, instances: [] });
    const { registry, errors } = setup({ store });
    expect(await registry.restore()).toBe(true);
    expect(registry.version).toBe(10);
    expect(pushed(registry, 'orders')?.['lb']).toBe('round-robin'); // cp.yaml's
    expect(pushed(registry, 'payments')?.['lb']).toBe('random');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.context).toBe('restoring the policy of orders (skipped; cp.yaml\'s or the default applies)');
    expect((errors[0]?.err as ConfigError).message).toMatch(/^saved policy of orders: lb: expected one of/);
  });
});
