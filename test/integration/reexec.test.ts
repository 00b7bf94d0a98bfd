import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/net.js';
import { ports } from '../helpers/sidecar.js';

/** bin/outrigger.js re-executes `outrigger sidecar` once with the V8 flags that keep its memory down (docs/operations.md). */

const repoRoot = new URL('../../', import.meta.url).pathname;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** Starts a sidecar with these `node` flags and answers the command line of the process once it is ready. */
async function commandLine(nodeFlags: readonly string[]): Promise<string[]> {
  const p = await ports();
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-reexec-'));
  const file = join(dir, 'sidecar.yaml');
  writeFileSync(file, `service: reexec\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\nlog: { level: warn }\n`);
  const child = spawn(process.execPath, [...nodeFlags, join(repoRoot, 'bin/outrigger.js'), 'sidecar', '--config', file], { stdio: 'ignore' });
  cleanups.push(() => child.kill('SIGKILL'));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${p.admin}/ready`).catch(() => undefined))?.status === 200, 10_000);
  return readFileSync(`/proc/${String(child.pid)}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

describe.runIf(process.platform === 'linux')('bin/outrigger.js for `outrigger sidecar`', () => {
  it('re-executes the same process with a 4 MB semi-space and the optimizing compiler on the main thread', async () => {
    const argv = await commandLine([]);
    expect(argv.slice(1, 3)).toEqual(['--max-semi-space-size=4', '--no-concurrent-recompilation']);
    expect(argv.slice(-3)).toEqual(['sidecar', '--config', expect.stringMatching(/sidecar\.yaml$/)]);
  });

  it('leaves out a flag the node command line sets either way', async () => {
    const argv = await commandLine(['--concurrent_recompilation', '--max-semi-space-size=8']);
    expect(argv.filter((a) => a.startsWith('--') && !a.startsWith('--config'))).toEqual(['--concurrent_recompilation', '--max-semi-space-size=8']);
  });
});
