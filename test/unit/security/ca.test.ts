import { webcrypto, X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { CaError, CertificateAuthority, verifyIssued } from '../../../control-plane/src/ca/authority.js';
import { createKeyAndCsr } from '../../../sidecar/src/identity/csr.js';
import { identityOf, parseSpiffeId, spiffeId, uriSans } from '../../../common/src/security/spiffe.js';
import { systemClock } from '../../../common/src/clock.js';
import { FakeClock } from '../../helpers/fake-clock.js';

const TD = 'outrigger.local';
const DAY = 24 * 3600_000;

describe('SPIFFE identities', () => {
  it('builds and parses service IDs, and refuses what is not one', () => {
    expect(spiffeId(TD, 'orders')).toBe('spiffe://outrigger.local/service/orders');
    expect(parseSpiffeId('spiffe://outrigger.local/service/orders')).toEqual({ trustDomain: TD, service: 'orders' });
    for (const bad of ['http://outrigger.local/service/a', 'spiffe://outrigger.local/ns/a', 'spiffe://outrigger.local/service/a/b', 'spiffe:///service/a', 'spiffe://TD/service/a']) {
      expect(parseSpiffeId(bad), bad).toBeUndefined();
    }
    expect(() => spiffeId(TD, 'Orders')).toThrow(/invalid service name/);
  });

  it('reads URI SANs from the subjectaltname string, quoted or not', () => {
    expect(uriSans('DNS:a.example, URI:spiffe://outrigger.local/service/a, IP Address:127.0.0.1')).toEqual(['spiffe://outrigger.local/service/a']);
    expect(uriSans('URI:"spiffe://x/service/a,b", URI:spiffe://y/service/c')).toEqual(['spiffe://x/service/a,b', 'spiffe://y/service/c']);
    expect(uriSans(undefined)).toEqual([]);
    expect(identityOf('URI:spiffe://outrigger.local/service/a', TD)).toEqual({ service: 'a' });
    expect(identityOf('URI:spiffe://other.domain/service/a', TD)).toMatchObject({ error: expect.stringMatching(/trust domain other.domain/) });
    expect(identityOf('DNS:a', TD)).toMatchObject({ error: expect.stringMatching(/no spiffe/) });
    expect(identityOf('URI:spiffe://outrigger.local/service/a, URI:spiffe://outrigger.local/service/b', TD)).toMatchObject({ error: expect.stringMatching(/2 spiffe/) });
  });
});

describe('the certificate authority', () => {
  it('issues a certificate for the entitled service, whatever the CSR asks for, valid for the TTL', async () => {
    const clock = new FakeClock(0, Date.UTC(2026, 11, 3));
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock });
    // The CSR asks for "payments"; the caller is entitled to "orders" only.
    const { csrPem, keyPem } = await createKeyAndCsr(TD, 'payments');
    expect(keyPem).toContain('BEGIN PRIVATE KEY');
    const issued = await ca.issue(csrPem, 'orders', DAY);
    const cert = new X509Certificate(issued.certPem);
    expect(cert.subjectAltName).toBe('URI:spiffe://outrigger.local/service/orders');
    expect(issued.spiffeId).toBe('spiffe://outrigger.local/service/orders');
    expect(issued.notAfter - clock.wallNow()).toBe(DAY);
    expect(Date.parse(cert.validTo)).toBe(issued.notAfter - (issued.notAfter % 1000));
    expect(verifyIssued(issued.certPem, ca.certPem, clock.wallNow())).toBe(true);
    expect(verifyIssued(issued.certPem, ca.certPem, clock.wallNow() + 2 * DAY)).toBe(false);
    expect(cert.ca).toBe(false);
    // Another CA's certificate does not verify this one.
    const other = await CertificateAuthority.generate({ trustDomain: TD, clock });
    expect(verifyIssued(issued.certPem, other.certPem, clock.wallNow())).toBe(false);
  });

  it('refuses a CSR that is malformed, not signed by its own key, or for an RSA key', async () => {
    const clock = new FakeClock(0, Date.UTC(2026, 11, 3));
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock });
    await expect(ca.issue('not a csr', 'orders')).rejects.toThrow(CaError);
    // Tamper with the signed part: the signature no longer verifies.
    const { csrPem } = await createKeyAndCsr(TD, 'orders');
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const raw = Buffer.from(csr.rawData);
    const at = raw.indexOf(Buffer.from('orders'));
    raw.write('ORDERS', at);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${raw.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(ca.issue(tampered, 'orders')).rejects.toThrow(/not signed by the key it carries/);
    const rsa = (await webcrypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const rsaCsr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=orders', keys: rsa, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } });
    await expect(ca.issue(rsaCsr.toString('pem'), 'orders')).rejects.toThrow(/ECDSA P-256 or P-384/);
  });

  it('reloads from its stored material, and refuses a key that is not its certificate\'s', async () => {
    const clock = new FakeClock(0, Date.UTC(2026, 11, 3));
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock });
    const again = await CertificateAuthority.load(ca.material(), { trustDomain: TD, clock });
    const { csrPem } = await createKeyAndCsr(TD, 'orders');
    const issued = await again.issue(csrPem, 'orders');
    expect(verifyIssued(issued.certPem, ca.certPem, clock.wallNow())).toBe(true);
    const other = await CertificateAuthority.generate({ trustDomain: TD, clock });
    await expect(CertificateAuthority.load({ certPem: ca.certPem, keyPem: other.material().keyPem }, { trustDomain: TD, clock })).rejects.toThrow(/does not belong/);
    await expect(CertificateAuthority.load({ certPem: issued.certPem, keyPem: ca.material().keyPem }, { trustDomain: TD, clock })).rejects.toThrow(/not a CA certificate/);
    await expect(CertificateAuthority.load({ certPem: 'x', keyPem: ca.material().keyPem }, { trustDomain: TD, clock })).rejects.toThrow(/not a PEM X.509/);
  });
});

