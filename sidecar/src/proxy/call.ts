import type net from 'node:net';
import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import { errorStatus, type ProxyErrorReason } from '../../../common/src/errors.js';
import type { Random } from '../../../common/src/random.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { RetryConfig } from '../../../common/src/config/types.js';
import type { BreakerTicket } from '../resilience/breaker.js';
import { Outcome, outcomeOfStatus } from '../health/outlier/detector.js';
import { BREAKER_OPEN, type GuardSlot, type PickSlot, type RetryAsk, type RetryReason, type ServiceGuard } from '../resilience/guard.js';
import { backoffMs, isIdempotentMethod, isRetriableStatus, parseDeadlineHeader, type AttemptFailure } from '../resilience/retry.js';
import type { AccessLog } from '../../../common/src/logger.js';
import type { Direction, TrafficStats } from '../telemetry/stats.js';
import { forwardRequestHeaders, headerValue, responseHeaderBlock } from './headers.js';
import type { ResponseHead } from './http1/parser.js';
import { formatGrpcTimeout, grpcStatusOfReason, GrpcStatus, isGrpcContentType, outcomeOfGrpcStatus, parseGrpcStatus, parseGrpcTimeout } from './grpc.js';
import { UpstreamError, type BodyConsumer, type Downstream, type ExchangeObserver, type ResponseFraming, type UpstreamHandler, type UpstreamLink, type UpstreamPoolLike } from './exchange.js';

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
  /** The Host sent upstream for a request that has none (HTTP/1.0). */
  readonly authority: string;
  /** Chooses an endpoint, avoiding those already tried where possible. */
  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined;
  /** The connection pool of an endpoint; `http2Client` when the client spoke HTTP/2 (the inbound side mirrors it). */
  pool(endpoint: Endpoint, http2Client: boolean): UpstreamPoolLike;
  /** Called once when a call admitted on this route has finished. */
  readonly release?: (() => void) | undefined;
  /** 'allow' on an inbound route whose service has an authorization policy (calls that run were allowed). */
  readonly authz?: 'allow' | undefined;
}

export interface CallDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly timers: Timers;
  readonly accessLog: AccessLog;
}

/** Largest request body kept in memory so that a retriable request can be replayed (as Envoy's buffer limit). */
export const REPLAY_BUFFER_LIMIT = 1024 * 1024;

/** Times a request is sent again on a fresh connection after a reused one closed before answering. */
const STALE_RETRIES = 2;

const DEADLINE_HEADER = 'x-outrigger-deadline-ms';

const RETRY_AFTER = { 'retry-after': '1' } as const;

/** The client's grpc-timeout line, replaced per attempt by the time left. */
const GRPC_TIMEOUT_LINE = /^grpc-timeout:[^\r]*\r\n/im;

const perTryTimeoutError = new UpstreamError('no response headers within the per-try timeout', 'request', 'ETIMEDOUT_TRY');

/** Maps an upstream failure to the reason the client is told. */
export function classifyUpstreamError(err: UpstreamError): ProxyErrorReason {
  if (err.code === 'ETIMEDOUT_TRY') return 'timeout';
  if (err.phase === 'connect') return 'connect-failure';
  return 'reset';
}

/** One try of a call against one endpoint. */
class Attempt implements UpstreamHandler, BodyConsumer {
  conn: UpstreamLink | undefined;
  /** Set when the call decided to drop this attempt (retrying or finished); its callbacks are ignored. */
  dropped = false;
  finished = false;
  reused = false;
  /** Per-try timer (until response headers). */
  timer: TimerHandle | undefined;
  tryTimeoutMs = 0;

  constructor(
    readonly call: Call,
    readonly endpoint: Endpoint,
    readonly pool: UpstreamPoolLike,
    readonly ticket: BreakerTicket | undefined,
    readonly start: number,
  ) {
    endpoint.inflight++;
  }

