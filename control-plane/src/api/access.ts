import type { IncomingMessage, ServerResponse } from 'node:http';
import { bearerSecret, mayCall, type Authenticator } from '../auth/tokens.js';

/**
 * Who may use the HTTP API (after guard.ts): every request needs a token, `Authorization: Bearer SECRET`,
 * except `/healthz`, `/metrics`, `/api/version` and the dashboard's static files (/dashboard/*: the page's
 * code, no data).
 *
 *  - No token or an unknown one: 401 with `www-authenticate: Bearer`. A token whose role may not make the
 *    request: 403 (tokens.ts mayCall: reader GET, operator also the writes of day-to-day operation, admin all,
 *    sidecar nothing).
 *  - A browser opens the dashboard once as `/?token=SECRET`: the answer sets the token as an HttpOnly,
 *    SameSite=Strict cookie and redirects to the address without it. The cookie authenticates GET and HEAD
 *    requests only (the dashboard reads; every change needs the header).
 */

export const TOKEN_COOKIE = 'outrigger_token';

/** Open: health checks, Prometheus scrapes, and the software and state version (as `kubectl version` finds /version). */
const OPEN = new Set(['/healthz', '/metrics', '/api/version']);

/** The token cookie's value from a Cookie header. */
function cookieSecret(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === TOKEN_COOKIE) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function refuse(res: ServerResponse, status: 401 | 403, message: string): void {
  const text = JSON.stringify({ error: message }, null, 2);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Bearer realm="outrigger"' } : {}),
  });
  res.end(text);
}

/**
 * Answers the request (401, 403, or the dashboard's token redirect) and returns true when it may not go on;
 * false lets it through.
 */
export function createAccessCheck(auth: Authenticator): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://control-plane');
    const path = url.pathname;
    if (OPEN.has(path) || path.startsWith('/dashboard/')) return false;
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';
    const fromQuery = read && (path === '/' || path === '/dashboard') ? url.searchParams.get('token') : null;
    if (fromQuery !== null) {
      const p = auth.authenticate(fromQuery);
      if (p === undefined || p.role === 'sidecar') {
        refuse(res, p === undefined ? 401 : 403, p === undefined ? 'the token in the address is not one this control plane knows' : `token "${p.name}" (role sidecar) may not open the dashboard`);
        return true;
      }
      url.searchParams.delete('token');
      res.writeHead(303, {
        location: `${path}${url.search}`,
        // Secure over HTTPS (the default): the browser never sends it over plain HTTP.
        'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(fromQuery)}; Path=/; HttpOnly; SameSite=Strict${(req.socket as { encrypted?: boolean }).encrypted === true ? '; Secure' : ''}`,
        'content-length': 0,
      });
      res.end();
      return true;
    }
    const header = req.headers.authorization;
    const secret = header !== undefined ? bearerSecret(header) : read ? cookieSecret(req.headers.cookie) : undefined;
    const principal = auth.authenticate(secret);
    if (principal === undefined) {
      refuse(
        res,
        401,
        header !== undefined && secret === undefined
          ? 'expected the header Authorization: Bearer TOKEN'
          : secret === undefined
            ? path === '/' || path === '/dashboard'
              ? 'authentication required: open the dashboard as /?token=TOKEN (a reader, operator or admin token)'
              : 'authentication required: send Authorization: Bearer TOKEN'
            : 'unknown token',
      );
      return true;
    }
    if (!mayCall(principal.role, method, path.split('/').filter((s) => s !== ''))) {
      refuse(res, 403, `token "${principal.name}" (role ${principal.role}) may not ${method} ${path}`);
      return true;
    }
    return false;
  };
}
