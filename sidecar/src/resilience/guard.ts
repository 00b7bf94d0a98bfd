import type { Cluster } from '../cluster/cluster.js';
import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import { HealthFlag } from '../core/endpoint.js';
import type { CircuitBreakerConfig, ServiceConfig } from '../../../common/src/config/types.js';
import { Outcome } from '../health/outlier/detector.js';
import type { Breaker, BreakerFactory, BreakerTicket, BreakerView } from './breaker.js';
import { isRetriableFailure, RetryBudget, type AttemptFailure } from './retry.js';

/** Receives every attempt's outcome (the outlier detector); O(1) per call. */
export interface OutcomeSink {
  record(endpoint: Endpoint, outcome: Outcome): void;
}

export type RetryReason = 'connect-failure' | 'reset' | 'timeout' | 'status';

/**
 * What one call holds from its service's guard while it runs: its admission, the service breaker's ticket,
 * whether it counts as a retry in flight, and how many waits (backoff, body buffering) it holds. The guard
 * changes it; the call only passes it back.
 */
export interface GuardSlot {
  admitted: boolean;
  serviceTicket: BreakerTicket | undefined;
  retrying: boolean;
  waits: number;
}

/** Why the guard refuses a call (the reason the client is told), with the words for it. */
export interface Refusal {
  readonly reason: 'overloaded' | 'circuit-open';
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>> | undefined;
}

/** What the retry rules need to know of a call that just failed a try. */
export interface RetryAsk {
  /** Tries made so far (the first try included). */
  readonly attempts: number;
  /** Idempotent method or an idempotency key: safe to send again. */
  readonly replayable: boolean;
  /** Bytes of a streamed body have gone upstream (it cannot be sent again). */
  readonly bodyStarted: boolean;
}

/** What a call keeps between picks: the endpoints already tried or skipped, and the last pick's ticket. */
export interface PickSlot {
  tried: Endpoint[] | undefined;
  ticket: BreakerTicket | undefined;
}

/** The endpoint's breaker admits no call now (open, or half-open with its probe taken). */
export const BREAKER_OPEN = null;

const RETRY_AFTER = { 'retry-after': '1' } as const;

/**
 * The resilience state of one upstream service: retry budget, resource limits (Envoy's circuit-breaking
 * thresholds), the service breaker and one breaker per endpoint. Built and updated on the control path;
 * the request path reads and counts.
 */
export class ServiceGuard {
  /** Requests in flight to the service (limits.maxConcurrent). */
  active = 0;
  /** Requests waiting (in backoff before a retry, or buffering a body to make it replayable). */
  pending = 0;
  /** Retries in flight (limits.maxRetries). */
  activeRetries = 0;
  readonly retries: Record<RetryReason, number> = { 'connect-failure': 0, reset: 0, timeout: 0, status: 0 };
  budget: RetryBudget;
  private budgetConfig: ServiceConfig['retry']['budget'];
  serviceBreaker: Breaker | undefined;
  private readonly endpointBreakers = new Map<Endpoint, Breaker>();
  outcomes: OutcomeSink | undefined;

  constructor(
    readonly cluster: Cluster,
    private readonly breakers: BreakerFactory,
    private readonly clock: Clock,
  ) {
    const cfg = cluster.config;
    this.budgetConfig = cfg.retry.budget;
    this.budget = new RetryBudget(cfg.retry.budget.ratio, cfg.retry.budget.minPerSecond, clock);
    this.sync();
  }

  get config(): ServiceConfig {
    return this.cluster.config;
  }

  /** Re-reads the cluster's config and endpoints: new breakers for new endpoints, old ones released. */
  sync(): void {
    const cfg = this.cluster.config;
    const b = cfg.retry.budget;
    // The budget's window survives updates that leave its settings alone.
    if (this.budgetConfig.ratio !== b.ratio || this.budgetConfig.minPerSecond !== b.minPerSecond) {
      this.budget = new RetryBudget(b.ratio, b.minPerSecond, this.clock);
      this.budgetConfig = b;
    }
    const cb = cfg.circuitBreaker;
    // Breakers (and their counts) survive updates that leave their settings alone.
    const same = (a: CircuitBreakerConfig): boolean => cb !== undefined && JSON.stringify(a) === JSON.stringify(cb);
    if (this.serviceBreaker && !same(this.serviceBreaker.config)) {
      this.breakers.release(this.serviceBreaker);
      this.serviceBreaker = undefined;
    }
    if (cb !== undefined && this.serviceBreaker === undefined) this.serviceBreaker = this.breakers.create(this.cluster.name, undefined, cb);
    const live = new Set(this.cluster.endpoints);
    for (const [ep, br] of this.endpointBreakers) {
      if (!live.has(ep) || !same(br.config)) {
        this.breakers.release(br);
        this.endpointBreakers.delete(ep);
        if (live.has(ep)) this.cluster.setFlag(ep, HealthFlag.Breaker, false);
      }
    }
    if (cb !== undefined) {
      for (const ep of this.cluster.endpoints) {
        if (!this.endpointBreakers.has(ep)) this.endpointBreakers.set(ep, this.breakers.create(this.cluster.name, ep, cb));
      }
    }
  }

  /**
   * Lets a new call in, or says why not: the service has `limits.maxConcurrent` calls in flight, or its
   * breaker is open. An admitted call holds a slot (and the service breaker's ticket) until `leave`.
   */
  admit(slot: GuardSlot): Refusal | undefined {
    const limit = this.cluster.config.limits.maxConcurrent;
    if (this.active >= limit) {
      return { reason: 'overloaded', message: `service "${this.cluster.name}" has ${this.active} requests in flight (limit ${limit})`, headers: RETRY_AFTER };
    }
    const sb = this.serviceBreaker;
    // A service without endpoints (none discovered yet, or all gone) is not failing: its answer,
    // no-healthy-upstream, is no business of its breaker.
    if (sb !== undefined && this.cluster.endpoints.length > 0) {
      if (!sb.admit()) return { reason: 'circuit-open', message: `the circuit of service "${this.cluster.name}" is open` };
      slot.serviceTicket = sb.begin();
    }
    this.active++;
    slot.admitted = true;
    this.budget.deposit();
    return undefined;
  }

