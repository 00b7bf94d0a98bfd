import type { Clock } from '../../../../common/src/clock.js';
import type { IdempotencyConfig } from '../../../../common/src/config/types.js';
import type { ProxyErrorReason } from '../../../../common/src/errors.js';
import type { BodyConsumer, Downstream, ExchangeObserver } from '../exchange.js';
import { headerValue } from '../headers.js';
import type { RequestHead } from '../http1/parser.js';
import { BodyHasher, EMPTY_BODY_HASH } from './body-hash.js';
import { RecordingDownstream, type RecordingSink } from './recorder.js';
import { IdempotencyStore, IN_FLIGHT, type StoredEntry, type StoredResponse } from './store.js';

/**
 * Replay-safe requests on the inbound side (the IETF draft "The Idempotency-Key HTTP Header Field"): the
 * first request with a key goes to the app and its complete answer (2xx to 4xx) is kept; a repeat with the
 * same key, method, target and body gets that answer again, marked `x-outrigger-replayed: true`, without
 * reaching the app. A repeat while the first is in progress gets 409; the key reused for another method,
 * target or body gets 422. A 5xx or a failed exchange keeps nothing, so the request can be tried again.
 */

export const IDEMPOTENCY_RESULTS = ['stored', 'replayed', 'conflict', 'mismatch', 'unstored', 'bypass'] as const;
export type IdempotencyResult = (typeof IDEMPOTENCY_RESULTS)[number];

/** How the inbound side counts and logs an answer the sidecar made itself (replay, 409, 422). */
export type AnswerReport = (head: RequestHead, status: number, reason: ProxyErrorReason | undefined, start: number) => void;

const REPLAYED = 'x-outrigger-replayed: true\r\n';
const RETRY_AFTER = { 'retry-after': '1' } as const;

/** Methods that change nothing: a key on them is ignored (they are answered afresh every time). */
function isSafeMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'TRACE';
}

export class Idempotency implements RecordingSink {
  readonly store: IdempotencyStore;
  readonly results: Record<IdempotencyResult, number> = { stored: 0, replayed: 0, conflict: 0, mismatch: 0, unstored: 0, bypass: 0 };

  constructor(
    config: IdempotencyConfig,
    clock: Clock,
    private readonly report: AnswerReport,
  ) {
    this.store = new IdempotencyStore(config, clock);
  }

  configure(config: IdempotencyConfig): void {
    this.store.configure(config);
  }

  /**
   * Looks at a request admitted on the inbound side: returns the client side the forwarding Call should use
   * (`ex` itself, or a recording one for a new key), or undefined when the sidecar answers it itself.
   */
  intercept(ex: Downstream, start: number): Downstream | undefined {
    const head = ex.head;
    const key = headerValue(head.headers, 'idempotency-key');
    if (key === undefined || key === '') return ex;
    if (isSafeMethod(head.method) || head.connectionUpgrade) {
      this.results.bypass++;
      return ex;
    }
    const found = this.store.lookup(key);
    if (found === IN_FLIGHT) {
      this.refuse(ex, 'idempotency-conflict', 'a request with this idempotency-key is still in progress; try again later', start, RETRY_AFTER);
      return undefined;
    }
    if (found !== undefined) {
      if (found.method !== head.method || found.target !== head.target) {
        this.refuse(ex, 'idempotency-mismatch', 'this idempotency-key was first used with another method or target', start);
      } else {
        new Replay(this, ex, found, start).run();
      }
      return undefined;
    }
    this.store.reserve(key);
    return new RecordingDownstream(ex, key, this, this.store.limits.maxEntryBytes);
  }

  /** RecordingSink: a forwarded exchange completed. */
  complete(key: string, head: RequestHead, bodyHash: string | undefined, response: StoredResponse | undefined): void {
    if (response !== undefined && bodyHash !== undefined && response.status < 500 && this.store.commit(key, { method: head.method, target: head.target, bodyHash }, response)) {
      this.results.stored++;
      return;
    }
    this.store.release(key);
    this.results.unstored++;
  }

  /** RecordingSink: a forwarded exchange failed. */
  abandon(key: string): void {
    this.store.release(key);
    this.results.unstored++;
  }

  refuse(ex: Downstream, reason: 'idempotency-conflict' | 'idempotency-mismatch', message: string, start: number, extra?: Readonly<Record<string, string>>): void {
    this.results[reason === 'idempotency-conflict' ? 'conflict' : 'mismatch']++;
    const status = reason === 'idempotency-conflict' ? 409 : 422;
    ex.sendError(status, reason, message, extra);
    this.report(ex.head, status, reason, start);
  }

  replay(ex: Downstream, entry: StoredEntry, start: number): void {
    this.results.replayed++;
    const r = entry.response;
    ex.writeHead(r.status, r.reason, r.headerBlock + REPLAYED, r.framing);
    if (r.body.length > 0 && r.framing !== 'none') ex.write(r.body);
    ex.end();
    this.report(ex.head, r.status, undefined, start);
  }
}

/** A repeat of a stored request: its body is read and hashed, then the stored answer is replayed or refused. */
class Replay implements BodyConsumer, ExchangeObserver {
  private readonly hasher: BodyHasher | undefined;
  private gone = false;

  constructor(
    private readonly gate: Idempotency,
    private readonly ex: Downstream,
    private readonly entry: StoredEntry,
    private readonly start: number,
  ) {
    this.hasher = ex.hasBody ? new BodyHasher(ex.head.chunked) : undefined;
  }

  run(): void {
    if (this.hasher === undefined) {
      this.decide(EMPTY_BODY_HASH);
      return;
    }
    this.ex.observer = this;
    this.ex.setBodyConsumer(this);
  }

  onBodyData(chunk: Buffer): boolean {
    this.hasher!.update(chunk);
    return true;
  }

  onBodyEnd(): void {
    // Answered on the next tick: the engine is still taking in the body's last bytes.
    process.nextTick(decideLater, this);
  }

  afterBody(): void {
    if (!this.gone) this.decide(this.hasher!.digest());
  }

  onClientClose(): void {
    this.gone = true;
  }

  onClientDrain(): void {}

  private decide(bodyHash: string | undefined): void {
    if (bodyHash === this.entry.bodyHash) this.gate.replay(this.ex, this.entry, this.start);
    else this.gate.refuse(this.ex, 'idempotency-mismatch', 'this idempotency-key was first used with another request body', this.start);
  }
}

function decideLater(r: Replay): void {
  r.afterBody();
}
