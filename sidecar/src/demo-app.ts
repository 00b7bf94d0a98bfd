import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkHostPort } from './config/address.js';
import { startInstance } from './demo.js';

/**
 * `outrigger demo-app`: one demo service instance on its own (the app container of docker-compose.yml,
 * or any "service" a newcomer wants to put behind a sidecar). Answers every request with JSON naming the
 * service and instance, the path and the x-request-id; `GET /healthz` answers 200.
 */

export interface DemoAppOptions {
  /** The service name (also the instance name unless `instance` is given). */
  readonly name: string;
  readonly instance?: string | undefined;
  /** host:port to listen on; port 0 binds an ephemeral port. */
  readonly listen: string;
  /** Simulated work per request, ms. */
  readonly delayMs?: number | undefined;
}

export interface DemoApp {
  readonly server: Server;
  /** host:port actually bound. */
  readonly address: string;
  stop(): Promise<void>;
}

export async function startDemoApp(options: DemoAppOptions): Promise<DemoApp> {
  const hp = checkHostPort(options.listen, true);
  if ('problem' in hp) throw new RangeError(`--listen: ${hp.problem}, got ${JSON.stringify(options.listen)}`);
  const server = await startInstance(options.instance ?? options.name, options.delayMs ?? 0, { host: hp.host, port: hp.port, service: options.name });
  const bound = server.address() as AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    server,
    address: `${host}:${bound.port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Requests still running get a moment to finish, then their connections are cut.
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}
