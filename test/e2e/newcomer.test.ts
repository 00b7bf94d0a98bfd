/**
 * The README's first command, run as a newcomer would: a fresh clone of the committed project, `npm ci`,
 * then `npm start` from a shell whose PATH has only the machine's own Node.js and npm. It waits for the
 * printed URLs, sends requests through them, then stops it with Ctrl-C (SIGINT to its process group) and
 * checks that no process it started is left.
 *
 * It clones HEAD of this repository: commit before running it locally.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send, trustHttps, waitFor } from '../helpers/net.js';

const repoRoot = new URL('../../', import.meta.url).pathname;

/** Pids of live processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(text)) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('npm start on a fresh clone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-newcomer-'));
  const clone = join(dir, 'outrigger');
  let child: ChildProcess | undefined;
  let stdout = '';
  let stderr = '';

  beforeAll(() => {
    execFileSync('git', ['clone', '--quiet', '--depth', '1', `file://${repoRoot}`, clone], { stdio: 'pipe' });
  }, 60_000);

  afterAll(() => {
    if (child?.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const pid of processesMentioning(clone)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('brings up the mesh, prints where to go, serves requests and the dashboard, and Ctrl-C leaves nothing behind', async () => {
    // A newcomer's shell: no project node_modules/.bin on the PATH (npm test put Node 24 there).
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: (process.env.PATH ?? '').split(':').filter((p) => !p.includes('node_modules')).join(':') };
    for (const k of Object.keys(env)) if (k.startsWith('npm_') || k.startsWith('VITEST') || k === 'NODE_OPTIONS') delete env[k];
    execFileSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: clone, env, stdio: 'pipe', timeout: 240_000 });

    const started = performance.now();
    child = spawn('npm', ['start'], { cwd: clone, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));

    await waitFor(() => stdout.includes('Stop everything with Ctrl-C.'), 150_000, 200).catch((err: unknown) => {
      throw new Error(`npm start did not print its URLs: ${String(err)}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    });
    const startSeconds = (performance.now() - started) / 1000;
    console.log(`npm start (build + mesh) ready in ${startSeconds.toFixed(1)} s`);
    expect(stdout).toContain('Outrigger demo mesh is up.');
    const printed = /dashboard:\s+https:\/\/([\d.]+:\d+)\/\?token=(\S+)/.exec(stdout);
    const dashboard = printed?.[1];
    // HTTPS with a certificate from the demo's own mesh CA, whose file it names.
    const caFile = /HTTPS with the demo's own CA, (\S+mesh-ca\.crt):/.exec(stdout)?.[1];
    expect(caFile, stdout).toBeDefined();
    trustHttps(dashboard ?? '', caFile!, readFileSync(caFile!, 'utf8'));
    // The generated admin token, in the printed address.
    const auth = { authorization: `Bearer ${printed?.[2] ?? ''}` };
    const catalog = /send requests:\s+curl http:\/\/([\d.]+:\d+)\/items/.exec(stdout)?.[1];
    expect(dashboard, stdout).toBeDefined();
    expect(catalog, stdout).toBeDefined();
    expect(stdout).toMatch(/kill -9 \$\(cat \S+\.app\.pid\)/);
    expect(stdout).toMatch(/curl -X POST 'http:\/\/127\.0\.0\.1:\d+\/knob\?delayMs=400'/);
    expect(stdout).toMatch(/npx outrigger ctl --server \S+ --token-file \S+ --ca-file \S+ policy get inventory \| sed 's\/least-load\/round-robin\/' \| npx outrigger ctl --server \S+ --token-file \S+ --ca-file \S+ policy set inventory -f -/);

    // Requests through the printed URL go catalog → inventory across two hops of sidecars.
    for (let i = 0; i < 10; i++) {
      const r = await send(catalog!, { path: '/items' });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ service: 'catalog', inventory: { service: 'inventory' } });
    }
    const open = await send(dashboard!, { path: `/?token=${printed?.[2] ?? ''}` });
    expect(open.status).toBe(303);
    const page = await send(dashboard!, { path: '/', headers: { cookie: String(open.headers['set-cookie']?.[0]).split(';')[0]! } });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    const services = JSON.parse((await send(dashboard!, { path: '/api/services', headers: auth })).body) as { services: { name: string; endpoints: unknown[] }[] };
    expect(services.services.find((s) => s.name === 'inventory')?.endpoints.length).toBeGreaterThanOrEqual(3);
    expect(services.services.find((s) => s.name === 'catalog')?.endpoints.length).toBeGreaterThanOrEqual(2);

    // Ctrl-C in the terminal: SIGINT to the whole foreground process group.
    process.kill(-child.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
    expect(code, `stderr:\n${stderr}`).not.toBe('timeout');
    await waitFor(() => processesMentioning(clone).length === 0, 10_000, 100).catch(() => {
      throw new Error(`processes left behind: ${processesMentioning(clone).join(', ')}`);
    });
  }, 420_000);
});
