/**
 * The npm package installs and runs: `npm pack` of the built tree (needs `npm run build`; prepack would
 * rebuild, so it is skipped here), `npm install` of the tarball into an empty project (from the npm cache when
 * it holds every dependency, else the registry), then the installed `outrigger` command.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repoRoot = new URL('../../', import.meta.url).pathname;
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const temp = mkdtempSync(join(tmpdir(), 'outrigger-pack-'));

afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** The machine's own Node.js when it is older than outrigger supports (Node 20 on this project's CI), else undefined. */
const oldNode = ((): string | undefined => {
  const r = spawnSync('/usr/bin/node', ['-p', 'process.versions.node'], { encoding: 'utf8' });
  const [major = 0, minor = 0] = r.status === 0 ? r.stdout.trim().split('.').map(Number) : [];
  return r.status === 0 && (major < 22 || (major === 22 && minor < 12)) ? '/usr/bin/node' : undefined;
})();

function npm(args: readonly string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('npm', [...args], { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
}

describe('the npm package', () => {
  it('packs without tests or benchmarks, installs into an empty project, and its outrigger command runs', () => {
    const packed = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', temp], repoRoot);
    expect(packed.status, packed.stderr).toBe(0);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const paths = (info?.files ?? []).map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['bin/outrigger.js', 'dist/cli/src/cli.js', 'schemas/sidecar.schema.json', 'schemas/control-plane.schema.json', 'control-plane/dashboard/index.html', 'README.md', 'package.json']));
    expect(paths.filter((p) => /^(test|bench|coverage|node_modules|proto)\//.test(p) || p.endsWith('.ts') || p.endsWith('.map'))).toEqual([]);

    const project = join(temp, 'project');
    spawnSync('mkdir', [project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-outrigger', version: '1.0.0', private: true }));
    const tarball = join(temp, info?.filename ?? '');
    let installed = npm(['install', '--offline', '--no-audit', '--no-fund', tarball], project);
    // Not every dependency in the npm cache yet: fetch what is missing.
    if (installed.status !== 0 && installed.stderr.includes('ENOTCACHED')) installed = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project);
    expect(installed.status, installed.stderr).toBe(0);
    expect(installed.stderr).not.toContain('EBADENGINE');

    const outrigger = (...args: string[]) => spawnSync(process.execPath, [join(project, 'node_modules/.bin/outrigger'), ...args], { cwd: project, encoding: 'utf8', timeout: 15_000 });
    const v = outrigger('--version');
    expect(v.stdout).toBe(`outrigger ${version}\n`);
    expect(v.status).toBe(0);
    const valid = outrigger('validate', join(repoRoot, 'deploy/sidecar-inventory-1.yaml'));
    expect(valid.stdout).toBe(`${join(repoRoot, 'deploy/sidecar-inventory-1.yaml')}: valid (sidecar configuration)\n`);
    expect(valid.status).toBe(0);
    const schema = outrigger('schema', 'control-plane');
    expect(schema.stdout).toBe(readFileSync(join(project, 'node_modules/outrigger/schemas/control-plane.schema.json'), 'utf8'));
  }, 120_000);

  it.skipIf(oldNode === undefined)('refuses an older Node.js with one line, and npm on it warns about no engine', () => {
    const r = spawnSync(oldNode ?? '', [join(repoRoot, 'bin/outrigger.js'), '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^outrigger needs Node\.js >= 22\.12; this is v\d+\.\d+\.\d+\n$/);
    expect(r.stdout).toBe('');
    // npm itself running on that Node.js (npx puts the project's Node.js 24 first on the PATH for the command).
    const npx = spawnSync(oldNode ?? '', [join(spawnSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).stdout.trim(), 'lib/node_modules/npm/bin/npx-cli.js'), 'outrigger', '--version'], { cwd: repoRoot, encoding: 'utf8' });
    expect(npx.stderr).not.toContain('EBADENGINE');
    expect(npx.stdout).toBe(`outrigger ${version}\n`);
  });
});
