import { z } from 'zod';
import { formatDuration } from '../../common/src/config/duration.js';
import { sidecarSchema } from '../../common/src/config/schema.js';
import { controlPlaneSchema } from '../../control-plane/src/config/schema.js';
import type { ConfigKind } from './kinds.js';

/**
 * JSON Schemas of the two configuration files, generated from the zod schemas the loaders use (the build
 * writes them to schemas/; `outrigger schema` prints them). They describe the file as written: durations
 * are strings with a unit, defaults are shown as one would write them. Rules across keys (listeners that
 * collide, max >= min, hashOn for ring-hash) stay with the loader, which `outrigger validate` runs.
 */

const TITLES: Readonly<Record<ConfigKind, string>> = {
  sidecar: 'Outrigger sidecar configuration (sidecar.yaml)',
  'control-plane': 'Outrigger control plane configuration (cp.yaml)',
};

const DURATION_PATTERN = '^(?:\\d+(?:\\.\\d+)?(?:ms|s|m|h))+$';
const DURATION_DESCRIPTION = 'a duration with a unit (ms, s, m, h), e.g. "250ms", "2s", "1m30s"';

type Def = { readonly type: string } & Record<string, unknown>;
const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def?: Def } } | undefined)?._zod?.def;

/** A duration (common/src/config/schema.ts `duration()`): a string without checks piped into a transform to ms. */
function isDuration(schema: unknown): boolean {
  const d = defOf(schema);
  if (d?.type !== 'pipe') return false;
  const input = defOf(d['in']);
  const checks = input?.['checks'] as readonly unknown[] | undefined;
  return input?.type === 'string' && (checks ?? []).length === 0 && defOf(d['out'])?.type === 'transform';
}

/** Drops `maximum: Number.MAX_SAFE_INTEGER`, which zod adds to every integer and says nothing to a reader. */
function tidy(node: unknown): void {
  if (Array.isArray(node)) {
    for (const n of node) tidy(n);
  } else if (node !== null && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if (o['maximum'] === Number.MAX_SAFE_INTEGER) delete o['maximum'];
    if (o['minimum'] === Number.MIN_SAFE_INTEGER) delete o['minimum'];
    for (const v of Object.values(o)) tidy(v);
  }
}

/** The JSON Schema (draft-07, which every YAML editor plugin reads) of one configuration file. */
export function configJsonSchema(kind: ConfigKind): Record<string, unknown> {
  const schema = kind === 'sidecar' ? sidecarSchema : controlPlaneSchema;
  const json = z.toJSONSchema(schema, {
    io: 'input',
    target: 'draft-7',
    override: (ctx) => {
      const d = defOf(ctx.zodSchema);
      if (isDuration(ctx.zodSchema)) {
        ctx.jsonSchema.pattern = DURATION_PATTERN;
        ctx.jsonSchema.description = DURATION_DESCRIPTION;
      } else if (d?.type === 'default' && isDuration(d['innerType'])) {
        // The default is kept in ms; a file writes it with a unit.
        const ms = d['defaultValue'];
        if (typeof ms === 'number') ctx.jsonSchema.default = formatDuration(ms);
      }
    },
  }) as Record<string, unknown>;
  tidy(json);
  return { $schema: json['$schema'], title: TITLES[kind], ...json };
}

/** The schema as the shipped file holds it (two-space JSON and a final newline). */
export function configJsonSchemaText(kind: ConfigKind): string {
  return `${JSON.stringify(configJsonSchema(kind), null, 2)}\n`;
}
