import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadControlPlaneConfig } from '../../control-plane/src/config/load.js';
import { parseHostPort } from '../../common/src/config/address.js';
import { loadSidecarConfig } from '../../common/src/config/load.js';
import type { SidecarConfig } from '../../common/src/config/types.js';
import { freePort, send, waitFor } from '../helpers/net.js';

/**
 * docker-compose.yml and deploy/ (issue 5, item 3), checked without a container engine (the containers are run
 * for real by `npm run test:compose`, scripts/compose-test.mjs): the compose file is valid (`docker-compose config -q`, when installed; CI installs
 * it), every container's command is a subcommand the built CLI has, every mounted config file exists and
 * validates with the project's own loaders, and the addresses in them fit the compose topology.
 */

const root = new URL('../../', import.meta.url).pathname;
const bin = join(root, 'bin/outrigger.js');

interface ComposeService {
  readonly command?: string | readonly string[];
  readonly network_mode?: string;
  readonly volumes?: readonly (string | { readonly source: string; readonly target: string; readonly type?: string })[];
  readonly depends_on?: readonly string[] | Readonly<Record<string, unknown>>;
  readonly healthcheck?: { readonly test: readonly string[] | string };
  readonly restart?: string;
  readonly ports?: readonly (string | number)[];
}

// `${VAR:-default}` read as its default, as compose does when VAR is unset.
const withDefaults = (text: string): string => text.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');
const compose = parse(withDefaults(readFileSync(join(root, 'docker-compose.yml'), 'utf8')), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const services = Object.entries(compose.services);

function argv(s: ComposeService): string[] {
  const c = s.command;
  if (c === undefined) return [];
  return typeof c === 'string' ? c.trim().split(/\s+/) : [...c];
}

function argFlag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Bind mounts of files under deploy/: [host path, container path]. */
function deployMounts(s: ComposeService): [string, string][] {
  return (s.volumes ?? []).flatMap((v): [string, string][] => {
    const [source, target] = typeof v === 'string' ? v.split(':') : [v.source, v.target];
    return source !== undefined && target !== undefined && /^(\.\/)?deploy\//.test(source) ? [[join(root, source), target]] : [];
  });
}

function subcommandsFromHelp(): Set<string> {
  const help = execFileSync(process.execPath, [bin, 'help'], { encoding: 'utf8' });
  const names = [...help.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1] ?? '');
  return new Set(names);
}

const hasCompose = (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, 'docker-compose')));

