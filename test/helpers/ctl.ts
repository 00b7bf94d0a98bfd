import { spawn } from 'node:child_process';
import { join } from 'node:path';

const repoRoot = new URL('../../', import.meta.url).pathname;

export interface CtlRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * `outrigger ctl ARGS` as a real process (needs `npm run build`; no --server added). OUTRIGGER_NO_REEXEC
 * skips bin/outrigger.js's re-exec. Asynchronous rather than spawnSync so that independent checks run side
 * by side: each run costs ~0.3 s of process start.
 */
export function runCtl(args: readonly string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<CtlRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), 'ctl', ...args], {
      cwd: repoRoot,
      env: { ...process.env, OUTRIGGER_CONTROL_PLANE: '', OUTRIGGER_NO_REEXEC: '1', ...options.env },
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
