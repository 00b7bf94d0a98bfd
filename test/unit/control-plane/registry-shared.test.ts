/**
 * The registry in shared mode (replicated control plane, docs/ha.md): local changes are handed to the
 * replication layer and versioned only when they come back through applyShared with the store's revision;
 * instances registered through another replica carry no TTL here; those this replica holds survive their
 * key vanishing (they are written again).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { type ChangeEvent, Registry } from '../../../control-plane/src/registry/registry.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const TTL = 10_000;
const inv = (id: string, port: number) => ({ service: 'inventory', id, address: `10.0.0.1:${port}`, weight: 1, capacity: 100 });

describe('Registry in shared mode', () => {
  let clock: FakeClock;
  let registry: Registry;
  let localChanges: number;
  let events: ChangeEvent[];

  beforeEach(() => {
    clock = new FakeClock();
    localChanges = 0;
    events = [];
    registry = new Registry({
      clock,
      timers: clock,
      instanceTtlMs: TTL,
      drainTimeMs: 0,
      shared: { onLocalChange: () => localChanges++, flush: () => Promise.resolve() },
    });
    registry.onChange((e) => events.push(e));
  });

  it('versions and pushes a local change only when it comes back with the store revision', () => {
    const before = registry.version;
    expect(registry.setPolicy('orders', { lb: 'least-load' })).toBe(true);
    expect(localChanges).toBe(1);
    expect(events).toEqual([]);
    expect(registry.version).toBe(before);
    expect(registry.sharedState().policies).toEqual({ orders: { lb: 'least-load' } });
    registry.applyShared([{ kind: 'policy', service: 'orders', input: { lb: 'least-load' } }], 42);
    expect(registry.version).toBe(42);
    expect(events).toEqual([{ version: 42, reason: 'sync', services: ['orders'] }]);
    // A revision that changed no service moves the version without a notification.
    registry.applyShared([], 45);
    expect(registry.version).toBe(45);
    expect(events).toHaveLength(1);
    registry.applyShared([], 44);
    expect(registry.version).toBe(45);
    // A sidecar's version from another replica does not move the shared version.
    registry.advanceVersion(1000);
    expect(registry.version).toBe(45);
  });

  it('applies policies, weights, drains and computed weights from other replicas', () => {
    registry.applyShared(
      [
        { kind: 'instance', id: 'i-1', instance: inv('i-1', 1), mine: false },
        { kind: 'policy', service: 'inventory', input: { lb: 'round-robin' } },
        { kind: 'weights', service: 'inventory', weights: { '10.0.0.1:1': 7 } },
        { kind: 'computed', service: 'inventory', computed: { '10.0.0.1:1': { cost: 2 } } },
      ],
      10,
    );
    const ep = registry.services()[0]?.endpoints[0];
    expect(ep).toMatchObject({ address: '10.0.0.1:1', weight: 7, cost: 2, pinnedWeight: 7, state: 'serving' });
    registry.applyShared([{ kind: 'drained', address: '10.0.0.1:1', drained: true }], 11);
    expect(registry.services()[0]?.endpoints[0]?.state).toBe('drained');
    expect(events.map((e) => e.version)).toEqual([10, 11]);
    expect(localChanges).toBe(0);
  });

  it('keeps a remote instance without a TTL, and expires one registered here; registering a remote one takes it over', () => {
    registry.applyShared([{ kind: 'instance', id: 'remote', instance: inv('remote', 1), mine: false }], 5);
    registry.register(inv('local', 2));
    expect(registry.sharedState().instances.map((i) => [i.id, i.owned])).toEqual([
      ['local', true],
      ['remote', false],
    ]);
    clock.advance(TTL + 1);
    // The local one expired (a local change for the replication layer to delete); the remote one stays.
    expect(registry.instances().map((i) => i.id)).toEqual(['remote']);
    const changes = localChanges;
    registry.register(inv('remote', 1));
    expect(localChanges).toBe(changes + 1);
    expect(registry.sharedState().instances).toEqual([{ ...inv('remote', 1), owned: true }]);
    clock.advance(TTL + 1);
    expect(registry.instances()).toEqual([]);
  });

  it('hands an instance over to the replica that wrote it last; writes back one it holds when its key vanishes', () => {
    registry.register(inv('a', 1));
    registry.applyShared([{ kind: 'instance', id: 'a', instance: inv('a', 1), mine: true }], 3);
    const changes = localChanges;
    registry.applyShared([{ kind: 'instance', id: 'a', instance: undefined, mine: false }], 4);
    expect(registry.instances().map((i) => i.id)).toEqual(['a']);
    expect(localChanges).toBe(changes + 1);
    registry.applyShared([{ kind: 'instance', id: 'a', instance: inv('a', 1), mine: false }], 5);
    expect(registry.sharedState().instances[0]?.owned).toBe(false);
    clock.advance(TTL + 1);
    expect(registry.instances().map((i) => i.id)).toEqual(['a']); // its TTL is the other replica's now
    registry.applyShared([{ kind: 'instance', id: 'a', instance: undefined, mine: false }], 6);
    expect(registry.instances()).toEqual([]);
  });

  it('a fresh listing replaces the shared state but keeps the instances held here', () => {
    registry.register(inv('mine', 1));
    registry.applyShared(
      [
        { kind: 'instance', id: 'gone', instance: inv('gone', 2), mine: false },
        { kind: 'policy', service: 'orders', input: {} },
      ],
      7,
    );
    registry.applyShared([{ kind: 'weights', service: 'inventory', weights: { '10.0.0.1:1': 3 } }], 9, true);
    expect(registry.instances().map((i) => i.id)).toEqual(['mine']);
    expect(registry.sharedState().policies).toEqual({});
    expect(registry.sharedState().weights).toEqual({ inventory: { '10.0.0.1:1': 3 } });
    expect(registry.version).toBe(9);
    expect(events.at(-1)?.reason).toBe('restore');
  });
});
