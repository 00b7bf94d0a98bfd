import { loadSidecarConfig, parseYaml, readConfigFile } from '../../common/src/config/load.js';
import { ConfigError } from '../../common/src/errors.js';
import { loadControlPlaneConfig } from '../../control-plane/src/config/load.js';
import { UsageError, type Args } from './args.js';
import { CommandError } from './errors.js';
import { configJsonSchema } from './json-schema.js';
import { CONFIG_KINDS, SCHEMA_FILES, type ConfigKind } from './kinds.js';

/**
 * `outrigger validate FILE`: runs the loader the sidecar or the control plane would run on FILE, and nothing
 * else (no port is bound, no state read). Which loader: --kind, else the file's `$schema` modeline, else its
 * top-level keys.
 */

const KIND_NAMES: Readonly<Record<ConfigKind, string>> = { sidecar: 'sidecar configuration', 'control-plane': 'control-plane configuration' };

/** Top-level keys only one of the two files has. */
function distinctiveKeys(kind: ConfigKind): Set<string> {
  const other = kind === 'sidecar' ? 'control-plane' : 'sidecar';
  const keys = (k: ConfigKind): string[] => Object.keys((configJsonSchema(k)['properties'] ?? {}) as Record<string, unknown>);
  const theirs = new Set(keys(other));
  return new Set(keys(kind).filter((k) => !theirs.has(k)));
}

/** The kind of a parsed file, or undefined when neither its modeline nor its keys tell. */
export function detectKind(text: string, data: unknown): ConfigKind | undefined {
  const modeline = /^#\s*yaml-language-server:\s*\$schema=(\S+)/m.exec(text)?.[1];
  if (modeline !== undefined) {
    const kind = CONFIG_KINDS.find((k) => modeline.endsWith(SCHEMA_FILES[k]));
    if (kind !== undefined) return kind;
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return undefined;
  const keys = Object.keys(data);
  // `service` is the one key every sidecar.yaml has (and then the loader names any control-plane key as unknown).
  if (keys.includes('service')) return 'sidecar';
  const matches = CONFIG_KINDS.filter((k) => {
    const own = distinctiveKeys(k);
    return keys.some((key) => own.has(key));
  });
  return matches.length === 1 ? matches[0] : undefined;
}

export async function runValidate(args: Args): Promise<void> {
  const file = args.positionals[0] ?? '';
  let kind = args.string('kind') as ConfigKind | undefined;
  try {
    if (kind === undefined) {
      const text = await readConfigFile(file);
      kind = detectKind(text, parseYaml(text, file));
      if (kind === undefined) {
        throw new UsageError(`${file}: cannot tell a sidecar configuration from a control-plane one by its keys; give --kind sidecar|control-plane`, 'validate');
      }
    }
    if (kind === 'sidecar') await loadSidecarConfig(file);
    else await loadControlPlaneConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) throw new CommandError(err.message);
    throw err;
  }
  process.stdout.write(`${file}: valid (${KIND_NAMES[kind]})\n`);
}
