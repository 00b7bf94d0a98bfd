import { webcrypto } from 'node:crypto';
import { spiffeId } from '../../../common/src/security/spiffe.js';
import { pemOf, x509 } from '../../../common/src/security/x509.js';

/**
 * The sidecar's half of certificate issuing: a fresh ECDSA P-256 key pair and a PKCS#10 request signed by
 * it. The private key stays in this process; only the CSR goes to the control plane.
 */

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

export interface KeyAndCsr {
  /** PKCS#8 private key, PEM ("PRIVATE KEY"), for node:tls `key`. */
  readonly keyPem: string;
  /** The signing request, PEM. */
  readonly csrPem: string;
}

export async function createKeyAndCsr(trustDomain: string, service: string): Promise<KeyAndCsr> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${service}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId(trustDomain, service) }])],
  });
  const keyPem = pemOf('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPem, csrPem: csr.toString('pem') + '\n' };
}