  /** Fires when the per-try timeout passes before response headers. */
  readonly onTimeout = (): void => {
    this.timer = undefined;
    if (this.finished || this.dropped) return;
    this.detachUpstream();
    this.call.onError(this, perTryTimeoutError);
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

  /** Lets go of the upstream side: a connection in use is closed, a wait for one withdrawn. */
  detachUpstream(): void {
    const c = this.conn;
    this.conn = undefined;
    if (c !== undefined) c.abort();
    else this.pool.cancel(this);
    this.call.releaseBody(this);
  }

  drop(): void {
    this.dropped = true;
    this.detachUpstream();
    this.done();
  }

  onUpstreamConnected(conn: UpstreamLink, reused: boolean): void {
    if (this.dropped || this.finished) {
      // Nothing was written on it: it can serve someone else.
      conn.release();
      return;
    }
    this.conn = conn;
    this.reused = reused;
    conn.begin(this, this.call.isHead);
    this.call.send(this, conn);
  }

  /** The request was written whole: the per-try timer runs from here if it did not already. */
  requestSent(): void {
    if (this.conn !== undefined) this.conn.requestDone = true;
    if (this.timer === undefined && !this.finished && !this.dropped && this.tryTimeoutMs > 0) {
      this.timer = this.call.timers.after(this.tryTimeoutMs, this.onTimeout);
    }
  }

  onBodyData(chunk: Buffer): boolean {
    if (this.call.copy !== undefined) this.call.keep(chunk);
    const c = this.conn;
    return c === undefined ? true : c.write(chunk);
  }

  onBodyEnd(): void {
    if (this.call.copy !== undefined) this.call.copyDone = true;
    this.conn?.endRequest?.();
    this.requestSent();
  }

  onUpstreamDrain(): void {
    this.call.resumeClientBody();
  }

  onResponseHead(head: ResponseHead): void {
    this.stopTimer();
    if (!this.dropped) this.call.onHeaders(this, head);
  }

  onResponseData(chunk: Buffer): void {
    if (!this.dropped) this.call.onData(this, chunk);
  }

  onResponseTrailers(trailers: string[]): void {
    if (!this.dropped) this.call.onTrailers(trailers);
  }

  onResponseEnd(): void {
    if (this.dropped) {
      this.done();
      return;
    }
    this.call.onEnd(this);
  }

  onUpstreamError(err: UpstreamError): void {
    this.conn = undefined;
    if (this.dropped) {
      this.done();
      return;
    }
    this.call.onError(this, err);
  }
}

const BODY_NONE = 0;
const BODY_BUFFERING = 1;
const BODY_BUFFERED = 2;
const BODY_STREAM = 3;

/**
 * One client request: picks an endpoint, forwards, and on a retriable failure re-picks another endpoint
 * after a jittered backoff, within the retry budget, the limits and the deadline. The response streams to
 * the client with back-pressure once an attempt is accepted (committed); after that nothing is retried.
 */
export class Call implements ExchangeObserver, BodyConsumer, GuardSlot, PickSlot, RetryAsk {
  private readonly headBlock: string;
  private readonly requestLine: string;
  readonly timers: Timers;
  private readonly requestId: string;
  private readonly deadlineAt: number;
  private readonly method: string;
  readonly isHead: boolean;
  private readonly target: string;
  private bodyState: number;
  private buffered: Buffer[] | undefined;
  private bodyBuffer: Buffer | undefined;
  /** Bytes of a streamed body have gone upstream: it cannot be sent again. */
  bodyStarted = false;
  readonly replayable: boolean;
  private readonly keyed: boolean;
  tried: Endpoint[] | undefined;
  /** The breaker ticket of the last pick (PickSlot). */
  ticket: BreakerTicket | undefined = undefined;
  private readonly pickFn = (avoid: readonly Endpoint[] | undefined): Endpoint | undefined => this.route.pick(this.hashKey, avoid);
  attempts = 0;
  // What the call holds from its service's guard (GuardSlot); only the guard changes them.
  admitted = false;
  serviceTicket: BreakerTicket | undefined = undefined;
  retrying = false;
  waits = 0;
  private staleRetries = 0;
  private current: Attempt | undefined;
  private committed: Attempt | undefined;
  private finished = false;
  private clientGone = false;
  private status = 0;
  private reason: ProxyErrorReason | undefined;
  /** A gRPC call (content-type application/grpc): its outcome is its grpc-status. */
  readonly grpc: boolean;
  /** The call's grpc-status once known (trailers, a trailers-only answer, or the sidecar's own answer). */
  private grpcCode: number | undefined;
  /** The client sent grpc-timeout: it is sent upstream shrunk by the time spent. */
  private readonly grpcTimeout: boolean;
  /** The committed attempt of a gRPC call whose outcome waits for its trailers. */
  private awaitingStatus: Attempt | undefined;
  private trailers: string[] | undefined;
  /** A copy of a streamed gRPC request body while it fits the replay limit, so that a retry can send it again. */
  copy: Buffer[] | undefined;
  private copyBytes = 0;
  copyDone = false;

