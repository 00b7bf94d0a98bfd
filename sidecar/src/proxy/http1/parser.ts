// Not an ESM import: that would load Node's bundled undici through node:http's lazy exports.
const { METHODS } = process.getBuiltinModule('node:http');

/**
 * Strict HTTP/1.1 message-head parser (RFC 9112), at least as strict as llhttp's strict mode (Node's default).
 *
 * One pass over the bytes once the end of the head (CRLF CRLF) has been found with Buffer#indexOf; character
 * classes are Uint8Array lookup tables; the only allocations are the header strings (latin1, one char per
 * byte), their flat array and the result object. Everything the parser cannot vouch for is refused with the
 * status the client is answered: a request head with 400, 414, 431, 501 or 505, a response head from an
 * upstream with 502 (the client of the sidecar is answered Bad Gateway).
 */

export interface ParseLimits {
  /** Whole head incl. request/status line and final CRLF CRLF; over it: 431 (default 16384, same as Node's maxHeaderSize). */
  readonly maxHeadBytes: number;
  /** Request-target length; over it: 414 (default 8192). */
  readonly maxTargetBytes: number;
  /** Header field lines; over it: 431 (default 100). */
  readonly maxHeaders: number;
}

export const defaultParseLimits: ParseLimits = Object.freeze({ maxHeadBytes: 16384, maxTargetBytes: 8192, maxHeaders: 100 });

/** A message the sidecar refuses; `status` is what the client is answered (400, 414, 431, 501, 505; 502 for a response head). */
export class HttpParseError extends Error {
  readonly status: number;
  /** Short kebab-case reason, e.g. 'bare-lf', 'cl-and-te', 'obs-fold'. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'HttpParseError';
    this.status = status;
    this.code = code;
  }
}

interface HeadCommon {
  /** HTTP/1.minor */
  readonly minor: 0 | 1;
  /** Flat [name, value, name, value, ...]: names as sent, values without leading/trailing SP/HTAB, latin1. */
  readonly headers: string[];
  /** -1 when absent. */
  readonly contentLength: number;
  /** Transfer-Encoding: chunked (for a response: chunked is the final coding). */
  readonly chunked: boolean;
  /** The connection persists after this message: HTTP/1.1 unless Connection has `close`; HTTP/1.0 only with `keep-alive`. */
  readonly keepAlive: boolean;
  /** The Connection header lists the `upgrade` token. */
  readonly connectionUpgrade: boolean;
  /** Value of the Upgrade header (several fields joined with ", "). */
  readonly upgrade: string | undefined;
  /** Bytes of the head from `start`, including the final CRLF CRLF (and any empty lines before the start line). */
  readonly headBytes: number;
}

export interface RequestHead extends HeadCommon {
  readonly method: string;
  readonly target: string;
  /** The Host header's value. */
  readonly host: string | undefined;
  /** Expect: 100-continue (case-insensitive). */
  readonly expectContinue: boolean;
}

