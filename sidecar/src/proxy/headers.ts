import { randomUUID } from 'node:crypto';

/**
 * Header rules of a forwarding proxy (RFC 9110 section 7.6.1): hop-by-hop fields and every field named in
 * `Connection` are removed; `x-forwarded-for` gets the client address appended, `x-forwarded-proto` is set
 * when missing, `x-request-id` is created when missing; `traceparent`/`tracestate` pass through untouched.
 * Headers come as the parser gives them (flat [name, value, ...]) and leave as a ready `name: value\r\n`
 * block, so a request's head is built in one pass.
 */

/** Lower-cased names removed in both directions (`te: trailers` is kept on requests: gRPC needs it). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'proxy-authorization']);

/**
 * The caller's service as mutual TLS proved it, set by the inbound side for the app; a value the request
 * brought itself is always dropped, so the app can trust what it reads.
 */
export const CLIENT_SERVICE = 'x-outrigger-client-service';

/** Name lengths worth lower-casing to compare: every special name below has one of them. */
const SPECIAL_LENGTH = new Uint8Array(32);
for (const n of [...HOP_BY_HOP, 'expect', 'x-outrigger-deadline-ms', 'x-forwarded-for', 'x-request-id', 'x-forwarded-proto', CLIENT_SERVICE]) SPECIAL_LENGTH[n.length] = 1;

/** The tokens of the Connection fields other than keep-alive/close/upgrade (rare: most clients send none). */
function connectionTokens(headers: readonly string[]): Set<string> | undefined {
  let extra: Set<string> | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const raw of headers[i + 1]!.split(',')) {
      const t = raw.trim().toLowerCase();
      if (t === '' || t === 'keep-alive' || t === 'close' || t === 'upgrade') continue;
      (extra ??= new Set()).add(t);
    }
  }
  return extra;
}

/** The parts of a request head the proxy needs to rebuild it. */
export interface ForwardableRequest {
  readonly headers: readonly string[];
  readonly chunked: boolean;
  readonly connectionUpgrade: boolean;
  readonly upgrade: string | undefined;
  readonly host: string | undefined;
}

export interface ForwardedRequestHeaders {
  /** `name: value\r\n` lines, without the request line and the final CRLF. */
  readonly block: string;
  readonly requestId: string;
}

/**
 * Builds the upstream request's header block from the downstream one in one pass. `expect` is dropped
 * (the sidecar answers `100-continue` itself) and so is `x-outrigger-deadline-ms` (rewritten per attempt).
 * The body's framing is kept as received (`transfer-encoding: chunked` or `content-length`); an upgrade
 * request keeps `connection: upgrade` and its `upgrade` field; a request without Host gets `hostFallback`.
 */
export function forwardRequestHeaders(
  req: ForwardableRequest,
  clientAddress: string | undefined,
  proto: 'http' | 'https',
  hostFallback: string | undefined,
  clientService?: string | undefined,
): ForwardedRequestHeaders {
  const raw = req.headers;
  const connExtra = connectionTokens(raw);
  let block = '';
  let xff: string | undefined;
  let requestId: string | undefined;
  let sawProto = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const len = name.length;
    if (len < 32 && SPECIAL_LENGTH[len] === 1) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) {
        // "te: trailers" is end-to-end meaningful (gRPC); other TE values are hop-by-hop.
        if (lower === 'te' && value.toLowerCase() === 'trailers') block += `${name}: ${value}\r\n`;
        continue;
      }
      if (lower === 'expect' || lower === 'x-outrigger-deadline-ms' || lower === CLIENT_SERVICE) continue;
      if (lower === 'x-forwarded-for') {
        xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      }
      if (lower === 'x-request-id') {
        if (requestId === undefined && value !== '') requestId = value;
        continue;
      }
      if (lower === 'x-forwarded-proto') sawProto = true;
    }
    if (connExtra !== undefined && connExtra.has(name.toLowerCase())) continue;
    block += `${name}: ${value}\r\n`;
  }
  if (req.host === undefined && hostFallback !== undefined) block += `host: ${hostFallback}\r\n`;
  if (clientAddress !== undefined) xff = xff === undefined ? clientAddress : `${xff}, ${clientAddress}`;
  if (xff !== undefined) block += `x-forwarded-for: ${xff}\r\n`;
  if (!sawProto) block += `x-forwarded-proto: ${proto}\r\n`;
  requestId ??= randomUUID();
  block += `x-request-id: ${requestId}\r\n`;
  if (clientService !== undefined) block += `${CLIENT_SERVICE}: ${clientService}\r\n`;
  if (req.chunked) block += 'transfer-encoding: chunked\r\n';
  if (req.connectionUpgrade && req.upgrade !== undefined) block += `connection: upgrade\r\nupgrade: ${req.upgrade}\r\n`;
  return { block, requestId };
}

/**
 * The header block of an upstream response as the client gets it: hop-by-hop fields removed (the engine adds
 * its own framing and connection fields); a 101 keeps `upgrade` and says `connection: upgrade`.
 */
export function responseHeaderBlock(headers: readonly string[], upgrade: boolean): string {
  const connExtra = connectionTokens(headers);
  let block = '';
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const len = name.length;
    if (len < 32 && SPECIAL_LENGTH[len] === 1) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) && !(upgrade && lower === 'upgrade')) continue;
    }
    if (connExtra !== undefined && connExtra.has(name.toLowerCase())) continue;
    block += `${name}: ${headers[i + 1]}\r\n`;
  }
  if (upgrade) block += 'connection: upgrade\r\n';
  return block;
}

/** The value of the first field called `lowerName` (compared without case), or undefined. */
export function headerValue(headers: readonly string[], lowerName: string): string | undefined {
  const len = lowerName.length;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length === len && name.toLowerCase() === lowerName) return headers[i + 1];
  }
  return undefined;
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

/** Headers as a lower-cased name → value(s) object (only for the rare policies that look fields up by name). */
export function headerBag(headers: readonly string[]): Record<string, string | string[]> {
  const bag: Record<string, string | string[]> = {};
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    const value = headers[i + 1]!;
    const had = bag[name];
    if (had === undefined) bag[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else bag[name] = [had, value];
  }
  return bag;
}
