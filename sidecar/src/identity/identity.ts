import { createPublicKey, X509Certificate } from 'node:crypto';
import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import { DEFAULT_TRUST_DOMAIN } from '../../../common/src/security/spiffe.js';
import type { Certificate } from '../../../proto/gen/outrigger/v1/discovery.js';
import { MeshCredentials } from '../proxy/tls/mesh-tls.js';
import { createKeyAndCsr } from './csr.js';
import type { CachedIdentity, IdentityCache } from './cache.js';

/**
 * The sidecar's mesh identity: it makes a key, asks the control plane to sign a certificate for its service
 * (over the discovery stream), and renews at half of the certificate's lifetime with a fresh key. The
 * credentials object is created once and rotated in place, so listeners and pools that hold it pick up
 * each renewal for their new connections.
 */
export interface MeshIdentityOptions {
  readonly service: string;
  /** Sends a CSR to the control plane (the answer comes back through `onCertificate`). */
  readonly request: (csrPem: string) => void;
  /** The first credentials, once (later renewals rotate them in place). */
  readonly onCredentials: (credentials: MeshCredentials) => void;
  /** Keeps each installed certificate and key on disk, and gives the last one back at start. */
  readonly cache?: IdentityCache | undefined;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
}

/** A refused or unusable certificate is asked for again after this long. */
const RETRY_MS = 10_000;
/** Renewal never comes sooner than this after a certificate arrived. */
const MIN_RENEW_MS = 1_000;

export class MeshIdentity {
  private credentials: MeshCredentials | undefined;
  /** The key of the CSR in flight. */
  private pendingKey: string | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;
  /** Wall-clock end of the current certificate's validity. */
  notAfter = 0;

  constructor(private readonly o: MeshIdentityOptions) {}

  get current(): MeshCredentials | undefined {
    return this.credentials;
  }

  /**
   * Installs the cached certificate when it is still valid (a restart while the control plane is down).
   * The sidecar still asks for a fresh one. @returns the cached identity used, if any.
   */
  async restore(): Promise<CachedIdentity | undefined> {
    const cache = this.o.cache;
    if (cache === undefined || this.credentials !== undefined) return undefined;
    let cached: CachedIdentity | undefined;
    try {
      cached = await cache.load(this.o.clock.wallNow());
      if (cached === undefined) return undefined;
      if (!new X509Certificate(cached.certPem).publicKey.equals(createPublicKey(cached.keyPem))) throw new Error('its certificate does not match its key');
      this.credentials = new MeshCredentials(cached.trustDomain, { certPem: cached.certPem, keyPem: cached.keyPem, caPem: cached.caPem });
    } catch (err) {
      this.o.logger.warn({ file: cache.file, err: err instanceof Error ? err.message : String(err) }, 'the cached mesh certificate cannot be used; waiting for the control plane');
      return undefined;
    }
    this.notAfter = cached.notAfter;
    this.o.onCredentials(this.credentials);
    this.o.logger.info({ file: cache.file, notAfter: new Date(cached.notAfter).toISOString() }, 'mesh certificate restored from the cache');
    return cached;
  }

  /** Makes a new key and asks for a certificate for it. */
  async renew(): Promise<void> {
    if (this.stopped) return;
    const { keyPem, csrPem } = await createKeyAndCsr(this.credentials?.trustDomain ?? DEFAULT_TRUST_DOMAIN, this.o.service);
    if (this.stopped) return;
    this.pendingKey = keyPem;
    this.o.request(csrPem);
  }

  /** A Certificate message from the control plane. */
  onCertificate(c: Certificate): void {
    if (this.stopped) return;
    if (c.error !== '') {
      this.o.logger.warn({ reason: c.error }, 'the control plane refused a certificate; asking again later');
      this.schedule(RETRY_MS);
      return;
    }
    const key = this.pendingKey;
    let usable = key !== undefined;
    try {
      usable = usable && new X509Certificate(c.certPem).publicKey.equals(createPublicKey(key!));
    } catch {
      usable = false;
    }
    if (!usable) {
      // An answer to an earlier request (its key is gone): the current request's answer is still due.
      this.o.logger.warn({}, 'a certificate that does not match the key in use was ignored');
      return;
    }
    const material = { certPem: c.certPem, keyPem: key!, caPem: c.caPem };
    try {
      if (this.credentials === undefined) {
        this.credentials = new MeshCredentials(c.trustDomain, material);
        this.o.onCredentials(this.credentials);
      } else {
        this.credentials.rotate(material);
      }
    } catch (err) {
      this.o.logger.warn({ err: String(err) }, 'a certificate from the control plane could not be loaded; asking again later');
      this.schedule(RETRY_MS);
      return;
    }
    this.pendingKey = undefined;
    this.notAfter = Number(c.notAfterMs);
    const cache = this.o.cache;
    if (cache !== undefined) {
      cache.save({ trustDomain: c.trustDomain, ...material, notAfter: this.notAfter, mode: c.mode }).catch((err: unknown) => {
        this.o.logger.warn({ file: cache.file, err: err instanceof Error ? err.message : String(err) }, 'could not keep the mesh certificate on disk');
      });
    }
    const renewIn = Math.max(MIN_RENEW_MS, (this.notAfter - this.o.clock.wallNow()) / 2);
    this.o.logger.info({ service: this.o.service, notAfter: new Date(this.notAfter).toISOString(), renewInMs: Math.round(renewIn) }, 'mesh certificate installed');
    this.schedule(renewIn);
  }

  private schedule(ms: number): void {
    this.timer?.cancel();
    this.timer = this.o.timers.after(ms, () => {
      void this.renew().catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'could not make a certificate request'));
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }
}
