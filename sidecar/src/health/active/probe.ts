// Not an ESM import: that would load Node's bundled undici through node:http's lazy exports.
const { request: httpRequest } = process.getBuiltinModule('node:http');
import { connect as http2Connect, type IncomingHttpHeaders, type IncomingHttpStatusHeader } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Endpoint } from '../../core/endpoint.js';
import { connectMesh, type UpstreamTls } from '../../proxy/tls/mesh-tls.js';
import { systemTimers, type Timers } from '../../../../common/src/timers.js';
import type { HealthCheckConfig } from '../../../../common/src/config/types.js';
import {
  GRPC_HEALTH_CHECK_PATH,
  ServingStatus,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  frameGrpcMessage,
  grpcStatusName,
  servingStatusName,
  unframeGrpcMessages,
} from './grpc-health.js';

/** The outcome of one active check. `detail` is short and human-readable ("HTTP 503", "timeout", "ECONNREFUSED"). */
export interface ProbeResult {
  readonly healthy: boolean;
  readonly detail: string;
}

/**
 * One active check of one endpoint. A prober never rejects and settles within about `timeoutMs`
 * (the checker relies on both: it runs at most one probe per endpoint at a time and waits for it).
 */
export type Prober = (endpoint: Endpoint, timeoutMs: number) => Promise<ProbeResult>;

export interface ProberDeps {
  /** Schedules the per-check deadline; default systemTimers (unref'd). */
  readonly timers?: Timers | undefined;
  /**
   * Mutual TLS for endpoints marked `mesh` (a sidecar's inbound listener): what to present and whom to
   * expect, or undefined while this sidecar has no certificate (the check then goes in plaintext).
   */
  readonly mesh?: (() => UpstreamTls | undefined) | undefined;
}

export type HttpCheckConfig = NonNullable<HealthCheckConfig['http']>;

export const HEALTH_CHECK_USER_AGENT = 'outrigger-health-check';

/** Body bytes read (and discarded) after the status line before the connection is cut. */
const MAX_DRAIN_BYTES = 64 * 1024;
/** gRPC response body bytes accepted (a HealthCheckResponse is a few bytes). */
const MAX_GRPC_BODY_BYTES = 64 * 1024;

const TIMEOUT: ProbeResult = Object.freeze({ healthy: false, detail: 'timeout' });

function errorDetail(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return typeof code === 'string' && code !== '' ? code : err.message;
  }
  return String(err);
}

/** A promise plus a settle-once function, so timeouts, errors and results can race safely. */
function settleOnce(): { promise: Promise<ProbeResult>; settle: (r: ProbeResult) => boolean } {
  let resolve!: (r: ProbeResult) => void;
  let settled = false;
  const promise = new Promise<ProbeResult>((res) => {
    resolve = res;
  });
  return {
    promise,
    settle: (r) => {
      if (settled) return false;
      settled = true;
      resolve(r);
      return true;
    },
  };
}

/**
 * HTTP/1.1 GET of `cfg.path` on a connection of its own (`agent: false`, `connection: close`): every check
 * also proves that a new connection can be made, and no pooled socket can go stale between checks (at
 * seconds-long intervals reuse saves nothing that matters). `host` is `cfg.host` or the endpoint's address;
 * healthy iff the status is one of `cfg.expectedStatuses`. The result is known at the status line; the body
 * is then drained (at most 64 KiB, until the deadline) and the socket destroyed, so a check never leaks one.
 */
export function httpProber(cfg: HttpCheckConfig, deps: ProberDeps = {}): Prober {
  const timers = deps.timers ?? systemTimers;
  const expected = new Set(cfg.expectedStatuses);
  const expectedText = cfg.expectedStatuses.join('|');
  return (endpoint, timeoutMs) => {
    const { promise, settle } = settleOnce();
    // A mesh endpoint (a sidecar's inbound listener) is checked over mutual TLS, as requests reach it.
    const tls = endpoint.mesh ? deps.mesh?.() : undefined;
    const req = httpRequest({
      host: endpoint.host,
      port: endpoint.port,
      method: 'GET',
      path: cfg.path,
      ...(tls === undefined ? { agent: false } : { createConnection: () => connectMesh(endpoint.host, endpoint.port, tls) }),
      headers: {
        host: cfg.host ?? endpoint.address,
        'user-agent': HEALTH_CHECK_USER_AGENT,
        accept: '*/*',
        connection: 'close',
      },
    });
    const deadline = timers.after(timeoutMs, () => {
      settle(TIMEOUT);
      req.destroy();
    });
    const finish = (): void => {
      deadline.cancel();
      req.destroy();
    };
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const healthy = expected.has(status);
      settle({ healthy, detail: healthy ? `HTTP ${status}` : `HTTP ${status} (expected ${expectedText})` });
      let drained = 0;
      res.on('data', (chunk: Buffer) => {
        drained += chunk.length;
        if (drained > MAX_DRAIN_BYTES) finish();
      });
      res.on('end', finish);
      res.on('error', finish);
    });
    req.on('error', (err) => {
      settle({ healthy: false, detail: errorDetail(err) });
      finish();
    });
    req.on('close', () => {
      deadline.cancel();
      settle({ healthy: false, detail: 'connection closed before a response' });
    });
    req.end();
    return promise;
  };
}

