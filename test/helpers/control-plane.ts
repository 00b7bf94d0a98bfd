import { ChannelCredentials } from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { DiscoveryClient } from '../../proto/gen/outrigger/v1/discovery.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, send, trustHttps, waitFor, type Reply } from './net.js';
import { ADMIN_AUTH, TEST_AUTH_YAML } from './tokens.js';

/** `send` to the control plane's HTTP API with the test admin token (a test's own authorization header wins). */
export function sendApi(address: string, options: Parameters<typeof send>[1] = {}): Promise<Reply> {
  return send(address, { ...options, headers: { ...ADMIN_AUTH, ...options.headers } });
}

/** gRPC addresses of test control planes with TLS on → the CA file their certificate chains to. */
const grpcCa = new Map<string, string>();

/**
 * A discovery client for a test control plane's gRPC address: TLS pinned to its mesh CA (as a sidecar with
 * controlPlane.caFile), plaintext for a control plane with TLS disabled or an address not spawned here.
 */
export function discoveryClient(grpc: string): DiscoveryClient {
  const caFile = grpcCa.get(grpc);
  return new DiscoveryClient(grpc, caFile === undefined ? ChannelCredentials.createInsecure() : ChannelCredentials.createSsl(readFileSync(caFile)));
}

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly grpc: string;
  readonly http: string;
  readonly dir: string;
  /** The mesh CA certificate (PEM file) its TLS certificate chains to; undefined with TLS disabled. */
  readonly caFile: string | undefined;
  /** The HTTP API's base URL: https://ADDRESS (http:// with TLS disabled). */
  readonly url: string;
  stdout: string;
  stop(): Promise<void>;
  /** kill -9. */
  kill(): Promise<void>;
  /** Starts it again on the same ports with the same state file. */
  restart(): Promise<void>;
}

const repoRoot = new URL('../../', import.meta.url).pathname;

/**
 * Runs `outrigger control-plane --config FILE` as a real process on free loopback ports (needs the build).
 * TLS is on (the default) unless `extraYaml` starts a line with `tls: { enabled: false`; its HTTP API is then
 * registered with net.ts's trustHttps, so `send`/`sendApi` and `runCtl --server` reach it over HTTPS pinned
 * to its mesh CA (caFile), and sidecars bootstrap their trust with their token or pin `caFile`.
 * `listenYaml` adds keys to the `listen` mapping, e.g. `allowedHosts: [control-plane]`. Unless `extraYaml`
 * has its own `auth:` or `testTokens` is false (then it generates its own), the control plane knows the test
 * tokens (tokens.ts). Unless `extraYaml` has its own `store:`, the state is `state.json` in `dir`.
 */
export async function spawnControlPlane(extraYaml = '', dir = mkdtempSync(join(tmpdir(), 'outrigger-cp-')), listenYaml = '', testTokens = true): Promise<ControlPlaneProcess> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const file = join(dir, 'cp.yaml');
  const store = /^store:/m.test(extraYaml) ? '' : `store: { file: ${join(dir, 'state.json')} }\n`;
  writeFileSync(file, `listen: { grpc: 127.0.0.1:${grpcPort}, http: 127.0.0.1:${httpPort}${listenYaml === '' ? '' : `, ${listenYaml}`} }\n${store}${!testTokens || /^auth:/m.test(extraYaml) ? '' : TEST_AUTH_YAML}${extraYaml}`);
  const start = (): ChildProcess => {
    const c = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), 'control-plane', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout?.on('data', (d: Buffer) => (proc.stdout += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (proc.stdout += d.toString()));
    return c;
  };
  const tls = !/^tls:\s*\{\s*enabled:\s*false/m.test(extraYaml);
  const caFile = tls ? join(dir, 'mesh-ca.crt') : undefined;
  const ready = (): Promise<boolean> =>
    waitFor(async () => {
      // The CA exists once the control plane wrote it (first start); from then on its API is HTTPS.
      if (caFile !== undefined) trustHttps(proc.http, caFile, readFileSync(caFile, 'utf8'));
      return (await send(proc.http, { path: '/healthz' })).status === 200;
    }, 10_000);
  const exited = (c: ChildProcess): Promise<void> =>
    new Promise((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) resolve();
      else c.once('exit', () => resolve());
    });
  const proc: ControlPlaneProcess = {
    child: undefined as unknown as ChildProcess,
    grpc: `127.0.0.1:${grpcPort}`,
    http: `127.0.0.1:${httpPort}`,
    dir,
    caFile,
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${httpPort}`,
    stdout: '',
    stop: async () => {
      const c = proc.child;
      const done = exited(c);
      c.kill('SIGTERM');
      setTimeout(() => c.kill('SIGKILL'), 5_000).unref();
      await done;
    },
    kill: async () => {
      const done = exited(proc.child);
      proc.child.kill('SIGKILL');
      await done;
    },
    restart: async () => {
      (proc as { child: ChildProcess }).child = start();
      await ready();
    },
  };
  (proc as { child: ChildProcess }).child = start();
  await ready();
  if (caFile !== undefined) grpcCa.set(proc.grpc, caFile);
  return proc;
}