  constructor(
    private readonly ex: Downstream,
    private readonly route: Route,
    private readonly hashKey: string | undefined,
    private readonly deps: CallDeps,
    private readonly start: number,
  ) {
    const head = ex.head;
    const fwd = forwardRequestHeaders(head, ex.remoteAddress, 'http', route.authority, ex.peer);
    this.timers = deps.timers;
    this.grpc = isGrpcContentType(headerValue(head.headers, 'content-type'));
    const grpcTimeout = this.grpc ? parseGrpcTimeout(headerValue(head.headers, 'grpc-timeout')) : undefined;
    this.grpcTimeout = grpcTimeout !== undefined;
    this.headBlock = grpcTimeout === undefined ? fwd.block : fwd.block.replace(GRPC_TIMEOUT_LINE, '');
    this.requestId = fwd.requestId;
    this.method = head.method;
    this.isHead = head.method === 'HEAD';
    const target = head.target;
    this.target = target;
    const path = target.charCodeAt(0) === 47 /* / */ || target === '*' ? target : absoluteFormPath(target);
    this.requestLine = `${head.method} ${path} HTTP/1.1\r\n`;
    let asked = parseDeadlineHeader(headerValue(head.headers, DEADLINE_HEADER));
    if (grpcTimeout !== undefined && (asked === undefined || grpcTimeout < asked)) asked = grpcTimeout;
    this.deadlineAt = start + (asked !== undefined && asked < route.timeoutMs ? asked : route.timeoutMs);
    this.keyed = headerValue(head.headers, 'idempotency-key') !== undefined;
    // A gRPC call may be sent again (gRPC's own retry rules: the server had not answered it).
    this.replayable = route.retry !== undefined && route.retry.attempts > 0 && (this.keyed || isIdempotentMethod(this.method) || this.grpc);
    this.bodyState = ex.hasBody ? BODY_STREAM : BODY_NONE;
    ex.observer = this;
  }

  /** Starts the call: admission (breaker, limits), optional body buffering, first attempt. */
  run(): void {
    const guard = this.route.guard;
    if (guard !== undefined) {
      const refused = guard.admit(this);
      if (refused !== undefined) {
        this.fail(refused.reason, refused.message, refused.headers);
        return;
      }
    }
    if (this.bodyState === BODY_STREAM && this.replayable) {
      const len = this.ex.head.contentLength;
      if (len >= 0 && len <= REPLAY_BUFFER_LIMIT) {
        // A small body is read into memory first, so a retry can send it again.
        this.bodyState = BODY_BUFFERING;
        this.buffered = [];
        guard?.wait(this);
        this.ex.setBodyConsumer(this);
        return;
      }
    }
    this.attempt();
  }

  /** Buffering consumer: keeps the body's bytes. */
  onBodyData(chunk: Buffer): boolean {
    this.buffered!.push(chunk);
    return true;
  }

  onBodyEnd(): void {
    this.stopWaitingBody();
    const parts = this.buffered!;
    this.bodyBuffer = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.buffered = undefined;
    this.bodyState = BODY_BUFFERED;
    if (!this.finished) this.attempt();
  }

  private stopWaitingBody(): void {
    this.route.guard?.endWait(this);
  }

  onClientClose(): void {
    if (this.finished) return;
    // The client went away before the response ended: abort whatever is in flight upstream.
    this.clientGone = true;
    this.stopWaitingBody();
    const cur = this.current;
    if (cur !== undefined) cur.drop();
    this.finish();
  }

  onClientDrain(): void {
    this.committed?.conn?.resume();
  }

