import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

/**
 * The address this instance registers with when `controlPlane.advertise` is not set, from the inbound
 * listener's bound address: a specific host is used as it is; a wildcard (0.0.0.0 or ::) becomes the
 * machine's first non-internal IPv4 address (Consul's rule: in a container, the container's own address,
 * so every replica of a scaled service registers a distinct address), or 127.0.0.1 when it has none.
 */
export function defaultAdvertise(inbound: { host: string; port: number }, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string {
  const { host, port } = inbound;
  if (host !== '0.0.0.0' && host !== '::') return `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const names = Object.keys(interfaces).sort();
  for (const name of names) {
    for (const i of interfaces[name] ?? []) {
      if (i.family === 'IPv4' && !i.internal) return `${i.address}:${port}`;
    }
  }
  return `127.0.0.1:${port}`;
}
