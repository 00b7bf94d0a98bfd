import net from 'node:net';
import tls from 'node:tls';
import { execFile } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../control-plane/src/ca/authority.js';
import { createKeyAndCsr } from '../../sidecar/src/identity/csr.js';
import { Http1Listener, type Exchange, type ListenerOptions } from '../../sidecar/src/proxy/http1/server.js';
import { UpstreamPool } from '../../sidecar/src/proxy/http1/pool.js';
import { MeshCredentials, type MtlsMode, type TlsRefusal } from '../../sidecar/src/proxy/tls/mesh-tls.js';
import type { ParseLimits, ResponseHead } from '../../sidecar/src/proxy/http1/parser.js';
import type { UpstreamError, UpstreamHandler, UpstreamLink } from '../../sidecar/src/proxy/exchange.js';
import { systemClock } from '../../common/src/clock.js';
import { systemTimers } from '../../common/src/timers.js';

/**
 * Mutual TLS in the HTTP/1.1 engine: a listener that requires (or allows) mesh TLS and learns the client's
 * service from its certificate, and an upstream pool that only talks to the service it meant to reach.
 */

const TD = 'outrigger.local';
const LIMITS: ParseLimits = { maxHeadBytes: 16_384, maxTargetBytes: 8_192, maxHeaders: 100 };

async function credentials(ca: CertificateAuthority, service: string): Promise<MeshCredentials> {
  const { keyPem, csrPem } = await createKeyAndCsr(TD, service);
  const issued = await ca.issue(csrPem, service);
  return new MeshCredentials(TD, { certPem: issued.certPem, keyPem, caPem: ca.certPem });
}

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

/** A listener of `service` that answers every request with the caller's verified identity. */
async function meshListener(creds: MeshCredentials, mode: MtlsMode): Promise<{ port: number; refusals: TlsRefusal[] }> {
  const refusals: TlsRefusal[] = [];
  const options: ListenerOptions = {
    headerTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    bodyTimeoutMs: 5_000,
    maxConnections: 100,
    limits: LIMITS,
    tls: { mode, credentials: creds, refused: (r) => refusals.push(r) },
  };
  const listener = new Http1Listener(
    {
      onRequest(ex: Exchange) {
        const body = Buffer.from(`peer=${ex.peer ?? '(plaintext)'}`);
        ex.writeHead(200, 'OK', `content-length: ${body.length}\r\n`, 'length');
        ex.write(body);
        ex.end();
      },
      onConnect: () => undefined,
      onRefused: () => {},
    },
    options,
    { clock: systemClock, timers: systemTimers },
  );
  await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => listener.close(0));
  return { port: (listener.server.address() as AddressInfo).port, refusals };
}

/** One GET through an upstream pool; resolves with the body, or the error that ended the exchange. */
function get(pool: UpstreamPool): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    const h: UpstreamHandler = {
      onUpstreamConnected(conn: UpstreamLink) {
        conn.begin(h, false);
        conn.writeRequest('GET / HTTP/1.1\r\nhost: inventory\r\n\r\n', undefined);
      },
      onResponseHead(_head: ResponseHead) {},
      onResponseData(chunk) {
        body += chunk.toString();
      },
      onResponseEnd() {
        // The pool takes the connection back by itself.
        resolve(body);
      },
      onUpstreamError(err: UpstreamError) {
        reject(err);
      },
      onUpstreamDrain() {},
    };
    pool.acquire(h);
  });
}

function pool(port: number, creds: MeshCredentials, service: string, refusals: TlsRefusal[] = []): UpstreamPool {
  const p = new UpstreamPool('127.0.0.1', port, { maxConnections: 4, connectTimeoutMs: 2_000, idleTimeoutMs: 5_000, limits: LIMITS, tls: { credentials: creds, service, refused: (r) => refusals.push(r) } }, { clock: systemClock, timers: systemTimers });
  cleanup.push(() => p.destroy());
  return p;
}

function plainGet(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('close', () => resolve(text));
    s.on('error', () => resolve(text));
  });
}

