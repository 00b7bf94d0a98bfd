import type { ServerResponse } from 'node:http';
import { errorStatus, type ProxyErrorReason } from '../core/errors.js';

/**
 * Writes an answer the sidecar makes itself: the status of the reason, `x-outrigger-error: <reason>` and a
 * small JSON body. Returns the status written (or 0 when the response had already started).
 */
export function sendProxyError(
  res: ServerResponse,
  reason: ProxyErrorReason,
  message: string,
  extraHeaders?: Record<string, string>,
): number {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return 0;
  }
  const status = errorStatus[reason];
  const body = JSON.stringify({ error: reason, message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-outrigger-error': reason,
    ...extraHeaders,
  });
  res.end(body);
  return status;
}
