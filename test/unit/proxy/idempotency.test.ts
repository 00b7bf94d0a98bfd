import { describe, expect, it } from 'vitest';
import type { IdempotencyConfig } from '../../../common/src/config/types.js';
import { AccessLog, createLogger, withoutQuery } from '../../../common/src/logger.js';
import { Idempotency } from '../../../sidecar/src/proxy/idempotency/gate.js';
import { ENTRY_OVERHEAD_BYTES, entryBytes, IdempotencyStore, IN_FLIGHT, type RequestFingerprint, type StoredResponse } from '../../../sidecar/src/proxy/idempotency/store.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeDownstream } from '../../helpers/fake-downstream.js';
import type { BodyConsumer, Downstream } from '../../../sidecar/src/proxy/exchange.js';

const CONFIG: IdempotencyConfig = { ttlMs: 600_000, maxBytes: 16 * 1_048_576, maxEntryBytes: 1_048_576 };

function post(key: string, body: string, target = '/orders', method = 'POST'): FakeDownstream {
  return new FakeDownstream(`${method} ${target} HTTP/1.1\r\nHost: svc\r\nIdempotency-Key: ${key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`, [body]);
}

/** What the forwarding Call does with the client side it is given: read the body, answer `status` with `body`. */
function answer(down: Downstream, status: number, body: string, reason = 'OK'): void {
  if (down.hasBody) down.setBodyConsumer({ onBodyData: () => true, onBodyEnd: () => undefined });
  down.writeHead(status, reason, `content-type: text/plain\r\ncontent-length: ${body.length}\r\n`, 'length');
  down.write(Buffer.from(body));
  down.end();
}

const tick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

function gate(config: IdempotencyConfig = CONFIG): { idem: Idempotency; clock: FakeClock; answers: number[] } {
  const clock = new FakeClock();
  const answers: number[] = [];
  const idem = new Idempotency(config, clock, (_head, status) => answers.push(status));
  return { idem, clock, answers };
}

const fp = (target: string): RequestFingerprint => ({ method: 'POST', target, bodyHash: 'h' });
const resp = (body: string): StoredResponse => ({ status: 201, reason: 'Created', headerBlock: '', framing: 'length', body: Buffer.from(body) });

describe('IdempotencyStore', () => {
  it('forgets an entry once its TTL has passed, read from the injected clock', () => {
    const clock = new FakeClock();
    const store = new IdempotencyStore({ ...CONFIG, ttlMs: 10_000 }, clock);
    expect(store.reserve('k')).toBe(true);
    expect(store.lookup('k')).toBe(IN_FLIGHT);
    expect(store.reserve('k')).toBe(false);
    expect(store.commit('k', fp('/a'), resp('x'))).toBe(true);
    clock.advance(9_999);
    expect(store.lookup('k')).toMatchObject({ target: '/a' });
    clock.advance(1);
    expect(store.lookup('k')).toBeUndefined();
    expect(store.bytes).toBe(0);
    expect(store.size).toBe(0);
  });

  it('sweep drops expired entries so the bytes held are true', () => {
    const clock = new FakeClock();
    const store = new IdempotencyStore({ ...CONFIG, ttlMs: 1_000 }, clock);
    store.commit('a', fp('/a'), resp('x'));
    clock.advance(500);
    store.commit('b', fp('/b'), resp('y'));
    clock.advance(500);
    store.sweep();
    expect(store.size).toBe(1);
    expect(store.bytes).toBe(entryBytes('b', fp('/b'), resp('y')));
    expect(store.evictions).toBe(0);
  });

  it('evicts the least recently used entries to stay under maxBytes', () => {
    const clock = new FakeClock();
    const one = entryBytes('k1', fp('/1'), resp('x'.repeat(100)));
    const store = new IdempotencyStore({ ttlMs: 600_000, maxBytes: one * 3, maxEntryBytes: one * 3 }, clock);
    for (const k of ['k1', 'k2', 'k3']) store.commit(k, fp(`/${k.slice(1)}`), resp('x'.repeat(100)));
    expect(store.bytes).toBe(one * 3);
    // k1 is used again: k2 becomes the least recently used.
    expect(store.lookup('k1')).not.toBeUndefined();
    store.commit('k4', fp('/4'), resp('x'.repeat(100)));
    expect(store.lookup('k2')).toBeUndefined();
    expect(store.lookup('k1')).not.toBeUndefined();
    expect(store.lookup('k3')).not.toBeUndefined();
    expect(store.lookup('k4')).not.toBeUndefined();
    expect(store.bytes).toBe(one * 3);
    expect(store.evictions).toBe(1);
    // A bigger entry pushes out as many as it needs.
    store.commit('k5', fp('/5'), resp('x'.repeat(100 + 2 * one)));
    expect(store.size).toBe(1);
    expect(store.evictions).toBe(4);
  });

  it('does not store an entry above maxEntryBytes, and gives its key back', () => {
    const store = new IdempotencyStore({ ttlMs: 1_000, maxBytes: 1_048_576, maxEntryBytes: ENTRY_OVERHEAD_BYTES + 100 }, new FakeClock());
    store.reserve('big');
    expect(store.commit('big', fp('/a'), resp('x'.repeat(100)))).toBe(false);
    expect(store.lookup('big')).toBeUndefined();
    expect(store.bytes).toBe(0);
  });

  it('a smaller maxBytes on reload evicts at once', () => {
    const store = new IdempotencyStore(CONFIG, new FakeClock());
    for (const k of ['a', 'b', 'c']) store.commit(k, fp('/'), resp('x'.repeat(1_000)));
    store.configure({ ...CONFIG, maxBytes: entryBytes('c', fp('/'), resp('x'.repeat(1_000))) });
    expect(store.size).toBe(1);
    expect(store.lookup('c')).not.toBeUndefined();
  });
});