describe('docker-compose.yml', () => {
  it('has the control plane, two replicas of catalog and inventory, and a sidecar beside each', () => {
    const names = services.map(([n]) => n).sort();
    expect(names).toEqual(
      ['control-plane', 'catalog-1', 'catalog-2', 'inventory-1', 'inventory-2', 'catalog-1-sidecar', 'catalog-2-sidecar', 'inventory-1-sidecar', 'inventory-2-sidecar'].sort(),
    );
    for (const [name, s] of services) {
      expect(s.restart, `${name}.restart`).toBeDefined();
      expect(s.healthcheck, `${name}.healthcheck`).toBeDefined();
    }
    expect(compose.services['control-plane']?.ports?.map(String)).toContain('127.0.0.1:15080:15080');
    // Nothing is published beyond the host's loopback: the admin API and the sidecars have no authentication yet.
    for (const [name, s] of services) {
      for (const port of s.ports ?? []) expect(String(port), `${name}: ports`).toMatch(/^127\.0\.0\.1:\d+:\d+$/);
    }
  });

  it("runs in every container a subcommand that the built CLI's help lists", () => {
    const known = subcommandsFromHelp();
    expect(known).toContain('sidecar');
    for (const [name, s] of services) {
      const [first] = argv(s);
      expect(first, `${name}: command`).toBeDefined();
      expect(known.has(first ?? ''), `${name}: "${first ?? ''}" is not a subcommand of outrigger (help lists ${[...known].join(', ')})`).toBe(true);
    }
  });

  it('mounts deploy/ files that exist and that the control plane and sidecar loaders accept, and the addresses fit', async () => {
    const cpService = compose.services['control-plane'];
    expect(cpService).toBeDefined();
    const cpMounts = deployMounts(cpService ?? {});
    const cpConfigPath = argFlag(argv(cpService ?? {}), '--config');
    const cpFile = cpMounts.find(([, target]) => target === cpConfigPath)?.[0];
    expect(cpFile, 'control-plane: --config is a mounted deploy/ file').toBeDefined();
    expect(existsSync(cpFile ?? '')).toBe(true);
    const cp = await loadControlPlaneConfig(cpFile ?? '');
    // Reachable from other containers: not bound to loopback inside the container.
    expect(parseHostPort(cp.listen.grpc).host).toBe('0.0.0.0');
    expect(parseHostPort(cp.listen.http).host).toBe('0.0.0.0');
    const grpcPort = parseHostPort(cp.listen.grpc).port;

    let sidecars = 0;
    for (const [name, s] of services) {
      const args = argv(s);
      for (const [file] of deployMounts(s)) expect(existsSync(file), `${name}: ${file} exists`).toBe(true);
      if (args[0] !== 'sidecar') continue;
      sidecars++;
      // The sidecar shares the network namespace of an app container that exists and is not a sidecar.
      const m = /^service:(.+)$/.exec(s.network_mode ?? '');
      const app = m?.[1] ?? '';
      expect(m, `${name}: network_mode is "service:<app>"`).not.toBeNull();
      const appService = compose.services[app];
      expect(appService, `${name}: network_mode names an existing service (${app})`).toBeDefined();
      expect(argv(appService ?? {})[0]).not.toBe('sidecar');
      const file = deployMounts(s).find(([, target]) => target === argFlag(args, '--config'))?.[0];
      expect(file, `${name}: --config is a mounted deploy/ file`).toBeDefined();
      const config: SidecarConfig = await loadSidecarConfig(file ?? '');
      // The control plane is reached by its compose service name on its gRPC port, over TLS whose certificate
      // names it and chains to the CA the control plane keeps beside its state (its volume, mounted here).
      expect(config.controlPlane?.addresses).toContain(`control-plane:${grpcPort}`);
      expect(cp.tls.enabled).toBe(true);
      expect(cp.tls.serverNames).toContain('control-plane');
      expect(config.controlPlane?.tls).toBe(true);
      expect(config.controlPlane?.caFile).toBe(join(dirname(cp.store.file), 'mesh-ca.crt'));
      expect(s.volumes?.map(String)).toContain(`cp-state:${dirname(cp.store.file)}:ro`);
      // Other sidecars reach this one at the app's compose name (the shared namespace) on the inbound port.
      const inbound = parseHostPort(config.inbound?.listen ?? '');
      expect(inbound.host).toBe('0.0.0.0');
      expect(config.controlPlane?.advertise).toBe(`${app}:${inbound.port}`);
      // The inbound listener forwards to where the app listens.
      const appListen = argFlag(argv(appService ?? {}), '--listen');
      expect(config.inbound?.target).toBe(`http://${appListen ?? ''}`);
      // It is the sidecar of the service the app says it is, and it subscribes to the other one.
      expect(config.service).toBe(argFlag(argv(appService ?? {}), '--name'));
      expect(config.controlPlane?.subscribe.length).toBeGreaterThan(0);
      for (const sub of config.controlPlane?.subscribe ?? []) expect(Object.keys(cp.services)).toContain(sub);
    }
    expect(sidecars).toBe(4);
  });

  it('ships only deploy/*.yaml files that the loaders accept', async () => {
    const files = readdirSync(join(root, 'deploy')).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const f of files) {
      const path = join(root, 'deploy', f);
      if (f.startsWith('cp')) await loadControlPlaneConfig(path);
      else await loadSidecarConfig(path);
    }
  });

  it('passes `docker-compose config -q`', () => {
    // Not skipped when missing: the check is part of the deployment's proof, and `bash .ci/run` installs it.
    expect(hasCompose, 'docker-compose is not installed (apt-get install docker-compose; bash .ci/run does it)').toBe(true);
    const r = spawnSync('docker-compose', ['-f', join(root, 'docker-compose.yml'), 'config', '-q'], { encoding: 'utf8', cwd: root });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('with docker-compose.autoscale.yml: adds one scalable inventory service (no host port, no name) and passes `docker-compose config -q`', () => {
    const extra = parse(withDefaults(readFileSync(join(root, 'docker-compose.autoscale.yml'), 'utf8'))) as { services: Record<string, ComposeService & { container_name?: string }> };
    expect(Object.keys(extra.services)).toEqual(['inventory']);
    const inv = extra.services['inventory'];
    expect(inv?.ports).toBeUndefined();
    expect(inv?.container_name).toBeUndefined();
    const args = argv(inv ?? {});
    expect(subcommandsFromHelp().has(args[0] ?? '')).toBe(true);
    expect(argFlag(args, '--service')).toBe('inventory');
    expect(argFlag(args, '--host')).toBe('0.0.0.0');
    expect(hasCompose, 'docker-compose is not installed (apt-get install docker-compose; bash .ci/run does it)').toBe(true);
    const r = spawnSync('docker-compose', ['-f', join(root, 'docker-compose.yml'), '-f', join(root, 'docker-compose.autoscale.yml'), 'config', '-q'], { encoding: 'utf8', cwd: root });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('outrigger demo-app', () => {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });

  it('answers JSON naming the service, instance, path and request id, serves /healthz, and stops on SIGTERM', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [bin, 'demo-app', '--name', 'catalog', '--listen', `127.0.0.1:${port}`, '--delay-ms', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    stops.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    await waitFor(() => stdout.includes('listening'), 10_000).catch((err: unknown) => {
      throw new Error(`demo-app did not start: ${String(err)}; stderr: ${stderr}`);
    });
    expect(stdout).toContain(`http://127.0.0.1:${port}`);

    const r = await send(`127.0.0.1:${port}`, { path: '/items/42', headers: { 'x-request-id': 'req-1' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ service: 'catalog', instance: 'catalog', path: '/items/42', requestId: 'req-1' });
    const h = await send(`127.0.0.1:${port}`, { path: '/healthz' });
    expect(h.status).toBe(200);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('refuses to start without --listen', () => {
    const r = spawnSync(process.execPath, [bin, 'demo-app', '--name', 'x'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--listen/);
  });
});
