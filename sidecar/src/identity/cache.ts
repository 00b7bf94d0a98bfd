import { readFileIfExists, writeFileAtomic } from '../../../common/src/atomic-file.js';

/** The sidecar's mesh certificate with its key, as kept on disk beside the configuration cache. */
export interface CachedIdentity {
  readonly trustDomain: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  /** Wall-clock end of the certificate's validity (ms since the epoch). */
  readonly notAfter: number;
  /** The control plane's mesh-wide mode when the certificate was issued. */
  readonly mode: string;
}

/**
 * Keeps the last mesh certificate and its private key on disk (mode 0600, atomic writes), so that a sidecar
 * restarted while the control plane is down still speaks mutual TLS until the certificate expires, as it
 * still routes from the configuration cache.
 */
export class IdentityCache {
  constructor(readonly file: string) {}

  save(identity: CachedIdentity): Promise<void> {
    return writeFileAtomic(this.file, JSON.stringify(identity), 0o600);
  }

  /**
   * The cached identity when there is one that is still valid at `wallNow`; undefined when there is none
   * or it expired. @throws when the file is damaged.
   */
  async load(wallNow: number): Promise<CachedIdentity | undefined> {
    const text = await readFileIfExists(this.file);
    if (text === undefined) return undefined;
    const v = JSON.parse(text) as Partial<Record<keyof CachedIdentity, unknown>>;
    const { trustDomain, certPem, keyPem, caPem, notAfter, mode } = v;
    if (typeof trustDomain !== 'string' || typeof certPem !== 'string' || typeof keyPem !== 'string' || typeof caPem !== 'string' || typeof notAfter !== 'number' || typeof mode !== 'string') {
      throw new Error(`${this.file}: not a mesh identity cache (expected { trustDomain, certPem, keyPem, caPem, notAfter, mode })`);
    }
    if (notAfter <= wallNow) return undefined;
    return { trustDomain, certPem, keyPem, caPem, notAfter, mode };
  }
}
