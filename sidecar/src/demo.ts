import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { parseSidecarConfig } from './config/load.js';
import { Sidecar } from './main.js';

export interface DemoOptions {
  /** Outbound port; the admin endpoint takes port-1 and the demo service's own local port port+1. */
  readonly outboundPort: number;
  /** Where to print what a newcomer should do; default stdout. */
  readonly print?: ((line: string) => void) | undefined;
}

export interface Demo {
  readonly sidecar: Sidecar;
  readonly instances: readonly string[];
  stop(): Promise<void>;
}

export interface InstanceOptions {
  /** Address to bind; default 127.0.0.1. */
  readonly host?: string | undefined;
  /** Port to bind; default 0 (an ephemeral port). */
  readonly port?: number | undefined;
  /** The service this instance belongs to, reported in every answer when given. */
  readonly service?: string | undefined;
}

/**
 * A demo instance: answers every request with which instance it is, after a little simulated work;
 * `GET /healthz` answers 200 at once. Used by `outrigger demo` and `outrigger demo-app`.
 */
export function startInstance(name: string, delayMs: number, options: InstanceOptions = {}): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
      res.end('ok\n');
      return;
    }
    const body =
      JSON.stringify({
        ...(options.service !== undefined ? { service: options.service } : {}),
        instance: name,
        host: hostname(),
        method: req.method,
        path: req.url,
        requestId: req.headers['x-request-id'] ?? null,
      }) + '\n';
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }, delayMs);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve(server));
  });
}

/** Starts three demo instances and a sidecar in front of them (least-load), and prints where to go. */
export async function runDemo(options: DemoOptions): Promise<Demo> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const servers = await Promise.all([startInstance('demo-1', 1), startInstance('demo-2', 2), startInstance('demo-3', 4)]);
  const addrs = servers.map((s) => `127.0.0.1:${(s.address() as AddressInfo).port}`);
  const port = options.outboundPort;
  const yaml = [
    'service: demo-client',
    `admin: { listen: 127.0.0.1:${port - 1} }`,
    `outbound: { listen: 127.0.0.1:${port} }`,
    'log: { level: info, accessLog: { enabled: false } }',
    'services:',
    '  demo:',
    '    lb: least-load',
    `    listen: 127.0.0.1:${port + 1}`,
    '    endpoints:',
    ...addrs.map((a, i) => `      - { address: ${a}, capacity: ${[100, 50, 25][i]} }`),
  ].join('\n');
  let sidecar: Sidecar;
  try {
    sidecar = await Sidecar.start({ config: parseSidecarConfig(yaml, 'demo.yaml') });
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  const a = sidecar.addresses;
  print('Outrigger demo: a sidecar in front of three demo instances (least-load policy)');
  print(`  instances:        ${addrs.join(', ')}`);
  print(`  send traffic:     curl -H 'Host: demo' http://${a.outbound}/hello`);
  print(`              or:   curl http://${a.services['demo'] ?? ''}/hello`);
  print(`              or:   HTTP_PROXY=http://${a.outbound} curl http://demo/hello`);
  print(`  admin endpoint:   http://${a.admin}/clusters  (also /config /metrics /ready /live)`);
  print('  stop with Ctrl-C');
  return {
    sidecar,
    instances: addrs,
    async stop() {
      await sidecar.stop(2_000);
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
