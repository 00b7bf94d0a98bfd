import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Clock } from '../core/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { ProxyErrorReason } from '../core/errors.js';
import type { AccessLog } from '../telemetry/logger.js';
import type { Direction, TrafficStats } from '../telemetry/stats.js';
import { forwardRequestHeaders, stripResponseHopByHop } from './headers.js';
import { sendProxyError } from './respond.js';

/** What one forwarded request needs to know about where it goes; built per cluster, reused per request. */
export interface Route {
  readonly direction: Direction;
  readonly service: string;
  readonly stats: TrafficStats;
  /** Time allowed for the upstream to answer headers, and between body chunks. */
  readonly timeoutMs: number;
}

export interface ForwardDeps {
  readonly clock: Clock;
  readonly accessLog: AccessLog;
}

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

/**
 * One request in flight between the client's response and an upstream: an undici dispatch handler that
 * streams the response back with back-pressure (pausing the upstream while the client is slow), aborts the
 * upstream when the client goes away, and accounts the result exactly once.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private finished = false;
  private clientGone = false;
  private status = 0;
  private errorReason: ProxyErrorReason | undefined;
  private readonly start: number;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly route: Route,
    private readonly endpoint: Endpoint | undefined,
    private readonly requestId: string,
    private readonly deps: ForwardDeps,
    start: number,
  ) {
    this.start = start;
    if (endpoint) endpoint.inflight++;
    res.on('close', this.onClientClose);
    res.on('drain', this.onClientDrain);
  }

  private readonly onClientClose = (): void => {
    if (this.finished) return;
    // The client went away before the response ended: abort the upstream request.
    this.clientGone = true;
    if (this.controller && !this.controller.aborted) this.controller.abort(new Error('client closed the connection'));
  };

  private readonly onClientDrain = (): void => {
    if (this.controller?.paused) this.controller.resume();
  };

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(new Error('client closed the connection'));
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.status = statusCode;
    const ep = this.endpoint;
    if (ep) ep.observeLatency(this.deps.clock.now() - this.start, this.deps.clock.now());
    if (this.clientGone) return;
    const res = this.res;
    if (statusMessage) res.writeHead(statusCode, statusMessage, stripResponseHopByHop(headers));
    else res.writeHead(statusCode, stripResponseHopByHop(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.clientGone) return;
    if (!this.res.write(chunk)) controller.pause();
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    const res = this.res;
    if (!this.clientGone) {
      // Trailers can only be sent on a chunked response (no content-length).
      if (hasAny(trailers) && !res.hasHeader('content-length')) res.addTrailers(trailers as Record<string, string>);
      res.end();
    }
    this.finish(undefined);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.finished) return;
    const reason = this.clientGone ? undefined : classifyUpstreamError(err);
    if (reason !== undefined) {
      if (this.res.headersSent) {
        // The response had started: the only honest signal left is to cut the connection.
        this.res.destroy(err);
      } else {
        this.status = sendProxyError(this.res, reason, `upstream ${this.endpoint?.address ?? ''}: ${err.message}`);
      }
    }
    this.finish(reason);
  }

  private finish(reason: ProxyErrorReason | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.errorReason = reason;
    if (this.endpoint) {
      this.endpoint.inflight--;
      this.endpoint.completed++;
    }
    this.res.off('drain', this.onClientDrain);
    const elapsed = this.deps.clock.now() - this.start;
    // 499 (client closed request) when the client left before any status was sent.
    const code = this.clientGone && this.status === 0 ? 499 : this.status;
    this.route.stats.record(code, elapsed / 1000);
    const log = this.deps.accessLog;
    if (log.active) {
      log.write({
        direction: this.route.direction,
        service: this.route.service,
        method: this.req.method,
        path: this.req.url,
        status: code,
        endpoint: this.endpoint?.address,
        durationMs: Math.round(elapsed * 1000) / 1000,
        requestId: this.requestId,
        error: this.errorReason,
      });
    }
  }
}

function hasAny(obj: object): boolean {
  for (const _ in obj) return true;
  return false;
}

/**
 * Sends `req` to `dispatcher` (one endpoint's pool) and streams the answer into `res`.
 * The request body, if any, is streamed with back-pressure (undici reads `req` as it can write).
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  route: Route,
  dispatcher: Dispatcher,
  endpoint: Endpoint | undefined,
  deps: ForwardDeps,
  start: number,
): void {
  const fwd = forwardRequestHeaders(req.rawHeaders, req.socket.remoteAddress, 'http');
  const method = req.method ?? 'GET';
  const exchange = new Exchange(req, res, route, endpoint, fwd.requestId, deps, start);
  const path = req.url ?? '/';
  dispatcher.dispatch(
    {
      path: path.charCodeAt(0) === 47 /* / */ ? path : absoluteFormPath(path),
      method,
      headers: fwd.headers,
      body: fwd.hasBody ? req : null,
      headersTimeout: route.timeoutMs,
      bodyTimeout: route.timeoutMs,
    },
    exchange,
  );
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
