import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deserialize } from 'node:v8';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSidecarConfig } from '../../common/src/config/load.js';
import { ConfigError } from '../../common/src/errors.js';
import { waitFor } from '../helpers/net.js';
import { ports } from '../helpers/sidecar.js';

/**
 * A sidecar reads and validates its sidecar.yaml in a short-lived child process (common/src/config/load-child.ts,
 * needs `npm run build`), so that the YAML parser and zod do not stay in its memory. What it gets back must be
 * what the in-process loader gives: the same configuration, the same messages.
 */

const repoRoot = new URL('../../', import.meta.url).pathname;
const childScript = join(repoRoot, 'dist/common/src/config/load-child.js');

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function run(args: readonly string[], cwd: string): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

async function inProcess(file: string): Promise<{ config: unknown } | { file: string; issues: readonly string[] }> {
  try {
    return { config: await loadSidecarConfig(file) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { file: err.file, issues: err.issues };
  }
}

const VALID = `service: loader
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: warn, accessLog: { enabled: false } }
metrics: { enabled: true }
services:
  orders:
    endpoints:
      - { address: 127.0.0.1:9001, weight: 3 }
      - { address: 127.0.0.1:9002 }
    lb: least-load
    healthCheck: { http: { path: /health }, interval: 2s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3 }
    outlierDetection: { consecutive5xx: 5, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 5s }
    retry: { attempts: 2, on: [connect-failure, reset, gateway-error], perTryTimeout: 1s, backoff: { base: 25ms, max: 250ms } }
`;

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-loader-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe('loading sidecar.yaml in a child process', () => {
  it('answers the configuration, or the ConfigError, that the in-process loader gives, for the file named as given', async () => {
    const dir = dirWith({
      'valid.yaml': VALID,
      'bad.yaml': VALID.replace('attempts: 2', 'attempts: three').replace('interval: 2s', 'interval: soon'),
      'broken.yaml': 'service: [unclosed\n',
    });
    for (const name of ['valid.yaml', 'bad.yaml', 'broken.yaml', 'missing.yaml']) {
      const { code, stdout } = await run([childScript, name], dir);
      expect(code, name).toBe(0);
      const previous = process.cwd();
      process.chdir(dir);
      let expected: Awaited<ReturnType<typeof inProcess>>;
      try {
        expected = await inProcess(name);
      } finally {
        process.chdir(previous);
      }
      expect(deserialize(stdout), name).toEqual(expected);
    }
  });

  it('is how the sidecar starts and reloads: the same messages, relative paths from its working directory', async () => {
    const p = await ports();
    const yaml = VALID.replace('admin: { listen: 127.0.0.1:0 }', `admin: { listen: 127.0.0.1:${p.admin} }`);
    const bad = yaml.replace('attempts: 2', 'attempts: three');
    const dir = dirWith({ 'sidecar.yaml': yaml, 'bad.yaml': bad });
    const badMessage = await inProcess(join(dir, 'bad.yaml')).then((r) => ('issues' in r ? r.issues.map((i) => `bad.yaml: ${i}`).join('\n') : ''));
    expect(badMessage).toMatch(/^bad\.yaml: services\.orders\.retry\.attempts: expected integer 0\.\.10, got "three"$/);

    // Refused at start, with the loader's message naming the file as given.
    const refused = await run([join(repoRoot, 'bin/outrigger.js'), 'sidecar', '--config', 'bad.yaml'], dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`outrigger: invalid configuration:\n${badMessage}\n`);

    // Started from a relative path; a bad file on SIGHUP is refused with the same message, the old one stays.
    const child = spawn(process.execPath, [join(repoRoot, 'bin/outrigger.js'), 'sidecar', '--config', 'sidecar.yaml'], { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
    cleanups.push(() => child.kill('SIGKILL'));
    const admin = `http://127.0.0.1:${p.admin}`;
    await waitFor(async () => (await fetch(`${admin}/ready`).catch(() => undefined))?.status === 200, 10_000);
    const started = (await (await fetch(`${admin}/config?format=json`)).json()) as { services: Record<string, { retry: { attempts: number } }> };
    expect(started.services['orders']?.retry.attempts).toBe(2);

    writeFileSync(join(dir, 'sidecar.yaml'), bad);
    child.kill('SIGHUP');
    const status = await waitFor(async () => {
      const s = (await (await fetch(`${admin}/config/status`)).json()) as { lastReloadError: string | null; fileVersion: number };
      return s.lastReloadError !== null ? s : undefined;
    }, 10_000);
    expect(status).toEqual(expect.objectContaining({ lastReloadError: badMessage.replaceAll('bad.yaml', 'sidecar.yaml'), fileVersion: 1 }));

    // A good file on SIGHUP is applied.
    writeFileSync(join(dir, 'sidecar.yaml'), yaml.replace('attempts: 2', 'attempts: 3'));
    child.kill('SIGHUP');
    await waitFor(async () => {
      const c = (await (await fetch(`${admin}/config?format=json`)).json()) as { services: Record<string, { retry: { attempts: number } }> };
      return c.services['orders']?.retry.attempts === 3;
    }, 10_000);
    const after = (await (await fetch(`${admin}/config/status`)).json()) as { lastReloadError: string | null; fileVersion: number };
    expect(after).toMatchObject({ lastReloadError: null, fileVersion: 2 });
  });
});
