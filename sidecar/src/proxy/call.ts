import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Clock } from '../core/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { ProxyErrorReason } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { TimerHandle, Timers } from '../core/timers.js';
import type { RetryConfig } from '../config/types.js';
import type { BreakerTicket } from '../resilience/breaker.js';
import { Outcome, outcomeOfStatus } from '../health/outlier/detector.js';
import type { RetryReason, ServiceGuard } from '../resilience/guard.js';
import { backoffMs, isIdempotentMethod, isRetriableFailure, isRetriableStatus, parseDeadlineHeader } from '../resilience/retry.js';
import type { AccessLog } from '../telemetry/logger.js';
import type { Direction, TrafficStats } from '../telemetry/stats.js';
import { forwardRequestHeaders, stripResponseHopByHop } from './headers.js';
import { sendProxyError } from './respond.js';

/** Where a request goes: built per cluster (or for the inbound app), reused by every request. */
export interface Route {
  readonly direction: Direction;
  readonly service: string;
  readonly stats: TrafficStats;
  /** Overall deadline of a request, unless `x-outrigger-deadline-ms` asks for less. */
  readonly timeoutMs: number;
  /** Retry policy; undefined means one attempt only (the inbound side). */
  readonly retry: RetryConfig | undefined;
  /** Limits, breakers, budget; undefined on the inbound side. */
  readonly guard: ServiceGuard | undefined;
  /** Chooses an endpoint, avoiding those already tried where possible. */
  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined;
  /** The connection pool of an endpoint. */
  dispatcher(endpoint: Endpoint): Dispatcher;
}

export interface CallDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly timers: Timers;
  readonly accessLog: AccessLog;
}

/** Largest request body kept in memory so that a retriable request can be replayed (as Envoy's buffer limit). */
export const REPLAY_BUFFER_LIMIT = 1024 * 1024;

const DEADLINE_HEADER = 'x-outrigger-deadline-ms';

const perTryTimeoutError: Error & { code: string } = Object.assign(new Error('no response headers within the per-try timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' });

/** Maps an undici/socket error to the reason the client is told. */
export function classifyUpstreamError(err: Error & { code?: string }): ProxyErrorReason {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect-failure';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timeout';
    default:
      return 'reset';
  }
}

function uncork(res: ServerResponse): void {
  if (res.writableCorked > 0) res.uncork();
}

function hasAny(obj: object): boolean {
  for (const _ in obj) return true;
  return false;
}

/** One try of a call against one endpoint: an undici dispatch handler that reports back to its call. */
class Attempt implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined;
  /** Set when the call decided to drop this attempt (retrying or finished); its callbacks are ignored. */
  dropped = false;
  finished = false;
  /** Per-try timer (until response headers); undici's own header timeout is too coarse below 1 s. */
  timer: TimerHandle | undefined;
  timedOut = false;
  tryTimeoutMs = 0;

  constructor(
    readonly call: Call,
    readonly endpoint: Endpoint,
    readonly ticket: BreakerTicket | undefined,
    readonly start: number,
    readonly isRetry: boolean,
  ) {
    endpoint.inflight++;
  }

  /** Fires when the per-try timeout passes before response headers: aborts with a timeout error. */
  readonly onTimeout = (): void => {
    this.timer = undefined;
    if (this.finished || this.dropped) return;
    this.timedOut = true;
    if (this.controller && !this.controller.aborted) this.controller.abort(perTryTimeoutError);
  };

  stopTimer(): void {
    if (this.timer !== undefined) {
      this.timer.cancel();
      this.timer = undefined;
    }
  }

  /** Releases the endpoint's in-flight slot exactly once. */
  done(): boolean {
    this.stopTimer();
    if (this.finished) return false;
    this.finished = true;
    this.endpoint.inflight--;
    this.endpoint.completed++;
    return true;
  }

  drop(): void {
    this.dropped = true;
    if (this.controller && !this.controller.aborted) this.controller.abort(new Error('attempt abandoned'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.dropped) controller.abort(new Error('attempt abandoned'));
    else if (this.timedOut) controller.abort(perTryTimeoutError);
  }

  onRequestSent(): void {
    if (this.timer === undefined && !this.finished && !this.dropped && this.tryTimeoutMs > 0) {
      this.timer = this.call.timers.after(this.tryTimeoutMs, this.onTimeout);
    }
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.stopTimer();
    if (!this.dropped) this.call.onHeaders(this, controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.dropped) this.call.onData(controller, chunk);
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.dropped) {
      this.done();
      return;
    }
    this.call.onEnd(this, trailers);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.dropped) {
      this.done();
      return;
    }
    this.call.onError(this, this.timedOut ? perTryTimeoutError : err);
  }
}

