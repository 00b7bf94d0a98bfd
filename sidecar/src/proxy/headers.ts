import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Header rules of a forwarding proxy (RFC 9110 section 7.6.1): hop-by-hop fields and every field named in
 * `Connection` are removed; `x-forwarded-for` gets the client address appended, `x-forwarded-proto` is set
 * when missing, `x-request-id` is created when missing; `traceparent`/`tracestate` pass through untouched.
 */

/** Lower-cased names removed in both directions. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade']);

/** Parses the tokens of a Connection header other than keep-alive/close (rare: most clients send none). */
function connectionTokens(value: string): Set<string> | undefined {
  let extra: Set<string> | undefined;
  for (const raw of value.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === '' || t === 'keep-alive' || t === 'close') continue;
    (extra ??= new Set()).add(t);
  }
  return extra;
}

export interface ForwardedRequestHeaders {
  /** Flat [name, value, name, value, ...] list for undici. */
  readonly headers: string[];
  readonly requestId: string;
  /** True when the request carries a body (content-length > 0 or transfer-encoding). */
  readonly hasBody: boolean;
}

/**
 * Builds the upstream request headers from the raw downstream ones in one pass.
 * `expect` is also dropped: the sidecar answers `100-continue` itself.
 */
export function forwardRequestHeaders(
  raw: readonly string[],
  clientAddress: string | undefined,
  proto: 'http' | 'https',
): ForwardedRequestHeaders {
  const out: string[] = [];
  let xff: string | undefined;
  let requestId: string | undefined;
  let sawProto = false;
  let hasBody = false;
  let connExtra: Set<string> | undefined;
  // First look for a Connection header naming extra hop-by-hop fields.
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && name.toLowerCase() === 'connection') {
      const extra = connectionTokens(raw[i + 1]!);
      if (extra) {
        if (connExtra) for (const t of extra) connExtra.add(t);
        else connExtra = extra;
      }
    }
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const len = name.length;
    // Only names of these lengths can need attention; others are copied without lower-casing.
    if (len === 2 || len === 6 || len === 7 || len === 10 || len === 12 || len === 14 || len === 15 || len === 16 || len === 17 || len === 23) {
      const lower = name.toLowerCase();
      if (lower === 'te') {
        // "te: trailers" is end-to-end meaningful (gRPC); other TE values are hop-by-hop.
        if (value.trim().toLowerCase() === 'trailers') out.push(name, value);
        continue;
      }
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'transfer-encoding') hasBody = true;
        continue;
      }
      if (lower === 'expect') continue;
      // Re-written with the time left before every attempt.
      if (lower === 'x-outrigger-deadline-ms') continue;
      if (lower === 'x-forwarded-for') {
        xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      }
      if (lower === 'x-request-id') {
        if (requestId === undefined && value !== '') requestId = value;
        continue;
      }
      if (lower === 'x-forwarded-proto') sawProto = true;
      else if (lower === 'content-length') hasBody = value !== '0';
    }
    if (connExtra !== undefined && connExtra.has(name.toLowerCase())) continue;
    out.push(name, value);
  }
  if (clientAddress !== undefined) xff = xff === undefined ? clientAddress : `${xff}, ${clientAddress}`;
  if (xff !== undefined) out.push('x-forwarded-for', xff);
  if (!sawProto) out.push('x-forwarded-proto', proto);
  requestId ??= randomUUID();
  out.push('x-request-id', requestId);
  return { headers: out, requestId, hasBody };
}

/** Removes hop-by-hop fields from an upstream response's parsed headers, in place. */
export function stripResponseHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const conn = headers.connection;
  if (conn !== undefined) {
    const extra = connectionTokens(Array.isArray(conn) ? conn.join(',') : conn);
    if (extra) for (const t of extra) delete headers[t];
  }
  delete headers.connection;
  delete headers['keep-alive'];
  delete headers['proxy-connection'];
  delete headers['transfer-encoding'];
  delete headers.upgrade;
  delete headers.te;
  return headers;
}

/** Host part of a Host header value, lower-cased, without port. */
export function hostName(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']');
    return (close > 0 ? host.slice(0, close + 1) : host).toLowerCase();
  }
  const colon = host.indexOf(':');
  if (colon >= 0) end = colon;
  return host.slice(0, end).toLowerCase();
}