export interface ResponseHead extends HeadCommon {
  readonly status: number;
  readonly reason: string;
  /**
   * The body runs until the upstream closes the connection: a Transfer-Encoding whose final coding is not
   * chunked, or neither Content-Length nor Transfer-Encoding, on a status that has a body (not 1xx/204/304;
   * a response to HEAD is the caller's business). `keepAlive` is false then.
   */
  readonly closeDelimited: boolean;
  /** An HTTP/2 response without content-length: payload bytes until the stream ends, maybe trailers. */
  readonly streamed?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Character classes

const HTAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const STAR = 0x2a;
const COMMA = 0x2c;
const SLASH = 0x2f;
const COLON = 0x3a;
const BACKSLASH = 0x5c;

function table(pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) if (pred(c)) t[c] = 1;
  return t;
}
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** RFC 9110 tchar. */
export const TCHAR = table((c) => isDigit(c) || isAlpha(c) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)));
/** Field value / reason phrase bytes: HTAB, SP, VCHAR, obs-text. */
export const FIELD_VALUE = table((c) => c === HTAB || (c >= 0x20 && c <= 0x7e) || c >= 0x80);
const DIGIT = table(isDigit);
/** Request-target bytes: VCHAR except '#' (a request-target has no fragment, RFC 9112 §3.2). */
const TARGET = table((c) => c >= 0x21 && c <= 0x7e && c !== 0x23);
/** Bytes that may appear in a URI authority (host and port): unreserved, pct-encoded, sub-delims except ',', ':', '[', ']'. */
const AUTHORITY = table((c) => isDigit(c) || isAlpha(c) || "-._~%!$&'()*+;=:[]".includes(String.fromCharCode(c)));
/** Bytes of a reg-name or IPv4 host (no ':' or brackets). */
const HOSTNAME = table((c) => isDigit(c) || isAlpha(c) || "-._~%!$&'()*+;=".includes(String.fromCharCode(c)));
/** Bytes of an IP literal between brackets. */
const IP_LITERAL = table((c) => isDigit(c) || isAlpha(c) || "-._~%!$&'()*+;=:".includes(String.fromCharCode(c)));
/** Quoted-string content (qdtext) of a chunk extension. */
export const QDTEXT = table((c) => c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x7e && c !== BACKSLASH) || c >= 0x80);
/** Hex digit value, or 255. */
export const HEX = (() => {
  const t = new Uint8Array(256).fill(255);
  for (let c = 0; c < 256; c++) {
    if (isDigit(c)) t[c] = c - 0x30;
    else if (c >= 0x41 && c <= 0x46) t[c] = c - 0x41 + 10;
    else if (c >= 0x61 && c <= 0x66) t[c] = c - 0x61 + 10;
  }
  return t;
})();

/**
 * buf[a..b) as a latin1 string (one char per byte). Buffer#latin1Slice is what toString('latin1', a, b)
 * ends up calling, without its argument checks; it is not in @types/node, hence the cast.
 */