/** A TLS server that requires a client certificate from `ca`, answering with the caller's identity. */
async function identityServer(ca: string, key: string, cert: string): Promise<{ port: number; close: () => void }> {
  const server = tls.createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (socket) => {
    const id = identityOf(socket.getPeerCertificate().subjectaltname, TD);
    socket.end('service' in id ? `hello ${id.service}` : `refused: ${id.error}`);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

function call(port: number, opts: tls.ConnectionOptions): Promise<{ text: string; peer: string | undefined } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined, ...opts }, () => {
      const peer = socket.getPeerCertificate().subjectaltname;
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (text += d));
      socket.on('end', () => resolve({ text, peer }));
    });
    socket.on('error', (err) => resolve({ error: err.message }));
  });
}

describe('mutual TLS with issued certificates', () => {
  it('each side sees the other\'s service identity; a foreign CA or an expired certificate is refused', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const serverCsr = await createKeyAndCsr(TD, 'inventory');
    const serverCert = await ca.issue(serverCsr.csrPem, 'inventory');
    const server = await identityServer(ca.certPem, serverCsr.keyPem, serverCert.certPem);
    try {
      const clientCsr = await createKeyAndCsr(TD, 'catalog');
      const clientCert = await ca.issue(clientCsr.csrPem, 'catalog');
      const ok = await call(server.port, { ca: ca.certPem, key: clientCsr.keyPem, cert: clientCert.certPem });
      expect(ok).toEqual({ text: 'hello catalog', peer: 'URI:spiffe://outrigger.local/service/inventory' });
      // The caller meant "payments" but reached "inventory": its own check sees the mismatch.
      if ('peer' in ok) expect(identityOf(ok.peer, TD)).toEqual({ service: 'inventory' });

      // No client certificate: refused by the server.
      const none = await call(server.port, { ca: ca.certPem });
      expect('error' in none || ('text' in none && none.text === '')).toBe(true);

      // A certificate from another CA: refused.
      const rogue = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
      const rogueCsr = await createKeyAndCsr(TD, 'catalog');
      const rogueCert = await rogue.issue(rogueCsr.csrPem, 'catalog');
      const foreign = await call(server.port, { ca: ca.certPem, key: rogueCsr.keyPem, cert: rogueCert.certPem });
      expect('error' in foreign || ('text' in foreign && foreign.text === '')).toBe(true);

      // An expired certificate from the right CA: refused.
      const past = { now: () => 0, wallNow: () => systemClock.wallNow() - 3 * DAY };
      const oldCa = await CertificateAuthority.load(ca.material(), { trustDomain: TD, clock: past });
      const oldCsr = await createKeyAndCsr(TD, 'catalog');
      const oldCert = await oldCa.issue(oldCsr.csrPem, 'catalog', DAY);
      const expired = await call(server.port, { ca: ca.certPem, key: oldCsr.keyPem, cert: oldCert.certPem });
      expect('error' in expired || ('text' in expired && expired.text === '')).toBe(true);

      // And the client refuses a server whose certificate is not from the mesh CA.
      const rogueServer = await identityServer(ca.certPem, rogueCsr.keyPem, rogueCert.certPem);
      try {
        const r = await call(rogueServer.port, { ca: ca.certPem, key: clientCsr.keyPem, cert: clientCert.certPem });
        expect(r).toMatchObject({ error: expect.stringMatching(/certificate/i) });
      } finally {
        rogueServer.close();
      }
    } finally {
      server.close();
    }
  });
});