  resumeClientBody(): void {
    this.ex.resumeBody();
  }

  /** After a failed attempt: a whole streamed body that was kept is what a retry sends. Always true. */
  private useCopy(): boolean {
    const parts = this.copy;
    if (parts !== undefined && this.copyDone && this.bodyState === BODY_STREAM) {
      this.copy = undefined;
      this.bodyBuffer = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      this.bodyState = BODY_BUFFERED;
      this.bodyStarted = false;
    }
    return true;
  }

  /** Keeps a streamed gRPC body's bytes for a retry until they pass the replay limit. */
  keep(chunk: Buffer): void {
    this.copyBytes += chunk.length;
    if (this.copyBytes > REPLAY_BUFFER_LIMIT) this.copy = undefined;
    else this.copy!.push(chunk);
  }

  /** The attempt no longer takes the streamed body (dropped or timed out). */
  releaseBody(a: Attempt): void {
    if (this.bodyState === BODY_STREAM && this.current === a) this.ex.clearBodyConsumer();
  }

  private attempt(): void {
    if (this.finished) return;
    const now = this.deps.clock.now();
    const remaining = this.deadlineAt - now;
    if (remaining <= 0) {
      this.fail('timeout', `no answer within the request deadline`);
      return;
    }
    const route = this.route;
    const guard = route.guard;
    const endpoint = guard === undefined ? route.pick(this.hashKey, this.tried) : guard.pick(this.pickFn, this);
    if (endpoint === BREAKER_OPEN) {
      this.fail('circuit-open', `the circuits of service "${route.service}"'s endpoints are open`);
      return;
    }
    if (endpoint === undefined) {
      this.fail('no-healthy-upstream', `service "${route.service}" has no eligible endpoint`);
      return;
    }
    const ticket = guard === undefined ? undefined : this.ticket;
    this.attempts++;
    this.dispatch(endpoint, ticket, now, remaining);
  }

  private dispatch(endpoint: Endpoint, ticket: BreakerTicket | undefined, now: number, remaining: number): void {
    const a = new Attempt(this, endpoint, this.route.pool(endpoint, this.ex.version === 2), ticket, now);
    this.current = a;
    const retry = this.route.retry;
    a.tryTimeoutMs = retry !== undefined && retry.perTryTimeoutMs < remaining ? retry.perTryTimeoutMs : remaining;
    // The per-try timeout runs from dispatch for a bodiless request; with a body it starts once the body has
    // been sent (as Envoy's), so a slow 1 GiB upload is not cut off by a 1 s per-try timeout.
    if (this.bodyState === BODY_NONE) a.timer = this.deps.timers.after(a.tryTimeoutMs, a.onTimeout);
    a.pool.acquire(a);
  }

  /** Writes the request on the attempt's connection. */
  send(a: Attempt, conn: UpstreamLink): void {
    const remaining = Math.max(1, Math.ceil(this.deadlineAt - this.deps.clock.now()));
    const head = this.grpcTimeout
      ? `${this.requestLine}${this.headBlock}${DEADLINE_HEADER}: ${remaining}\r\ngrpc-timeout: ${formatGrpcTimeout(remaining)}\r\n\r\n`
      : `${this.requestLine}${this.headBlock}${DEADLINE_HEADER}: ${remaining}\r\n\r\n`;
    switch (this.bodyState) {
      case BODY_NONE:
        conn.writeRequest(head, undefined);
        a.requestSent();
        return;
      case BODY_BUFFERED:
        conn.writeRequest(head, this.bodyBuffer);
        a.requestSent();
        return;
      default:
        conn.write(head);
        this.bodyStarted = true;
        if (this.grpc && this.replayable && this.attempts === 1 && this.copyBytes === 0) this.copy = [];
        this.ex.setBodyConsumer(a);
    }
  }

