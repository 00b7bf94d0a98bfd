import { readFileIfExists, writeFileAtomic } from '../../../common/src/atomic-file.js';
import type { PushedService } from '../main.js';

/** The last configuration applied from the control plane, as kept on disk. */
export interface CachedConfig {
  readonly version: string;
  readonly services: readonly PushedService[];
}

/**
 * Keeps the last applied control-plane configuration on disk so a sidecar that restarts while the control
 * plane is unreachable starts from it. Writes are atomic (temporary file, fsync, rename).
 */
export class ConfigCache {
  constructor(readonly file: string) {}

  save(config: CachedConfig): Promise<void> {
    return writeFileAtomic(this.file, JSON.stringify(config));
  }

  /** The cached configuration, or undefined when there is none; a damaged file is reported, not used. */
  async load(): Promise<CachedConfig | undefined> {
    const text = await readFileIfExists(this.file);
    if (text === undefined) return undefined;
    const value = JSON.parse(text) as Partial<CachedConfig>;
    if (typeof value.version !== 'string' || !Array.isArray(value.services)) {
      throw new Error(`${this.file}: not a configuration cache (expected { version, services })`);
    }
    for (const s of value.services) {
      if (typeof s?.name !== 'string' || typeof s.policyJson !== 'string') throw new Error(`${this.file}: damaged service entry`);
    }
    return { version: value.version, services: value.services };
  }
}
