import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly grpc: string;
  readonly http: string;
  readonly dir: string;
  stdout: string;
  stop(): Promise<void>;
}

const repoRoot = new URL('../../', import.meta.url).pathname;

/** Runs `outrigger control-plane --config FILE` as a real process on free loopback ports (needs the build). */
export async function spawnControlPlane(extraYaml = '', dir = mkdtempSync(join(tmpdir(), 'outrigger-cp-'))): Promise<ControlPlaneProcess> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const file = join(dir, 'cp.yaml');
  writeFileSync(file, `listen: { grpc: 127.0.0.1:${grpcPort}, http: 127.0.0.1:${httpPort} }\nstore: { file: ${join(dir, 'state.json')} }\n${extraYaml}`);
  const child = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), 'control-plane', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: ControlPlaneProcess = {
    child,
    grpc: `127.0.0.1:${grpcPort}`,
    http: `127.0.0.1:${httpPort}`,
    dir,
    stdout: '',
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
      }),
  };
  child.stdout?.on('data', (d: Buffer) => (proc.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (proc.stdout += d.toString()));
  await waitFor(async () => (await fetch(`http://${proc.http}/healthz`)).ok, 10_000);
  return proc;
}
