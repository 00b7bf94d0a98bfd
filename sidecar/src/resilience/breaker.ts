import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { CircuitBreakerConfig } from '../../../common/src/config/types.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** The outcome of one call through a breaker, reported once. */
export interface BreakerTicket {
  success(): void;
  failure(): void;
}

class Ticket implements BreakerTicket {
  resolve!: () => void;
  reject!: (err: Error) => void;
  readonly promise: Promise<void>;
  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Marked handled: if opossum never consumes the ticket (breaker shut down), failing it must not crash.
    this.promise.catch(noop);
  }
  success(): void {
    this.resolve();
  }
  failure(): void {
    this.reject(failureMark);
  }
}

const failureMark = new Error('upstream failure');
const noop = (): void => {};
const passThrough = (p: Promise<void>): Promise<void> => p;

export interface BreakerView {
  readonly service: string;
  readonly endpoint: string | null;
  readonly state: BreakerState;
  readonly counts: { readonly fires: number; readonly successes: number; readonly failures: number; readonly rejects: number };
  readonly since: string;
  readonly nextAttemptAt: string | null;
}

/**
 * One circuit breaker (opossum): closed → open when the error percentage over the rolling window passes
 * the threshold with at least `volumeThreshold` calls; open → half-open after `resetTimeout`; the one probe
 * admitted in half-open decides. opossum's own call timer is off (`timeout: false`): the proxy's timeouts
 * decide failures. Admission is checked synchronously with `admit()` so an open breaker fails fast.
 */
export class Breaker {
  private readonly cb: CircuitBreaker<[Promise<void>], void>;
  private _state: BreakerState = 'closed';
  private sinceWall: number;
  rejects = 0;

  constructor(
    readonly service: string,
    readonly endpoint: Endpoint | undefined,
    readonly config: CircuitBreakerConfig,
    rotate: EventEmitter,
    private readonly clock: Clock,
    onChange: (breaker: Breaker, state: BreakerState) => void,
  ) {
    this.sinceWall = clock.wallNow();
    this.cb = new CircuitBreaker(passThrough, {
      timeout: false,
      errorThresholdPercentage: config.errorThresholdPercentage,
      volumeThreshold: config.volumeThreshold,
      resetTimeout: config.resetTimeoutMs,
      rollingCountTimeout: config.rollingWindowMs,
      rollingCountBuckets: 10,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController: rotate,
    });
    const change = (state: BreakerState): void => {
      this._state = state;
      this.sinceWall = this.clock.wallNow();
      onChange(this, state);
    };
    this.cb.on('open', () => change('open'));
    this.cb.on('halfOpen', () => change('half-open'));
    this.cb.on('close', () => change('closed'));
  }

  get state(): BreakerState {
    return this._state;
  }

  /** Whether a call may go through now: closed, or half-open with its single probe not yet taken. */
  admit(): boolean {
    if (this.cb.closed || this.cb.pendingClose) return true;
    this.rejects++;
    return false;
  }

  /** Starts a call (after `admit()`); the ticket reports its outcome. */
  begin(): BreakerTicket {
    const t = new Ticket();
    this.cb.fire(t.promise).catch(noop);
    return t;
  }

  view(): BreakerView {
    const s = this.cb.stats;
    return {
      service: this.service,
      endpoint: this.endpoint?.address ?? null,
      state: this._state,
      counts: { fires: s.fires, successes: s.successes, failures: s.failures, rejects: this.rejects },
      since: new Date(this.sinceWall).toISOString(),
      nextAttemptAt: this._state === 'open' ? new Date(this.sinceWall + this.config.resetTimeoutMs).toISOString() : null,
    };
  }

  shutdown(): void {
    this.cb.shutdown();
  }
}

/**
 * Creates breakers and shares one bucket-rotation timer per window length among all of them (opossum's
 * `rotateBucketController`), instead of two intervals per breaker.
 */
export class BreakerFactory {
  private readonly rotators = new Map<number, { emitter: EventEmitter; timer: TimerHandle; users: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onChange: (breaker: Breaker, state: BreakerState) => void,
  ) {}

  create(service: string, endpoint: Endpoint | undefined, config: CircuitBreakerConfig): Breaker {
    let r = this.rotators.get(config.rollingWindowMs);
    if (r === undefined) {
      const emitter = new EventEmitter();
      emitter.setMaxListeners(0);
      const timer = this.timers.every(config.rollingWindowMs / 10, () => emitter.emit('rotate'));
      r = { emitter, timer, users: 0 };
      this.rotators.set(config.rollingWindowMs, r);
    }
    r.users++;
    return new Breaker(service, endpoint, config, r.emitter, this.clock, this.onChange);
  }

  release(breaker: Breaker): void {
    breaker.shutdown();
    const r = this.rotators.get(breaker.config.rollingWindowMs);
    if (r && --r.users === 0) {
      r.timer.cancel();
      this.rotators.delete(breaker.config.rollingWindowMs);
    }
  }

  close(): void {
    for (const r of this.rotators.values()) r.timer.cancel();
    this.rotators.clear();
  }
}
