import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's own files (package.json, schemas/): found from this module's place, which differs between
 * the sources (cli/src) and the build (dist/cli/src), in a clone and in an installed package alike.
 */

let root: string | undefined;

/** The folder holding the outrigger package.json. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === 'outrigger') return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the outrigger package.json above the CLI');
    dir = up;
  }
}

/** The version in package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
