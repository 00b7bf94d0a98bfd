import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { CircuitBreakerConfig } from '../../../common/src/config/types.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** The outcome of one call through a breaker, reported once. */
export interface BreakerTicket {
  success(): void;
  failure(): void;
  /**
   * The call failed, but not in a way this breaker should count (the service breaker, when a healthy
   * endpoint remains): it stays a fire in the window, neither success nor failure, and a half-open probe is
   * given back so that the next call probes.
   */
  excuse(): void;
}

/** Buckets of the rolling window (as opossum's rollingCountBuckets). */
const BUCKETS = 10;

export interface BreakerView {
  readonly service: string;
  readonly endpoint: string | null;
  readonly state: BreakerState;
  readonly counts: { readonly fires: number; readonly successes: number; readonly failures: number; readonly rejects: number };
  readonly since: string;
  readonly nextAttemptAt: string | null;
}

/**
 * One circuit breaker, with opossum's semantics: closed → open when, with at least `volumeThreshold` calls
 * in the rolling window, the error percentage exceeds the threshold; open → half-open after
 * `resetTimeout`; half-open admits one probe, whose success closes it and whose failure opens it again
 * (as in opossum, any call that ends while half-open decides). The window is 10 buckets, rotated by the
 * factory's shared timer. Admission is synchronous (`admit()`), and a call is counted with plain numbers:
 * `begin()` returns the breaker itself as the ticket, so the request path allocates nothing.
 */
export class Breaker implements BreakerTicket {
  private _state: BreakerState = 'closed';
  private sinceWall: number;
  /** Half-open: the single probe has been let through. */
  private probeTaken = false;
  private resetTimer: TimerHandle | undefined;
  private stopped = false;
  /** Per bucket: fires, successes, failures (bucket `head` is the current one). */
  private readonly buckets = new Float64Array(BUCKETS * 3);
  private head = 0;
  private fires = 0;
  private successes = 0;
  private failures = 0;
  rejects = 0;

  constructor(
    readonly service: string,
    readonly endpoint: Endpoint | undefined,
    readonly config: CircuitBreakerConfig,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onChange: (breaker: Breaker, state: BreakerState) => void,
  ) {
    this.sinceWall = clock.wallNow();
  }

  get state(): BreakerState {
    return this._state;
  }

  /** Whether a call may go through now: closed, or half-open with its single probe not yet taken. */
  admit(): boolean {
    if (this._state === 'closed' || (this._state === 'half-open' && !this.probeTaken)) return true;
    this.rejects++;
    return false;
  }

  /** Starts a call (after `admit()`); the returned ticket (the breaker) takes its outcome. */
  begin(): BreakerTicket {
    if (this._state === 'half-open') this.probeTaken = true;
    this.buckets[this.head * 3]!++;
    this.fires++;
    return this;
  }

  success(): void {
    this.buckets[this.head * 3 + 1]!++;
    this.successes++;
    if (this._state === 'half-open') this.change('closed');
  }

  failure(): void {
    this.buckets[this.head * 3 + 2]!++;
    this.failures++;
    if (this._state === 'half-open') {
      this.open();
      return;
    }
    if (this._state !== 'closed' || this.fires < this.config.volumeThreshold) return;
    if ((this.failures / this.fires) * 100 > this.config.errorThresholdPercentage) this.open();
  }

  excuse(): void {
    if (this._state === 'half-open') this.probeTaken = false;
  }

  /**
   * Closed, and not failing more than `errorThresholdPercentage` % of its calls in the window (whatever
   * their number): the endpoint of an endpoint breaker looks able to serve.
   */
  get healthy(): boolean {
    return this._state === 'closed' && this.failures * 100 <= this.fires * this.config.errorThresholdPercentage;
  }

  /** Moves the window on by one bucket (the factory's timer, every rollingWindow / 10). */
  rotate(): void {
    const b = this.buckets;
    const next = (this.head + 1) % BUCKETS;
    const i = next * 3;
    this.fires -= b[i]!;
    this.successes -= b[i + 1]!;
    this.failures -= b[i + 2]!;
    b[i] = 0;
    b[i + 1] = 0;
    b[i + 2] = 0;
    this.head = next;
  }

  private open(): void {
    if (this._state === 'open') return;
    this.change('open');
    this.resetTimer = this.timers.after(this.config.resetTimeoutMs, this.halfOpen);
  }

  private readonly halfOpen = (): void => {
    this.resetTimer = undefined;
    if (this.stopped) return;
    this.probeTaken = false;
    this.change('half-open');
  };

  private change(state: BreakerState): void {
    if (this.stopped) return;
    if (state !== 'open') {
      this.resetTimer?.cancel();
      this.resetTimer = undefined;
    }
    this._state = state;
    this.sinceWall = this.clock.wallNow();
    this.onChange(this, state);
  }

  view(): BreakerView {
    return {
      service: this.service,
      endpoint: this.endpoint?.address ?? null,
      state: this._state,
      counts: { fires: this.fires, successes: this.successes, failures: this.failures, rejects: this.rejects },
      since: new Date(this.sinceWall).toISOString(),
      nextAttemptAt: this._state === 'open' ? new Date(this.sinceWall + this.config.resetTimeoutMs).toISOString() : null,
    };
  }

  /** No more state changes or timers (the breaker was released). */
  shutdown(): void {
    this.stopped = true;
    this.resetTimer?.cancel();
    this.resetTimer = undefined;
  }
}

/**
 * Creates breakers and shares one bucket-rotation timer per window length among all of them, instead of
 * timers per breaker.
 */
export class BreakerFactory {
  private readonly rotators = new Map<number, { breakers: Set<Breaker>; timer: TimerHandle }>();

  constructor(
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly onChange: (breaker: Breaker, state: BreakerState) => void,
  ) {}

  create(service: string, endpoint: Endpoint | undefined, config: CircuitBreakerConfig): Breaker {
    let r = this.rotators.get(config.rollingWindowMs);
    if (r === undefined) {
      const breakers = new Set<Breaker>();
      const timer = this.timers.every(config.rollingWindowMs / BUCKETS, () => {
        for (const b of breakers) b.rotate();
      });
      r = { breakers, timer };
      this.rotators.set(config.rollingWindowMs, r);
    }
    const b = new Breaker(service, endpoint, config, this.clock, this.timers, this.onChange);
    r.breakers.add(b);
    return b;
  }

  release(breaker: Breaker): void {
    breaker.shutdown();
    const r = this.rotators.get(breaker.config.rollingWindowMs);
    if (r && r.breakers.delete(breaker) && r.breakers.size === 0) {
      r.timer.cancel();
      this.rotators.delete(breaker.config.rollingWindowMs);
    }
  }

  close(): void {
    for (const r of this.rotators.values()) r.timer.cancel();
    this.rotators.clear();
  }
}