  onHeaders(a: Attempt, head: ResponseHead): void {
    const now = this.deps.clock.now();
    const status = head.status;
    a.endpoint.observeLatency(now - a.start, now);
    if (status === 101 && !(this.ex.head.connectionUpgrade && this.ex.head.upgrade !== undefined)) {
      // Switching protocols nobody asked for: the upstream broke the exchange.
      a.detachUpstream();
      this.onError(a, new UpstreamError('101 Switching Protocols without an upgrade request', 'request', 'bad-upgrade'));
      return;
    }
    if (this.grpc && status === 200) {
      const code = parseGrpcStatus(headerValue(head.headers, 'grpc-status'));
      if (code === undefined) {
        // The outcome is in the trailers.
        this.awaitingStatus = a;
      } else {
        // Trailers-only: the call is answered (and may be retried) before anything was committed.
        this.grpcCode = code;
        this.report(a, outcomeOfGrpcStatus(code));
        if (code !== GrpcStatus.OK && this.route.retry !== undefined && this.useCopy() && this.mayRetry({ kind: 'grpc', code }, 'status')) {
          this.grpcCode = undefined;
          a.drop();
          this.retry(a);
          return;
        }
      }
    } else {
      const outcome = outcomeOfStatus(status);
      this.report(a, outcome);
      if (outcome !== Outcome.Success && this.route.retry !== undefined && isRetriableStatus(this.route.retry, status)) {
        if (this.mayRetry({ kind: 'status', status }, 'status')) {
          a.drop();
          this.retry(a);
          return;
        }
      }
    }
    this.committed = a;
    this.status = status;
    if (this.clientGone) return;
    if (status === 101) {
      this.upgrade(a, head);
      return;
    }
    let framing: ResponseFraming;
    if (this.isHead || status === 204 || status === 304) framing = 'none';
    else if (head.chunked) framing = 'chunked';
    else if (head.contentLength >= 0) framing = 'length';
    else if (head.streamed === true) framing = 'stream';
    else framing = 'close';
    this.ex.writeHead(status, head.reason, responseHeaderBlock(head.headers, false), framing);
  }

  /** 101: the client's and the upstream's sockets are joined both ways; HTTP is over for both. */
  private upgrade(a: Attempt, head: ResponseHead): void {
    const conn = a.conn!;
    a.conn = undefined;
    const up = conn.detach();
    this.ex.writeHead(101, head.reason, responseHeaderBlock(head.headers, true), 'upgrade');
    const down = this.ex.detach();
    if (up.pending !== undefined) down.socket.write(up.pending);
    if (down.pending !== undefined) up.socket.write(down.pending);
    joinSockets(down.socket, up.socket, this.route.stats);
    a.done();
    this.finish();
  }

  onData(a: Attempt, chunk: Buffer): void {
    if (this.clientGone) return;
    if (!this.ex.write(chunk)) a.conn?.pause();
  }

  onTrailers(trailers: string[]): void {
    this.trailers = trailers;
    if (this.grpc) {
      const code = parseGrpcStatus(headerValue(trailers, 'grpc-status'));
      if (code !== undefined) this.grpcCode = code;
    }
  }

  onEnd(a: Attempt): void {
    a.done();
    if (this.awaitingStatus === a) {
      this.awaitingStatus = undefined;
      this.report(a, outcomeOfGrpcStatus(this.grpcCode ?? GrpcStatus.UNKNOWN));
    }
    if (!this.clientGone) this.ex.end(this.trailers);
    this.finish();
  }

  onError(a: Attempt, err: UpstreamError): void {
    a.done();
    if (this.finished) return;
    if (this.clientGone) {
      this.finish();
      return;
    }
    if (this.committed === a) {
      // The response had started: the only honest signal left is to cut the connection.
      this.reason = classifyUpstreamError(err);
      if (this.awaitingStatus === a) {
        this.awaitingStatus = undefined;
        this.report(a, Outcome.GatewayFailure);
        this.grpcCode = GrpcStatus.UNAVAILABLE;
      }
      this.ex.destroy(err.code);
      this.finish();
      return;
    }
    this.useCopy();
    // A kept-alive connection the upstream closed just as the request went out: not the endpoint's fault,
    // and nothing was processed. Send it again on a fresh connection (as browsers and Envoy do).
    if (
      a.reused &&
      err.phase === 'request' &&
      err.code !== 'ETIMEDOUT_TRY' &&
      this.staleRetries < STALE_RETRIES &&
      this.bodyState !== BODY_STREAM &&
      (this.keyed || isIdempotentMethod(this.method) || this.grpc)
    ) {
      this.staleRetries++;
      const now = this.deps.clock.now();
      const remaining = this.deadlineAt - now;
      if (remaining > 0) {
        this.dispatch(a.endpoint, a.ticket, now, remaining);
        return;
      }
    }
    const reason = classifyUpstreamError(err);
    this.report(a, Outcome.GatewayFailure);
    const kind: RetryReason = reason === 'connect-failure' ? 'connect-failure' : reason === 'timeout' ? 'timeout' : 'reset';
    if (this.mayRetry({ kind: 'error', reason }, kind)) {
      this.retry(a);
      return;
    }
    this.fail(this.reason === 'retry-budget-exhausted' ? 'retry-budget-exhausted' : reason, `upstream ${a.endpoint.address}: ${err.message}`);
  }

