import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import { ConfigError } from '../errors.js';
import { deepFreeze } from './freeze.js';
import type { LoadOutcome } from './load-child.js';
import type { SidecarConfig } from './types.js';

/**
 * Loading sidecar.yaml in a short-lived child process (load-child.ts), so that the YAML parser, zod and the
 * schema, about 12 MB of private memory once loaded, are not kept by a sidecar that only needs them at start
 * and on SIGHUP (docs/decisions.md). The outcome is the one loadSidecarConfig gives in-process: the same
 * frozen configuration, or the same ConfigError with the same messages.
 *
 * When the child's script is not there (the sources run without being built, as under vitest) or the child
 * cannot run or answer, the file is loaded in this process instead: the result is the same, only the memory
 * differs.
 */

const CHILD = new URL('./load-child.js', import.meta.url);

/**
 * Reads, parses and validates a sidecar.yaml, as loadSidecarConfig does.
 * @throws ConfigError, also when the file cannot be read.
 */
export async function loadSidecarConfigApart(file: string): Promise<SidecarConfig> {
  const outcome = CHILD.protocol === 'file:' && existsSync(CHILD) ? await inChild(file).catch(() => undefined) : undefined;
  if (outcome === undefined) return (await import('./load.js')).loadSidecarConfig(file);
  if ('config' in outcome) return deepFreeze(outcome.config as SidecarConfig);
  if ('issues' in outcome) throw new ConfigError(outcome.file, outcome.issues);
  throw new Error(outcome.message);
}

function inChild(file: string): Promise<LoadOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(CHILD), file], { stdio: ['ignore', 'pipe', 'ignore'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0 || chunks.length === 0) {
        reject(new Error(`the configuration loader exited with ${String(code)}`));
        return;
      }
      try {
        const value = deserialize(Buffer.concat(chunks)) as unknown;
        if (value === null || typeof value !== 'object' || !('config' in value || 'issues' in value || 'message' in value)) throw new Error('the configuration loader answered nothing usable');
        resolve(value as LoadOutcome);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}
