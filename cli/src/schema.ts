import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Args } from './args.js';
import type { ConfigKind } from './kinds.js';
import { SCHEMA_FILES } from './kinds.js';
import { packageRoot } from './package.js';

/** `outrigger schema KIND`: prints the shipped JSON Schema (generated on the spot where none was built). */
export async function runSchema(args: Args): Promise<void> {
  const kind = args.positionals[0] as ConfigKind;
  let text: string;
  try {
    text = readFileSync(join(packageRoot(), 'schemas', SCHEMA_FILES[kind]), 'utf8');
  } catch {
    text = (await import('./json-schema.js')).configJsonSchemaText(kind);
  }
  process.stdout.write(text);
}
