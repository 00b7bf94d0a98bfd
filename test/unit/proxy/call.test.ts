import { describe, expect, it } from 'vitest';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import { AccessLog, createLogger } from '../../../common/src/logger.js';
import type { Random } from '../../../common/src/random.js';
import { Cluster } from '../../../sidecar/src/cluster/cluster.js';
import type { Endpoint } from '../../../sidecar/src/core/endpoint.js';
import { Outcome } from '../../../sidecar/src/health/outlier/detector.js';
import { Call, type Route } from '../../../sidecar/src/proxy/call.js';
import {
  UpstreamError,
  type DetachedSocket,
  type UpstreamHandler,
  type UpstreamLink,
  type UpstreamPoolLike,
} from '../../../sidecar/src/proxy/exchange.js';
import { defaultParseLimits, parseResponseHead } from '../../../sidecar/src/proxy/http1/parser.js';
import { BreakerFactory } from '../../../sidecar/src/resilience/breaker.js';
import { ServiceGuard } from '../../../sidecar/src/resilience/guard.js';
import { TrafficStats } from '../../../sidecar/src/telemetry/stats.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeDownstream } from '../../helpers/fake-downstream.js';


/** An upstream connection the test answers by hand. */
class FakeLink implements UpstreamLink {
  requestDone = false;
  handler: UpstreamHandler | undefined;
  written = '';
  aborted = false;
  released = false;
  begin(handler: UpstreamHandler): void {
    this.handler = handler;
  }
  write(data: string | Buffer): boolean {
    this.written += data.toString();
    return true;
  }
  writeRequest(head: string, body: Buffer | undefined): void {
    this.written += head + (body?.toString() ?? '');
  }
  pause(): void {}
  resume(): void {}
  abort(): void {
    this.aborted = true;
    this.handler = undefined;
  }
  release(): void {
    this.released = true;
  }
  detach(): DetachedSocket {
    throw new Error('no upgrade in these tests');
  }
  /** An HTTP/2 gRPC answer: headers (with `grpc-status` for a trailers-only answer), a message, trailers. */
  grpc(headers: string[], body?: string, trailers?: string[]): void {
    const h = this.handler!;
    h.onResponseHead({
      minor: 1,
      headers: ['content-type', 'application/grpc', ...headers],
      contentLength: -1,
      chunked: false,
      keepAlive: true,
      connectionUpgrade: false,
      upgrade: undefined,
      headBytes: 0,
      status: 200,
      reason: '',
      closeDelimited: false,
      streamed: true,
    });
    if (body !== undefined) h.onResponseData(Buffer.from(body));
    if (trailers !== undefined) h.onResponseTrailers?.(trailers);
    h.onResponseEnd();
  }

  /** The upstream answers `status` with `body`. */
  answer(status: number, body = 'ok'): void {
    const raw = Buffer.from(`HTTP/1.1 ${status} X\r\ncontent-length: ${body.length}\r\n\r\n`);
    const h = this.handler!;
    h.onResponseHead(parseResponseHead(raw, 0, raw.length, defaultParseLimits)!);
    if (body !== '') h.onResponseData(Buffer.from(body));
    h.onResponseEnd();
  }
}

/** One endpoint's pool: requests for a connection wait until the test connects or fails them. */
class FakePool implements UpstreamPoolLike {
  readonly waiting: UpstreamHandler[] = [];
  readonly links: FakeLink[] = [];
  acquire(h: UpstreamHandler): void {
    this.waiting.push(h);
  }
  cancel(h: UpstreamHandler): void {
    const i = this.waiting.indexOf(h);
    if (i >= 0) this.waiting.splice(i, 1);
  }
  connect(reused = false): FakeLink {
    const link = new FakeLink();
    this.links.push(link);
    this.waiting.shift()!.onUpstreamConnected(link, reused);
    return link;
  }
  fail(err: UpstreamError): void {
    this.waiting.shift()!.onUpstreamError(err);
  }
}

const refused = (): UpstreamError => new UpstreamError('connect ECONNREFUSED', 'connect', 'ECONNREFUSED');
const reset = (): UpstreamError => new UpstreamError('socket hang up', 'request', 'ECONNRESET');

/** Always the largest backoff the jitter allows (just under `max`). */
const highRandom: Random = { next: () => 0.999 };

