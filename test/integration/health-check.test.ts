import { createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../sidecar/src/cluster/cluster.js';
import { parseServiceConfig } from '../../common/src/config/load.js';
import { systemClock } from '../../common/src/clock.js';
import { HealthFlag } from '../../sidecar/src/core/endpoint.js';
import { systemRandom } from '../../common/src/random.js';
import { systemTimers } from '../../common/src/timers.js';
import { ActiveHealthChecker, type ActiveCheckEvent } from '../../sidecar/src/health/active/checker.js';
import { freePort, startUpstream, waitFor, type Upstream } from '../helpers/net.js';

/**
 * Checks every 50 ms, 2 to flip either way. The timeout is long (2 s) so that a check answered late on a
 * busy machine is not counted as a failure; the timeout test sets its own short one.
 */
const BASE = { interval: '50ms', timeout: '2s', healthyThreshold: 2, unhealthyThreshold: 2 };

const checkers: ActiveHealthChecker[] = [];
const upstreams: Upstream[] = [];
const events: ActiveCheckEvent[] = [];

function checked(healthCheck: Record<string, unknown>, address: string) {
  const config = parseServiceConfig({ endpoints: [{ address }], healthCheck: { ...BASE, ...healthCheck } }, 'test');
  const cluster = new Cluster('svc', config, { clock: systemClock, random: systemRandom });
  const checker = new ActiveHealthChecker(cluster, { clock: systemClock, timers: systemTimers, random: systemRandom, log: (e) => events.push(e) });
  checkers.push(checker);
  checker.start();
  const ep = cluster.endpoints[0]!;
  return { cluster, checker, ep, status: () => checker.statusOf(address)! };
}

async function upstream(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const up = await startUpstream(...args);
  upstreams.push(up);
  return up;
}

afterEach(() => {
  for (const c of checkers.splice(0)) c.stop();
});

afterAll(async () => {
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

describe('HTTP health check', () => {
  let status = 200;
  let up: Upstream;
  const seen: { host: string | undefined; ua: string | undefined; path: string | undefined; method: string | undefined }[] = [];

  beforeAll(async () => {
    up = await upstream((req, res) => {
      seen.push({ host: req.headers.host, ua: req.headers['user-agent'], path: req.url, method: req.method });
      if (req.url === '/slow') return; // never answers
      if (req.url === '/no-content') {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(req.url === '/healthz' ? status : 404, { 'content-type': 'text/plain' });
      res.end('x'.repeat(100_000)); // a body larger than what the checker drains
    });
  });

  it('marks an endpoint answering 503 ineligible and eligible again when it recovers', async () => {
    const { ep, status: st } = checked({ http: { path: '/healthz' } }, up.address);
    await waitFor(() => st().checks >= 2);
    expect(ep.eligible).toBe(true);

    status = 503;
    await waitFor(() => !ep.eligible);
    expect(ep.flags).toBe(HealthFlag.ActiveCheck);
    expect(st()).toMatchObject({ healthy: false, lastResult: { healthy: false, detail: 'HTTP 503 (expected 200)' } });
    expect(events).toContainEqual(expect.objectContaining({ type: 'ejected', endpoint: up.address, reason: 'HTTP 503 (expected 200)', consecutive: 2 }));

    status = 200;
    await waitFor(() => ep.eligible);
    expect(st()).toMatchObject({ healthy: true, lastResult: { healthy: true, detail: 'HTTP 200' } });
    expect(events).toContainEqual(expect.objectContaining({ type: 'readmitted', endpoint: up.address, reason: 'HTTP 200' }));
    const last = st().lastCheckAt!;
    expect(Math.abs(last - systemClock.wallNow())).toBeLessThan(30_000); // a wall-clock time, not a monotonic one
  });

  it('sends GET with the configured host header and its user agent', async () => {
    seen.length = 0;
    const { status: st } = checked({ http: { path: '/healthz', host: 'health.internal' } }, up.address);
    await waitFor(() => st().checks >= 1);
    expect(seen[0]).toEqual({ host: 'health.internal', ua: 'outrigger-health-check', path: '/healthz', method: 'GET' });
  });

  it('sends the endpoint address as host header by default', async () => {
    seen.length = 0;
    const { status: st } = checked({ http: { path: '/healthz' } }, up.address);
    await waitFor(() => st().checks >= 1);
    expect(seen[0]?.host).toBe(up.address);
  });

  it('is healthy only for the expected statuses', async () => {
    const accepting = checked({ http: { path: '/no-content', expectedStatuses: [200, 204] } }, up.address);
    const strict = checked({ http: { path: '/no-content' } }, up.address);
    await waitFor(() => !strict.ep.eligible);
    expect(strict.status().lastResult?.detail).toBe('HTTP 204 (expected 200)');
    await waitFor(() => accepting.status().checks >= 3);
    expect(accepting.ep.eligible).toBe(true);
    expect(accepting.status().lastResult).toEqual({ healthy: true, detail: 'HTTP 204' });

    const notFound = checked({ http: { path: '/missing', expectedStatuses: [404] } }, up.address);
    await waitFor(() => notFound.status().checks >= 3);
    expect(notFound.ep.eligible).toBe(true);
  });

  it('counts a response slower than the timeout as a failure', async () => {
    const { ep, status: st } = checked({ http: { path: '/slow' }, timeout: '100ms' }, up.address);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult).toEqual({ healthy: false, detail: 'timeout' });
    expect(st().lastDurationMs).toBeGreaterThanOrEqual(90);
  });

  it('counts a refused connection as a failure', async () => {
    const port = await freePort();
    const { ep, status: st } = checked({ http: { path: '/healthz' } }, `127.0.0.1:${port}`);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult).toEqual({ healthy: false, detail: 'ECONNREFUSED' });
  });
});

describe('TCP health check', () => {
  it('marks a closed port ineligible, and eligible once a server listens on it', async () => {
    const port = await freePort();
    const { ep, status: st } = checked({ tcp: {} }, `127.0.0.1:${port}`);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult).toEqual({ healthy: false, detail: 'ECONNREFUSED' });

    const up = await upstream((_req, res) => res.end(), port);
    await waitFor(() => ep.eligible);
    expect(st().lastResult).toEqual({ healthy: true, detail: 'connected' });
    expect(up.count).toBe(0); // connects only, never sends a request
  });
});

describe('gRPC health check', () => {
  const serving = new Map<string, number>(); // service → ServingStatus; absent → NOT_FOUND
  const requests: { service: string; headers: IncomingHttpHeaders }[] = [];
  const sessions = new Set<Http2Session>();
  let server: Http2Server;
  let address: string;

  /** grpc.health.v1 request: 5-byte prefix, then optional field 1 (short names only). */
  function requestedService(body: Buffer): string {
    const msg = body.subarray(5, 5 + body.readUInt32BE(1));
    if (msg.length === 0) return '';
    if (msg[0] !== 0x0a) throw new Error('unexpected field');
    return msg.subarray(2, 2 + msg[1]!).toString('utf8');
  }

  beforeAll(async () => {
    server = createH2Server();
    server.on('session', (s) => {
      sessions.add(s);
      s.on('close', () => sessions.delete(s));
    });
    server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (headers[':path'] !== '/grpc.health.v1.Health/Check') {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
          return;
        }
        const service = requestedService(Buffer.concat(chunks));
        requests.push({ service, headers });
        const status = serving.get(service);
        if (status === undefined) {
          // trailers-only response, as grpc servers answer an unknown service
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'unknown%20service' }, { endStream: true });
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, status]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const s of sessions) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('follows SERVING / NOT_SERVING of the named service', async () => {
    serving.set('orders.v1.Orders', 1);
    const { ep, status: st } = checked({ grpc: { service: 'orders.v1.Orders' } }, address);
    await waitFor(() => st().checks >= 2);
    expect(ep.eligible).toBe(true);
    expect(st().lastResult).toEqual({ healthy: true, detail: 'SERVING' });
    const req = requests.find((r) => r.service === 'orders.v1.Orders')!;
    expect(req.headers['content-type']).toBe('application/grpc');
    expect(req.headers.te).toBe('trailers');
    expect(req.headers[':method']).toBe('POST');

    serving.set('orders.v1.Orders', 2);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult).toEqual({ healthy: false, detail: 'NOT_SERVING' });

    serving.set('orders.v1.Orders', 1);
    await waitFor(() => ep.eligible);
    // one session per check, closed afterwards
    await waitFor(() => sessions.size === 0);
  });

  it('asks about the whole server with an empty service name', async () => {
    serving.set('', 1);
    const { status: st } = checked({ grpc: {} }, address);
    await waitFor(() => st().checks >= 1);
    expect(st().lastResult).toEqual({ healthy: true, detail: 'SERVING' });
    expect(requests.some((r) => r.service === '')).toBe(true);
  });

  it('is unhealthy when the service is unknown (grpc-status NOT_FOUND)', async () => {
    const { ep, status: st } = checked({ grpc: { service: 'nope.v1.Nope' } }, address);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult).toEqual({ healthy: false, detail: 'grpc-status 5 NOT_FOUND: unknown service' });
  });

  it('is unhealthy against a server that does not speak HTTP/2', async () => {
    const h1 = await upstream((_req, res) => res.end('hello'));
    const { ep, status: st } = checked({ grpc: {} }, h1.address);
    await waitFor(() => !ep.eligible);
    expect(st().lastResult?.healthy).toBe(false);
  });
});
