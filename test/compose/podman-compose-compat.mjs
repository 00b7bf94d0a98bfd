// The two `docker compose` commands the autoscaler's compose driver runs, on podman-compose 1.0.3 (Debian
// bookworm's), which parses `up --scale` but ignores it and lists every container of the project for
// `ps -q SERVICE`. `npm run test:compose` gives the driver this file as its `command`
// (`[node, this file, --podman-path SHIM, -f FILE...]`); with Docker Compose or a podman-compose that
// scales, the driver's default `[docker, compose]` (or `[podman-compose]`) needs nothing of the sort.
//
//   [global flags] ps -q SERVICE
//       podman ps -q, filtered by the project's and the service's compose labels;
//   [global flags] up -d --scale SERVICE=N [--no-recreate] SERVICE
//       more containers: podman-compose up -d SERVICE with one more file setting the service's
//       deploy.replicas to N (1.0.3 creates the missing <project>_SERVICE_<k>, and only starts the
//       existing ones); fewer: stop (SIGTERM, then SIGKILL after the service's stop grace) and remove
//       the highest-numbered, as Docker Compose does;
//   anything else: podman-compose with the same arguments.
//
// Global flags: -f FILE (repeatable), -p PROJECT, --podman-path PATH (passed to podman-compose; also the
// `podman` this file runs).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const files = [];
let project;
let podmanPath = 'podman';
let i = 0;
for (; i < argv.length; i++) {
  const a = argv[i];
  if (a === '-f' || a === '--file') files.push(argv[++i]);
  else if (a === '-p' || a === '--project-name') project = argv[++i];
  else if (a === '--podman-path') podmanPath = argv[++i];
  else break;
}
const [command, ...rest] = argv.slice(i);
project ??= basename(dirname(resolve(files[0] ?? 'docker-compose.yml')));

const global = () => ['--podman-path', podmanPath, ...files.flatMap((f) => ['-f', f]), '-p', project];

function fail(message) {
  process.stderr.write(`podman-compose-compat: ${message}\n`);
  process.exit(1);
}

function podman(args) {
  return execFileSync(podmanPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The service's containers, lowest number first: [{ name, number }]. */
function containers(service, all) {
  const out = podman([
    'ps', ...(all ? ['-a'] : []),
    '--filter', `label=io.podman.compose.project=${project}`,
    '--filter', `label=com.docker.compose.service=${service}`,
    '--format', '{{.Names}}\t{{index .Labels "com.docker.compose.container-number"}}',
  ]);
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [name, number] = l.split('\t');
      return { name, number: Number(number) };
    })
    .sort((a, b) => a.number - b.number);
}

function passThrough() {
  const r = spawnSync('podman-compose', [...global(), command, ...rest], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (command === 'ps' && rest.includes('-q') && rest.some((a) => !a.startsWith('-'))) {
  const service = rest.find((a) => !a.startsWith('-'));
  for (const c of containers(service, false)) process.stdout.write(`${c.name}\n`);
  process.exit(0);
}

const scaleAt = rest.indexOf('--scale');
if (command !== 'up' || scaleAt < 0) passThrough();

const m = /^([^=]+)=(\d+)$/.exec(rest[scaleAt + 1] ?? '');
if (!m) fail(`expected --scale SERVICE=N, got ${rest[scaleAt + 1] ?? 'nothing'}`);
const service = m[1];
const replicas = Number(m[2]);
const existing = containers(service, true);

if (replicas > existing.length) {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-scale-'));
  try {
    const extra = join(dir, 'scale.yml');
    writeFileSync(extra, `services:\n  ${JSON.stringify(service)}:\n    deploy:\n      replicas: ${replicas}\n`);
    // podman-compose resolves relative paths against the first file's directory, so the extra one is absolute.
    const r = spawnSync('podman-compose', ['--podman-path', podmanPath, ...files.flatMap((f) => ['-f', f]), '-f', extra, '-p', project, 'up', '-d', service], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const now = containers(service, false).length;
    if (now < replicas) fail(`podman-compose up -d ${service} left ${now} of ${replicas} running (exit ${r.status ?? r.signal}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' / ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else if (replicas < existing.length) {
  const gone = existing.slice(replicas).map((c) => c.name);
  podman(['stop', '-t', '15', ...gone]);
  podman(['rm', '-f', ...gone]);
}
process.exit(0);
