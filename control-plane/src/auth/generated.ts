import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../../../common/src/logger.js';
import type { TokenSpec } from './tokens.js';

/** File names of the generated tokens, in the state file's directory. */
export const ADMIN_TOKEN_FILE = 'admin.token';
export const SIDECAR_TOKEN_FILE = 'sidecar.token';

/** Thrown when a generated token file exists but cannot be used. */
export class TokenFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenFileError';
  }
}

/**
 * The tokens of a control plane whose cp.yaml has no `auth` section: an admin token and a sidecar join token
 * (any service), each 32 random bytes in base64url, written on first start to a file readable by its owner
 * only (0600) beside the state file, and read back on later starts. The paths are logged, never the secrets.
 */
export async function openGeneratedTokens(stateFile: string, logger: Logger, shared?: (make: () => Promise<string>) => Promise<string>): Promise<TokenSpec[]> {
  const dir = dirname(stateFile);
  await mkdir(dir, { recursive: true });
  if (shared !== undefined) {
    // Replicated (docs/ha.md): one pair for every replica, made once in etcd; each writes the files for ctl.
    const text = await shared(() => Promise.resolve(JSON.stringify({ admin: randomBytes(32).toString('base64url'), sidecar: randomBytes(32).toString('base64url') })));
    const t = JSON.parse(text) as { admin: string; sidecar: string };
    await writeFile(join(dir, ADMIN_TOKEN_FILE), `${t.admin}\n`, { mode: 0o600 });
    await writeFile(join(dir, SIDECAR_TOKEN_FILE), `${t.sidecar}\n`, { mode: 0o600 });
    logger.info({ files: [join(dir, ADMIN_TOKEN_FILE), join(dir, SIDECAR_TOKEN_FILE)] }, 'tokens loaded from etcd');
    return [
      { name: 'admin', secret: t.admin, role: 'admin' },
      { name: 'sidecar', secret: t.sidecar, role: 'sidecar' },
    ];
  }
  const one = async (file: string, name: string, role: 'admin' | 'sidecar'): Promise<TokenSpec> => {
    const path = join(dir, file);
    let secret: string;
    try {
      secret = (await readFile(path, 'utf8')).trim();
      if (secret === '') throw new TokenFileError(`${path}: the token file is empty; delete it to have a new token generated`);
      logger.info({ file: path, role }, 'token loaded');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        if (err instanceof TokenFileError) throw err;
        throw new TokenFileError(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
      secret = randomBytes(32).toString('base64url');
      await writeFile(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
      logger.info({ file: path, role }, 'token generated');
    }
    return { name, secret, role };
  };
  return [await one(ADMIN_TOKEN_FILE, 'admin', 'admin'), await one(SIDECAR_TOKEN_FILE, 'sidecar', 'sidecar')];
}
