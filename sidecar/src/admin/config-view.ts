import { formatDuration } from '../../../common/src/config/duration.js';
import type { SidecarConfig } from '../../../common/src/config/types.js';

/**
 * The sidecar's effective configuration in the shape of sidecar.yaml, for `GET /config`: the parsed config
 * (defaults filled in, pushed services laid over the file's) turned back into the file's key names. The
 * parsed shapes differ from the file's only in durations (`timeoutMs: 1500` is `timeout: "1.5s"`, every key
 * ending in `Ms`) and in absent optional keys (undefined, left out), so this walks any config generically
 * and a key added to the schema shows without a change here. Loading the result as sidecar.yaml gives
 * the same configuration back.
 */
export function configAsFile(config: SidecarConfig): Record<string, unknown> {
  return toFile(config) as Record<string, unknown>;
}

function toFile(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toFile);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (key.endsWith('Ms') && typeof v === 'number') out[key.slice(0, -2)] = formatDuration(v);
    else out[key] = toFile(v);
  }
  return out;
}
