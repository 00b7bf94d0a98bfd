import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IdentityCache } from '../../../sidecar/src/identity/cache.js';

describe('IdentityCache: the mesh certificate kept beside the configuration cache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-identity-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const identity = { trustDomain: 'outrigger.local', certPem: 'CERT', keyPem: 'KEY', caPem: 'CA', notAfter: 2_000_000, mode: 'strict' };

  it('keeps the key readable by its owner only, and gives it back while the certificate is valid', async () => {
    const cache = new IdentityCache(join(dir, 'sub', 'cache.json.identity'));
    expect(await cache.load(1_000_000)).toBeUndefined();
    await cache.save(identity);
    expect(statSync(cache.file).mode & 0o777).toBe(0o600);
    expect(await cache.load(1_999_999)).toEqual(identity);
  });

  it('an expired certificate is not given back', async () => {
    const cache = new IdentityCache(join(dir, 'expired.identity'));
    await cache.save(identity);
    expect(await cache.load(2_000_000)).toBeUndefined();
  });

  it('a damaged file is an error naming the file', async () => {
    const file = join(dir, 'damaged.identity');
    writeFileSync(file, JSON.stringify({ certPem: 'CERT' }));
    await expect(new IdentityCache(file).load(0)).rejects.toThrow(`${file}: not a mesh identity cache`);
  });
});