function setup(policy: Record<string, unknown> = {}) {
  const clock = new FakeClock();
  const config = parseServiceConfig(
    {
      lb: 'round-robin',
      endpoints: [{ address: '10.0.0.1:80' }, { address: '10.0.0.2:80' }],
      retry: { attempts: 2, perTryTimeout: '100ms', backoff: { base: '20ms', max: '20ms' } },
      timeout: '1s',
      ...policy,
    },
    'test',
  );
  const cluster = new Cluster('svc', config, { clock, random: highRandom });
  const guard = new ServiceGuard(cluster, new BreakerFactory(clock, clock, () => {}), clock);
  const outcomes: { endpoint: string; outcome: Outcome }[] = [];
  guard.outcomes = { record: (endpoint, outcome) => outcomes.push({ endpoint: endpoint.address, outcome }) };
  const pools = new Map<Endpoint, FakePool>(cluster.endpoints.map((e) => [e, new FakePool()]));
  const stats = new TrafficStats('outbound', 'svc', false);
  const route: Route = {
    direction: 'outbound',
    service: 'svc',
    stats,
    timeoutMs: config.timeoutMs,
    retry: config.retry,
    guard,
    authority: 'svc',
    pick: (key, avoid) => cluster.picker.pick(key, avoid),
    pool: (e) => pools.get(e)!,
  };
  const deps = { clock, random: highRandom, timers: clock, accessLog: new AccessLog(createLogger('silent'), highRandom, 1, false) };
  const call = (down: FakeDownstream): Call => {
    const c = new Call(down, route, undefined, deps, clock.now());
    c.run();
    return c;
  };
  /** The pool that has a request waiting for a connection (exactly one must). */
  const waitingPool = (): FakePool => {
    const ps = [...pools.values()].filter((p) => p.waiting.length > 0);
    expect(ps).toHaveLength(1);
    return ps[0]!;
  };
  const addressOf = (p: FakePool): string => [...pools].find(([, v]) => v === p)![0].address;
  return { clock, cluster, guard, outcomes, pools, stats, call, waitingPool, addressOf };
}

const GET = 'GET /items HTTP/1.1\r\nHost: svc\r\n\r\n';

