import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The docs, README, docker-compose.yml and Dockerfile point readers at files of the repository: every such
 * reference must name a file that exists, or a reader follows it into nothing.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const markdownFiles = (): string[] => [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
  ...(existsSync(path.join(ROOT, 'bench')) ? readdirSync(path.join(ROOT, 'bench')).filter((f) => f.endsWith('.md')).map((f) => `bench/${f}`) : []),
];

/** Paths a build, bench or test run makes (ignored by git): a fresh clone does not have them yet. */
const GENERATED = ['bench/.work', 'dist/', 'coverage/', 'test-artifacts/', 'proto/gen/'];

/** Top-level folders a backticked repository path may start with. */
const REPO_DIRS = ['docs', 'deploy', 'bench', 'bin', 'cli', 'common', 'control-plane', 'demo', 'sidecar', 'proto', 'test', 'schemas'];

function markdownReferences(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const refs: string[] = [];
  // [text](relative/path#anchor): links that are not URLs or in-page anchors.
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = (m[1] ?? '').split('#')[0] ?? '';
    if (target === '' || /^[a-z]+:/i.test(target)) continue;
    refs.push(path.normalize(path.join(path.dirname(file), target)));
  }
  // `deploy/prometheus.yml`, `sidecar/src/proxy/http1/`: backticked paths into the repository's folders.
  for (const m of text.matchAll(/`([\w./-]+)`/g)) {
    const p = m[1] ?? '';
    const first = p.split('/')[0] ?? '';
    // Skip patterns (`*`) and placeholders in capitals (`deploy/sidecar-catalog-N.yaml`).
    if (!p.includes('/') || !REPO_DIRS.includes(first) || p.includes('*') || /(^|[-_/])[A-Z]+([-_./]|$)/.test(p)) continue;
    // Made by a run, not kept in the repository (.gitignore).
    if (GENERATED.some((g) => p.startsWith(g))) continue;
    refs.push(path.normalize(p));
  }
  return refs;
}

describe('references to files of the repository', () => {
  it('every link and repository path in README.md, docs/ and bench/*.md names a file that exists', () => {
    const missing: string[] = [];
    for (const file of markdownFiles()) {
      for (const ref of markdownReferences(file)) {
        if (!existsSync(path.join(ROOT, ref))) missing.push(`${file}: ${ref}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('docker-compose.yml mounts and the Dockerfile copies only files that exist', () => {
    const missing: string[] = [];
    const compose = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    for (const m of compose.matchAll(/^\s*-\s*(\.\/[\w./-]+):/gm)) {
      if (!existsSync(path.join(ROOT, m[1] ?? ''))) missing.push(`docker-compose.yml: ${m[1]}`);
    }
    for (const m of compose.matchAll(/#.*?\b((?:docs|deploy)\/[\w./-]*\w)/g)) {
      if (!existsSync(path.join(ROOT, m[1] ?? ''))) missing.push(`docker-compose.yml comment: ${m[1]}`);
    }
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const m of dockerfile.matchAll(/^COPY\s+(?!--from)(.+)$/gm)) {
      const parts = (m[1] ?? '').trim().split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        if (!existsSync(path.join(ROOT, src))) missing.push(`Dockerfile: ${src}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('the $schema line of every example config names a schema file of the repository', () => {
    const missing: string[] = [];
    for (const f of readdirSync(path.join(ROOT, 'deploy')).filter((x) => x.endsWith('.yaml'))) {
      const m = /^# yaml-language-server: \$schema=(\S+)/.exec(readFileSync(path.join(ROOT, 'deploy', f), 'utf8'));
      if (m === null) missing.push(`deploy/${f}: no $schema line`);
      else if (!existsSync(path.join(ROOT, 'deploy', m[1] ?? ''))) missing.push(`deploy/${f}: ${m[1]}`);
    }
    expect(missing).toEqual([]);
  });

  it('no file of the product cites a design document that is not in the repository', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
        const rel = `${dir}/${entry.name}`;
        if (entry.isDirectory()) walk(rel);
        else if (/\.(ts|md|yaml|yml|mjs|js)$/.test(entry.name) && /\bDESIGN(\.md| §)/.test(readFileSync(path.join(ROOT, rel), 'utf8'))) offenders.push(rel);
      }
    };
    for (const dir of ['cli', 'common', 'control-plane', 'sidecar', 'demo', 'docs', 'deploy', 'bench']) {
      if (existsSync(path.join(ROOT, dir))) walk(dir);
    }
    expect(offenders).toEqual([]);
  });
});
