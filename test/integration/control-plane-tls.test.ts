/**
 * The control plane's own TLS, end to end with a real control plane process: its gRPC stream and HTTP API
 * are served over TLS with a certificate from its mesh CA, so a plaintext client cannot even connect; a
 * sidecar pins the CA from controlPlane.caFile or fetches it once with its join token (GetCA, an HMAC of the
 * CA keyed with the token), and refuses a foreign CA or a CA whose signature does not match; ctl pins
 * --ca-file; openssl sees the CA-issued certificate; the certificate is renewed at half its lifetime.
 */
import { credentials, Metadata, Server, ServerCredentials, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiscoveryClient, DiscoveryService, type DiscoveryServer, type GetCAResponse } from '../../proto/gen/outrigger/v1/discovery.js';
import { systemClock } from '../../common/src/clock.js';
import { parseSidecarConfig } from '../../common/src/config/load.js';
import { CertificateAuthority } from '../../control-plane/src/ca/authority.js';
import { Sidecar } from '../../sidecar/src/main.js';
import { discoveryClient, sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runCtl } from '../helpers/ctl.js';
import { captureLogger } from '../helpers/logger.js';
import { freePort, waitFor } from '../helpers/net.js';
import { ports, spawnSidecar } from '../helpers/sidecar.js';
import { TEST_ADMIN_TOKEN, TEST_SIDECAR_TOKEN } from '../helpers/tokens.js';

const dir = mkdtempSync(join(tmpdir(), 'outrigger-cp-tls-'));

/** A CA certificate the control plane did not make, as a file. */
async function foreignCa(): Promise<{ ca: CertificateAuthority; file: string }> {
  const ca = await CertificateAuthority.generate({ trustDomain: 'outrigger.local', clock: systemClock });
  const file = join(dir, `foreign-${Math.floor(performance.now())}.crt`);
  writeFileSync(file, ca.certPem);
  return { ca, file };
}