  /** A ticket for one try on `ep`: undefined when it has no breaker, BREAKER_OPEN when its breaker admits none. */
  endpointTicket(ep: Endpoint): BreakerTicket | undefined | typeof BREAKER_OPEN {
    const br = this.endpointBreakers.get(ep);
    if (br === undefined) return undefined;
    return br.admit() ? br.begin() : BREAKER_OPEN;
  }

  /**
   * Picks an endpoint for a try, with its breaker's ticket in `slot.ticket`. An endpoint whose breaker
   * admits no call (open, or half-open with its probe taken) is skipped and noted in `slot.tried`; after
   * four such picks, BREAKER_OPEN. Undefined when there is nothing to pick.
   */
  pick(pick: (avoid: readonly Endpoint[] | undefined) => Endpoint | undefined, slot: PickSlot): Endpoint | undefined | typeof BREAKER_OPEN {
    slot.ticket = undefined;
    let endpoint = pick(slot.tried);
    for (let i = 0; endpoint !== undefined; i++) {
      const t = this.endpointTicket(endpoint);
      if (t !== BREAKER_OPEN) {
        slot.ticket = t;
        return endpoint;
      }
      if (i === 3) return BREAKER_OPEN;
      (slot.tried ??= []).push(endpoint);
      endpoint = pick(slot.tried);
    }
    return undefined;
  }

  /** Passive health: outlier detection and the endpoint's breaker learn how a try went. */
  report(ep: Endpoint, ticket: BreakerTicket | undefined, outcome: Outcome): void {
    this.outcomes?.record(ep, outcome);
    if (ticket !== undefined) {
      if (outcome === Outcome.Success) ticket.success();
      else ticket.failure();
    }
  }

  /**
   * Whether a failed try may be tried again under the service's retry policy, its limits and its budget:
   * 'retry' (then it is counted, and taken from the budget), 'no', or 'budget-exhausted'.
   */
  retryDecision(slot: GuardSlot, ask: RetryAsk, failure: AttemptFailure, kind: RetryReason): 'retry' | 'no' | 'budget-exhausted' {
    const retry = this.cluster.config.retry;
    if (ask.attempts > retry.attempts) return 'no';
    if (!isRetriableFailure(retry, failure)) return 'no';
    // A body that has started to flow upstream cannot be sent again unless it was kept in memory.
    if (ask.bodyStarted) return 'no';
    // Without an idempotency key, a non-idempotent request is retried only if the connection failed
    // before any byte was written.
    if (!ask.replayable && kind !== 'connect-failure') return 'no';
    if (!slot.retrying && this.activeRetries >= this.cluster.config.limits.maxRetries) return 'no';
    if (!this.budget.tryWithdraw()) return 'budget-exhausted';
    this.retries[kind]++;
    if (!slot.retrying) {
      slot.retrying = true;
      this.activeRetries++;
    }
    return 'retry';
  }

  /** Takes a waiting place (backoff before a retry, or reading a body to make it replayable); false when `limits.maxPending` wait already. */
  wait(slot: GuardSlot): boolean {
    if (this.pending >= this.cluster.config.limits.maxPending) return false;
    this.pending++;
    slot.waits++;
    return true;
  }

  /** Gives a waiting place back. */
  endWait(slot: GuardSlot): void {
    if (slot.waits > 0) {
      slot.waits--;
      this.pending--;
    }
  }

  /**
   * Tells the service breaker how a call went (a TCP connection: once connected). A call that finally
   * failed (after its retries and failover) counts as the service's failure only when no endpoint of the
   * service looks healthy: while one does, the failure is one endpoint's, which its own breaker and
   * outlier detection take out, and the service breaker excuses it.
   */
  settle(slot: GuardSlot, success: boolean): void {
    const t = slot.serviceTicket;
    if (t === undefined) return;
    slot.serviceTicket = undefined;
    if (success) t.success();
    else if (this.hasHealthyEndpoint()) t.excuse();
    else t.failure();
  }

  /** Some endpoint is eligible and its breaker closed and within its error threshold (failure path only). */
  hasHealthyEndpoint(): boolean {
    for (const ep of this.cluster.endpoints) {
      if (!ep.eligible) continue;
      const br = this.endpointBreakers.get(ep);
      if (br === undefined || br.healthy) return true;
    }
    return false;
  }

  /** The call is over: everything it holds is given back, and the service breaker learns its status. */
  leave(slot: GuardSlot, status: number): void {
    while (slot.waits > 0) this.endWait(slot);
    if (slot.admitted) {
      slot.admitted = false;
      this.active--;
    }
    if (slot.retrying) {
      slot.retrying = false;
      this.activeRetries--;
    }
    this.settle(slot, status < 500);
  }

  breakerViews(): BreakerView[] {
    const out: BreakerView[] = [];
    if (this.serviceBreaker) out.push(this.serviceBreaker.view());
    for (const b of this.endpointBreakers.values()) out.push(b.view());
    return out;
  }

  close(): void {
    if (this.serviceBreaker) this.breakers.release(this.serviceBreaker);
    this.serviceBreaker = undefined;
    for (const b of this.endpointBreakers.values()) this.breakers.release(b);
    this.endpointBreakers.clear();
  }
}
