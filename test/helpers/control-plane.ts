import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, send, waitFor, type Reply } from './net.js';
import { ADMIN_AUTH, TEST_AUTH_YAML } from './tokens.js';

/** `send` to the control plane's HTTP API with the test admin token (a test's own authorization header wins). */
export function sendApi(address: string, options: Parameters<typeof send>[1] = {}): Promise<Reply> {
  return send(address, { ...options, headers: { ...ADMIN_AUTH, ...options.headers } });
}

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly grpc: string;
  readonly http: string;
  readonly dir: string;
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
  const ready = (): Promise<boolean> => waitFor(async () => (await fetch(`http://${proc.http}/healthz`)).ok, 10_000);
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
  return proc;
}