/** An in-process sidecar of `service` that subscribes to inventory, with the given extra controlPlane keys; its logs are kept. */
async function sidecar(grpc: string, service: string, controlPlaneExtra: string): Promise<{ sidecar: Sidecar; lines: Record<string, unknown>[] }> {
  const p = await ports();
  const { lines, logger } = captureLogger();
  const config = parseSidecarConfig(
    `service: ${service}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
      `controlPlane: { addresses: [${grpc}], subscribe: [inventory]${controlPlaneExtra === '' ? '' : `, ${controlPlaneExtra}`} }\nservices: {}\n`,
    'sidecar.yaml',
  );
  return { sidecar: await Sidecar.start({ config, logger }), lines };
}

/** The connected sidecars the control plane lists (by service). */
async function connectedServices(cp: ControlPlaneProcess): Promise<string[]> {
  const r = await sendApi(cp.http, { path: '/api/sidecars' });
  const body = JSON.parse(r.body) as { sidecars: { instance: { service: string } | null; ackedVersion: string | null }[] };
  return body.sidecars.filter((s) => s.ackedVersion !== null).map((s) => s.instance?.service ?? '');
}

const messages = (lines: readonly Record<string, unknown>[]): string => lines.map((l) => String(l['msg'])).join('\n');

/** `openssl s_client` against `address`, verifying with `caFile`: its output and the leaf certificate it got. */
function sClient(address: string, caFile: string, alpn?: string): Promise<{ out: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', ['s_client', '-connect', address, '-CAfile', caFile, '-showcerts', ...(alpn === undefined ? [] : ['-alpn', alpn])], { timeout: 10_000 }, (err, stdout) => {
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout);
      if (pem === null) return reject(err ?? new Error(`no certificate in: ${stdout}`));
      resolve({ out: stdout, cert: new X509Certificate(pem[0]) });
    });
    child.stdin?.end();
  });
}

/** The serial number of the certificate served at `address`, verified against `caPem`. */
function servedSerial(address: string, caPem: string): Promise<string> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), ca: caPem, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

describe("the control plane's TLS", () => {
  let cp: ControlPlaneProcess;
  const started: Sidecar[] = [];

  beforeAll(async () => {
    cp = await spawnControlPlane('services:\n  inventory:\n    endpoints: [ { address: 127.0.0.1:9001 } ]\n');
  }, 20_000);

  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await cp?.stop();
  });

  it('refuses a plaintext gRPC client: it cannot connect, nothing reaches the registry', async () => {
    const client = new DiscoveryClient(cp.grpc, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${TEST_ADMIN_TOKEN}`);
    const call = client.stream(metadata, { deadline: systemClock.wallNow() + 5_000 });
    const err = await new Promise<ServiceError>((resolve) => {
      call.on('error', resolve);
      call.on('data', () => {});
      call.write({ msg: { $case: 'hello', hello: { instance: undefined, subscriptions: ['inventory'], lastVersion: '', service: 'intruder' } } });
    });
    client.close();
    expect([GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.INTERNAL]).toContain(err.code);
    expect(cp.stdout).not.toContain('intruder');
    // The same client over TLS pinned to the CA gets its snapshot.
    const pinned = discoveryClient(cp.grpc);
    const ok = pinned.stream(metadata);
    const first = await new Promise<string>((resolve, reject) => {
      ok.on('data', (m: { msg?: { $case: string } }) => resolve(m.msg?.$case ?? ''));
      ok.on('error', reject);
      const instance = { service: 'pinned', id: 'pinned-1', address: '127.0.0.1:1', weight: 1, capacity: 1, zone: '', mtls: '' };
      ok.write({ msg: { $case: 'hello', hello: { instance, subscriptions: ['inventory'], lastVersion: '', service: 'pinned' } } });
    });
    ok.cancel();
    pinned.close();
    expect(first).toBe('snapshot');
  });

  it('a sidecar with controlPlane.caFile of the mesh CA connects and gets its routes', async () => {
    const s = await sidecar(cp.grpc, 'with-ca-file', `caFile: ${cp.caFile ?? ''}`);
    started.push(s.sidecar);
    await waitFor(async () => (await connectedServices(cp)).includes('with-ca-file'), 10_000);
    expect(messages(s.lines)).not.toContain('control plane CA pinned');
  });

  it('a sidecar with a foreign CA in controlPlane.caFile does not connect, says why, and never sends its token', async () => {
    const { file } = await foreignCa();
    const s = await sidecar(cp.grpc, 'foreign-ca', `caFile: ${file}`);
    started.push(s.sidecar);
    await waitFor(() => messages(s.lines).includes("the control plane's certificate is not trusted"), 10_000);
    const line = s.lines.find((l) => String(l['msg']).includes('not trusted'));
    expect(String(line?.['err'])).toMatch(/certificate|self.signed|verify/i);
    // No stream of this sidecar reached the control plane, authenticated or refused.
    expect(cp.stdout).not.toContain('foreign-ca');
    expect(await connectedServices(cp)).not.toContain('foreign-ca');
    await s.sidecar.stop();
  });

  it('join-token bootstrap: a sidecar without caFile pins the CA its token verifies and gets its routes; with a token the control plane does not know it refuses the CA', async () => {
    const good = await sidecar(cp.grpc, 'bootstrapped', `token: ${TEST_SIDECAR_TOKEN}`);
    started.push(good.sidecar);
    await waitFor(async () => (await connectedServices(cp)).includes('bootstrapped'), 10_000);
    const pinned = good.lines.find((l) => l['msg'] === "control plane CA pinned (join-token bootstrap: its signature matches this sidecar's token)");
    expect(pinned?.['token']).toBe('test-sidecar');
    expect(pinned?.['fingerprint']).toBe(new X509Certificate(readFileSync(cp.caFile ?? '')).fingerprint256);

    const wrong = await sidecar(cp.grpc, 'wrong-token', 'token: not-a-token-of-this-control-plane-0123');
    await waitFor(() => messages(wrong.lines).includes('refused the CA certificate'), 10_000);
    expect(messages(wrong.lines)).toMatch(/none of its 2 signature\(s\) matches this sidecar's token/);
    await wrong.sidecar.stop();
    // It never opened a stream: the wrong token was not even sent.
    expect(cp.stdout).not.toContain('wrong-token');
  });

  it('a sidecar process bootstraps with its token file and prints nothing on stderr (no warning about the IP address as TLS server name)', async () => {
    const p = await ports();
    const tokenFile = join(dir, 'sidecar.token');
    writeFileSync(tokenFile, `${TEST_SIDECAR_TOKEN}\n`);
    const proc = await spawnSidecar(
      `service: process-bootstrap\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
        `controlPlane: { addresses: [${cp.grpc}], subscribe: [inventory], tokenFile: ${tokenFile} }\nlog: { level: info }\nservices: {}\n`,
      p.admin,
    );
    try {
      await waitFor(async () => (await connectedServices(cp)).includes('process-bootstrap'), 10_000);
      expect(proc.stdout).toContain('control plane CA pinned');
    } finally {
      await proc.stop();
    }
    expect(proc.stderr).not.toContain('DEP0123');
    expect(proc.stderr).not.toContain('Warning');
  });

  it('join-token bootstrap: a control plane in the middle that swaps the CA is refused, and never gets a stream', async () => {
    // The real answer, with the signatures of the real CA...
    const real = await new Promise<GetCAResponse>((resolve, reject) => {
      const c = discoveryClient(cp.grpc);
      c.getCa({}, (err, res) => (err !== null ? reject(err) : resolve(res)));
    });
    expect(real.signatures.map((s) => s.token).sort()).toEqual(['test-admin', 'test-sidecar']);
    // ...relayed by an impostor with its own CA and certificate.
    const { ca } = await foreignCa();
    const cert = await ca.issueServer({ dns: ['localhost'], ips: ['127.0.0.1'] }, 3_600_000);
    let streams = 0;
    const impostor = new Server();
    const impl: DiscoveryServer = {
      stream: (call) => {
        streams++;
        call.end();
      },
      getCa: (_call, callback) => callback(null, { caPem: ca.certPem, signatures: real.signatures }),
    };
    impostor.addService(DiscoveryService, impl);
    const port = await freePort();
    await new Promise<void>((resolve, reject) =>
      impostor.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createSsl(null, [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }]), (err) => (err ? reject(err) : resolve())),
    );
    try {
      const s = await sidecar(`127.0.0.1:${port}`, 'victim', `token: ${TEST_SIDECAR_TOKEN}`);
      await waitFor(() => messages(s.lines).includes('refused the CA certificate'), 10_000);
      await s.sidecar.stop();
      expect(streams).toBe(0);
    } finally {
      impostor.forceShutdown();
    }
  });

  it('openssl s_client sees a certificate issued by the mesh CA on both ports, verified with mesh-ca.crt', async () => {
    for (const [address, alpn] of [
      [cp.http, undefined],
      [cp.grpc, 'h2'],
    ] as const) {
      const { out, cert } = await sClient(address, cp.caFile ?? '', alpn);
      expect(out).toContain('Verify return code: 0 (ok)');
      expect(cert.issuer).toContain('CN=Outrigger mesh CA');
      expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
      expect(cert.subjectAltName).toContain('DNS:localhost');
      expect(cert.subjectAltName).toContain('URI:spiffe://outrigger.local/control-plane');
    }
  });

  it('ctl pins --ca-file; with a foreign CA (or none) it fails in one line, exit 2', async () => {
    const ok = await runCtl(['--server', cp.http, '--ca-file', cp.caFile ?? '', 'services']);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^inventory /m);
    const { file } = await foreignCa();
    const [foreign, none] = await Promise.all([
      runCtl(['--server', cp.http, '--ca-file', file, 'services']),
      runCtl(['--server', cp.http, 'services'], { env: { OUTRIGGER_CA_FILE: '' } }),
    ]);
    expect(foreign.status).toBe(2);
    expect(foreign.stderr).toMatch(new RegExp(`^outrigger ctl: the control plane's TLS certificate at ${cp.http} is not signed by the CA in ${file} \\([A-Z_]+: [^\\n]+\\)\\n$`));
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/^outrigger ctl: the control plane's TLS certificate at \S+ is not trusted \([^\n]+\); give --ca-file with its mesh CA \(mesh-ca\.crt beside its state\) or set OUTRIGGER_CA_FILE\n$/);
  });
});

