import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore, MemoryStore, type PersistedState, StoreError } from '../../../control-plane/src/registry/store.js';

const STATE: PersistedState = {
  version: 42,
  policies: { orders: { lb: 'least-load', retry: { attempts: 3 } } },
  weights: { orders: { '10.0.0.1:9001': 7 } },
  instances: [
    { service: 'orders', id: 'orders-1', address: '10.0.0.1:9001', weight: 1, capacity: 100, zone: 'a' },
    { service: 'orders', id: 'orders-2', address: '10.0.0.2:9001', weight: 2, capacity: 50 },
  ],
  drained: ['10.0.0.3:9001'],
};

/** A state with many instances, so that a torn write would be visible. */
function bigState(version: number): PersistedState {
  return {
    ...STATE,
    version,
    instances: Array.from({ length: 3_000 }, (_, i) => ({ service: 'orders', id: `orders-${version}-${i}`, address: `10.0.${i >> 8}.${i & 255}:9001`, weight: 1, capacity: 100 })),
  };
}

describe('FileStore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outrigger-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads nothing before the first save, then what was saved; creates the directory', async () => {
    const store = new FileStore(join(dir, 'nested', 'state.json'));
    expect(await store.load()).toBeUndefined();
    await store.save(STATE);
    expect(await store.load()).toEqual(STATE);
    expect(JSON.parse(await readFile(join(dir, 'nested', 'state.json'), 'utf8'))).toEqual(STATE);
    // A new store on the same file (a restarted control plane) reads the same.
    expect(await new FileStore(join(dir, 'nested', 'state.json')).load()).toEqual(STATE);
  });

  it('replaces the file atomically: no temporary file left, and readers never see a partial file', async () => {
    const file = join(dir, 'state.json');
    const store = new FileStore(file);
    await store.save(bigState(1));
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = await readFile(file, 'utf8');
        const state = JSON.parse(text) as PersistedState; // throws on a torn file
        expect(state.instances).toHaveLength(3_000);
        reads++;
      }
    })();
    for (let v = 2; v <= 15; v++) await store.save(bigState(v));
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect((await store.load())?.version).toBe(15);
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('leaves the previous file intact and removes its temporary file when a save fails', async () => {
    const file = join(dir, 'state.json');
    // A non-empty directory where the file should be: the final rename fails.
    await mkdir(file);
    await writeFile(join(file, 'keep'), 'x');
    const store = new FileStore(file);
    await expect(store.save(STATE)).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['state.json']);
    expect(await readdir(file)).toEqual(['keep']);
  });

  it('names the file when it is not JSON', async () => {
    const file = join(dir, 'state.json');
    await writeFile(file, '{"version": 3, "policies": {');
    const err = await new FileStore(file).load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).file).toBe(file);
    expect((err as StoreError).message).toMatch(new RegExp(`^${escape(file)}: the state file is not valid JSON \\(.+\\); fix it, or move it away to start with an empty state$`));
  });

  it('names the file and the key path when the JSON has the wrong shape', async () => {
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify({ ...STATE, instances: [{ ...STATE.instances[0], address: 'nowhere' }], weights: { orders: { '10.0.0.1:9001': 0 } } }));
    const err = (await new FileStore(file).load().catch((e: unknown) => e)) as StoreError;
    expect(err).toBeInstanceOf(StoreError);
    expect(err.issues).toContain('weights.orders["10.0.0.1:9001"]: expected integer 1..1000, got 0');
    expect(err.issues).toContain('instances[0].address: expected host:port (IPv4, hostname or [IPv6]); the port is missing, got "nowhere"');
    expect(err.message.split('\n').every((l) => l.startsWith(`${file}: `))).toBe(true);

    await writeFile(file, '[]');
    await expect(new FileStore(file).load()).rejects.toThrow(`${file}: (root): expected a mapping, got []`);
  });

  it('names the file when it cannot be read', async () => {
    const file = join(dir, 'state.json');
    await mkdir(file);
    await expect(new FileStore(file).load()).rejects.toThrow(new RegExp(`^${escape(file)}: cannot read the state file \\(EISDIR\\)`));
  });
});

describe('MemoryStore', () => {
  it('keeps copies', async () => {
    const store = new MemoryStore();
    expect(await store.load()).toBeUndefined();
    const state = structuredClone(STATE);
    await store.save(state);
    (state.instances as unknown[]).length = 0;
    expect(await store.load()).toEqual(STATE);
    expect(store.saves).toBe(1);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
