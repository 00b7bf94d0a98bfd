import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../../common/src/random.js';
import { startFaultUpstream, type FaultUpstream, type FaultUpstreamOptions } from '../helpers/fault-upstream.js';
import { waitFor } from '../helpers/net.js';

/** What one request ended with. `status` on an error or timeout means the response head had arrived. */
type Outcome =
  | { readonly kind: 'response'; readonly status: number; readonly headers: IncomingHttpHeaders; readonly body: string; readonly ms: number }
  | { readonly kind: 'error'; readonly code: string | undefined; readonly message: string; readonly status: number | undefined; readonly headers: IncomingHttpHeaders | undefined; readonly ms: number }
  | { readonly kind: 'timeout'; readonly status: number | undefined; readonly ms: number };

interface CallOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs?: number;
}

/** One request on its own connection; never rejects. */
function call(address: string, options: CallOptions = {}): Promise<Outcome> {
  const colon = address.lastIndexOf(':');
  const started = performance.now();
  const ms = (): number => performance.now() - started;
  return new Promise((resolve) => {
    let settled = false;
    let status: number | undefined;
    let headers: IncomingHttpHeaders | undefined;
    const settle = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    const fail = (err: NodeJS.ErrnoException): void => settle({ kind: 'error', code: err.code, message: err.message, status, headers, ms: ms() });
    const req = httpRequest(
      { host: address.slice(0, colon), port: Number(address.slice(colon + 1)), method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, agent: false },
      (res) => {
        status = res.statusCode;
        headers = res.headers;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => settle({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), ms: ms() }));
        res.on('error', fail);
        res.on('close', () => fail(Object.assign(new Error('response closed before its end'), { code: 'ECLOSED' })));
      },
    );
    const timer = setTimeout(() => {
      settle({ kind: 'timeout', status, ms: ms() });
      req.destroy();
    }, options.timeoutMs ?? 2_000);
    req.on('error', fail);
    req.end(options.body);
  });
}

function json(o: Outcome): unknown {
  expect(o.kind).toBe('response');
  return o.kind === 'response' ? JSON.parse(o.body) : undefined;
}