/** TCP connect: healthy iff the connection is established within the timeout; it is destroyed at once. */
export function tcpProber(deps: ProberDeps = {}): Prober {
  const timers = deps.timers ?? systemTimers;
  return (endpoint, timeoutMs) => {
    const { promise, settle } = settleOnce();
    const socket = netConnect({ host: endpoint.host, port: endpoint.port });
    const deadline = timers.after(timeoutMs, () => {
      settle(TIMEOUT);
      socket.destroy();
    });
    socket.once('connect', () => {
      deadline.cancel();
      settle({ healthy: true, detail: 'connected' });
      socket.destroy();
    });
    socket.on('error', (err) => {
      deadline.cancel();
      settle({ healthy: false, detail: errorDetail(err) });
      socket.destroy();
    });
    socket.once('close', () => {
      deadline.cancel();
      settle({ healthy: false, detail: 'connection closed' });
    });
    return promise;
  };
}

function decodeGrpcMessage(value: string | string[] | undefined): string {
  const v = Array.isArray(value) ? value.join(',') : value;
  if (v === undefined || v === '') return '';
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * grpc.health.v1.Health/Check over cleartext HTTP/2 (h2c, prior knowledge) for `service` ('' asks about the
 * server as a whole). Healthy iff HTTP 200, grpc-status 0 and the response's status is SERVING.
 *
 * One HTTP/2 session per check, closed when the check ends (destroyed on failure or timeout): like the HTTP
 * check, each check proves that a new connection can be made, there is no idle session to keep alive or to
 * find dead (GOAWAY, half-open TCP) at the next interval, and nothing is left behind when the endpoint goes.
 * The request carries `grpc-timeout` so the server can give up when the checker does.
 */
export function grpcProber(service: string, deps: ProberDeps = {}): Prober {
  const timers = deps.timers ?? systemTimers;
  const body = frameGrpcMessage(encodeHealthCheckRequest(service));
  return (endpoint, timeoutMs) => {
    const { promise, settle } = settleOnce();
    const session = http2Connect(`http://${endpoint.address}`);
    const deadline = timers.after(timeoutMs, () => {
      settle(TIMEOUT);
      session.destroy();
    });
    let ok = false;
    const done = (r: ProbeResult): void => {
      deadline.cancel();
      if (!settle(r)) return;
      if (ok) session.close();
      else session.destroy();
    };
    const fail = (detail: string): void => done({ healthy: false, detail });
    session.on('error', (err) => fail(errorDetail(err)));
    session.on('close', () => fail('connection closed'));

    const stream = session.request({
      ':method': 'POST',
      ':path': GRPC_HEALTH_CHECK_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': HEALTH_CHECK_USER_AGENT,
      'grpc-timeout': `${Math.max(1, Math.ceil(timeoutMs))}m`,
    });
    let headers: (IncomingHttpHeaders & IncomingHttpStatusHeader) | undefined;
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('trailers', (t) => {
      trailers = t;
    });
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_GRPC_BODY_BYTES) fail('response too large');
      else chunks.push(chunk);
    });
    stream.on('error', (err) => fail(errorDetail(err)));
    // 'close' comes after the trailers and the last data, or after a reset.
    stream.on('close', () => {
      if (headers === undefined) return fail(`stream closed without a response (code ${stream.rstCode ?? 0})`);
      const status = headers[':status'];
      if (status !== 200) return fail(`HTTP ${status ?? 0}`);
      // A trailers-only response carries grpc-status in its headers.
      const grpcStatus = firstHeader(trailers?.['grpc-status']) ?? firstHeader(headers['grpc-status']);
      if (grpcStatus === undefined) return fail(`no grpc-status (code ${stream.rstCode ?? 0})`);
      const code = Number(grpcStatus);
      if (code !== 0) {
        const message = decodeGrpcMessage(trailers?.['grpc-message'] ?? headers['grpc-message']);
        return fail(`grpc-status ${grpcStatus} ${grpcStatusName(code)}${message ? `: ${message}` : ''}`);
      }
      let serving: number;
      try {
        const messages = unframeGrpcMessages(Buffer.concat(chunks));
        const first = messages[0];
        if (first === undefined) return fail('empty gRPC response');
        serving = decodeHealthCheckResponse(first);
      } catch (err) {
        return fail(`bad HealthCheckResponse: ${errorDetail(err)}`);
      }
      ok = true;
      done({ healthy: serving === ServingStatus.SERVING, detail: servingStatusName(serving) });
    });
    stream.end(body);
    return promise;
  };
}

/** The prober for the check kind configured (exactly one of http, tcp, grpc; the schema enforces that). */
export function proberFor(hc: HealthCheckConfig, deps: ProberDeps = {}): Prober {
  if (hc.http) return httpProber(hc.http, deps);
  if (hc.grpc) return grpcProber(hc.grpc.service, deps);
  if (hc.tcp) return tcpProber(deps);
  throw new Error('health check config has none of http, tcp, grpc');
}

/** The kind of check a config asks for. */
export function checkKind(hc: HealthCheckConfig): 'http' | 'tcp' | 'grpc' | undefined {
  return hc.http ? 'http' : hc.grpc ? 'grpc' : hc.tcp ? 'tcp' : undefined;
}