  /** Passive health: outlier detection and the endpoint's breaker learn how the attempt went. */
  private report(a: Attempt, outcome: Outcome): void {
    this.route.guard?.report(a.endpoint, a.ticket, outcome);
  }

  /** Whether the guard allows another attempt after `failure` (it then counts it and takes it from the budget). */
  private mayRetry(failure: AttemptFailure, kind: RetryReason): boolean {
    const guard = this.route.guard;
    if (guard === undefined || this.route.retry === undefined || this.clientGone) return false;
    if (this.deadlineAt - this.deps.clock.now() <= 0) return false;
    const decision = guard.retryDecision(this, this, failure, kind);
    if (decision === 'budget-exhausted') this.reason = 'retry-budget-exhausted';
    return decision === 'retry';
  }

  private retry(a: Attempt): void {
    (this.tried ??= []).push(a.endpoint);
    const guard = this.route.guard!;
    const retry = this.route.retry!;
    const wait = backoffMs(this.attempts, retry.backoff.baseMs, retry.backoff.maxMs, this.deps.random);
    this.current = undefined;
    if (!guard.wait(this)) {
      this.fail('overloaded', `service "${this.route.service}" has too many requests waiting`, RETRY_AFTER);
      return;
    }
    this.deps.timers.after(wait, this.afterBackoff);
  }

  private readonly afterBackoff = (): void => {
    this.route.guard?.endWait(this);
    if (!this.finished) this.attempt();
  };

  private fail(reason: ProxyErrorReason, message: string, extra?: Record<string, string>): void {
    if (this.finished) return;
    this.reason = reason;
    if (this.grpc) this.grpcCode = grpcStatusOfReason(reason);
    if (!this.clientGone) {
      this.status = errorStatus[reason];
      this.ex.sendError(this.status, reason, message, extra);
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    const elapsed = this.deps.clock.now() - this.start;
    // 499 (client closed request) when the client left before any status was sent.
    const code = this.clientGone && this.status === 0 ? 499 : this.status;
    this.route.guard?.leave(this, code);
    this.route.stats.record(code, elapsed / 1000);
    if (this.grpc) this.route.stats.recordGrpc(this.clientGone && this.grpcCode === undefined ? GrpcStatus.CANCELLED : (this.grpcCode ?? GrpcStatus.UNKNOWN));
    this.route.release?.();
    const log = this.deps.accessLog;
    if (log.active) {
      log.write({
        direction: this.route.direction,
        service: this.route.service,
        method: this.method,
        path: this.target,
        status: code,
        endpoint: (this.committed ?? this.current)?.endpoint.address,
        durationMs: Math.round(elapsed * 1000) / 1000,
        requestId: this.requestId,
        error: this.reason,
        attempts: this.attempts,
        peer: this.ex.peer,
        authz: this.route.authz,
      });
    }
  }
}

/** Joins an upgraded client connection to its upstream both ways, counted while open. */
function joinSockets(down: net.Socket, up: net.Socket, stats: TrafficStats): void {
  stats.upgradesActive++;
  stats.upgradesTotal++;
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    stats.upgradesActive--;
    down.destroy();
    up.destroy();
  };
  down.on('close', close);
  up.on('close', close);
  down.on('error', close);
  up.on('error', close);
  down.pipe(up);
  up.pipe(down);
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
