import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../../control-plane/src/ca/authority.js';
import { serverNames, ServerTls } from '../../../control-plane/src/tls/server-tls.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { captureLogger } from '../../helpers/logger.js';

const HOUR = 3_600_000;
const config = (over: Partial<{ grpc: string; http: string; names: string[]; certFile: string; keyFile: string }> = {}) => ({
  listen: { grpc: over.grpc ?? '127.0.0.1:15010', http: over.http ?? '127.0.0.1:15080', allowedHosts: [] },
  tls: { enabled: true, serverNames: over.names ?? [], certTtlMs: 24 * HOUR, certFile: over.certFile, keyFile: over.keyFile },
});

describe('the control plane server certificate', () => {
  it('names localhost, the loopback addresses, the listen hosts and tls.serverNames', () => {
    expect(serverNames(config({ grpc: 'cp.internal:15010', names: ['control-plane', '10.1.2.3', 'Control-Plane.'] }))).toEqual({
      dns: ['localhost', 'cp.internal', 'control-plane'],
      ips: ['127.0.0.1', '::1', '10.1.2.3'],
    });
    // A wildcard listen: every local address (at least loopback) and the host name.
    const wild = serverNames(config({ grpc: '0.0.0.0:15010' }));
    expect(wild.ips).toContain('127.0.0.1');
    expect(wild.dns.length).toBeGreaterThan(1);
  });

  it('is issued by the mesh CA for the names and renewed at half its lifetime (gRPC credentials too)', async () => {
    const clock = new FakeClock();
    const ca = await CertificateAuthority.generate({ trustDomain: 'example.org', clock });
    const { logger } = captureLogger();
    const tls = await ServerTls.open(config({ names: ['control-plane'] }), ca, clock, clock, logger);
    try {
      const first = new X509Certificate(tls.certPem);
      expect(first.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
      expect(first.subjectAltName).toBe('DNS:localhost, DNS:control-plane, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://example.org/control-plane');
      expect(first.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
      expect(Date.parse(first.validTo) - clock.wallNow()).toBeLessThanOrEqual(24 * HOUR);
      const updates: unknown[] = [];
      tls.grpcCredentials._addWatcher((o) => updates.push(o));
      clock.advance(11 * HOUR);
      await new Promise((r) => setTimeout(r, 50));
      expect(tls.certPem).toBe(first.toString());
      clock.advance(1 * HOUR + 1_000);
      // Issuing is asynchronous (WebCrypto).
      for (let i = 0; i < 100 && tls.certPem === first.toString(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(tls.certPem).not.toBe(first.toString());
      expect(new X509Certificate(tls.certPem).serialNumber).not.toBe(first.serialNumber);
      expect(updates).toHaveLength(1);
    } finally {
      tls.close();
    }
  });

  it("serves an operator's certificate files, refuses a key that is not the certificate's, and takes over changed files", async () => {
    const clock = new FakeClock();
    const ca = await CertificateAuthority.generate({ trustDomain: 'outrigger.local', clock });
    const a = await ca.issueServer({ dns: ['cp.example'], ips: [] }, HOUR);
    const b = await ca.issueServer({ dns: ['cp.example'], ips: [] }, HOUR);
    const dir = mkdtempSync(join(tmpdir(), 'outrigger-server-tls-'));
    const certFile = join(dir, 'cp.crt');
    const keyFile = join(dir, 'cp.key');
    writeFileSync(certFile, a.certPem);
    writeFileSync(keyFile, b.keyPem);
    const { logger } = captureLogger();
    await expect(ServerTls.open(config({ certFile, keyFile }), ca, clock, clock, logger)).rejects.toThrow(`tls.keyFile: ${keyFile} is not the key of the certificate in ${certFile}`);
    writeFileSync(keyFile, a.keyPem);
    const tls = await ServerTls.open(config({ certFile, keyFile }), ca, clock, clock, logger);
    try {
      expect(tls.certPem).toBe(a.certPem);
      writeFileSync(certFile, b.certPem);
      writeFileSync(keyFile, b.keyPem);
      clock.advance(60_000);
      for (let i = 0; i < 100 && tls.certPem === a.certPem; i++) await new Promise((r) => setTimeout(r, 10));
      expect(tls.certPem).toBe(b.certPem);
    } finally {
      tls.close();
    }
  });
});