describe('Idempotency (the inbound gate)', () => {
  it('lets the first request through, then replays its answer with x-outrigger-replayed: true', async () => {
    const { idem, answers } = gate();
    const first = post('k1', 'order 1');
    const down = idem.intercept(first, 0);
    expect(down).toBeDefined();
    expect(down).not.toBe(first);
    answer(down!, 201, 'created #1', 'Created');
    expect(first.status).toBe(201);
    expect(first.body).toBe('created #1');
    expect(idem.results.stored).toBe(1);

    const again = post('k1', 'order 1');
    expect(idem.intercept(again, 0)).toBeUndefined();
    await tick();
    expect(again.status).toBe(201);
    expect(again.reason).toBe('Created');
    expect(again.body).toBe('created #1');
    expect(again.headerBlock).toContain('content-type: text/plain\r\n');
    expect(again.headerBlock).toContain('x-outrigger-replayed: true\r\n');
    expect(again.ended).toBe(true);
    expect(idem.results.replayed).toBe(1);
    expect(answers).toEqual([201]);
  });

  it('answers 409 with retry-after to a repeat while the first is in flight, and the key is free again after a 5xx', () => {
    const { idem } = gate();
    const first = post('k', 'a');
    const down = idem.intercept(first, 0)!;
    const repeat = post('k', 'a');
    expect(idem.intercept(repeat, 0)).toBeUndefined();
    expect(repeat.error).toEqual({ status: 409, reason: 'idempotency-conflict', headers: { 'retry-after': '1' } });
    answer(down, 503, 'down');
    expect(idem.results).toMatchObject({ conflict: 1, stored: 0, unstored: 1 });
    // Nothing kept: the retry reaches the app.
    expect(idem.intercept(post('k', 'a'), 0)).toBeDefined();
  });

  it('answers 422 to the key reused with another body (after reading it), method or target', async () => {
    const { idem } = gate();
    answer(idem.intercept(post('k', 'pay 10'), 0)!, 200, 'paid');
    const otherBody = post('k', 'pay 99');
    expect(idem.intercept(otherBody, 0)).toBeUndefined();
    await tick();
    expect(otherBody.error?.reason).toBe('idempotency-mismatch');
    expect(otherBody.status).toBe(422);
    for (const other of [post('k', 'pay 10', '/refunds'), post('k', 'pay 10', '/orders?x=1'), post('k', 'pay 10', '/orders', 'PATCH')]) {
      expect(idem.intercept(other, 0)).toBeUndefined();
      expect(other.status).toBe(422);
    }
    expect(idem.results.mismatch).toBe(4);
    // The stored answer is still there for the right request.
    const same = post('k', 'pay 10');
    idem.intercept(same, 0);
    await tick();
    expect(same.body).toBe('paid');
  });

  it('compares the payload, not its framing: a chunked repeat of a Content-Length body is replayed', async () => {
    const { idem } = gate();
    answer(idem.intercept(post('k', 'hello world'), 0)!, 200, 'ok');
    const chunked = new FakeDownstream('POST /orders HTTP/1.1\r\nHost: svc\r\nIdempotency-Key: k\r\nTransfer-Encoding: chunked\r\n\r\n', ['5\r\nhello\r\n', '6\r\n world\r\n0\r\n\r\n']);
    idem.intercept(chunked, 0);
    await tick();
    expect(chunked.status).toBe(200);
    expect(chunked.headerBlock).toContain('x-outrigger-replayed: true');
  });

  it('does not keep a response larger than maxEntryBytes, nor one the sidecar made itself', () => {
    const { idem } = gate({ ttlMs: 1_000, maxBytes: 1_048_576, maxEntryBytes: 1_024 });
    const big = post('big', 'x');
    answer(idem.intercept(big, 0)!, 200, 'y'.repeat(2_000));
    expect(big.body.length).toBe(2_000);
    const failed = post('err', 'x');
    const down = idem.intercept(failed, 0)!;
    down.sendError(504, 'timeout', 'no answer');
    expect(failed.status).toBe(504);
    expect(idem.results).toMatchObject({ stored: 0, unstored: 2 });
    expect(idem.intercept(post('big', 'x'), 0)).toBeDefined();
    expect(idem.intercept(post('err', 'x'), 0)).toBeDefined();
  });

  it('keeps reading and stores the answer when the client leaves after sending its whole request', () => {
    const { idem } = gate();
    const first = post('k', 'order');
    const down = idem.intercept(first, 0)!;
    let callSawClose = false;
    down.observer = { onClientClose: () => (callSawClose = true), onClientDrain: () => undefined };
    down.setBodyConsumer({ onBodyData: () => true, onBodyEnd: () => undefined });
    first.observer!.onClientClose();
    expect(callSawClose).toBe(false);
    down.writeHead(200, 'OK', 'content-length: 4\r\n', 'length');
    down.write(Buffer.from('done'));
    down.end();
    expect(first.status).toBe(0);
    expect(idem.results.stored).toBe(1);
  });

  it('resumes a response paused for the client when the client leaves, and aborts it once it outgrows the limit', async () => {
    const { idem } = gate({ ttlMs: 1_000, maxBytes: 1_048_576, maxEntryBytes: 1_024 });
    const first = post('k', 'order');
    const down = idem.intercept(first, 0)!;
    const seen: string[] = [];
    down.observer = { onClientClose: () => seen.push('close'), onClientDrain: () => seen.push('drain') };
    down.setBodyConsumer({ onBodyData: () => true, onBodyEnd: () => undefined });
    down.writeHead(200, 'OK', '', 'chunked');
    first.observer!.onClientClose();
    expect(seen).toEqual(['drain']);
    expect(down.write(Buffer.alloc(2_000))).toBe(true);
    expect(seen).toEqual(['drain']);
    await tick();
    expect(seen).toEqual(['drain', 'close']);
    expect(idem.results.unstored).toBe(1);
    expect(idem.intercept(post('k', 'order'), 0)).toBeDefined();
  });

  it('aborts and gives the key back when the client leaves before its body was complete', () => {
    const { idem } = gate();
    const first = new FakeDownstream('POST /orders HTTP/1.1\r\nHost: svc\r\nIdempotency-Key: k\r\nContent-Length: 10\r\n\r\n');
    first.setBodyConsumer = function (c: BodyConsumer): void {
      this.consumer = c;
      c.onBodyData(Buffer.from('half'));
    };
    const down = idem.intercept(first, 0)!;
    let callSawClose = false;
    down.observer = { onClientClose: () => (callSawClose = true), onClientDrain: () => undefined };
    down.setBodyConsumer({ onBodyData: () => true, onBodyEnd: () => undefined });
    first.observer!.onClientClose();
    expect(callSawClose).toBe(true);
    expect(idem.results.unstored).toBe(1);
    expect(idem.intercept(post('k', 'order'), 0)).toBeDefined();
  });

  it('ignores the key on safe methods and passes requests without one untouched', () => {
    const { idem } = gate();
    const get = new FakeDownstream('GET /orders HTTP/1.1\r\nHost: svc\r\nIdempotency-Key: k\r\n\r\n');
    expect(idem.intercept(get, 0)).toBe(get);
    const plain = new FakeDownstream('POST /orders HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\n\r\n', ['x']);
    expect(idem.intercept(plain, 0)).toBe(plain);
    expect(idem.results.bypass).toBe(1);
    expect(idem.store.size).toBe(0);
  });
});

describe('access log query strings', () => {
  it('withoutQuery cuts at the first "?"', () => {
    expect(withoutQuery('/a/b?token=secret&x=1')).toBe('/a/b');
    expect(withoutQuery('/a')).toBe('/a');
    expect(withoutQuery('http://h/x?y')).toBe('http://h/x');
  });

  it('AccessLog leaves out the query unless query is true', () => {
    const lines: unknown[] = [];
    const logger = createLogger('info');
    logger.info = ((obj: unknown) => void lines.push(obj)) as typeof logger.info;
    const entry = { direction: 'inbound', service: 's', method: 'GET', path: '/login?token=secret', status: 200, endpoint: undefined, durationMs: 1, requestId: 'r', error: undefined, attempts: 1 } as const;
    const log = new AccessLog(logger, { next: () => 0 }, 1, true);
    log.write(entry);
    log.configure(true, 1, true);
    log.write(entry);
    expect(lines).toEqual([{ access: { ...entry, path: '/login' } }, { access: entry }]);
  });
});