describe('Call (fake clock, fake sockets)', () => {
  it('fails over after a connect failure, after the backoff, to the other endpoint', () => {
    const t = setup();
    const down = new FakeDownstream(GET);
    t.call(down);
    const first = t.waitingPool();
    first.fail(refused());
    // Nothing goes out before the backoff (just under 20 ms with this random source).
    expect([...t.pools.values()].every((p) => p.waiting.length === 0)).toBe(true);
    t.clock.advance(19);
    expect([...t.pools.values()].every((p) => p.waiting.length === 0)).toBe(true);
    t.clock.advance(1);
    const second = t.waitingPool();
    expect(second).not.toBe(first);
    const link = second.connect();
    // The deadline left (1 s minus the 20 ms spent) travels with the request.
    expect(link.written).toMatch(/^GET \/items HTTP\/1\.1\r\nHost: svc\r\n/);
    expect(link.written).toContain('x-outrigger-deadline-ms: 980\r\n');
    link.answer(200, 'hello');
    expect(down).toMatchObject({ status: 200, framing: 'length', body: 'hello', ended: true });
    expect(t.outcomes).toEqual([
      { endpoint: t.addressOf(first), outcome: Outcome.GatewayFailure },
      { endpoint: t.addressOf(second), outcome: Outcome.Success },
    ]);
    expect(t.guard.retries['connect-failure']).toBe(1);
    expect({ active: t.guard.active, pending: t.guard.pending, activeRetries: t.guard.activeRetries }).toEqual({ active: 0, pending: 0, activeRetries: 0 });
    expect(t.cluster.endpoints.map((e) => e.inflight)).toEqual([0, 0]);
    expect(t.stats.codes[200]).toBe(1);
  });

  it('gives up a try at its per-try timeout, closes that connection and retries elsewhere', () => {
    const t = setup();
    const down = new FakeDownstream(GET);
    t.call(down);
    const slow = t.waitingPool().connect();
    t.clock.advance(99);
    expect(slow.aborted).toBe(false);
    t.clock.advance(1);
    expect(slow.aborted).toBe(true);
    expect(t.guard.retries.timeout).toBe(1);
    t.clock.advance(20);
    const link = t.waitingPool().connect();
    expect(link.written).toContain('x-outrigger-deadline-ms: 880\r\n');
    link.answer(200);
    expect(down.status).toBe(200);
  });

  it('answers 504 when the deadline passes before another try can start', () => {
    const t = setup({ timeout: '110ms' });
    const down = new FakeDownstream(GET);
    t.call(down);
    t.waitingPool().connect();
    t.clock.advance(100); // per-try timeout; the backoff then ends past the 110 ms deadline
    t.clock.advance(20);
    expect(down.error).toEqual({ status: 504, reason: 'timeout' });
    expect([...t.pools.values()].every((p) => p.waiting.length === 0)).toBe(true);
    expect(t.guard.active).toBe(0);
  });

  it('does not retry a POST without idempotency-key after its body went out and the connection was reset', () => {
    const t = setup();
    const down = new FakeDownstream('POST /orders HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\n', ['abc']);
    t.call(down);
    const link = t.waitingPool().connect();
    expect(link.written.endsWith('\r\n\r\nabc')).toBe(true);
    link.handler!.onUpstreamError(reset());
    expect(down.error).toEqual({ status: 502, reason: 'reset' });
    expect(t.guard.retries.reset).toBe(0);
  });

  it('retries a POST with an idempotency-key, sending the body it kept again', () => {
    const t = setup();
    const down = new FakeDownstream('POST /orders HTTP/1.1\r\nHost: svc\r\nIdempotency-Key: k1\r\nContent-Length: 3\r\n\r\n', ['abc']);
    t.call(down);
    t.waitingPool().connect().handler!.onUpstreamError(reset());
    t.clock.advance(20);
    const again = t.waitingPool().connect();
    expect(again.written.endsWith('\r\n\r\nabc')).toBe(true);
    again.answer(201);
    expect(down.status).toBe(201);
  });

  it('retries a retriable status, and passes a 404 on as it is', () => {
    const t = setup();
    const down = new FakeDownstream(GET);
    t.call(down);
    const first = t.waitingPool().connect();
    first.answer(503, 'busy');
    expect(first.aborted).toBe(true);
    expect(down.status).toBe(0);
    t.clock.advance(20);
    t.waitingPool().connect().answer(404, 'no such item');
    expect(down).toMatchObject({ status: 404, body: 'no such item' });
    expect(t.guard.retries.status).toBe(1);
  });

  it('answers 503 retry-budget-exhausted when the budget refuses the retry', () => {
    const t = setup({ retry: { attempts: 2, perTryTimeout: '100ms', backoff: { base: '20ms', max: '20ms' }, budget: { ratio: 0, minPerSecond: 0 } } });
    const down = new FakeDownstream(GET);
    t.call(down);
    t.waitingPool().fail(refused());
    expect(down.error).toEqual({ status: 503, reason: 'retry-budget-exhausted' });
  });

  it('sends a request again on a fresh connection when a reused one closed before answering, blaming no endpoint', () => {
    const t = setup();
    const down = new FakeDownstream(GET);
    t.call(down);
    const pool = t.waitingPool();
    pool.connect(true).handler!.onUpstreamError(reset());
    // At once, to the same endpoint, without a backoff or a retry counted.
    expect(t.waitingPool()).toBe(pool);
    pool.connect(false).answer(200);
    expect(down.status).toBe(200);
    expect(t.outcomes).toEqual([{ endpoint: t.addressOf(pool), outcome: Outcome.Success }]);
    expect(t.guard.retries.reset).toBe(0);
  });

  it('aborts the upstream when the client goes away, and counts 499', () => {
    const t = setup();
    const down = new FakeDownstream(GET);
    t.call(down);
    const link = t.waitingPool().connect();
    down.observer!.onClientClose();
    expect(link.aborted).toBe(true);
    expect(t.stats.codes[499]).toBe(1);
    expect(t.cluster.endpoints.map((e) => e.inflight)).toEqual([0, 0]);
    expect(t.guard.active).toBe(0);
  });

  it('refuses at once with 503 overloaded beyond limits.maxConcurrent', () => {
    const t = setup({ limits: { maxConcurrent: 1 } });
    t.call(new FakeDownstream(GET));
    const second = new FakeDownstream(GET);
    t.call(second);
    expect(second.error).toEqual({ status: 503, reason: 'overloaded', headers: { 'retry-after': '1' } });
  });

  describe('gRPC calls', () => {
    const GRPC = 'POST /pkg.Svc/Get HTTP/1.1\r\nHost: svc\r\nContent-Type: application/grpc\r\nTE: trailers\r\ngrpc-timeout: 500m\r\nTransfer-Encoding: chunked\r\n\r\n';
    const body = ['5\r\nhello\r\n', '0\r\n\r\n'];

    it('takes grpc-timeout as the deadline and sends the time left upstream', () => {
      const t = setup();
      const down = new FakeDownstream(GRPC, body);
      t.call(down);
      t.clock.advance(30);
      const link = t.waitingPool().connect();
      expect(link.written).toContain('x-outrigger-deadline-ms: 470\r\n');
      expect(link.written).toContain('grpc-timeout: 470m\r\n');
      expect(link.written.match(/grpc-timeout/g)).toHaveLength(1);
    });

    it('counts the outcome from the trailers: NOT_FOUND is a success for the endpoint, UNAVAILABLE a gateway failure', () => {
      const t = setup({ retry: { attempts: 0 } });
      const a = new FakeDownstream(GRPC, body);
      t.call(a);
      t.waitingPool().connect().grpc([], 'msg', ['grpc-status', '5', 'grpc-message', 'no such thing']);
      expect(a.trailers).toEqual(['grpc-status', '5', 'grpc-message', 'no such thing']);
      expect(a.framing).toBe('stream');
      const b = new FakeDownstream(GRPC, body);
      t.call(b);
      t.waitingPool().connect().grpc([], 'msg', ['grpc-status', '14']);
      expect(t.outcomes.map((o) => o.outcome)).toEqual([Outcome.Success, Outcome.GatewayFailure]);
      expect(t.stats.grpcCodes[5]).toBe(1);
      expect(t.stats.grpcCodes[14]).toBe(1);
    });

    it('retries a trailers-only UNAVAILABLE on another endpoint with the body it kept, when retry.on has unavailable', () => {
      const t = setup({ retry: { attempts: 2, on: ['unavailable'], perTryTimeout: '100ms', backoff: { base: '20ms', max: '20ms' } } });
      const down = new FakeDownstream(GRPC, body);
      t.call(down);
      const first = t.waitingPool();
      const l1 = first.connect();
      expect(l1.written.endsWith('5\r\nhello\r\n0\r\n\r\n')).toBe(true);
      l1.grpc(['grpc-status', '14', 'grpc-message', 'down']);
      expect(down.status).toBe(0);
      t.clock.advance(20);
      const second = t.waitingPool();
      expect(second).not.toBe(first);
      const l2 = second.connect();
      expect(l2.written.endsWith('5\r\nhello\r\n0\r\n\r\n')).toBe(true);
      l2.grpc([], 'msg', ['grpc-status', '0']);
      expect(down).toMatchObject({ status: 200, body: 'msg', ended: true });
      expect(t.guard.retries.status).toBe(1);
      expect(t.stats.grpcCodes[0]).toBe(1);
    });

    it('does not retry a trailers-only NOT_FOUND', () => {
      const t = setup({ retry: { attempts: 2, on: ['unavailable'], perTryTimeout: '100ms', backoff: { base: '20ms', max: '20ms' } } });
      const down = new FakeDownstream(GRPC, body);
      t.call(down);
      t.waitingPool().connect().grpc(['grpc-status', '5']);
      expect(down.status).toBe(200);
      expect(t.guard.retries.status).toBe(0);
    });

    it('retries a gRPC call after a reset before any response byte (gRPC calls are replayable)', () => {
      const t = setup();
      const down = new FakeDownstream(GRPC, body);
      t.call(down);
      t.waitingPool().connect().handler!.onUpstreamError(reset());
      t.clock.advance(20);
      t.waitingPool().connect().grpc([], 'ok', ['grpc-status', '0']);
      expect(down.body).toBe('ok');
      expect(t.guard.retries.reset).toBe(1);
    });
  });
});
