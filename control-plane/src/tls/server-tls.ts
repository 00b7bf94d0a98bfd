import { ServerCredentials } from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import type { Server as HttpsServer } from 'node:https';
import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import { parseHostPort } from '../../../common/src/config/address.js';
import type { CertificateAuthority, ServerNames } from '../ca/authority.js';
import type { ControlPlaneConfig } from '../config/types.js';

/**
 * The control plane's own TLS: the server certificate both listeners (gRPC and the HTTP API) present, and
 * its renewal. By default the control plane issues the certificate itself from the mesh CA (a fresh key kept
 * in memory only), valid for localhost, 127.0.0.1, ::1, the listen hosts (every local address and the host
 * name for a wildcard listen) and cp.yaml's `tls.serverNames`, and issues a new one at half its lifetime
 * (`tls.certTtl`, default 24 h). With `tls.certFile`/`tls.keyFile` it serves the operator's pair instead and
 * reads the files again every minute, taking a changed pair over. Either way a new certificate reaches
 * running listeners without a restart: gRPC through grpc-js's secure-context watchers, HTTPS through
 * `server.setSecureContext`; open connections keep the certificate they began with.
 */

/** How often operator-supplied files are read again. */
const FILE_CHECK_MS = 60_000;
/** A failed renewal is tried again after this. */
const RETRY_MS = 60_000;

interface Pair {
  readonly certPem: string;
  readonly keyPem: string;
  /** Wall-clock ms. */
  readonly notAfter: number;
}

/** grpc-js server credentials whose key and certificate can be replaced while the server runs. */
class RotatingServerCredentials extends ServerCredentials {
  constructor(pair: Pair) {
    super({ requestCert: false }, { key: Buffer.from(pair.keyPem), cert: Buffer.from(pair.certPem) });
  }

  update(pair: Pair): void {
    this.updateSecureContextOptions({ key: Buffer.from(pair.keyPem), cert: Buffer.from(pair.certPem) });
  }

  _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

/** The names the issued certificate is valid for. */
export function serverNames(config: Pick<ControlPlaneConfig, 'listen' | 'tls'>): ServerNames {
  const dns = new Set<string>(['localhost']);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const add = (name: string): void => {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (isIP(n) !== 0) ips.add(n);
    else if (n !== '') dns.add(n);
  };
  for (const listen of [config.listen.grpc, config.listen.http]) {
    const host = parseHostPort(listen).host;
    if (host === '0.0.0.0' || host === '::') {
      for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) add(a.address.replace(/%.*$/, ''));
      add(hostname());
    } else add(host);
  }
  for (const n of config.tls.serverNames) add(n);
  return { dns: [...dns], ips: [...ips] };
}

export class ServerTls {
  private pair: Pair;
  private readonly https = new Set<HttpsServer>();
  private timer: TimerHandle | undefined;
  private closed = false;
  readonly grpcCredentials: RotatingServerCredentials;

  private constructor(
    first: Pair,
    private readonly next: () => Promise<Pair>,
    /** When to look for a new pair, from the current one: ms from now. */
    private readonly delay: (pair: Pair) => number,
    private readonly source: 'mesh-ca' | 'files',
    private readonly timers: Timers,
    private readonly logger: Logger,
  ) {
    this.pair = first;
    this.grpcCredentials = new RotatingServerCredentials(first);
    this.schedule(delay(first));
  }

  /**
   * The server TLS of cp.yaml's `tls` (enabled): the operator's files, else a certificate from `ca`.
   * @throws Error naming the file when the files cannot be read or do not hold a certificate and its key.
   */
  static async open(config: Pick<ControlPlaneConfig, 'listen' | 'tls'>, ca: CertificateAuthority, clock: Clock, timers: Timers, logger: Logger): Promise<ServerTls> {
    const { certFile, keyFile, certTtlMs } = config.tls;
    if (certFile !== undefined && keyFile !== undefined) {
      const read = async (): Promise<Pair> => {
        let certPem: string;
        let keyPem: string;
        try {
          [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
        } catch (err) {
          throw new Error(`tls.certFile/tls.keyFile: cannot read ${certFile}, ${keyFile}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(certPem);
        } catch (err) {
          throw new Error(`tls.certFile: ${certFile} does not hold a PEM certificate: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        let key: ReturnType<typeof createPrivateKey>;
        try {
          key = createPrivateKey(keyPem);
        } catch (err) {
          throw new Error(`tls.keyFile: ${keyFile} does not hold a PEM private key: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        if (!cert.checkPrivateKey(key)) throw new Error(`tls.keyFile: ${keyFile} is not the key of the certificate in ${certFile}`);
        return { certPem, keyPem, notAfter: Date.parse(cert.validTo) };
      };
      const first = await read();
      logger.info({ cert: certFile, notAfter: new Date(first.notAfter).toISOString() }, 'control plane TLS: serving the certificate of tls.certFile');
      return new ServerTls(first, read, () => FILE_CHECK_MS, 'files', timers, logger);
    }
    const names = serverNames(config);
    const issue = async (): Promise<Pair> => {
      const c = await ca.issueServer(names, certTtlMs);
      logger.info({ dns: names.dns, ips: names.ips, notAfter: new Date(c.notAfter).toISOString() }, 'control plane TLS: server certificate issued from the mesh CA');
      return c;
    };
    const first = await issue();
    // At half of the lifetime, as sidecars renew theirs.
    const delay = (p: Pair): number => Math.max(1_000, Math.floor((p.notAfter - clock.wallNow()) / 2));
    return new ServerTls(first, issue, delay, 'mesh-ca', timers, logger);
  }

  /** Key and certificate for `https.createServer`. */
  httpsOptions(): { key: string; cert: string } {
    return { key: this.pair.keyPem, cert: this.pair.certPem };
  }

  /** The certificate served now, PEM. */
  get certPem(): string {
    return this.pair.certPem;
  }

  /** Keeps `server`'s certificate current. */
  attach(server: HttpsServer): void {
    this.https.add(server);
    server.once('close', () => this.https.delete(server));
  }

  /** Replaces the certificate now (what the renewal timer does). */
  async renew(): Promise<void> {
    const pair = await this.next();
    if (this.closed) return;
    if (pair.certPem === this.pair.certPem && pair.keyPem === this.pair.keyPem) return;
    this.pair = pair;
    this.grpcCredentials.update(pair);
    for (const s of this.https) s.setSecureContext({ key: pair.keyPem, cert: pair.certPem });
    if (this.source === 'files') this.logger.info({ notAfter: new Date(pair.notAfter).toISOString() }, 'control plane TLS: the certificate files changed; serving the new certificate');
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = this.timers.after(ms, () => {
      this.timer = undefined;
      this.renew().then(
        () => this.schedule(this.delay(this.pair)),
        (err: unknown) => {
          this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'control plane TLS: could not renew the server certificate; serving the current one and trying again');
          this.schedule(RETRY_MS);
        },
      );
    });
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
  }
}