type Latin1Slicer = { latin1Slice(start: number, end: number): string };
const hasLatin1Slice = typeof (Buffer.prototype as unknown as Partial<Latin1Slicer>).latin1Slice === 'function';
export function latin1(buf: Buffer, a: number, b: number): string {
  return hasLatin1Slice ? (buf as unknown as Latin1Slicer).latin1Slice(a, b) : buf.toString('latin1', a, b);
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** Lower-case ASCII bytes of a literal. */
const lit = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const L_HOST = lit('host');
const L_EXPECT = lit('expect');
const L_UPGRADE = lit('upgrade');
const L_CONNECTION = lit('connection');
const L_CONTENT_LENGTH = lit('content-length');
const L_TRANSFER_ENCODING = lit('transfer-encoding');
const L_CHUNKED = lit('chunked');
const L_100_CONTINUE = lit('100-continue');
const L_CLOSE = lit('close');
const L_KEEP_ALIVE = lit('keep-alive');
const L_HTTP = lit('http://');
const L_HTTPS = lit('https://');

/**
 * Whether buf[at..at+l.length) equals the lower-case literal `l` ignoring ASCII case. Only sound for literals
 * of letters, digits and '-' against bytes already known to be tchar or VCHAR (OR-ing 0x20 maps no other such
 * byte onto a letter, a digit or '-').
 */
function eqLower(buf: Buffer, at: number, l: Uint8Array): boolean {
  for (let k = 0; k < l.length; k++) if ((buf[at + k]! | 0x20) !== l[k]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Methods

const METHOD_SET = new Set(METHODS);
const MAX_METHOD_LENGTH = METHODS.reduce((m, s) => Math.max(m, s.length), 0);

/** The method name of buf[a..b) (tchar bytes); 501 when it is not one of Node's http.METHODS. */
function methodName(buf: Buffer, a: number, b: number, text: string | undefined, base: number): string {
  const n = b - a;
  const c0 = buf[a];
  if (n === 3) {
    if (c0 === 0x47 && buf[a + 1] === 0x45 && buf[a + 2] === 0x54) return 'GET';
    if (c0 === 0x50 && buf[a + 1] === 0x55 && buf[a + 2] === 0x54) return 'PUT';
  } else if (n === 4) {
    if (c0 === 0x50 && buf[a + 1] === 0x4f && buf[a + 2] === 0x53 && buf[a + 3] === 0x54) return 'POST';
    if (c0 === 0x48 && buf[a + 1] === 0x45 && buf[a + 2] === 0x41 && buf[a + 3] === 0x44) return 'HEAD';
  }
  const m = text === undefined ? latin1(buf, a, b) : text.slice(a - base, b - base);
  if (n > MAX_METHOD_LENGTH || !METHOD_SET.has(m)) throw new HttpParseError(501, 'unknown-method', `Unknown method ${JSON.stringify(m.slice(0, 32))}`);
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Errors

/**
 * The error for an unexpected byte at buf[p] inside a line (bytes from `end` on are not looked at): a bare LF
 * or bare CR is named as such (a CR is bare when something other than LF follows it), anything else gets `code`.
 */
function lineError(status: number, buf: Buffer, p: number, end: number, code: string, what: string): HttpParseError {
  const c = p < end ? buf[p] : undefined;
  if (c === LF) return new HttpParseError(status, 'bare-lf', 'Bare LF in the head (lines must end in CRLF)');
  if (c === CR && p + 1 < end && buf[p + 1] !== LF) return new HttpParseError(status, 'bare-cr', 'Bare CR in the head');
  const shown = c === undefined ? 'end' : c === CR ? 'end of line' : `byte 0x${c.toString(16).padStart(2, '0')}`;
  return new HttpParseError(status, code, `${what}: unexpected ${shown} at offset ${p}`);
}

// ---------------------------------------------------------------------------------------------------------
// Header fields (shared by requests and responses). Results go to module-level scratch variables: the parser
// never re-enters itself, and this avoids an object per parse.

let fHeaders: string[] = [];
let fContentLength = -1;
let fTransferEncodings = 0;
let fChunked = false;
let fClose = false;
let fKeepAlive = false;
let fConnUpgrade = false;
let fUpgrade: string | undefined;
let fHosts = 0;
let fHost: string | undefined;
let fExpectContinue = false;

/**
 * Parses the field lines in buf[p..stop), where `stop` is the index of the head's final CRLF (so every line,
 * and every loop below, ends at a CR at or before `stop`). `req` selects request rules; `status` is the
 * status of the errors thrown.
 */
function scanFields(buf: Buffer, text: string, base: number, p: number, stop: number, limits: ParseLimits, req: boolean, status: number): void {
  const headers: string[] = [];
  fHeaders = headers;
  fContentLength = -1;
  fTransferEncodings = 0;
  fChunked = false;
  fClose = false;
  fKeepAlive = false;
  fConnUpgrade = false;
  fUpgrade = undefined;
  fHosts = 0;
  fHost = undefined;
  fExpectContinue = false;
  let count = 0;
  const maxHeaders = limits.maxHeaders;
  while (p < stop) {
    const ns = p;
    let c = buf[p]!;
    if (c === SP || c === HTAB) throw new HttpParseError(status, 'obs-fold', 'Obsolete line folding (a field line starting with whitespace)');
    while (TCHAR[c] === 1) c = buf[++p]!;
    if (c !== COLON) {
      if (c === SP || c === HTAB) throw new HttpParseError(status, 'space-before-colon', 'Whitespace between a field name and its colon');
      throw lineError(status, buf, p, stop + 2, 'bad-header-name', 'Invalid field name');
    }
    const ne = p;
    if (ne === ns) throw new HttpParseError(status, 'bad-header-name', 'Empty field name');
    c = buf[++p]!;
    while (c === SP || c === HTAB) c = buf[++p]!;
    const vs = p;
    while (FIELD_VALUE[c] === 1) c = buf[++p]!;
    if (c !== CR || buf[p + 1] !== LF) throw lineError(status, buf, p, stop + 2, 'bad-header-value', 'Invalid character in a field value');
    const le = p;
    let ve = p;
    while (ve > vs && ((c = buf[ve - 1]!) === SP || c === HTAB)) ve--;
    p += 2;
    if (++count > maxHeaders) throw new HttpParseError(req ? 431 : status, 'too-many-headers', `More than ${maxHeaders} header fields`);
    const value = vs === ve ? '' : text.slice(vs - base, ve - base);
    headers.push(text.slice(ns - base, ne - base), value);
    switch (ne - ns) {
      case 4:
        if (req && eqLower(buf, ns, L_HOST)) {
          if (++fHosts > 1) throw new HttpParseError(status, 'duplicate-host', 'More than one Host field');
          if (!validHostPort(buf, vs, ve, false)) throw new HttpParseError(status, 'bad-host', `Invalid Host ${JSON.stringify(value.slice(0, 64))}`);
          fHost = value;
        }
        break;
      case 6:
        if (req && ve - vs === 12 && eqLower(buf, ns, L_EXPECT) && eqLower(buf, vs, L_100_CONTINUE)) fExpectContinue = true;
        break;
      case 7:
        if (eqLower(buf, ns, L_UPGRADE)) fUpgrade = fUpgrade === undefined ? value : `${fUpgrade}, ${value}`;
        break;
      case 10:
        if (eqLower(buf, ns, L_CONNECTION)) {
          if (hasTab(buf, vs, le)) throw new HttpParseError(status, 'bad-connection', 'HTAB inside Connection');
          scanConnection(buf, vs, ve, status);
        }
        break;
      case 14:
        if (eqLower(buf, ns, L_CONTENT_LENGTH)) {
          if (fContentLength !== -1) throw new HttpParseError(status, 'duplicate-content-length', 'More than one Content-Length field');
          fContentLength = parseContentLength(buf, vs, ve, status);
        }
        break;
      case 17:
        if (eqLower(buf, ns, L_TRANSFER_ENCODING)) {
          if (++fTransferEncodings > 1) throw new HttpParseError(status, 'duplicate-transfer-encoding', 'More than one Transfer-Encoding field');
          if (hasTab(buf, vs, le)) throw new HttpParseError(status, 'bad-transfer-encoding', 'HTAB inside Transfer-Encoding');
          if (req) {
            if (ve - vs !== 7 || !eqLower(buf, vs, L_CHUNKED)) {
              throw new HttpParseError(status, 'bad-transfer-encoding', `Transfer-Encoding other than chunked: ${JSON.stringify(value.slice(0, 64))}`);
            }
            fChunked = true;
          } else {
            fChunked = responseCodings(buf, vs, ve, status);
          }
        }
        break;
    }
  }
}

/**
 * Whether buf[a..b) holds an HTAB. Connection and Transfer-Encoding values with a tab after the first
 * token are refused: llhttp does not read `chunked<HTAB>` as chunked nor `keep-alive<HTAB>` as keep-alive,
 * so such a message would be framed differently by Node-based hops.
 */
function hasTab(buf: Buffer, a: number, b: number): boolean {
  for (let i = a; i < b; i++) if (buf[i] === HTAB) return true;
  return false;
}

/** Content-Length = 1*DIGIT, at most Number.MAX_SAFE_INTEGER. */
function parseContentLength(buf: Buffer, a: number, b: number, status: number): number {
  if (a === b) throw new HttpParseError(status, 'bad-content-length', 'Empty Content-Length');
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) throw new HttpParseError(status, 'bad-content-length', `Invalid Content-Length ${JSON.stringify(latin1(buf, a, Math.min(b, a + 64)))}`);
    // Exact while v <= MAX_SAFE_INTEGER; a larger true value rounds to >= 2^53, still over the limit.
    v = v * 10 + d;
    if (v > Number.MAX_SAFE_INTEGER) throw new HttpParseError(status, 'bad-content-length', 'Content-Length too large');
  }
  return v;
}

/** Connection: #token, case-insensitive; sets fClose / fKeepAlive / fConnUpgrade. */
function scanConnection(buf: Buffer, a: number, b: number, status: number): void {
  let i = a;
  while (i < b) {
    let c = buf[i]!;
    while (i < b && (c === SP || c === HTAB || c === COMMA)) c = buf[++i]!;
    if (i >= b) break;
    const ts = i;
    while (i < b && TCHAR[c] === 1) c = buf[++i]!;
    const te = i;
    while (i < b && (c === SP || c === HTAB)) c = buf[++i]!;
    if (te === ts || (i < b && c !== COMMA)) throw new HttpParseError(status, 'bad-connection', 'Connection must be a list of tokens');
    const n = te - ts;
    if (n === 5) {
      if (eqLower(buf, ts, L_CLOSE)) fClose = true;
    } else if (n === 10) {
      if (eqLower(buf, ts, L_KEEP_ALIVE)) fKeepAlive = true;
    } else if (n === 7) {
      if (eqLower(buf, ts, L_UPGRADE)) fConnUpgrade = true;
    }
  }
}

/**
 * A response's Transfer-Encoding: a list of codings (tokens). Returns whether chunked is the final one;
 * chunked anywhere else, twice, or a list that is not tokens is refused.
 */
function responseCodings(buf: Buffer, a: number, b: number, status: number): boolean {
  let i = a;
  let chunkedSeen = false;
  let lastChunked = false;
  let any = false;
  while (i < b) {
    let c = buf[i]!;
    while (i < b && (c === SP || c === HTAB || c === COMMA)) c = buf[++i]!;
    if (i >= b) break;
    const ts = i;
    while (i < b && TCHAR[c] === 1) c = buf[++i]!;
    const te = i;
    while (i < b && (c === SP || c === HTAB)) c = buf[++i]!;
    if (te === ts || (i < b && c !== COMMA)) throw new HttpParseError(status, 'bad-transfer-encoding', 'Transfer-Encoding must be a list of codings');
    const isChunked = te - ts === 7 && eqLower(buf, ts, L_CHUNKED);
    if (isChunked && chunkedSeen) throw new HttpParseError(status, 'bad-transfer-encoding', 'chunked applied twice');
    chunkedSeen ||= isChunked;
    lastChunked = isChunked;
    any = true;
  }
  if (!any) throw new HttpParseError(status, 'bad-transfer-encoding', 'Empty Transfer-Encoding');
  return lastChunked;
}

/**
 * uri-host [ ":" port ] in buf[a..b): a reg-name or IPv4 address (unreserved, pct-encoded, sub-delims but ',')
 * or an "[" IP-literal "]", then ":" and 1-5 digits <= 65535 (required when `portRequired`). So no whitespace,
 * '/', '?', '#', '@' (userinfo), ',' or second ':'.
 */
function validHostPort(buf: Buffer, a: number, b: number, portRequired: boolean): boolean {
  let i = a;
  if (buf[i] === 0x5b) {
    i++;
    while (i < b && IP_LITERAL[buf[i]!] === 1) i++;
    if (i === a + 1 || i >= b || buf[i] !== 0x5d) return false;
    i++;
  } else {
    while (i < b && HOSTNAME[buf[i]!] === 1) i++;
    if (i === a) return false;
  }
  if (i === b) return !portRequired;
  if (buf[i] !== COLON) return false;
  i++;
  if (b - i < 1 || b - i > 5) return false;
  let port = 0;
  for (; i < b; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return false;
    port = port * 10 + d;
  }
  return port <= 65535;
}

/** absolute-form with an http or https scheme (case-insensitive) and a valid host[:port] authority. */
function validAbsoluteForm(buf: Buffer, a: number, b: number): boolean {
  let i: number;
  if (b - a > 7 && eqLowerTarget(buf, a, L_HTTP)) i = a + 7;
  else if (b - a > 8 && eqLowerTarget(buf, a, L_HTTPS)) i = a + 8;
  else return false;
  const hs = i;
  while (i < b && AUTHORITY[buf[i]!] === 1) i++;
  if (i < b && buf[i] !== SLASH && buf[i] !== 0x3f /* ? */) return false;
  return validHostPort(buf, hs, i, false);
}

/** Case-insensitive match of a scheme literal ("http://", "https://"): letters fold, ':' and '/' exactly. */
function eqLowerTarget(buf: Buffer, at: number, l: Uint8Array): boolean {
  for (let k = 0; k < l.length; k++) {
    const c = buf[at + k]!;
    const want = l[k]!;
    if (c !== want && (want < 0x61 || (c | 0x20) !== want)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Finding the head

/** Skips empty lines (CRLF) before a start line (RFC 9112 §2.2); returns the start line's index. */
function skipEmptyLines(buf: Buffer, start: number, end: number): number {
  let s = start;
  while (s + 1 < end && buf[s] === CR && buf[s + 1] === LF) s += 2;
  return s;
}

/** Index of the CRLF CRLF that ends a head starting at `s`, searched only within start+maxHeadBytes, or -1. */
function findHeadEnd(buf: Buffer, start: number, s: number, end: number, limits: ParseLimits): number {
  const limit = Math.min(end, start + limits.maxHeadBytes);
  if (limit - s < 4) return -1;
  const view = limit === buf.length ? buf : buf.subarray(0, limit);
  return view.indexOf(CRLFCRLF, s);
}

/** Cheap checks on an incomplete head: bare LF / bare CR in the bytes so far, and the size limit. */
function earlyChecks(buf: Buffer, start: number, s: number, end: number, limits: ParseLimits, status: number): void {
  const limit = Math.min(end, start + limits.maxHeadBytes);
  const view = limit === buf.length ? buf : buf.subarray(0, limit);
  for (let i = s; (i = view.indexOf(LF, i)) !== -1; i++) {
    if (i === s || buf[i - 1] !== CR) throw new HttpParseError(status, 'bare-lf', 'Bare LF in the head (lines must end in CRLF)');
  }
  for (let i = s; (i = view.indexOf(CR, i)) !== -1; i++) {
    if (i + 1 < limit && buf[i + 1] !== LF) throw new HttpParseError(status, 'bare-cr', 'Bare CR in the head');
  }
  if (end - start >= limits.maxHeadBytes) {
    throw new HttpParseError(status === 400 ? 431 : status, 'head-too-large', `Head larger than ${limits.maxHeadBytes} bytes`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Requests

/**
 * Parses a request head starting at buf[start], looking at bytes up to `end` (exclusive). Returns null when
 * the head is not complete yet and nothing seen so far is invalid (call again with more bytes appended, from
 * the same `start`); throws HttpParseError when the bytes can never be a valid head. Empty lines (CRLF)
 * before the request line are skipped and counted in headBytes.
 */
export function parseRequestHead(buf: Buffer, start: number, end: number, limits: ParseLimits): RequestHead | null {
  const s = skipEmptyLines(buf, start, end);
  const headEnd = findHeadEnd(buf, start, s, end, limits);
  if (headEnd === -1) {
    if (s < end) earlyRequestChecks(buf, start, s, end, limits);
    return null;
  }

  // One native call for the whole head, then substrings (much cheaper than a latin1Slice per string).
  const text = latin1(buf, s, headEnd + 2);

  // request-line = method SP request-target SP HTTP-version CRLF
  let p = s;
  let c = buf[p]!;
  while (TCHAR[c] === 1) c = buf[++p]!;
  if (c !== SP || p === s) throw lineError(400, buf, p, headEnd + 4, 'bad-method', 'Invalid method');
  const method = methodName(buf, s, p, text, s);
  const ts = ++p;
  c = buf[p]!;
  while (TARGET[c] === 1) c = buf[++p]!;
  const te = p;
  if (te - ts > limits.maxTargetBytes) throw new HttpParseError(414, 'target-too-long', `Request-target longer than ${limits.maxTargetBytes} bytes`);
  if (c !== SP || te === ts) throw lineError(400, buf, p, headEnd + 4, 'bad-target', 'Invalid request-target');
  p++;
  // Every byte compared up to the first mismatch lies before the line's CR, so inside the head.
  if (buf[p] !== 0x48 || buf[p + 1] !== 0x54 || buf[p + 2] !== 0x54 || buf[p + 3] !== 0x50 || buf[p + 4] !== SLASH) {
    throw lineError(400, buf, p, headEnd + 4, 'bad-version', 'Invalid HTTP version');
  }
  if (DIGIT[buf[p + 5]!] !== 1 || buf[p + 6] !== 0x2e || DIGIT[buf[p + 7]!] !== 1) throw lineError(400, buf, p + 5, headEnd + 4, 'bad-version', 'Invalid HTTP version');
  if (buf[p + 8] !== CR || buf[p + 9] !== LF) throw lineError(400, buf, p + 8, headEnd + 4, 'bad-version', 'Invalid HTTP version');
  const major = buf[p + 5]! - 0x30;
  const minorDigit = buf[p + 7]! - 0x30;
  if (major !== 1 || minorDigit > 1) throw new HttpParseError(505, 'unsupported-version', `HTTP/${major}.${minorDigit} is not supported`);
  const minor = minorDigit as 0 | 1;
  p += 10;

  // request-target forms (RFC 9112 §3.2)
  const t0 = buf[ts];
  if (method === 'CONNECT') {
    if (!validHostPort(buf, ts, te, true)) throw new HttpParseError(400, 'bad-target', 'CONNECT needs an authority-form target (host:port)');
  } else if (t0 !== SLASH) {
    if (t0 === STAR) {
      if (te - ts !== 1 || method !== 'OPTIONS') throw new HttpParseError(400, 'bad-target', 'The asterisk-form is only for OPTIONS');
    } else if (!validAbsoluteForm(buf, ts, te)) {
      throw new HttpParseError(400, 'bad-target', 'Invalid request-target (origin-form or http(s) absolute-form expected)');
    }
  }

  scanFields(buf, text, s, p, headEnd + 2, limits, true, 400);

  if (fHosts === 0 && minor === 1) throw new HttpParseError(400, 'missing-host', 'HTTP/1.1 request without Host');
  if (fTransferEncodings !== 0) {
    if (fContentLength !== -1) throw new HttpParseError(400, 'cl-and-te', 'Both Content-Length and Transfer-Encoding');
    if (minor === 0) throw new HttpParseError(400, 'te-http10', 'Transfer-Encoding in an HTTP/1.0 request');
  }
  return {
    method,
    target: text.slice(ts - s, te - s),
    host: fHost,
    expectContinue: fExpectContinue,
    minor,
    headers: fHeaders,
    contentLength: fContentLength,
    chunked: fChunked,
    keepAlive: minor === 1 ? !fClose : fKeepAlive && !fClose,
    connectionUpgrade: fConnUpgrade,
    upgrade: fUpgrade,
    headBytes: headEnd + 4 - start,
  };
}

/** On an incomplete request head: the generic checks, the method so far, and the request-target so far. */
function earlyRequestChecks(buf: Buffer, start: number, s: number, end: number, limits: ParseLimits): void {
  const limit = Math.min(end, start + limits.maxHeadBytes);
  let p = s;
  while (p < limit && TCHAR[buf[p]!] === 1) p++;
  if (p - s > MAX_METHOD_LENGTH) throw new HttpParseError(501, 'unknown-method', 'Unknown method');
  // A lone CR at the very end may begin an empty line (skipped once its LF arrives).
  if (p < limit && !(p === s && p + 1 === end && buf[p] === CR)) {
    if (buf[p] !== SP || p === s) throw lineError(400, buf, p, end, 'bad-method', 'Invalid method');
    methodName(buf, s, p, undefined, 0);
    const ts = ++p;
    while (p < limit && TARGET[buf[p]!] === 1) p++;
    if (p - ts > limits.maxTargetBytes) throw new HttpParseError(414, 'target-too-long', `Request-target longer than ${limits.maxTargetBytes} bytes`);
    if (p < limit && (buf[p] !== SP || p === ts)) throw lineError(400, buf, p, end, 'bad-target', 'Invalid request-target');
  }
  earlyChecks(buf, start, s, end, limits, 400);
}

// ---------------------------------------------------------------------------------------------------------
// Responses

/**
 * The same for a response head from an upstream: status-line `HTTP/1.x SP 3DIGIT SP reason CRLF` (also
 * `HTTP/1.x SP 3DIGIT CRLF`). Errors carry status 502.
 */
export function parseResponseHead(buf: Buffer, start: number, end: number, limits: ParseLimits): ResponseHead | null {
  const s = skipEmptyLines(buf, start, end);
  const headEnd = findHeadEnd(buf, start, s, end, limits);
  if (headEnd === -1) {
    if (s < end) earlyChecks(buf, start, s, end, limits, 502);
    return null;
  }
  const text = latin1(buf, s, headEnd + 2);
  let p = s;
  if (buf[p] !== 0x48 || buf[p + 1] !== 0x54 || buf[p + 2] !== 0x54 || buf[p + 3] !== 0x50 || buf[p + 4] !== SLASH) {
    throw lineError(502, buf, p, headEnd + 4, 'bad-status-line', 'Invalid status line');
  }
  if (DIGIT[buf[p + 5]!] !== 1 || buf[p + 6] !== 0x2e || DIGIT[buf[p + 7]!] !== 1) throw lineError(502, buf, p + 5, headEnd + 4, 'bad-version', 'Invalid HTTP version');
  const major = buf[p + 5]! - 0x30;
  const minorDigit = buf[p + 7]! - 0x30;
  if (major !== 1 || minorDigit > 1) throw new HttpParseError(502, 'unsupported-version', `HTTP/${major}.${minorDigit} is not supported`);
  const minor = minorDigit as 0 | 1;
  p += 8;
  if (buf[p] !== SP) throw lineError(502, buf, p, headEnd + 4, 'bad-status-line', 'Invalid status line');
  if (DIGIT[buf[p + 1]!] !== 1 || buf[p + 1] === 0x30 || DIGIT[buf[p + 2]!] !== 1 || DIGIT[buf[p + 3]!] !== 1) {
    throw lineError(502, buf, p + 1, headEnd + 4, 'bad-status', 'Invalid status code');
  }
  const status = (buf[p + 1]! - 0x30) * 100 + (buf[p + 2]! - 0x30) * 10 + (buf[p + 3]! - 0x30);
  p += 4;
  let reason = '';
  let c = buf[p]!;
  if (c === SP) {
    const rs = ++p;
    c = buf[p]!;
    while (FIELD_VALUE[c] === 1) c = buf[++p]!;
    if (p > rs) reason = text.slice(rs - s, p - s);
  }
  if (c !== CR || buf[p + 1] !== LF) throw lineError(502, buf, p, headEnd + 4, 'bad-status-line', 'Invalid status line');
  p += 2;

  scanFields(buf, text, s, p, headEnd + 2, limits, false, 502);

  if (fTransferEncodings !== 0 && fContentLength !== -1) throw new HttpParseError(502, 'cl-and-te', 'Both Content-Length and Transfer-Encoding');
  const bodyless = status < 200 || status === 204 || status === 304;
  const closeDelimited = !bodyless && !fChunked && fContentLength === -1;
  return {
    status,
    reason,
    closeDelimited,
    minor,
    headers: fHeaders,
    contentLength: fContentLength,
    chunked: fChunked,
    keepAlive: !closeDelimited && (minor === 1 ? !fClose : fKeepAlive && !fClose),
    connectionUpgrade: fConnUpgrade,
    upgrade: fUpgrade,
    headBytes: headEnd + 4 - start,
  };
}
