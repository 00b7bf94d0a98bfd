import type { AuthorizationConfig, IdempotencyConfig } from '../../../common/src/config/types.js';
import { withoutQuery, type AccessLogEntry } from '../../../common/src/logger.js';
import { Authorizer } from './authz.js';
import type { ProxyErrorReason } from '../../../common/src/errors.js';
import { Endpoint } from '../core/endpoint.js';
import type { IdempotencyView, Metrics } from '../telemetry/metrics.js';
import { Call, type CallDeps, type Route } from './call.js';
import type { Downstream } from './exchange.js';
import { headerValue } from './headers.js';
import type { RequestHead } from './http1/parser.js';
import { Idempotency } from './idempotency/gate.js';
import type { UpstreamSettings } from './outbound.js';
import type { PoolOptions } from './http1/pool.js';
import type { H2PoolOptions } from './http2/pool.js';
import type { UpstreamPoolLike } from './exchange.js';
import type { ExchangeHandler } from './http1/server.js';
import type { PoolRegistry } from './pools.js';

export interface InboundOptions {
  readonly service: string;
  /** URL of the local app, e.g. http://127.0.0.1:8080 */
  readonly target: string;
  readonly maxConcurrent: number;
  readonly timeoutMs: number;
  /** The replay store for requests with an `Idempotency-Key`; undefined: off. */
  readonly idempotency: IdempotencyConfig | undefined;
  /** Who may call the service (its policy's `authorization`); undefined: everyone. */
  readonly authorization?: AuthorizationConfig | undefined;
}

/** Time to open a connection to the local app. */
const APP_CONNECT_TIMEOUT_MS = 2_000;

/** The local app as the inbound side's only endpoint; its connections live in the sidecar's pool registry. */
class AppRoute implements Route {
  readonly direction = 'inbound' as const;
  readonly retry = undefined;
  readonly guard = undefined;
  readonly endpoint: Endpoint;
  readonly authority: string;
  /** Replaced (not mutated) when the `http` section changes; the registry applies it to the pool. */
  poolOptions: PoolOptions;
  /** For calls that came in over HTTP/2: the app is spoken to in HTTP/2 too (h2c with prior knowledge). */
  h2Options: H2PoolOptions;
  authz: 'allow' | undefined;

  constructor(
    readonly service: string,
    readonly target: string,
    readonly stats: Route['stats'],
    readonly timeoutMs: number,
    private readonly connections: number,
    upstream: UpstreamSettings,
    private readonly pools: PoolRegistry,
    readonly release: () => void,
  ) {
    const url = new URL(target);
    this.authority = url.host;
    this.endpoint = new Endpoint({ address: url.host, weight: 1, capacity: connections, cost: 1 });
    this.poolOptions = this.optionsFor(upstream);
    this.h2Options = this.h2OptionsFor(upstream);
  }

  h2OptionsFor(upstream: UpstreamSettings): H2PoolOptions {
    return { maxConnections: 4, connectTimeoutMs: APP_CONNECT_TIMEOUT_MS, idleTimeoutMs: upstream.idleTimeoutMs, limits: upstream.limits };
  }

  optionsFor(upstream: UpstreamSettings): PoolOptions {
    return { maxConnections: this.connections, connectTimeoutMs: APP_CONNECT_TIMEOUT_MS, idleTimeoutMs: upstream.idleTimeoutMs, limits: upstream.limits };
  }

  pick(): Endpoint {
    return this.endpoint;
  }

  pool(_endpoint: Endpoint, http2Client: boolean): UpstreamPoolLike {
    return http2Client ? this.pools.getH2(this.endpoint, this.h2Options) : this.pools.get(this.endpoint, this.poolOptions);
  }
}

/**
 * The service's front door: forwards to the local app and sheds load beyond `maxConcurrent` requests in
 * flight with 503, `retry-after` and `x-outrigger-error: overloaded`, so the app keeps its latency. With
 * `inbound.idempotency`, a request with an `Idempotency-Key` reaches the app once (idempotency/gate.ts).
 */
export class InboundProxy {
  private route: AppRoute;
  private limit: number;
  private idempotency: Idempotency | undefined;
  private authz: Authorizer | undefined;
  inflight = 0;

  constructor(
    options: InboundOptions,
    private readonly metrics: Metrics,
    private readonly deps: CallDeps,
    private readonly pools: PoolRegistry,
    upstream: UpstreamSettings,
  ) {
    this.limit = options.maxConcurrent;
    this.route = this.makeRoute(options, upstream);
    this.configureIdempotency(options.idempotency);
    this.configureAuthorization(options.authorization);
  }

  /** A new policy is compiled once (its counters start again); the same policy keeps its authorizer. */
  private configureAuthorization(config: AuthorizationConfig | undefined): void {
    if (config === undefined) this.authz = undefined;
    else if (this.authz === undefined || JSON.stringify(this.authz.config) !== JSON.stringify(config)) this.authz = new Authorizer(config);
    this.route.authz = this.authz === undefined ? undefined : 'allow';
  }

