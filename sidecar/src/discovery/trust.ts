import { ChannelCredentials, Metadata } from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DiscoveryClient, type GetCAResponse } from '../../../proto/gen/outrigger/v1/discovery.js';
import { verifyCa } from '../../../common/src/security/ca-signature.js';
import type { Logger } from '../../../common/src/logger.js';
import { quietIpServernameWarning } from './ip-servername.js';

/**
 * How the sidecar trusts the control plane's TLS (docs/security.md "The control plane's TLS"):
 *
 *  - `controlPlane.caFile` (else $OUTRIGGER_CA_FILE): the mesh CA certificate, PEM; the stream is verified
 *    against it from the first connection.
 *  - Neither: join-token bootstrap. Once, over a TLS connection it does not verify, the sidecar asks
 *    `Discovery.GetCA` for the CA certificate and its HMAC-SHA256 signatures (one per token that may open a
 *    stream), and pins the CA only when one of them matches its own token's secret; it never sends the
 *    secret for this. A CA that does not match is refused and logged, and nothing else is sent to that
 *    control plane. The pinned CA is kept in memory (fetched again after a restart).
 *  - `controlPlane.tls: false`: plaintext, for a control plane with `tls: { enabled: false }`.
 */

/** A CA the sidecar would not pin, or cannot read. */
export class TrustError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustError';
  }
}

const BOOTSTRAP_TIMEOUT_MS = 10_000;

export interface ControlPlaneTrustOptions {
  /** `controlPlane.tls` (default true). */
  readonly tls: boolean;
  /** `controlPlane.caFile`; undefined: $OUTRIGGER_CA_FILE, else bootstrap with the token. */
  readonly caFile?: string | undefined;
  /** The token the sidecar sends on its stream (its secret keys the CA signatures). */
  readonly token: () => string | undefined;
  /** Wall-clock ms (the bootstrap call's deadline). */
  readonly wallNow: () => number;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv | undefined;
}

/** Whether `pem` is a CA certificate; the reason when not. */
function caProblem(pem: string): string | undefined {
  try {
    const c = new X509Certificate(pem);
    return c.ca ? undefined : 'it is not a CA certificate (basicConstraints cA is not set)';
  } catch (err) {
    return `it is not a PEM certificate (${err instanceof Error ? err.message : String(err)})`;
  }
}

export class ControlPlaneTrust {
  /** The pinned CA, PEM (from the file, or bootstrapped). */
  private caPem: string | undefined;
  private readonly caFile: string | undefined;
  /** Where the pinned CA came from, for logs. */
  source: 'file' | 'bootstrap' | 'plaintext' | undefined;

  /** @throws TrustError when the CA file cannot be read or holds no CA certificate. */
  constructor(private readonly o: ControlPlaneTrustOptions) {
    const env = o.env ?? process.env;
    const fromEnv = env['OUTRIGGER_CA_FILE']?.trim();
    this.caFile = o.caFile ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
    if (!o.tls) {
      this.source = 'plaintext';
      return;
    }
    quietIpServernameWarning();
    if (this.caFile !== undefined) {
      const key = o.caFile !== undefined ? 'controlPlane.caFile' : 'OUTRIGGER_CA_FILE';
      let pem: string;
      try {
        pem = readFileSync(this.caFile, 'utf8');
      } catch (err) {
        throw new TrustError(`${key}: cannot read ${this.caFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      }
      const problem = caProblem(pem);
      if (problem !== undefined) throw new TrustError(`${key}: ${this.caFile}: expected the mesh CA certificate (PEM), but ${problem}`);
      this.caPem = pem;
      this.source = 'file';
    }
  }

  /**
   * Credentials for a stream to `address`: plaintext, or TLS verified against the pinned CA (bootstrapped
   * first from `address` when there is none yet).
   * @throws TrustError when the bootstrap refuses the CA (or cannot be done); other errors when the control
   *   plane cannot be reached.
   */
  async credentials(address: string): Promise<ChannelCredentials> {
    if (!this.o.tls) return ChannelCredentials.createInsecure();
    this.caPem ??= await this.bootstrap(address);
    return ChannelCredentials.createSsl(Buffer.from(this.caPem));
  }

  /**
   * The control plane's certificate did not verify against the pinned CA: a CA pinned by bootstrap is
   * dropped, so the next connection fetches and checks it again (the control plane may have a new CA, e.g.
   * after its state was lost). A CA from a file stays: the operator chose it.
   */
  untrusted(): void {
    if (this.source === 'bootstrap') this.caPem = undefined;
  }

  /** The CA certificate from `Discovery.GetCA`, once its signature matches the token. */
  private async bootstrap(address: string): Promise<string> {
    const token = this.o.token();
    if (token === undefined) {
      throw new TrustError(
        'cannot trust the control plane: controlPlane.caFile is not set and there is no token to check its CA with; give controlPlane.caFile (the control plane\'s mesh-ca.crt) or a token (controlPlane.token, tokenFile or OUTRIGGER_TOKEN)',
      );
    }
    // Not verified: what it answers is trusted only once the signature matches.
    const client = new DiscoveryClient(address, ChannelCredentials.createSsl(null, null, null, { rejectUnauthorized: false, checkServerIdentity: () => undefined }));
    let answer: GetCAResponse;
    try {
      answer = await new Promise<GetCAResponse>((resolve, reject) => {
        client.getCa({}, new Metadata(), { deadline: this.o.wallNow() + BOOTSTRAP_TIMEOUT_MS }, (err, res) => (err !== null ? reject(err) : resolve(res)));
      });
    } finally {
      client.close();
    }
    const signer = verifyCa(answer.caPem, token, answer.signatures);
    if (signer === undefined) {
      throw new TrustError(
        `refused the CA certificate the control plane at ${address} sent: none of its ${answer.signatures.length} signature(s) matches this sidecar's token (a wrong token, or something between this sidecar and the control plane); set controlPlane.caFile to the control plane's mesh-ca.crt, or check the token`,
      );
    }
    const problem = caProblem(answer.caPem);
    if (problem !== undefined) throw new TrustError(`refused the CA certificate the control plane at ${address} sent: ${problem}`);
    const fingerprint = new X509Certificate(answer.caPem).fingerprint256;
    this.o.logger.info({ address, token: signer, fingerprint }, 'control plane CA pinned (join-token bootstrap: its signature matches this sidecar\'s token)');
    this.source = 'bootstrap';
    return answer.caPem;
  }
}
