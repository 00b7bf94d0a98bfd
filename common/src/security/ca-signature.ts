import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The join-token bootstrap of the control plane's CA (as kubeadm's discovery-token CA hash, keyed with the
 * token instead): the control plane hands out its mesh CA certificate unauthenticated, with an HMAC-SHA256
 * of the PEM keyed with the secret of every token that may open a discovery stream. A sidecar that holds one
 * of those secrets, and only such a sidecar, can tell the real CA from one a machine in the middle put in its
 * place. The sidecar never sends its secret to get it.
 */

export interface CaSignature {
  /** The token's name. */
  readonly token: string;
  /** Lower-case hex. */
  readonly hmacSha256: string;
}

/** HMAC-SHA256 of the CA PEM (UTF-8) keyed with `secret`, lower-case hex. */
export function signCa(caPem: string, secret: string): string {
  return createHmac('sha256', secret).update(caPem, 'utf8').digest('hex');
}

/** The name of the token whose signature of `caPem` matches `secret` (constant-time compare); undefined when none does. */
export function verifyCa(caPem: string, secret: string, signatures: readonly CaSignature[]): string | undefined {
  const want = Buffer.from(signCa(caPem, secret), 'hex');
  let found: string | undefined;
  for (const s of signatures) {
    if (!/^[0-9a-f]{64}$/i.test(s.hmacSha256)) continue;
    if (timingSafeEqual(Buffer.from(s.hmacSha256, 'hex'), want) && found === undefined) found = s.token;
  }
  return found;
}