  /** The authorization decisions so far, for /metrics (undefined without a policy). */
  authzView(): { service: string; allowed: number; denied: number } | undefined {
    const a = this.authz;
    return a === undefined ? undefined : { service: this.route.service, allowed: a.allowed, denied: a.denied };
  }

  /** Answers a request the policy does not allow: 403 `forbidden`, counted and logged. */
  private deny(ex: Downstream, start: number): void {
    const who = ex.peer === undefined ? 'a caller without a mesh identity' : `service "${ex.peer}"`;
    const path = withoutQuery(ex.head.target);
    ex.sendError(403, 'forbidden', `the authorization policy of service "${this.route.service}" does not allow ${who} to ${ex.head.method} ${path}`);
    this.ownAnswer(ex.head, 403, 'forbidden', start, { peer: ex.peer, authz: 'deny' });
  }

  /** Turns the replay store on (kept across reloads that change its limits) or off (its entries dropped). */
  private configureIdempotency(config: IdempotencyConfig | undefined): void {
    if (config === undefined) this.idempotency = undefined;
    else if (this.idempotency === undefined) this.idempotency = new Idempotency(config, this.deps.clock, this.answered);
    else this.idempotency.configure(config);
  }

  /** The replay store's counters and size for /metrics (expired entries are dropped first). */
  idempotencyView(): IdempotencyView | undefined {
    const idem = this.idempotency;
    if (idem === undefined) return undefined;
    idem.store.sweep();
    return { service: this.route.service, results: idem.results, bytes: idem.store.bytes, entries: idem.store.size, evictions: idem.store.evictions };
  }

  /** Counts and logs an answer the replay store made itself (a replay, 409 or 422). */
  private readonly answered = (head: RequestHead, status: number, reason: ProxyErrorReason | undefined, start: number): void => {
    this.ownAnswer(head, status, reason, start, { replayed: reason === undefined ? true : undefined });
  };

  /** Counts an answer the sidecar made itself (no attempt reached the app) and writes its access-log line. */
  private ownAnswer(
    head: RequestHead,
    status: number,
    reason: ProxyErrorReason | undefined,
    start: number,
    extra: Pick<AccessLogEntry, 'replayed' | 'peer' | 'authz'>,
  ): void {
    const elapsed = this.deps.clock.now() - start;
    this.route.stats.record(status, elapsed / 1000);
    const log = this.deps.accessLog;
    if (log.active) {
      log.write({
        direction: 'inbound',
        service: this.route.service,
        method: head.method,
        path: head.target,
        status,
        endpoint: undefined,
        durationMs: Math.round(elapsed * 1000) / 1000,
        requestId: headerValue(head.headers, 'x-request-id'),
        error: reason,
        attempts: 0,
        ...extra,
      });
    }
  }

  private makeRoute(o: InboundOptions, upstream: UpstreamSettings): AppRoute {
    return new AppRoute(o.service, o.target, this.metrics.trafficStats('inbound', o.service), o.timeoutMs, o.maxConcurrent, upstream, this.pools, this.release);
  }

  /**
   * Applies a reloaded inbound section: a new target, pool size or timeout gets a new route and pool (the old
   * pool's requests finish); new `http` settings apply to the same pool.
   */
  update(options: InboundOptions, upstream: UpstreamSettings): void {
    this.limit = options.maxConcurrent;
    this.configureIdempotency(options.idempotency);
    const old = this.route;
    if (options.target !== old.target || options.maxConcurrent !== old.endpoint.capacity || options.timeoutMs !== old.timeoutMs) {
      this.route = this.makeRoute(options, upstream);
      this.pools.release([old.endpoint]);
    } else {
      old.poolOptions = old.optionsFor(upstream);
      old.h2Options = old.h2OptionsFor(upstream);
    }
    this.configureAuthorization(options.authorization);
  }

  readonly handler: ExchangeHandler = {
    onRequest: (ex) => {
      const start = this.deps.clock.now();
      // Authorization first: a caller that may not call the service takes no admission slot.
      const authz = this.authz;
      if (authz !== undefined && !authz.check(ex.peer, ex.head.method, ex.head.target).allowed) {
        this.deny(ex, start);
        return;
      }
      if (this.inflight >= this.limit) {
        ex.sendError(503, 'overloaded', `more than ${this.limit} requests in flight`, { 'retry-after': '1' });
        this.route.stats.record(503, (this.deps.clock.now() - start) / 1000);
        return;
      }
      let down: Downstream = ex;
      const idem = this.idempotency;
      if (idem !== undefined) {
        const d = idem.intercept(ex, start);
        if (d === undefined) return;
        down = d;
      }
      this.inflight++;
      new Call(down, this.route, undefined, this.deps, start).run();
    },
    // The inbound side is the service's own door, not a proxy: no tunnels.
    onConnect: () => undefined,
    onRefused: (status) => this.route.stats.record(status, 0),
  };

  private readonly release = (): void => {
    this.inflight--;
  };
}
