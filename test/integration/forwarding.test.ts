import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { echo, freePort, send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

describe('outbound forwarding', () => {
  let a: Upstream;
  let b: Upstream;
  let slow: Upstream;
  let sidecar: Sidecar;
  let out: string;
  let svcPort: number;
  let deadPort: number;
  const closedByUpstream: string[] = [];

  beforeAll(async () => {
    a = await startUpstream(echo('a'));
    b = await startUpstream(echo('b'));
    // Never answers; records when the sidecar gives up on the request.
    slow = await startUpstream((req) => {
      req.socket.on('close', () => closedByUpstream.push(req.url ?? ''));
    });
    deadPort = await freePort();
    svcPort = await freePort();
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
log: { level: silent }
services:
  orders:
    lb: round-robin
    listen: 127.0.0.1:${svcPort}
    endpoints: [ { address: ${a.address} }, { address: ${b.address} } ]
  dead:
    endpoints: [ { address: 127.0.0.1:${deadPort} } ]
  half:
    lb: round-robin
    endpoints: [ { address: 127.0.0.1:${deadPort} }, { address: ${a.address} } ]
  hang:
    endpoints: [ { address: ${slow.address} } ]
`);
    out = sidecar.addresses.outbound;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await Promise.all([a.close(), b.close(), slow.close()]);
  });

  it('routes by Host header and balances over the endpoints', async () => {
    const names = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await send(out, { path: '/x?y=1', headers: { host: 'orders' } });
      expect(r.status).toBe(200);
      const body = JSON.parse(r.body) as { name: string; url: string };
      expect(body.url).toBe('/x?y=1');
      names.add(body.name);
    }
    expect(names).toEqual(new Set(['a', 'b']));
  });

  it('routes by Host header with a port, case-insensitively', async () => {
    const r = await send(out, { headers: { host: 'ORDERS:80' } });
    expect(r.status).toBe(200);
  });

  it('routes absolute-form targets as an HTTP_PROXY would send them', async () => {
    const r = await send(out, { path: 'http://orders/p/q?r=s', headers: { host: 'orders' } });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { url: string }).url).toBe('/p/q?r=s');
  });

  it('routes everything arriving on a per-service port to that service', async () => {
    const r = await send(`127.0.0.1:${svcPort}`, { path: '/direct', headers: { host: 'anything' } });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { url: string }).url).toBe('/direct');
  });

  it('answers 404 unknown-service for a service it does not know', async () => {
    const r = await send(out, { headers: { host: 'nowhere' } });
    expect(r.status).toBe(404);
    expect(r.headers['x-outrigger-error']).toBe('unknown-service');
    expect(JSON.parse(r.body)).toMatchObject({ error: 'unknown-service' });
  });

  it('answers 502 connect-failure when the endpoint refuses', async () => {
    const r = await send(out, { headers: { host: 'dead' } });
    expect(r.status).toBe(502);
    expect(r.headers['x-outrigger-error']).toBe('connect-failure');
  });

  it('retries a POST without idempotency-key only when the connection failed before any byte was sent', async () => {
    // Round-robin over a refusing endpoint and a live one: every POST must arrive once, body intact.
    for (let i = 0; i < 4; i++) {
      const r = await send(out, { method: 'POST', headers: { host: 'half', 'content-type': 'text/plain' }, body: `payload-${i}` });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ name: 'a', method: 'POST', body: `payload-${i}` });
    }
  });

  it('removes hop-by-hop headers and adds x-forwarded-*, x-request-id; passes traceparent', async () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await send(out, {
      headers: {
        host: 'orders',
        connection: 'keep-alive, x-secret',
        'keep-alive': 'timeout=5',
        'x-secret': 'hop',
        te: 'gzip',
        'proxy-connection': 'keep-alive',
        'x-forwarded-for': '203.0.113.7',
        traceparent: tp,
        'x-kept': 'yes',
      },
    });
    const h = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
    expect(h['x-secret']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h['proxy-connection']).toBeUndefined();
    expect(h.te).toBeUndefined();
    expect(h['x-kept']).toBe('yes');
    expect(h.traceparent).toBe(tp);
    expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.host).toBe('orders');
  });

  it('propagates the remaining deadline in x-outrigger-deadline-ms, shortened by an incoming one', async () => {
    const plain = JSON.parse((await send(out, { headers: { host: 'orders' } })).body) as { headers: Record<string, string> };
    // The service's 15 s timeout, less the time spent in the sidecar (no bound on that: the machine may be busy).
    const left = Number(plain.headers['x-outrigger-deadline-ms']);
    expect(left).toBeGreaterThan(800);
    expect(left).toBeLessThanOrEqual(15_000);
    // An incoming deadline shorter than the timeout wins, and only shrinks on the way.
    const asked = JSON.parse((await send(out, { headers: { host: 'orders', 'x-outrigger-deadline-ms': '800' } })).body) as { headers: Record<string, string> };
    const left2 = Number(asked.headers['x-outrigger-deadline-ms']);
    expect(left2).toBeGreaterThan(0);
    expect(left2).toBeLessThanOrEqual(800);
  });

  it('answers 504 timeout when the deadline passes before the upstream answers', async () => {
    const started = performance.now();
    const r = await send(out, { headers: { host: 'hang', 'x-outrigger-deadline-ms': '300' } });
    const took = performance.now() - started;
    expect(r.status).toBe(504);
    expect(r.headers['x-outrigger-error']).toBe('timeout');
    // Cut by the 300 ms deadline, not by the service's 15 s timeout.
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(10_000);
  });

  it('keeps an incoming x-request-id and te: trailers', async () => {
    const r = await send(out, { headers: { host: 'orders', 'x-request-id': 'req-42', te: 'trailers' } });
    const h = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
    expect(h['x-request-id']).toBe('req-42');
    expect(h.te).toBe('trailers');
  });

  it('strips hop-by-hop headers from responses and forwards trailers', async () => {
    const up = await startUpstream((_req, res) => {
      res.writeHead(200, { connection: 'keep-alive, x-hop', 'x-hop': '1', 'x-end': '2', 'keep-alive': 'timeout=9', trailer: 'x-checksum' });
      res.write('part');
      res.addTrailers({ 'x-checksum': 'abc' });
      res.end();
    });
    const p = await ports();
    const sc = await startSidecar(`
service: t2
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
services: { up: { endpoints: [ { address: ${up.address} } ] } }
`);
    try {
      const trailers = await new Promise<{ headers: Record<string, unknown>; trailers: Record<string, unknown>; body: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: p.outbound, headers: { host: 'up' }, agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ headers: res.headers, trailers: res.trailers, body }));
        });
        req.on('error', reject);
        req.end();
      });
      expect(trailers.body).toBe('part');
      expect(trailers.headers['x-hop']).toBeUndefined();
      expect(trailers.headers['keep-alive']).toBeUndefined();
      expect(trailers.headers['x-end']).toBe('2');
      expect(trailers.trailers['x-checksum']).toBe('abc');
    } finally {
      await sc.stop(100);
      await up.close();
    }
  });

  it('forwards request bodies of every method', async () => {
    const r = await send(out, { method: 'POST', headers: { host: 'orders', 'content-type': 'text/plain' }, body: 'hello body' });
    expect(JSON.parse(r.body)).toMatchObject({ method: 'POST', body: 'hello body' });
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: Number(out.split(':')[1]), method: 'PUT', headers: { host: 'orders' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.write('chunk-1,');
      setTimeout(() => req.end('chunk-2'), 20);
    });
    expect(JSON.parse(chunked)).toMatchObject({ method: 'PUT', body: 'chunk-1,chunk-2' });
  });

  it('aborts the upstream request when the client disconnects', async () => {
    const before = closedByUpstream.length;
    const arrived = slow.count;
    const req = httpRequest({ host: '127.0.0.1', port: Number(out.split(':')[1]), path: '/abandoned', headers: { host: 'hang' }, agent: false });
    req.on('error', () => {});
    req.end();
    await waitFor(() => slow.count > arrived);
    req.destroy();
    await waitFor(() => closedByUpstream.length > before, 10_000);
    expect(closedByUpstream).toContain('/abandoned');
    await waitFor(() => sidecar.clusters.get('hang')!.endpoints[0]!.inflight === 0, 10_000);
  });

  it('answers 400 to a malformed request and keeps serving', async () => {
    const raw = await new Promise<string>((resolve) => {
      const sock = connect(Number(out.split(':')[1]), '127.0.0.1', () => sock.write('GET / THIS IS NOT HTTP\r\n\r\n'));
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('close', () => resolve(data));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(raw).toContain('x-outrigger-error: bad-request');
    const ok = await send(out, { headers: { host: 'orders' } });
    expect(ok.status).toBe(200);
  });

  it('answers 400 bad-request when there is no Host at all', async () => {
    const raw = await new Promise<string>((resolve) => {
      const sock = connect(Number(out.split(':')[1]), '127.0.0.1', () => sock.write('GET / HTTP/1.0\r\n\r\n'));
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      sock.on('close', () => resolve(data));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(raw).toContain('x-outrigger-error: bad-request');
  });

  it('counts requests in the metrics and shows clusters on the admin endpoint', async () => {
    const admin = sidecar.addresses.admin;
    const m = await send(admin, { path: '/metrics' });
    expect(m.status).toBe(200);
    expect(m.body).toMatch(/outrigger_requests_total\{direction="outbound",service="orders",code="200"\} \d+/);
    expect(m.body).toMatch(/outrigger_requests_total\{direction="outbound",service="dead",code="502"\} 1/);
    expect(m.body).toContain('outrigger_request_duration_seconds_bucket');
    expect(m.body).toMatch(/outrigger_endpoint_eligible\{service="orders",endpoint="127\.0\.0\.1:\d+"\} 1/);
    expect(m.body).toMatch(/outrigger_upstream_inflight\{service="orders",endpoint=/);
    expect(m.body).toContain('outrigger_config_version 1');
    expect(m.body).toContain('outrigger_control_plane_connected 0');
    const c = JSON.parse((await send(admin, { path: '/clusters' })).body) as { clusters: { service: string; endpoints: { address: string; eligible: boolean; completed: number }[] }[] };
    const orders = c.clusters.find((x) => x.service === 'orders')!;
    expect(orders.endpoints.map((e) => e.address).sort()).toEqual([a.address, b.address].sort());
    expect(orders.endpoints.every((e) => e.eligible && e.completed > 0)).toBe(true);
    const cfg = JSON.parse((await send(admin, { path: '/config/status' })).body) as { version: string; source: string };
    expect(cfg).toMatchObject({ version: '1', source: 'static' });
    expect((await send(admin, { path: '/ready' })).status).toBe(200);
    expect((await send(admin, { path: '/live' })).status).toBe(200);
    expect((await send(admin, { path: '/nope' })).status).toBe(404);
  });
});
