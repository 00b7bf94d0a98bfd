import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/**
 * Header conversions between the Call's HTTP/1-shaped heads (flat [name, value, ...] arrays and
 * `name: value\r\n` blocks) and HTTP/2 header objects. HTTP/2 forbids connection-specific fields
 * (RFC 9113 section 8.2.2): they are dropped on the way in, as is any `te` other than `trailers`.
 */

const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

/** A `name: value\r\n` block as an HTTP/2 header object; `chunked` tells whether it declared a chunked body. */
export interface ParsedBlock {
  readonly headers: OutgoingHttpHeaders;
  readonly chunked: boolean;
  readonly host: string | undefined;
}

/** Parses `name: value\r\n` lines from `from` up to an empty line or the end into an HTTP/2 header object. */
export function parseHeaderBlock(block: string, from: number, into: OutgoingHttpHeaders): ParsedBlock {
  let chunked = false;
  let host: string | undefined;
  let i = from;
  const n = block.length;
  while (i < n) {
    const eol = block.indexOf('\r\n', i);
    const end = eol < 0 ? n : eol;
    if (end === i) break;
    const colon = block.indexOf(':', i);
    if (colon > i && colon < end) {
      const name = block.slice(i, colon).toLowerCase();
      const value = block.slice(colon + 1, end).trim();
      if (CONNECTION_SPECIFIC.has(name)) {
        if (name === 'transfer-encoding' && value.toLowerCase().includes('chunked')) chunked = true;
        else if (name === 'host') host = value;
      } else if (name !== 'te' || value.toLowerCase() === 'trailers') {
        const had = into[name];
        if (had === undefined) into[name] = value;
        else if (Array.isArray(had)) had.push(value);
        else into[name] = [String(had), value];
      }
    }
    i = end + 2;
  }
  return { headers: into, chunked, host };
}

/** The request head the Call writes (`METHOD PATH HTTP/1.1\r\n` + fields) as HTTP/2 request headers. */
export function requestHeadersOf(head: string, scheme: 'http' | 'https', fallbackAuthority: string): ParsedBlock {
  const lineEnd = head.indexOf('\r\n');
  const line = head.slice(0, lineEnd);
  const sp1 = line.indexOf(' ');
  const sp2 = line.lastIndexOf(' ');
  const method = line.slice(0, sp1);
  const path = line.slice(sp1 + 1, sp2);
  const into: OutgoingHttpHeaders = { ':method': method, ':scheme': scheme };
  if (method !== 'CONNECT') into[':path'] = path;
  const parsed = parseHeaderBlock(head, lineEnd + 2, into);
  into[':authority'] = parsed.host ?? fallbackAuthority;
  return parsed;
}

/** HTTP/2 headers as a flat [name, value, ...] array without the pseudo-headers. */
export function flatHeaders(headers: IncomingHttpHeaders): string[] {
  const flat: string[] = [];
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* : */) continue;
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) flat.push(name, x);
    else flat.push(name, String(v));
  }
  return flat;
}

/** A flat [name, value, ...] array as an HTTP/2 header object (connection-specific fields dropped). */
export function headerObject(flat: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || name.charCodeAt(0) === 58) continue;
    const value = flat[i + 1]!;
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [String(had), value];
  }
  return out;
}
