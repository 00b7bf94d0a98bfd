import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSidecarConfig } from '../../common/src/config/load.js';
import { Sidecar } from '../../sidecar/src/main.js';
import { createLogger } from '../../common/src/logger.js';
import { freePort, waitFor } from './net.js';

export interface SidecarPorts {
  readonly admin: number;
  readonly outbound: number;
  readonly inbound: number;
}

export async function ports(): Promise<SidecarPorts> {
  return { admin: await freePort(), outbound: await freePort(), inbound: await freePort() };
}

/** Starts a sidecar in this process from YAML text (real sockets on loopback, quiet logs). */
export async function startSidecar(yaml: string): Promise<Sidecar> {
  const config = parseSidecarConfig(yaml, 'sidecar.yaml');
  return Sidecar.start({ config, logger: createLogger('silent') });
}

export interface SidecarProcess {
  readonly child: ChildProcess;
  readonly file: string;
  stdout: string;
  stderr: string;
  stop(): Promise<number | null>;
}

const repoRoot = new URL('../../', import.meta.url).pathname;

/** Runs `outrigger sidecar --config FILE` as a real process (needs `npm run build`). */
export async function spawnSidecar(yaml: string, adminPort: number): Promise<SidecarProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-test-'));
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), 'sidecar', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: SidecarProcess = {
    child,
    file,
    stdout: '',
    stderr: '',
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve(child.exitCode);
          return;
        }
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
      }),
  };
  child.stdout?.on('data', (d: Buffer) => (proc.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (proc.stderr += d.toString()));
  const exited = new Promise<never>((_, reject) => {
    child.once('exit', (code) => reject(new Error(`sidecar exited with ${String(code)}: ${proc.stderr}`)));
  });
  exited.catch(() => {});
  try {
    await Promise.race([
      exited,
      waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status === 200, 10_000),
    ]);
  } catch (err) {
    // Never leave a sidecar that did not become ready behind the failed test.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw err;
  }
  return proc;
}

/** RSS of a process in MB, from /proc. */
export function rssMb(pid: number): number {
  const status = readProcStatus(pid);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

function readProcStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}
