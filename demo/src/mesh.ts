import { Agent, request } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlPlane } from '../../control-plane/src/main.js';
import { parseSidecarConfig } from '../../common/src/config/load.js';
import { systemTimers, type TimerHandle, type Timers } from '../../common/src/timers.js';
import { Sidecar } from '../../sidecar/src/main.js';
import { createLogger } from '../../common/src/logger.js';
import { BIN, freePort, probePort } from './local.js';
import { ADMIN_TOKEN_FILE, SIDECAR_TOKEN_FILE } from '../../control-plane/src/auth/generated.js';
import { CA_CERT_FILE } from '../../control-plane/src/ca/setup.js';

/**
 * `outrigger demo` (`npm start`): a whole mesh on loopback, nothing to set up.
 *
 *   load generator ─► edge sidecar ─► catalog ×2 (app + sidecar each) ─► inventory ×3 (app + sidecar each)
 *                        ▲                      ▲                                 ▲
 *                        └──────── control plane (registry, weights, autoscaler, dashboard) ┘
 *
 * The control plane runs in this process with its state in a temporary directory; its autoscaler's
 * process driver starts every instance (`outrigger demo-instance`: the app and its sidecar), so the
 * instances are sized by the same code that sizes real ones. An edge sidecar in this process gives the
 * newcomer one URL to send requests to, and a gentle load keeps the charts moving.
 */

export interface MeshOptions {
  /** Preferred ports; a port that is taken is replaced by a free one (the printed URLs are the truth). */
  readonly ports?: Partial<MeshPorts> | undefined;
  /** Requests per second of the built-in load; 0 turns it off. */
  readonly loadRps?: number | undefined;
  readonly print?: ((line: string) => void) | undefined;
  readonly timers?: Timers | undefined;
  /** catalog asks inventory over gRPC (inventory's policy says `protocol: grpc`) instead of HTTP/1.1. */
  readonly grpc?: boolean | undefined;
}

export interface MeshPorts {
  grpc: number;
  dashboard: number;
  edgeAdmin: number;
  edgeOutbound: number;
  /** The edge sidecar's local port for catalog: the URL to send requests to. */
  catalog: number;
}

export const DEFAULT_MESH_PORTS: MeshPorts = { grpc: 15010, dashboard: 15080, edgeAdmin: 15000, edgeOutbound: 15001, catalog: 18080 };

export interface Mesh {
  /** The dashboard, with the admin token in the address (the page keeps it as a cookie). */
  readonly dashboardUrl: string;
  readonly catalogUrl: string;
  readonly edgeOutbound: string;
  readonly runDir: string;
  readonly controlPlane: ControlPlane;
  /** Requests the load generator sent, and those that did not get a 2xx. */
  loadStats(): { sent: number; failed: number };
  stop(): Promise<void>;
}

/** `preferred` if nothing listens there (and no other part of the mesh took it), else a free port. */
async function portOr(preferred: number, taken: Set<number>): Promise<number> {
  const port = (taken.has(preferred) ? undefined : await probePort(preferred)) ?? (await freePort());
  taken.add(port);
  return port;
}

/** The first block of `size` free ports from `first` on, trying 1,000 ports further each time. */
async function freeRange(first: number, size: number): Promise<string> {
  for (let base = first; base + size <= 65_000; base += 1_000) {
    let free = true;
    for (let p = base; p < base + size && free; p++) free = (await probePort(p)) !== undefined;
    if (free) return `${base}-${base + size - 1}`;
  }
  throw new Error(`no block of ${size} free ports from ${first} on`);
}

const POLICY = {
  lb: 'least-load',
  healthCheck: { http: { path: '/healthz' }, interval: '2s', timeout: '1s', unhealthyThreshold: 2, healthyThreshold: 1 },
  outlierDetection: { consecutiveGatewayFailure: 10, interval: '1s', baseEjectionTime: '5s' },
  circuitBreaker: { errorThresholdPercentage: 25, volumeThreshold: 3, rollingWindow: '2s', resetTimeout: '3s' },
  retry: { attempts: 2, on: ['connect-failure', 'reset', 'gateway-error'] },
  timeout: '5s',
  slowStart: '10s',
};

function autoscale(service: string, min: number, max: number, ports: string, extra: readonly string[], grpc: string, runDir: string): unknown {
  return {
    min,
    max,
    targetUtilization: 0.6,
    interval: '5s',
    stabilizationWindow: '60s',
    cooldown: '15s',
    driver: {
      process: {
        command: [process.execPath, BIN, 'demo-instance', '--service', service, '--port', '{port}', '--control-plane', grpc, '--run-dir', runDir, ...extra],
        ports,
      },
    },
  };
}