/**
 * One client request: picks an endpoint, forwards, and on a retriable failure re-picks another endpoint
 * after a jittered backoff, within the retry budget, the limits and the deadline. The response streams to
 * the client with back-pressure once an attempt is accepted (committed); after that nothing is retried.
 */
export class Call {
  private readonly headers: string[];
  private readonly deadlineIndex: number;
  readonly timers: Timers;
  private readonly requestId: string;
  private readonly deadlineAt: number;
  private readonly method: string;
  private readonly path: string;
  private body: Buffer | IncomingMessage | null;
  private readonly replayable: boolean;
  private readonly keyed: boolean;
  private tried: Endpoint[] | undefined;
  private attempts = 0;
  private current: Attempt | undefined;
  private committed: Attempt | undefined;
  private finished = false;
  private clientGone = false;
  private status = 0;
  private reason: ProxyErrorReason | undefined;
  private serviceTicket: BreakerTicket | undefined;
  private holdsActive = false;
  private retryingNow = false;
  private corked = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly route: Route,
    private readonly hashKey: string | undefined,
    private readonly deps: CallDeps,
    private readonly start: number,
  ) {
    const fwd = forwardRequestHeaders(req.rawHeaders, req.socket.remoteAddress, 'http');
    this.timers = deps.timers;
    this.headers = fwd.headers;
    this.requestId = fwd.requestId;
    this.method = req.method ?? 'GET';
    const url = req.url ?? '/';
    this.path = url.charCodeAt(0) === 47 /* / */ ? url : absoluteFormPath(url);
    const asked = parseDeadlineHeader(req.headers[DEADLINE_HEADER]);
    this.deadlineAt = start + (asked !== undefined && asked < route.timeoutMs ? asked : route.timeoutMs);
    // The remaining time is propagated to the upstream; its value is rewritten before every attempt.
    this.headers.push(DEADLINE_HEADER, '');
    this.deadlineIndex = this.headers.length - 1;
    this.keyed = req.headers['idempotency-key'] !== undefined;
    this.replayable = route.retry !== undefined && route.retry.attempts > 0 && (this.keyed || isIdempotentMethod(this.method));
    this.body = fwd.hasBody ? req : null;
    res.on('close', this.onClientClose);
    res.on('drain', this.onClientDrain);
  }

  /** Starts the call: admission (breaker, limits), optional body buffering, first attempt. */
  run(): void {
    const guard = this.route.guard;
    if (guard !== undefined) {
      if (guard.active >= guard.config.limits.maxConcurrent) {
        this.fail('overloaded', `service "${this.route.service}" has ${guard.active} requests in flight (limit ${guard.config.limits.maxConcurrent})`, { 'retry-after': '1' });
        return;
      }
      const sb = guard.serviceBreaker;
      if (sb !== undefined) {
        if (!sb.admit()) {
          this.fail('circuit-open', `the circuit of service "${this.route.service}" is open`);
          return;
        }
        this.serviceTicket = sb.begin();
      }
      guard.active++;
      this.holdsActive = true;
      guard.budget.deposit();
    }
    if (this.body !== null && this.replayable) {
      const len = Number(this.req.headers['content-length']);
      if (Number.isFinite(len) && len <= REPLAY_BUFFER_LIMIT) {
        this.bufferBody();
        return;
      }
    }
    this.attempt();
  }

  /** Reads a small body into memory so it can be sent again by a retry. */
  private bufferBody(): void {
    const guard = this.route.guard;
    if (guard) guard.pending++;
    let waiting = true;
    const stopWaiting = (): void => {
      if (waiting && guard) guard.pending--;
      waiting = false;
    };
    const chunks: Buffer[] = [];
    const req = this.req;
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      stopWaiting();
      this.body = Buffer.concat(chunks);
      if (!this.finished) this.attempt();
    });
    // A client that goes away mid-body ends the call through the response's 'close'.
    req.once('close', stopWaiting);
    req.once('error', stopWaiting);
  }

  private readonly onClientClose = (): void => {
    if (this.finished) return;
    // The client went away before the response ended: abort whatever is in flight upstream.
    this.clientGone = true;
    const cur = this.current;
    if (cur !== undefined) {
      if (cur.controller && !cur.controller.aborted) cur.controller.abort(new Error('client closed the connection'));
      else cur.dropped = true;
      if (cur.dropped && cur.done()) this.finish();
    } else {
      this.finish();
    }
  };

  private readonly onClientDrain = (): void => {
    const c = this.committed?.controller;
    if (c?.paused) c.resume();
  };

  private attempt(): void {
    if (this.finished) return;
    const now = this.deps.clock.now();
    const remaining = this.deadlineAt - now;
    if (remaining <= 0) {
      this.fail('timeout', `no answer within the request deadline`);
      return;
    }
    const route = this.route;
    let endpoint = route.pick(this.hashKey, this.tried);
    let ticket: BreakerTicket | undefined;
    const guard = route.guard;
    if (endpoint !== undefined && guard !== undefined) {
      // An endpoint whose breaker is half-open admits one probe; others are skipped.
      for (let i = 0; ; i++) {
        const br = guard.endpointBreaker(endpoint);
        if (br === undefined) break;
        if (br.admit()) {
          ticket = br.begin();
          break;
        }
        if (i === 3) {
          this.fail('circuit-open', `the circuits of service "${route.service}"'s endpoints are open`);
          return;
        }
        (this.tried ??= []).push(endpoint);
        endpoint = route.pick(this.hashKey, this.tried);
        if (endpoint === undefined) break;
      }
    }
    if (endpoint === undefined) {
      this.fail('no-healthy-upstream', `service "${route.service}" has no eligible endpoint`);
      return;
    }
    this.attempts++;
    const isRetry = this.attempts > 1;
    const a = new Attempt(this, endpoint, ticket, now, isRetry);
    this.current = a;
    this.headers[this.deadlineIndex] = String(Math.ceil(remaining));
    const retry = route.retry;
    const tryTimeout = retry !== undefined && retry.perTryTimeoutMs < remaining ? retry.perTryTimeoutMs : remaining;
    const body = this.body;
    // The per-try timeout runs from dispatch for a bodiless request; with a body it starts once the body has
    // been sent (as Envoy's), so a slow 1 GiB upload is not cut off by a 1 s per-try timeout.
    a.tryTimeoutMs = tryTimeout;
    if (body === null) a.timer = this.deps.timers.after(tryTimeout, a.onTimeout);
    route.dispatcher(endpoint).dispatch(
      {
        path: this.path,
        method: this.method,
        headers: this.headers,
        body,
        // Backstops only (undici's timers are coarse below a second); the attempt's own timer decides.
        headersTimeout: Math.max(1_000, Math.ceil(remaining)),
        bodyTimeout: Math.max(1_000, Math.ceil(remaining)),
      },
      a,
    );
  }

  onHeaders(a: Attempt, controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    const now = this.deps.clock.now();
    a.endpoint.observeLatency(now - a.start, now);
    const outcome = outcomeOfStatus(status);
    this.report(a, outcome);
    if (outcome !== Outcome.Success && this.route.retry !== undefined && isRetriableStatus(this.route.retry, status)) {
      if (this.mayRetry({ kind: 'status', status }, 'status')) {
        a.drop();
        this.retry(a, 'status');
        return;
      }
    }
    this.committed = a;
    this.status = status;
    if (this.clientGone) return;
    const res = this.res;
    if (statusMessage) res.writeHead(status, statusMessage, stripResponseHopByHop(headers));
    else res.writeHead(status, stripResponseHopByHop(headers));
    // Hold the head until the first body bytes (or the end) so a small response leaves in one write.
    res.cork();
    this.corked = true;
    void controller;
  }

  onData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.clientGone) return;
    const res = this.res;
    const more = res.write(chunk);
    if (this.corked) {
      // Let the rest of this parser pass (often the end) join the same write; then stream freely.
      this.corked = false;
      process.nextTick(uncork, res);
    }
    if (!more) controller.pause();
  }

  onEnd(a: Attempt, trailers: IncomingHttpHeaders): void {
    a.done();
    const res = this.res;
    if (!this.clientGone) {
      // Trailers can only be sent on a chunked response (no content-length).
      if (hasAny(trailers) && !res.hasHeader('content-length')) res.addTrailers(trailers as Record<string, string>);
      res.end();
    }
    this.finish();
  }

  onError(a: Attempt, err: Error): void {
    a.done();
    if (this.finished) return;
    if (this.clientGone) {
      this.finish();
      return;
    }
    const reason = classifyUpstreamError(err);
    if (this.committed === a) {
      // The response had started: the only honest signal left is to cut the connection.
      this.reason = reason;
      this.res.destroy(err);
      this.finish();
      return;
    }
    this.report(a, Outcome.GatewayFailure);
    const kind: RetryReason = reason === 'connect-failure' ? 'connect-failure' : reason === 'timeout' ? 'timeout' : 'reset';
    if (this.mayRetry({ kind: 'error', reason }, kind)) {
      this.retry(a, kind);
      return;
    }
    this.fail(this.reason === 'retry-budget-exhausted' ? 'retry-budget-exhausted' : reason, `upstream ${a.endpoint.address}: ${err.message}`);
  }

  /** Passive health: outlier detection and the endpoint's breaker learn how the attempt went. */
  private report(a: Attempt, outcome: Outcome): void {
    this.route.guard?.outcomes?.record(a.endpoint, outcome);
    const t = a.ticket;
    if (t !== undefined) {
      if (outcome === Outcome.Success) t.success();
      else t.failure();
    }
  }

  /** Whether the rules allow another attempt after `failure` (and, if so, takes it from the budget). */
  private mayRetry(failure: Parameters<typeof isRetriableFailure>[1], kind: RetryReason): boolean {
    const retry = this.route.retry;
    const guard = this.route.guard;
    if (retry === undefined || guard === undefined || this.clientGone) return false;
    if (this.attempts > retry.attempts) return false;
    if (!isRetriableFailure(retry, failure)) return false;
    // A body that has started to flow upstream cannot be sent again unless it was kept in memory.
    const body = this.body;
    const bodySafe = body === null || Buffer.isBuffer(body) || !(body as IncomingMessage).readableDidRead;
    if (!bodySafe) return false;
    // Without an idempotency key, a non-idempotent request is retried only if the connection failed
    // before any byte was written.
    if (!this.replayable && !(kind === 'connect-failure' && bodySafe)) return false;
    if (this.deadlineAt - this.deps.clock.now() <= 0) return false;
    if (guard.activeRetries >= guard.config.limits.maxRetries) return false;
    if (!guard.budget.tryWithdraw()) {
      this.reason = 'retry-budget-exhausted';
      return false;
    }
    return true;
  }

  private retry(a: Attempt, kind: RetryReason): void {
    (this.tried ??= []).push(a.endpoint);
    const guard = this.route.guard!;
    guard.retries[kind]++;
    const retry = this.route.retry!;
    const wait = backoffMs(this.attempts, retry.backoff.baseMs, retry.backoff.maxMs, this.deps.random);
    if (!this.retryingNow) {
      this.retryingNow = true;
      guard.activeRetries++;
    }
    this.current = undefined;
    if (guard.pending >= guard.config.limits.maxPending) {
      this.fail('overloaded', `service "${this.route.service}" has too many requests waiting`, { 'retry-after': '1' });
      return;
    }
    guard.pending++;
    this.deps.timers.after(wait, () => {
      guard.pending--;
      if (!this.finished) this.attempt();
    });
  }

  private fail(reason: ProxyErrorReason, message: string, extra?: Record<string, string>): void {
    if (this.finished) return;
    this.reason = reason;
    if (!this.clientGone) this.status = sendProxyError(this.res, reason, message, extra);
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const guard = this.route.guard;
    if (guard !== undefined) {
      if (this.holdsActive) guard.active--;
      if (this.retryingNow) guard.activeRetries--;
    }
    this.res.off('drain', this.onClientDrain);
    const elapsed = this.deps.clock.now() - this.start;
    // 499 (client closed request) when the client left before any status was sent.
    const code = this.clientGone && this.status === 0 ? 499 : this.status;
    const t = this.serviceTicket;
    if (t !== undefined) {
      if (code >= 500) t.failure();
      else t.success();
    }
    this.route.stats.record(code, elapsed / 1000);
    const log = this.deps.accessLog;
    if (log.active) {
      log.write({
        direction: this.route.direction,
        service: this.route.service,
        method: this.method,
        path: this.path,
        status: code,
        endpoint: (this.committed ?? this.current)?.endpoint.address,
        durationMs: Math.round(elapsed * 1000) / 1000,
        requestId: this.requestId,
        error: this.reason,
        attempts: this.attempts,
      });
    }
  }
}

/** `http://host/a?b` → `/a?b` (absolute-form request target, as sent to an HTTP proxy). */
export function absoluteFormPath(target: string): string {
  const scheme = target.indexOf('://');
  if (scheme < 0) return target.length === 0 ? '/' : target;
  const slash = target.indexOf('/', scheme + 3);
  if (slash < 0) {
    const q = target.indexOf('?', scheme + 3);
    return q < 0 ? '/' : `/${target.slice(q)}`;
  }
  return target.slice(slash);
}

/** Authority of an absolute-form target (`http://host:port/x` → `host:port`), or undefined. */
export function absoluteFormAuthority(target: string): string | undefined {
  if (target.charCodeAt(0) === 47) return undefined;
  const scheme = target.indexOf('://');
  if (scheme < 0) return undefined;
  let end = target.length;
  for (let i = scheme + 3; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 47 || c === 63 || c === 35) {
      end = i;
      break;
    }
  }
  return target.slice(scheme + 3, end);
}
