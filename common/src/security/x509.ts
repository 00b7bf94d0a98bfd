import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * @peculiar/x509 on node:crypto's WebCrypto, set up once for the CA (control plane) and the CSR maker
 * (sidecar), and the PEM encoding both write keys in.
 */
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** DER bytes as PEM with the given label ("PRIVATE KEY", "CERTIFICATE"), 64 characters a line. */
export function pemOf(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----\n`;
}
