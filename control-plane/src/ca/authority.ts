import { randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import type { Clock } from '../../../common/src/clock.js';
import { spiffeId } from '../../../common/src/security/spiffe.js';
import { pemOf, x509 } from '../../../common/src/security/x509.js';

/**
 * The mesh's certificate authority: an ECDSA P-256 key and a self-signed CA certificate, and the issuing
 * of short-lived service certificates from certificate signing requests. The private key of a service
 * certificate never reaches the control plane: the sidecar sends a CSR, the CA checks that the CSR is
 * signed by the key it carries, and signs a certificate for that key whose only identity is the URI SAN
 * `spiffe://<trust domain>/service/<name>` of the service the caller is entitled to (what the CSR itself
 * asks for is ignored).
 */

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** Default lifetime of the CA certificate (as Istio's self-signed root). */
export const CA_LIFETIME_MS = 10 * 365 * 24 * 3600_000;
/** Default lifetime of a service certificate; sidecars renew at half of it. */
export const DEFAULT_CERT_TTL_MS = 24 * 3600_000;
/** Issued certificates start this much before "now", for clocks a little behind ours. */
const BACKDATE_MS = 5 * 60_000;
/** Curves a CSR's key may use. */
const ACCEPTED_CURVES: ReadonlySet<string> = new Set(['P-256', 'P-384']);

export class CaError extends Error {}

/** What the store keeps of the CA: its certificate and PKCS#8 private key, both PEM. */
export interface CaMaterial {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface IssuedCertificate {
  /** The service certificate, PEM. */
  readonly certPem: string;
  /** The chain to send with it (the CA certificate), PEM. */
  readonly caPem: string;
  /** Wall-clock milliseconds since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly spiffeId: string;
  /** Hex serial number, for logs and revocation lists. */
  readonly serial: string;
}


function derOf(pem: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`).exec(pem);
  if (m === null) throw new CaError(`expected a PEM ${label}`);
  return Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64');
}

/** A random positive serial number: 16 bytes, top bit clear (RFC 5280: positive, at most 20 octets). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

export class CertificateAuthority {
  private constructor(
    private readonly cert: x509.X509Certificate,
    private readonly signingKey: webcrypto.CryptoKey,
    private readonly keyPem: string,
    private readonly clock: Clock,
    readonly trustDomain: string,
  ) {}

  /** A new CA: a fresh key and a self-signed certificate valid from now for `lifetimeMs`. */
  static async generate(opts: { trustDomain: string; clock: Clock; lifetimeMs?: number }): Promise<CertificateAuthority> {
    const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const now = opts.clock.wallNow();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: `CN=Outrigger mesh CA, O=${opts.trustDomain}`,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + (opts.lifetimeMs ?? CA_LIFETIME_MS)),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyPem = pemOf('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    return new CertificateAuthority(cert, keys.privateKey, keyPem, opts.clock, opts.trustDomain);
  }

  /** A CA from its stored (or operator-provided) certificate and PKCS#8 key, checked to belong together. */
  static async load(material: CaMaterial, opts: { trustDomain: string; clock: Clock }): Promise<CertificateAuthority> {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(material.certPem);
    } catch (err) {
      throw new CaError(`the CA certificate is not a PEM X.509 certificate: ${err instanceof Error ? err.message : String(err)}`);
    }
    let signingKey: webcrypto.CryptoKey;
    try {
      signingKey = await webcrypto.subtle.importKey('pkcs8', derOf(material.keyPem, 'PRIVATE KEY'), EC_P256, true, ['sign']);
    } catch (err) {
      throw new CaError(`the CA key is not a PKCS#8 ECDSA P-256 private key (PEM "PRIVATE KEY"): ${err instanceof Error ? err.message : String(err)}`);
    }
    const basic = cert.getExtension(x509.BasicConstraintsExtension);
    if (basic === null || !basic.ca) throw new CaError('the CA certificate is not a CA certificate (basicConstraints cA is not set)');
    // The key must be the certificate's: sign a probe and verify it with the certificate's public key.
    const probe = Buffer.from('outrigger-ca-key-check');
    const sig = await webcrypto.subtle.sign(SIGNING, signingKey, probe);
    const pub = await cert.publicKey.export(EC_P256, ['verify']);
    if (!(await webcrypto.subtle.verify(SIGNING, pub, sig, probe))) throw new CaError('the CA key does not belong to the CA certificate');
    return new CertificateAuthority(cert, signingKey, material.keyPem, opts.clock, opts.trustDomain);
  }

  /** The CA certificate, PEM: what every sidecar trusts. */
  get certPem(): string {
    return this.cert.toString('pem') + '\n';
  }

  get notAfter(): number {
    return this.cert.notAfter.getTime();
  }

  /** What the store keeps. */
  material(): CaMaterial {
    return { certPem: this.certPem, keyPem: this.keyPem };
  }

  /**
   * Signs a certificate for `service` from a PEM CSR. Refused (CaError) when the CSR is malformed, its
   * signature does not verify with the key it carries, or the key is not ECDSA P-256/P-384.
   */
  async issue(csrPem: string, service: string, ttlMs: number = DEFAULT_CERT_TTL_MS): Promise<IssuedCertificate> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw new CaError(`the certificate signing request is not a PEM PKCS#10 request: ${err instanceof Error ? err.message : String(err)}`);
    }
    const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
    if (alg.name !== 'ECDSA' || !ACCEPTED_CURVES.has(alg.namedCurve)) {
      throw new CaError(`the CSR's key must be ECDSA P-256 or P-384, got ${alg.name}${alg.namedCurve ? ` ${alg.namedCurve}` : ''}`);
    }
    if (!(await csr.verify())) throw new CaError('the CSR is not signed by the key it carries');
    const id = spiffeId(this.trustDomain, service);
    const now = this.clock.wallNow();
    const notBefore = now - BACKDATE_MS;
    // Never past the CA's own end of validity.
    const notAfter = Math.min(now + ttlMs, this.cert.notAfter.getTime());
    const serial = serialNumber();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `O=${this.trustDomain}, OU=${service}`,
      issuer: this.cert.subject,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      publicKey: csr.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        // SPIFFE X.509-SVID: the subject is empty of meaning, so the SAN is critical.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    return { certPem: cert.toString('pem') + '\n', caPem: this.certPem, notBefore, notAfter, spiffeId: id, serial };
  }

  /**
   * A TLS server certificate for the control plane itself: a fresh ECDSA P-256 key (it stays in the control
   * plane's memory), the given DNS names and IP addresses and `spiffe://<trust domain>/control-plane` in the
   * SAN, serverAuth only.
   */
  async issueServer(names: ServerNames, ttlMs: number): Promise<ServerCertificate> {
    const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const now = this.clock.wallNow();
    const notBefore = now - BACKDATE_MS;
    const notAfter = Math.min(now + ttlMs, this.cert.notAfter.getTime());
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: `CN=${names.dns[0] ?? 'control-plane'}, O=${this.trustDomain}, OU=control-plane`,
      issuer: this.cert.subject,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([
          ...names.dns.map((value) => ({ type: 'dns' as const, value })),
          ...names.ips.map((value) => ({ type: 'ip' as const, value })),
          { type: 'url' as const, value: `spiffe://${this.trustDomain}/control-plane` },
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    const keyPem = pemOf('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    return { certPem: cert.toString('pem') + '\n', keyPem, caPem: this.certPem, notBefore, notAfter };
  }
}

/** The control plane's own TLS server certificate and its key (PKCS#8), both PEM. */
export interface ServerCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  /** The chain to send with it (the CA certificate), PEM. */
  readonly caPem: string;
  /** Wall-clock milliseconds since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
}

/** Names a server certificate is valid for: DNS names and IP addresses (the SAN). */
export interface ServerNames {
  readonly dns: readonly string[];
  readonly ips: readonly string[];
}

/** True when `certPem` was signed by `caPem` and is within its validity at `wallNow` (for tests and checks). */
export function verifyIssued(certPem: string, caPem: string, wallNow: number): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
  return Date.parse(cert.validFrom) <= wallNow && wallNow <= Date.parse(cert.validTo);
}
