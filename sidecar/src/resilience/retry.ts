import type { Clock } from '../../../common/src/clock.js';
import type { Random } from '../../../common/src/random.js';
import type { ProxyErrorReason } from '../../../common/src/errors.js';
import type { RetryConfig } from '../../../common/src/config/types.js';

/** Methods that may be replayed without an idempotency key (RFC 9110 §9.2.2 idempotent methods). */
export function isIdempotentMethod(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
    case 'PUT':
    case 'DELETE':
    case 'TRACE':
      return true;
    default:
      return false;
  }
}

/** What went wrong with one attempt, as the retry rules see it. */
export type AttemptFailure =
  | { readonly kind: 'error'; readonly reason: ProxyErrorReason }
  | { readonly kind: 'status'; readonly status: number }
  /** A gRPC call answered with this non-zero `grpc-status` (trailers-only: nothing was committed yet). */
  | { readonly kind: 'grpc'; readonly code: number };

/** The `retry.on` names of gRPC status codes (CANCELLED 1, DEADLINE_EXCEEDED 4, INTERNAL 13, RESOURCE_EXHAUSTED 8, UNAVAILABLE 14). */
const GRPC_RETRY_ON: Readonly<Record<number, RetryConfig['on'][number]>> = {
  1: 'cancelled',
  4: 'deadline-exceeded',
  8: 'resource-exhausted',
  13: 'internal',
  14: 'unavailable',
};

/**
 * Whether `failure` is retriable under `config.on`. `gateway-error` covers 502/503/504 and per-try
 * timeouts (as Envoy's), `5xx` covers every 5xx status and connect failures, resets and timeouts; both
 * cover the gRPC status UNAVAILABLE, and each gRPC code name covers its code.
 */
export function isRetriableFailure(config: RetryConfig, failure: AttemptFailure): boolean {
  const on = config.on;
  if (failure.kind === 'error') {
    switch (failure.reason) {
      case 'connect-failure':
        return on.includes('connect-failure') || on.includes('5xx');
      case 'reset':
        return on.includes('reset') || on.includes('5xx');
      case 'timeout':
        return on.includes('timeout') || on.includes('gateway-error') || on.includes('5xx');
      default:
        return false;
    }
  }
  if (failure.kind === 'grpc') {
    const cond = GRPC_RETRY_ON[failure.code];
    if (cond !== undefined && on.includes(cond)) return true;
    // UNAVAILABLE is gRPC's 503 (as the gRPC HTTP mapping has it): the default conditions retry it too.
    return failure.code === 14 && (on.includes('gateway-error') || on.includes('5xx'));
  }
  const s = failure.status;
  if (on.includes('5xx') && s >= 500 && s <= 599) return true;
  if (on.includes('gateway-error') && s >= 502 && s <= 504) return true;
  if (on.includes('retriable-status') && config.statuses.includes(s)) return true;
  return false;
}

/** True when the status would be retried under `config` (for deciding before committing a response). */
export function isRetriableStatus(config: RetryConfig, status: number): boolean {
  if (status < 500 && !config.statuses.includes(status)) return false;
  return isRetriableFailure(config, { kind: 'status', status });
}

/**
 * Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(max, base × 2^(retry-1))].
 * `retry` counts from 1 (the first retry).
 */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random: Random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(retry - 1, 0));
  return random.next() * ceiling;
}

/**
 * A retry budget (as Linkerd's): over a sliding window, retries may be at most `ratio` × requests plus
 * `minPerSecond` per second, so retries can never multiply an outage. Each request deposits, each retry withdraws; O(1) per call, no timers: the
 * window's buckets are rotated lazily from the clock.
 */
export class RetryBudget {
  private static readonly BUCKETS = 10;
  private readonly deposits = new Float64Array(RetryBudget.BUCKETS);
  private readonly withdrawals = new Float64Array(RetryBudget.BUCKETS);
  private readonly bucketMs: number;
  private current = 0;
  private currentStart: number;
  private depositSum = 0;
  private withdrawSum = 0;
  private readonly createdAt: number;

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
    private readonly clock: Clock,
    private readonly windowMs = 10_000,
  ) {
    this.bucketMs = windowMs / RetryBudget.BUCKETS;
    this.currentStart = clock.now();
    this.createdAt = this.currentStart;
  }

  private rotate(): void {
    const now = this.clock.now();
    let steps = Math.floor((now - this.currentStart) / this.bucketMs);
    if (steps <= 0) return;
    this.currentStart += steps * this.bucketMs;
    if (steps > RetryBudget.BUCKETS) steps = RetryBudget.BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.current = (this.current + 1) % RetryBudget.BUCKETS;
      this.depositSum -= this.deposits[this.current]!;
      this.withdrawSum -= this.withdrawals[this.current]!;
      this.deposits[this.current] = 0;
      this.withdrawals[this.current] = 0;
    }
  }

  /** Records one request (not a retry). */
  deposit(): void {
    this.rotate();
    this.deposits[this.current]!++;
    this.depositSum++;
  }

  /**
   * The retries the window allows: `ratio` of its requests plus `minPerSecond` for each second it covers
   * (a new budget has not yet covered a whole window, so its reserve starts at one second's worth and
   * builds up instead of allowing a whole window's burst at start).
   */
  private allowance(): number {
    const covered = Math.min(this.windowMs, Math.max(1_000, this.clock.now() - this.createdAt));
    return this.depositSum * this.ratio + (this.minPerSecond * covered) / 1000;
  }

  /** Takes one retry from the budget; false when the budget is spent. */
  tryWithdraw(): boolean {
    this.rotate();
    // The epsilon keeps float error (90 × 0.7 = 62.99…) from costing a whole retry.
    if (this.withdrawSum + 1 > this.allowance() + 1e-9) return false;
    this.withdrawals[this.current]!++;
    this.withdrawSum++;
    return true;
  }

  /** Retries still allowed in the current window (for the admin view). */
  get remaining(): number {
    this.rotate();
    return Math.max(0, Math.floor(this.allowance() - this.withdrawSum + 1e-9));
  }
}

/** Parses `x-outrigger-deadline-ms` (remaining milliseconds); undefined when absent or not a positive number. */
export function parseDeadlineHeader(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(Array.isArray(value) ? value[0] : value);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}
