// Build step (after tsc): writes the JSON Schemas of sidecar.yaml and cp.yaml, generated from the zod schemas
// the loaders use, to schemas/ (shipped in the package; `outrigger schema KIND` prints them).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const { configJsonSchemaText } = await import('../dist/cli/src/json-schema.js');
const { CONFIG_KINDS, SCHEMA_FILES } = await import('../dist/cli/src/kinds.js');
const dir = new URL('../schemas/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
for (const kind of CONFIG_KINDS) writeFileSync(join(dir, SCHEMA_FILES[kind]), configJsonSchemaText(kind));
