import { serialize } from 'node:v8';
import { ConfigError } from '../errors.js';
import { loadSidecarConfig } from './load.js';

/**
 * The short-lived process in which the sidecar reads and validates its sidecar.yaml (load-apart.ts). It loads
 * yaml, zod and the schema, writes the outcome to stdout with v8.serialize and exits, so that those modules
 * never take memory in the sidecar itself. Argument: the file as given (relative to the same working
 * directory). Output, a LoadOutcome: `{ config }`, `{ file, issues }` for a ConfigError, or `{ message }`.
 */
export type LoadOutcome = { readonly config: unknown } | { readonly file: string; readonly issues: readonly string[] } | { readonly message: string };

async function outcome(file: string): Promise<LoadOutcome> {
  try {
    return { config: await loadSidecarConfig(file) };
  } catch (err) {
    if (err instanceof ConfigError) return { file: err.file, issues: err.issues };
    return { message: err instanceof Error ? err.message : String(err) };
  }
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: load-child.js FILE\n');
  process.exitCode = 2;
} else {
  // Writes to a pipe are synchronous on Linux and macOS: the whole answer is out before the process ends.
  process.stdout.write(serialize(await outcome(file)));
}
