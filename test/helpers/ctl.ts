import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { caFileOf } from './net.js';

const repoRoot = new URL('../../', import.meta.url).pathname;

export interface CommandRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** What `runCtl` gives back (the same as any `outrigger` run). */
export type CtlRun = CommandRun;

export interface CommandOptions {
  readonly cwd?: string | undefined;
  readonly env?: Record<string, string> | undefined;
  /** Written to its stdin, which is then closed (empty by default). */
  readonly input?: string | undefined;
}

/**
 * `outrigger ARGS` as a real process, to completion (needs `npm run build`; killed after 15 s: a command that
 * should not start anything must end). OUTRIGGER_NO_REEXEC skips bin/outrigger.js's re-exec. Asynchronous
 * rather than spawnSync so that independent checks run side by side: each run costs ~0.3 s of process start.
 */
export function runOutrigger(args: readonly string[], options: CommandOptions = {}): Promise<CommandRun> {
  // `--server ADDRESS` of a test control plane: pin its CA, as an operator gives --ca-file.
  const serverArg = args.indexOf('--server');
  const server = serverArg >= 0 ? args[serverArg + 1] : (args.find((a) => a.startsWith('--server='))?.slice('--server='.length) ?? options.env?.['OUTRIGGER_CONTROL_PLANE']);
  const caFile = server === undefined ? undefined : caFileOf(server);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), ...args], {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, OUTRIGGER_CONTROL_PLANE: '', OUTRIGGER_NO_REEXEC: '1', ...(caFile === undefined ? {} : { OUTRIGGER_CA_FILE: caFile }), ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 15_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** `outrigger ctl ARGS` (no --server added). */
export function runCtl(args: readonly string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<CtlRun> {
  return runOutrigger(['ctl', ...args], options);
}
