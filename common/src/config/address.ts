import { isIPv4, isIPv6 } from 'node:net';

/** A parsed "host:port"; `host` has no brackets ("::1" for "[::1]:80"). */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const HOST_PORT_EXPECTED = 'expected host:port (IPv4, hostname or [IPv6])';
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/**
 * Splits and checks "host:port" (IPv4, hostname or [IPv6]); returns the parts, or an "expected ..." phrase
 * saying what is wrong. Port 0 is accepted only with `allowPortZero` (listeners bound to an ephemeral port).
 */
export function checkHostPort(address: string, allowPortZero = false): HostPort | { readonly problem: string } {
  const minPort = allowPortZero ? 0 : 1;
  let host: string;
  let portText: string;
  if (address.startsWith('[')) {
    const m = /^\[([^\]]*)\]:([^:]*)$/.exec(address);
    if (m === null) return { problem: `${HOST_PORT_EXPECTED}, e.g. [::1]:8080` };
    host = m[1] ?? '';
    portText = m[2] ?? '';
    if (!isIPv6(host)) return { problem: 'expected host:port with a valid IPv6 address inside the brackets' };
  } else {
    const colon = address.lastIndexOf(':');
    if (colon < 0) return { problem: `${HOST_PORT_EXPECTED}; the port is missing` };
    host = address.slice(0, colon);
    portText = address.slice(colon + 1);
    if (host.includes(':')) return { problem: 'expected host:port with an IPv6 host in brackets, e.g. [::1]:8080' };
    const looksNumeric = /^[0-9.]+$/.test(host);
    if (looksNumeric ? !isIPv4(host) : !HOSTNAME.test(host)) {
      return { problem: 'expected host:port whose host is a valid IPv4 address, hostname or [IPv6]' };
    }
  }
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= minPort && port <= 65535)) return { problem: `expected host:port with port ${minPort}..65535` };
  return { host, port };
}

/**
 * Parses "host:port", e.g. for net.Server#listen or undici's connect.
 * @throws RangeError when the address is not a valid host:port with port 0..65535.
 */
export function parseHostPort(address: string): HostPort {
  const r = checkHostPort(address, true);
  if ('problem' in r) throw new RangeError(`${r.problem}, got ${JSON.stringify(address)}`);
  return r;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

/**
 * Whether two listen addresses would fight over the same socket: the same non-zero port and the same host,
 * or either host a wildcard (0.0.0.0 or [::]). "localhost" counts as 127.0.0.1.
 */
export function listenersCollide(a: HostPort, b: HostPort): boolean {
  if (a.port === 0 || a.port !== b.port) return false;
  const norm = (h: string): string => {
    const l = h.toLowerCase().replace(/\.$/, '');
    return l === 'localhost' ? '127.0.0.1' : l;
  };
  const ha = norm(a.host);
  const hb = norm(b.host);
  return ha === hb || WILDCARDS.has(ha) || WILDCARDS.has(hb);
}