describe('fault upstream', () => {
  const started: FaultUpstream[] = [];
  let up: FaultUpstream;

  async function make(options: FaultUpstreamOptions = {}): Promise<FaultUpstream> {
    const u = await startFaultUpstream(options);
    started.push(u);
    return u;
  }

  beforeAll(async () => {
    up = await make({ name: 'alpha', random: seededRandom(7) });
  });

  beforeEach(async () => {
    await up.setMode({ kind: 'ok' });
    await waitFor(() => up.inflight === 0);
    up.resetCounters();
  });

  afterAll(async () => {
    await Promise.all(started.map((u) => u.close()));
  });

  it('listens on 127.0.0.1 and answers 200 {name, count} in ok mode', async () => {
    expect(up.address).toBe(`127.0.0.1:${up.port}`);
    expect(up.name).toBe('alpha');
    expect(up.listening).toBe(true);
    expect(json(await call(up.address))).toEqual({ name: 'alpha', count: 1 });
    const second = await call(up.address);
    expect(json(second)).toEqual({ name: 'alpha', count: 2 });
    expect(second.kind === 'response' && second.headers['x-upstream-name']).toBe('alpha');
    expect(up.received).toBe(2);
    await waitFor(() => up.completed === 2);
  });

  it('fail 100% answers the status on every request and on /healthz', async () => {
    await up.setMode({ kind: 'fail', status: 503, percent: 100 });
    for (let i = 0; i < 5; i++) {
      const r = await call(up.address);
      expect(r.kind === 'response' && r.status).toBe(503);
    }
    const h = await call(up.address, { path: '/healthz' });
    expect(h.kind === 'response' && h.status).toBe(503);
    expect(up.received).toBe(5);
  });

  it('fail with healthzFollowsMode: false keeps /healthz at 200', async () => {
    const u = await make({ healthzFollowsMode: false });
    await u.setMode({ kind: 'fail', status: 500, percent: 100 });
    const r = await call(u.address);
    expect(r.kind === 'response' && r.status).toBe(500);
    const h = await call(u.address, { path: '/healthz' });
    expect(h.kind === 'response' && h.status).toBe(200);
  });

  it('fail 50% fails about half of 200 requests, exactly as the seed dictates', async () => {
    const expected = (() => {
      const r = seededRandom(42);
      let n = 0;
      for (let i = 0; i < 200; i++) if (r.next() * 100 < 50) n++;
      return n;
    })();
    const runs: number[] = [];
    for (let k = 0; k < 2; k++) {
      const u = await make({ random: seededRandom(42) });
      await u.setMode({ kind: 'fail', status: 502, percent: 50 });
      const statuses: number[] = [];
      // 20 batches of 10 concurrent requests.
      for (let b = 0; b < 20; b++) {
        const batch = await Promise.all(Array.from({ length: 10 }, () => call(u.address)));
        for (const o of batch) statuses.push(o.kind === 'response' ? o.status : -1);
      }
      expect(statuses.every((s) => s === 200 || s === 502)).toBe(true);
      runs.push(statuses.filter((s) => s === 502).length);
      await u.close();
    }
    expect(runs).toEqual([expected, expected]);
    expect(expected).toBeGreaterThan(80);
    expect(expected).toBeLessThan(120);
  });

  it('slow answers after at least delayMs; /healthz stays fast', async () => {
    await up.setMode({ kind: 'slow', delayMs: 1_000 });
    const order: string[] = [];
    const [r, h] = await Promise.all([
      call(up.address).then((x) => (order.push('slow'), x)),
      call(up.address, { path: '/healthz' }).then((x) => (order.push('healthz'), x)),
    ]);
    expect(json(r)).toEqual({ name: 'alpha', count: 1 });
    expect(r.ms).toBeGreaterThanOrEqual(999);
    expect(h.kind === 'response' && h.status).toBe(200);
    // Sent together: the health check is answered first, the slow request only after its delay.
    expect(order).toEqual(['healthz', 'slow']);
  });

  it('hang reads the request and never answers; the socket stays open until refuse', async () => {
    await up.setMode({ kind: 'hang' });
    const r = await call(up.address, { method: 'POST', body: 'payload', headers: { 'x-test-id': 'hang-1' }, timeoutMs: 200 });
    expect(r).toMatchObject({ kind: 'timeout', status: undefined });
    expect(up.received).toBe(1);
    expect(up.bodiesReceived.get('hang-1')).toBe(1);
    expect((await call(up.address, { path: '/healthz', timeoutMs: 100 })).kind).toBe('timeout');

    const socket = connect(up.port, '127.0.0.1');
    let data = '';
    let closed = false;
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.write('GET /raw HTTP/1.1\r\nhost: x\r\n\r\n');
    await waitFor(() => up.received === 2);
    await new Promise((res) => setTimeout(res, 250));
    expect(up.inflight).toBe(1);
    expect({ data, closed }).toEqual({ data: '', closed: false });

    await up.setMode({ kind: 'refuse' });
    await waitFor(() => closed);
    expect(data).toBe('');
    await waitFor(() => up.inflight === 0);
  });

  it('reset destroys the connection after the head: ECONNRESET', async () => {
    await up.setMode({ kind: 'reset' });
    const r = await call(up.address, { headers: { 'x-test-id': 'reset-1' } });
    expect(r).toMatchObject({ kind: 'error', code: 'ECONNRESET', status: undefined });
    const h = await call(up.address, { path: '/healthz' });
    expect(h).toMatchObject({ kind: 'error', code: 'ECONNRESET' });
    expect(up.received).toBe(1);
    expect(up.bodiesReceived.get('reset-1')).toBe(1);
    expect(up.completed).toBe(0);
    await waitFor(() => up.inflight === 0);
  });

  it('close-after-headers sends a 200 head promising 100 bytes, then closes', async () => {
    await up.setMode({ kind: 'close-after-headers' });
    const r = await call(up.address);
    expect(r).toMatchObject({ kind: 'error', code: 'ECONNRESET', message: 'aborted', status: 200 });
    expect(r.kind === 'error' && r.headers?.['content-length']).toBe('100');
    const h = await call(up.address, { path: '/healthz' });
    expect(h.kind === 'response' && h.status).toBe(200);
    expect(up.completed).toBe(0);
  });

  it('refuse makes connections fail with ECONNREFUSED, then accepts again on the same port', async () => {
    const port = up.port;
    await up.setMode({ kind: 'refuse' });
    expect(up.listening).toBe(false);
    expect(up.mode).toEqual({ kind: 'refuse' });
    expect(await call(up.address)).toMatchObject({ kind: 'error', code: 'ECONNREFUSED' });
    expect(await call(up.address, { path: '/healthz' })).toMatchObject({ kind: 'error', code: 'ECONNREFUSED' });
    expect(up.received).toBe(0);

    await up.setMode({ kind: 'ok' });
    expect(up.listening).toBe(true);
    expect(up.port).toBe(port);
    expect(json(await call(up.address))).toEqual({ name: 'alpha', count: 1 });
  });

  it('kill drops in-flight requests and refuses new ones; restart serves ok on the same port', async () => {
    const u = await make({ name: 'beta' });
    const port = u.port;
    await u.setMode({ kind: 'hang' });
    const hanging = call(u.address, { timeoutMs: 5_000 });
    await u.setMode({ kind: 'slow', delayMs: 5_000 });
    const slow = call(u.address, { timeoutMs: 5_000 });
    await waitFor(() => u.inflight === 2);

    await u.kill();
    expect(await hanging).toMatchObject({ kind: 'error', code: 'ECONNRESET' });
    expect(await slow).toMatchObject({ kind: 'error', code: 'ECONNRESET' });
    expect(u.listening).toBe(false);
    expect(u.mode).toEqual({ kind: 'refuse' });
    expect(await call(u.address)).toMatchObject({ kind: 'error', code: 'ECONNREFUSED' });
    await waitFor(() => u.inflight === 0);

    await u.restart();
    expect(u.port).toBe(port);
    expect(u.mode).toEqual({ kind: 'ok' });
    expect(json(await call(u.address))).toEqual({ name: 'beta', count: 3 });
    expect(u.completed).toBe(1);
  });

  it('restart of a running upstream drops its connections and comes back in ok mode', async () => {
    const u = await make();
    await u.setMode({ kind: 'hang' });
    const hanging = call(u.address, { timeoutMs: 5_000 });
    await waitFor(() => u.inflight === 1);
    await u.restart();
    expect(await hanging).toMatchObject({ kind: 'error', code: 'ECONNRESET' });
    expect(u.mode).toEqual({ kind: 'ok' });
    expect((await call(u.address)).kind).toBe('response');
  });

  it('counts requests by method and by x-test-id / idempotency-key / body hash', async () => {
    await call(up.address, { method: 'POST', body: 'a', headers: { 'x-test-id': 'order-1' } });
    await call(up.address, { method: 'POST', body: 'b', headers: { 'x-test-id': 'order-1' } });
    await call(up.address, { method: 'POST', body: 'c', headers: { 'x-test-id': 'order-2' } });
    await call(up.address, { method: 'PUT', body: 'd', headers: { 'idempotency-key': 'k-1' } });
    await call(up.address, { method: 'POST', body: 'same body' });
    await call(up.address, { method: 'POST', body: 'same body' });
    await call(up.address);
    await call(up.address, { path: '/healthz' });

    expect(up.received).toBe(7);
    expect(up.healthChecks).toBe(1);
    expect(Object.fromEntries(up.byMethod)).toEqual({ POST: 5, PUT: 1, GET: 1 });
    expect(up.bodiesReceived.get('order-1')).toBe(2);
    expect(up.bodiesReceived.get('order-2')).toBe(1);
    expect(up.bodiesReceived.get('k-1')).toBe(1);
    const hashed = [...up.bodiesReceived].filter(([k]) => k.startsWith('sha256:')).map(([, n]) => n);
    expect(hashed.sort()).toEqual([1, 2]); // "same body" twice, the empty GET body once
    await waitFor(() => up.completed === 7);

    up.resetCounters();
    expect([up.received, up.completed, up.byMethod.size, up.bodiesReceived.size, up.healthChecks, up.maxInflight]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('tracks inflight and maxInflight', async () => {
    await up.setMode({ kind: 'slow', delayMs: 150 });
    const calls = Promise.all(Array.from({ length: 5 }, (_, i) => call(up.address, { headers: { 'x-test-id': `c-${i}` } })));
    await waitFor(() => up.inflight === 5);
    const outcomes = await calls;
    expect(outcomes.every((o) => o.kind === 'response' && o.status === 200)).toBe(true);
    await waitFor(() => up.inflight === 0);
    expect(up.maxInflight).toBe(5);
    expect(up.completed).toBe(5);
  });

  it('rejects invalid modes and use after close', async () => {
    await expect(up.setMode({ kind: 'fail', status: 99, percent: 10 })).rejects.toThrow(RangeError);
    await expect(up.setMode({ kind: 'fail', status: 500, percent: 101 })).rejects.toThrow(RangeError);
    await expect(up.setMode({ kind: 'slow', delayMs: -1 })).rejects.toThrow(RangeError);
    expect(up.mode).toEqual({ kind: 'ok' });
    const u = await make();
    await u.close();
    await u.close();
    await expect(u.setMode({ kind: 'ok' })).rejects.toThrow(/closed/);
    expect(await call(u.address)).toMatchObject({ kind: 'error', code: 'ECONNREFUSED' });
  });
});