describe('mutual TLS between sidecars', () => {
  it('the caller reaches the callee, which learns the caller\'s service; a plaintext client of a strict listener gets 403 mtls-required', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const inventory = await meshListener(await credentials(ca, 'inventory'), 'strict');
    const catalog = await credentials(ca, 'catalog');
    const p = pool(inventory.port, catalog, 'inventory');
    expect(await get(p)).toBe('peer=catalog');
    expect(await get(p)).toBe('peer=catalog');
    expect(p.size).toBe(1); // kept alive over TLS

    const plain = await plainGet(inventory.port);
    expect(plain).toMatch(/^HTTP\/1.1 403 Forbidden\r\n/);
    expect(plain).toContain('x-outrigger-error: mtls-required');
    expect(inventory.refusals).toEqual(['plaintext']);
  });

  it('a permissive listener serves TLS and plaintext clients, telling them apart', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const inventory = await meshListener(await credentials(ca, 'inventory'), 'permissive');
    expect(await get(pool(inventory.port, await credentials(ca, 'catalog'), 'inventory'))).toBe('peer=catalog');
    const plain = await plainGet(inventory.port);
    expect(plain).toMatch(/^HTTP\/1.1 200 OK/);
    expect(plain).toContain('peer=(plaintext)');
    expect(inventory.refusals).toEqual([]);
  });

  it('a certificate for another service where inventory was expected is refused by the caller', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const payments = await meshListener(await credentials(ca, 'payments'), 'strict');
    const refusals: TlsRefusal[] = [];
    const err = await get(pool(payments.port, await credentials(ca, 'catalog'), 'inventory', refusals)).then(
      () => undefined,
      (e: UpstreamError) => e,
    );
    expect(err?.message).toMatch(/is service "payments", not "inventory"/);
    expect(err?.phase).toBe('connect');
    expect(refusals).toEqual(['identity']);
  });

  it('a client with a certificate from a foreign CA is refused by the listener', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const rogueCa = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const inventory = await meshListener(await credentials(ca, 'inventory'), 'strict');
    // The rogue client trusts the real CA (so it accepts the server) but presents a rogue certificate.
    const { keyPem, csrPem } = await createKeyAndCsr(TD, 'catalog');
    const rogue = new MeshCredentials(TD, { certPem: (await rogueCa.issue(csrPem, 'catalog')).certPem, keyPem, caPem: ca.certPem });
    await expect(get(pool(inventory.port, rogue, 'inventory'))).rejects.toBeDefined();
    await expect.poll(() => inventory.refusals).toEqual(['handshake']);
  });

  it('rotating the credentials under load fails no request, and new connections present the new certificate', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const serverCreds = await credentials(ca, 'inventory');
    const inventory = await meshListener(serverCreds, 'strict');
    const clientCreds = await credentials(ca, 'catalog');
    const p = pool(inventory.port, clientCreds, 'inventory');
    const results: string[] = [];
    const failures: unknown[] = [];
    const loop = async (): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        await get(p).then((b) => results.push(b), (e: unknown) => failures.push(e));
      }
    };
    const running = Promise.all([loop(), loop(), loop(), loop()]);
    // Rotate both sides a few times while requests flow; drop idle connections so new ones handshake.
    let lastSerial = '';
    for (let r = 0; r < 3; r++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      const s = await createKeyAndCsr(TD, 'inventory');
      const issued = await ca.issue(s.csrPem, 'inventory');
      lastSerial = issued.serial;
      serverCreds.rotate({ certPem: issued.certPem, keyPem: s.keyPem, caPem: ca.certPem });
      const c = await createKeyAndCsr(TD, 'catalog');
      clientCreds.rotate({ certPem: (await ca.issue(c.csrPem, 'catalog')).certPem, keyPem: c.keyPem, caPem: ca.certPem });
      p.sweep(Number.POSITIVE_INFINITY);
    }
    await running;
    expect(inventory.refusals).toEqual([]);
    expect(failures).toEqual([]);
    expect(results.length).toBe(400);
    expect(new Set(results)).toEqual(new Set(['peer=catalog']));
    // A new connection now meets the last certificate issued to the server.
    const serial = await new Promise<string>((resolve, reject) => {
      const sock = tls.connect({ host: '127.0.0.1', port: inventory.port, secureContext: clientCreds.secureContext, checkServerIdentity: () => undefined }, () => {
        resolve(sock.getPeerCertificate().serialNumber);
        sock.destroy();
      });
      sock.on('error', reject);
    });
    expect(serial.toLowerCase().replace(/^0+/, '')).toBe(lastSerial.replace(/^0+/, ''));
  });

  it('openssl s_client against a mesh listener shows the spiffe:// URI SAN of the service', async () => {
    const ca = await CertificateAuthority.generate({ trustDomain: TD, clock: systemClock });
    const inventory = await meshListener(await credentials(ca, 'inventory'), 'strict');
    const out = await new Promise<string>((resolve) => {
      const child = execFile('sh', ['-c', `openssl s_client -connect 127.0.0.1:${inventory.port} -showcerts </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName`], { timeout: 10_000 }, (_e, stdout) => resolve(stdout));
      cleanup.push(() => child.kill());
    });
    expect(out).toContain('URI:spiffe://outrigger.local/service/inventory');
  });
});
