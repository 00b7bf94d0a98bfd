import type { Cluster } from '../cluster/cluster.js';
import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import { HealthFlag } from '../core/endpoint.js';
import type { CircuitBreakerConfig, ServiceConfig } from '../../../common/src/config/types.js';
import type { Outcome } from '../health/outlier/detector.js';
import type { Breaker, BreakerFactory, BreakerView } from './breaker.js';
import { RetryBudget } from './retry.js';

/** Receives every attempt's outcome (the outlier detector); O(1) per call. */
export interface OutcomeSink {
  record(endpoint: Endpoint, outcome: Outcome): void;
}

export type RetryReason = 'connect-failure' | 'reset' | 'timeout' | 'status';

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

  endpointBreaker(ep: Endpoint): Breaker | undefined {
    return this.endpointBreakers.get(ep);
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
