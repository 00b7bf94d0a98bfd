import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { parseHostPort } from '../../../common/src/config/address.js';

/**
 * What the HTTP admin API refuses before looking at the path, so that a web page in the operator's browser
 * cannot use it (there is no authentication yet; whoever reaches the port directly still can):
 *
 *  - Host (DNS rebinding): only an IP address, `localhost` (or a name under `.localhost`), the listen host,
 *    or a name in cp.yaml's `listen.allowedHosts` ("*": any). A page on a rebinding name sends its own name.
 *    The port is not checked (a published port may differ from the listen port). 421 otherwise.
 *  - Origin (cross-site requests): when present, it must be this API's own origin (the Host it was asked by,
 *    http or https); a browser sends it on every cross-origin fetch and form POST. 403 otherwise.
 *  - Content-Type (CSRF with "simple" requests, which a page may send without asking): a POST, PUT, PATCH or
 *    DELETE that carries a body, or names a type, must be `application/json` (PATCH also
 *    `application/merge-patch+json`). 415 otherwise.
 */

export interface Refusal {
  readonly status: number;
  readonly message: string;
}

export interface GuardOptions {
  /** The HTTP listen address (host:port) from cp.yaml. */
  readonly listen: string;
  /** `listen.allowedHosts`. */
  readonly allowedHosts: readonly string[];
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The host name of a Host header ("[::1]:80" → "::1"), lower-case, without a final dot; undefined when it is not host[:port]. */
function hostName(authority: string): string | undefined {
  let u: URL;
  try {
    u = new URL(`http://${authority}`);
  } catch {
    return undefined;
  }
  if (u.username !== '' || u.password !== '' || u.pathname !== '/' || u.search !== '' || u.hash !== '' || authority.includes('/')) return undefined;
  return u.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
}

/** The media type of a Content-Type header, lower-case, without parameters ("" when absent). */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** Whether the request carries a body (a non-zero Content-Length, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length.trim() !== '0');
}

/** Whether `origin` is http(s)://HOST of this request. */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

export function createGuard(o: GuardOptions): (req: IncomingMessage) => Refusal | undefined {
  const listenHost = parseHostPort(o.listen).host.toLowerCase().replace(/\.$/, '');
  const any = o.allowedHosts.includes('*');
  const allowed = new Set(o.allowedHosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  const hostAllowed = (name: string): boolean =>
    any || isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost') || name === listenHost || allowed.has(name);

  return (req) => {
    // HTTP/1.0 clients may leave Host out; browsers always send it.
    const host = req.headers.host;
    if (host !== undefined) {
      const name = hostName(host);
      if (name === undefined || !hostAllowed(name)) {
        return {
          status: 421,
          message: `Host ${JSON.stringify(host)} is not a name this control plane answers to: expected an IP address, localhost${listenHost !== '0.0.0.0' && listenHost !== '::' && isIP(listenHost) === 0 ? `, ${listenHost}` : ''} or a name in listen.allowedHosts of cp.yaml`,
        };
      }
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!sameOrigin(origin, host)) return { status: 403, message: `cross-origin request refused: Origin ${JSON.stringify(origin)} is not this API's own origin` };
    }
    const method = req.method ?? 'GET';
    if (WRITES.has(method)) {
      const type = mediaType(req);
      if (type !== '' || hasBody(req)) {
        const ok = type === 'application/json' || (method === 'PATCH' && type === 'application/merge-patch+json');
        if (!ok) {
          return {
            status: 415,
            message: `expected Content-Type ${method === 'PATCH' ? 'application/merge-patch+json or application/json' : 'application/json'}, got ${type === '' ? 'none' : type}`,
          };
        }
      }
    }
    return undefined;
  };
}