export async function runMesh(options: MeshOptions = {}): Promise<Mesh> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const timers = options.timers ?? systemTimers;
  const want = { ...DEFAULT_MESH_PORTS, ...options.ports };
  const taken = new Set<number>();
  const ports: MeshPorts = {
    grpc: await portOr(want.grpc, taken),
    dashboard: await portOr(want.dashboard, taken),
    edgeAdmin: await portOr(want.edgeAdmin, taken),
    edgeOutbound: await portOr(want.edgeOutbound, taken),
    catalog: await portOr(want.catalog, taken),
  };
  // Instance ports: 21000-21019 and 21100-21119 unless taken (a second demo, say): then the next free blocks.
  const inventoryPorts = await freeRange(21_000, 20);
  const catalogPorts = await freeRange(Number(inventoryPorts.split('-')[0]) + 100, 20);
  const runDir = await mkdtemp(join(tmpdir(), 'outrigger-demo-'));
  const grpc = `127.0.0.1:${ports.grpc}`;
  const grpcFlag = options.grpc === true ? ['--grpc'] : [];
  const cpConfig = {
    listen: { grpc, http: `127.0.0.1:${ports.dashboard}` },
    store: { file: join(runDir, 'state.json') },
    instanceTtl: '6s',
    drainTime: '3s',
    weightInterval: '2s',
    services: { catalog: POLICY, inventory: options.grpc === true ? { ...POLICY, protocol: 'grpc' } : POLICY },
    autoscale: {
      inventory: autoscale('inventory', 3, 6, inventoryPorts, ['--delay-ms', '30', '--capacity', '4', ...grpcFlag], grpc, runDir),
      catalog: autoscale('catalog', 2, 4, catalogPorts, ['--calls', 'inventory', '--delay-ms', '5', '--capacity', '8', ...grpcFlag], grpc, runDir),
    },
  };
  const cpFile = join(runDir, 'cp.yaml');
  // JSON is YAML: the file goes through the same loader as an operator's cp.yaml.
  await writeFile(cpFile, JSON.stringify(cpConfig, null, 2));

  const cleanups: (() => Promise<void>)[] = [() => rm(runDir, { recursive: true, force: true })];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const controlPlane = await ControlPlane.start({ configFile: cpFile, logger: createLogger('warn', 'outrigger-control-plane') });
    cleanups.push(() => controlPlane.stop());
    const edge = await Sidecar.start({
      config: parseSidecarConfig(
        [
          'service: demo-edge',
          `admin: { listen: 127.0.0.1:${ports.edgeAdmin} }`,
          `outbound: { listen: 127.0.0.1:${ports.edgeOutbound} }`,
          // The control plane generated its tokens and its mesh CA beside its state, in runDir; its gRPC is TLS.
          `controlPlane: { addresses: [${grpc}], subscribe: [inventory], tokenFile: ${JSON.stringify(join(runDir, SIDECAR_TOKEN_FILE))}, caFile: ${JSON.stringify(join(runDir, CA_CERT_FILE))} }`,
          'log: { level: error, accessLog: { enabled: false } }',
          'services:',
          `  catalog: { listen: 127.0.0.1:${ports.catalog} }`,
        ].join('\n'),
        'demo-edge.yaml',
      ),
    });
    cleanups.push(() => edge.stop(2_000));
    const catalogUrl = `http://127.0.0.1:${ports.catalog}/`;
    // The page sets the admin token as a cookie and drops it from the address.
    const adminTokenFile = join(runDir, ADMIN_TOKEN_FILE);
    const adminToken = (await readFile(adminTokenFile, 'utf8')).trim();
    // HTTPS with a certificate from the demo's own mesh CA (a browser warns once: the CA is runDir/mesh-ca.crt).
    const caFile = join(runDir, CA_CERT_FILE);
    const dashboardUrl = `https://${controlPlane.httpAddress}/?token=${adminToken}`;

    // Ready when both services have their minimum of instances and a request goes all the way through.
    const ready = await waitUntil(async () => {
      const counts = new Map<string, number>();
      for (const i of controlPlane.registry.instances()) if (i.state === 'serving') counts.set(i.service, (counts.get(i.service) ?? 0) + 1);
      if ((counts.get('catalog') ?? 0) < 2 || (counts.get('inventory') ?? 0) < 3) return false;
      return (await get(`127.0.0.1:${ports.catalog}`, '/items')) === 200;
    }, 60_000);

    // A gentle load, once the mesh is ready: catalog through the edge sidecar, which asks inventory each time.
    const stats = { sent: 0, failed: 0 };
    const agent = new Agent({ keepAlive: true, maxSockets: 32 });
    const rps = options.loadRps ?? 20;
    let load: TimerHandle | undefined;
    if (rps > 0) {
      load = timers.every(Math.max(1, Math.round(1000 / rps)), () => {
        stats.sent++;
        const req = request({ host: '127.0.0.1', port: ports.catalog, path: '/items', agent, timeout: 10_000 }, (res) => {
          if ((res.statusCode ?? 0) >= 300) stats.failed++;
          res.resume();
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', () => stats.failed++);
        req.end();
      });
      // Now and then, what the load saw: failures here mean the mesh let one reach a client.
      let reported = { sent: 0, failed: 0 };
      const report = timers.every(30_000, () => {
        const sent = stats.sent - reported.sent;
        const failed = stats.failed - reported.failed;
        reported = { ...stats };
        print(`load: ${sent} requests in the last 30 s, ${failed} failed`);
      });
      cleanups.push(async () => {
        load?.cancel();
        report.cancel();
        agent.destroy();
      });
    }

    const inventory = controlPlane.registry
      .instances('inventory')
      .map((i) => i.address)
      .sort();
    const victim = inventory[0] ?? '127.0.0.1:21000';
    const slow = inventory[1] ?? victim;
    const slowApp = await appAddress(runDir, 'inventory', slow);
    print('');
    print(ready ? 'Outrigger demo mesh is up.' : 'Outrigger demo mesh started, but not every instance is ready yet (see the dashboard).');
    print('');
    print(`  dashboard:        ${dashboardUrl}`);
    print(`                    (HTTPS with the demo's own CA, ${caFile}: your browser asks once)`);
    print(`  send requests:    curl ${catalogUrl}items              (catalog, which asks inventory)`);
    print(`              or:   curl -H 'Host: inventory' http://127.0.0.1:${ports.edgeOutbound}/items`);
    print(`  edge sidecar:     http://127.0.0.1:${ports.edgeAdmin}/clusters  (also /circuits /metrics)`);
    print(`  control plane:    npx outrigger ctl --server ${controlPlane.httpAddress} --token-file ${adminTokenFile} --ca-file ${caFile} services`);
    print(`  a gentle load of ${rps} requests/s runs through catalog.`);
    print('');
    print('Three things to try:');
    print(`  1. Kill an instance's app; watch it go ineligible and its circuit open, then come back when it restarts 5 s later:`);
    print(`       kill -9 $(cat ${join(runDir, `inventory-${portOf(victim)}.app.pid`)})`);
    print('  2. Make one instance slow; least-load sends it less, its p99 and cost rise on the dashboard:');
    print(`       curl -X POST 'http://${slowApp}/knob?delayMs=400'      (back: delayMs=30)`);
    const ctl = `npx outrigger ctl --server ${controlPlane.httpAddress} --token-file ${adminTokenFile} --ca-file ${caFile}`;
    print('  3. Change a policy with ctl (here least-load → round-robin); every sidecar gets it in milliseconds:');
    print(`       ${ctl} policy get inventory | sed 's/least-load/round-robin/' | ${ctl} policy set inventory -f -`);
    print('');
    print('Stop everything with Ctrl-C.');

    return {
      dashboardUrl,
      catalogUrl,
      edgeOutbound: `127.0.0.1:${ports.edgeOutbound}`,
      runDir,
      controlPlane,
      loadStats: () => ({ ...stats }),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function portOf(address: string): string {
  return address.slice(address.lastIndexOf(':') + 1);
}

/** The app address of an instance, from the sidecar config its supervisor wrote. */
async function appAddress(runDir: string, service: string, address: string): Promise<string> {
  const yaml = await readFile(join(runDir, `${service}-${portOf(address)}.sidecar.yaml`), 'utf8').catch(() => '');
  return /target: http:\/\/([^\s,}]+)/.exec(yaml)?.[1] ?? 'APP-ADDRESS';
}

function get(hostPort: string, path: string): Promise<number> {
  const port = Number(portOf(hostPort));
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}