describe("the control plane's TLS: renewal, and off", () => {
  it('renews its server certificate at half its lifetime on both ports, and a connected sidecar stays connected', async () => {
    const cp = await spawnControlPlane('tls: { certTtl: 4s }\n');
    const s = await sidecar(cp.grpc, 'rotating', '');
    try {
      const caPem = readFileSync(cp.caFile ?? '', 'utf8');
      const [http0, grpc0] = [await servedSerial(cp.http, caPem), await servedSerial(cp.grpc, caPem)];
      await waitFor(async () => (await servedSerial(cp.http, caPem)) !== http0 && (await servedSerial(cp.grpc, caPem)) !== grpc0, 15_000, 200);
      // The stream opened before the renewal lives on (no reconnect), and new connections verify.
      await waitFor(async () => (await connectedServices(cp)).includes('rotating'), 10_000);
      expect(messages(s.lines)).not.toContain('lost the control plane');
    } finally {
      await s.sidecar.stop();
      await cp.stop();
    }
  }, 30_000);

  it('with tls: { enabled: false } both listeners speak plaintext: a sidecar with controlPlane.tls: false connects, ctl takes http://', async () => {
    const cp = await spawnControlPlane('tls: { enabled: false }\nservices:\n  inventory:\n    endpoints: [ { address: 127.0.0.1:9001 } ]\n');
    const s = await sidecar(cp.grpc, 'plaintext', 'tls: false');
    try {
      await waitFor(async () => (await connectedServices(cp)).includes('plaintext'), 10_000);
      const r = await runCtl(['--server', `http://${cp.http}`, 'services']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^inventory /m);
      expect(cp.stdout).toContain('TLS is disabled');
    } finally {
      await s.sidecar.stop();
      await cp.stop();
    }
  }, 30_000);
});
