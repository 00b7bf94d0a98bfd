import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdStore } from '../../control-plane/src/registry/etcd-store.js';
import { FileStore, type PersistedState, type StateStore } from '../../control-plane/src/registry/store.js';
import { HAVE_ETCD, startEtcd, type EtcdProcess } from '../helpers/etcd.js';

/**
 * One suite every StateStore passes: the file store (the embedded default) and the etcd store (the replicated
 * control plane's layout, against a real etcd this test starts).
 */

const STATE: PersistedState = {
  version: 7,
  policies: { orders: { retry: { attempts: 2 } }, 'catalog.v2': { timeout: '2s' } },
  weights: { orders: { '127.0.0.1:9001': 5, '127.0.0.1:9002': 1000 } },
  instances: [
    { service: 'orders', id: 'orders-1', address: '127.0.0.1:9001', weight: 1, capacity: 100 },
    { service: 'orders', id: 'orders/2', address: '127.0.0.1:9002', weight: 3, capacity: 50, zone: 'a', mesh: true },
  ],
  drained: ['127.0.0.1:9002', '[::1]:8080'],
};

interface Subject {
  /** A fresh, empty store; each call a new one. */
  make(): StateStore;
  /** Another handle on the store `make` returned last (a second process, or a restart). */
  reopen(): StateStore;
  close(): Promise<void>;
}

let etcd: EtcdProcess | undefined;
let prefixes = 0;
const dir = mkdtempSync(join(tmpdir(), 'outrigger-conformance-'));
let files = 0;

const subjects: [string, boolean, () => Subject][] = [
  [
    'FileStore',
    true,
    () => {
      const file = join(dir, `state-${++files}.json`);
      return { make: () => new FileStore(file), reopen: () => new FileStore(file), close: () => Promise.resolve() };
    },
  ],
  [
    'EtcdStore',
    HAVE_ETCD,
    () => {
      const config = { endpoints: [etcd?.endpoint ?? ''], prefix: `/conformance${++prefixes}`, leaseTtlMs: 5_000 };
      const open: EtcdStore[] = [];
      const mk = (): EtcdStore => {
        const s = new EtcdStore(config);
        open.push(s);
        return s;
      };
      return {
        make: mk,
        reopen: mk,
        close: () => {
          for (const s of open) s.close();
          return Promise.resolve();
        },
      };
    },
  ],
];

beforeAll(async () => {
  if (HAVE_ETCD) etcd = await startEtcd();
}, 30_000);

afterAll(async () => {
  await etcd?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe.each(subjects)('store conformance: %s', (_name, available, subject) => {
  it.skipIf(!available)('loads nothing before the first save, then exactly what was saved, also through another handle', async () => {
    const s = subject();
    try {
      const store = s.make();
      expect(await store.load()).toBeUndefined();
      await store.save(STATE);
      for (const st of [store, s.reopen()]) {
        const loaded = await st.load();
        expect(loaded).toBeDefined();
        const { version, ...rest } = loaded as PersistedState;
        const { version: _v, ...want } = STATE;
        expect(rest).toEqual(want);
        expect(Number.isSafeInteger(version) && version >= 0).toBe(true);
      }
    } finally {
      await s.close();
    }
  });

  it.skipIf(!available)('a save replaces the whole state: what it leaves out is gone; versions never go backwards', async () => {
    const s = subject();
    try {
      const store = s.make();
      await store.save(STATE);
      const first = (await store.load()) as PersistedState;
      const next: PersistedState = {
        version: STATE.version + 1,
        policies: { orders: { retry: { attempts: 3 } } },
        weights: {},
        instances: [STATE.instances[1]!],
        drained: [],
      };
      await store.save(next);
      const loaded = (await s.reopen().load()) as PersistedState;
      expect(loaded.policies).toEqual(next.policies);
      expect(loaded.weights).toEqual({});
      expect(loaded.instances).toEqual(next.instances);
      expect(loaded.drained ?? []).toEqual([]);
      expect(loaded.version).toBeGreaterThan(first.version);
    } finally {
      await s.close();
    }
  });

  it.skipIf(!available)('an empty state loads as an empty state, not as nothing saved', async () => {
    const s = subject();
    try {
      const store = s.make();
      await store.save({ version: 1, policies: {}, weights: {}, instances: [], drained: [] });
      const loaded = await store.load();
      expect(loaded).toBeDefined();
      expect(loaded?.policies).toEqual({});
      expect(loaded?.instances).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it.skipIf(!available)('a state of more objects than etcd takes in one transaction (128) is saved and loaded whole', async () => {
    const s = subject();
    try {
      const store = s.make();
      const instances = Array.from({ length: 300 }, (_, i) => ({ service: `svc-${i % 7}`, id: `i-${String(i).padStart(3, '0')}`, address: `127.0.0.1:${10_000 + i}`, weight: 1, capacity: 0 }));
      const big: PersistedState = { version: 1, policies: STATE.policies, weights: {}, instances, drained: [] };
      await store.save(big);
      const loaded = (await s.reopen().load()) as PersistedState;
      expect(loaded.instances).toHaveLength(300);
      expect(loaded.instances.map((i) => i.id)).toEqual(instances.map((i) => i.id));
      await store.save({ ...big, instances: instances.slice(0, 10) });
      expect(((await s.reopen().load()) as PersistedState).instances).toHaveLength(10);
    } finally {
      await s.close();
    }
  });
});
