// `npm run test:compose`: docker-compose.yml run for real, with podman and podman-compose (docs/deploy.md).
//
//  1. the base image (scripts/compose-base.sh: debootstrap + the project's Node.js 24, cached), then the
//     project's Dockerfile built on it with podman;
//  2. a podman network inside 198.18.0.0/15 and `podman-compose up -d` of docker-compose.yml, the autoscaled
//     inventory service of docker-compose.autoscale.yml and test/compose/podman.override.yml;
//  3. every container's own healthcheck until it passes, and every instance registered with the control plane;
//  4. traffic through the edge (catalog-1's sidecar, published on the host's loopback), which calls inventory;
//  5. `podman kill` of the inventory-1 container under load: no failed request;
//  6. the autoscaler's compose driver scales inventory up and down against the real engine, under load;
//  7. `podman restart` of the control plane under load: the data plane keeps serving, every sidecar
//     re-registers and the state on the volume survives;
//  8. teardown: no container, network, volume or built image left, also after a failure or Ctrl-C; a run
//     that was cut short before is cleaned up at the start.
//
// Environment: OUTRIGGER_COMPOSE_SUBNET (default 198.18.200.0/24), OUTRIGGER_COMPOSE_KEEP=1 (leave the mesh
// up after a successful run, for a look; `npm run test:compose` cleans it up next time).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const root = new URL('../', import.meta.url).pathname;
const PROJECT = 'outrigger-compose-test';
const NETWORK = 'outrigger-compose-test';
const SUBNET = process.env.OUTRIGGER_COMPOSE_SUBNET ?? '198.18.200.0/24';
const BASE = 'outrigger-base:bookworm-node24';
const IMAGE = 'localhost/outrigger:compose-test';
const VOLUME = `${PROJECT}_cp-state`;
const SHIM = join(root, 'test/compose/podman-shim');
const COMPAT = join(root, 'test/compose/podman-compose-compat.mjs');
const FILES = ['docker-compose.yml', 'docker-compose.autoscale.yml', 'test/compose/podman.override.yml'].map((f) => join(root, f));
const OVERALL_MS = 15 * 60_000;

const started = performance.now();
const work = mkdtempSync(join(tmpdir(), 'outrigger-compose-'));
const containersConf = join(work, 'containers.conf');

// The sandbox refuses to raise resource limits: podman's defaults (nofile 1048576, the host's nproc) fail
// with "error setting rlimits". The init binary for `init: true` is Debian's tini when catatonit is absent.
const initPath = ['/usr/libexec/podman/catatonit', '/usr/bin/catatonit', '/usr/bin/tini-static'].find((p) => existsSync(p));
writeFileSync(
  containersConf,
  ['[containers]', 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]', ...(initPath !== undefined ? [`init_path = "${initPath}"`] : []), ''].join('\n'),
);

const log = (line) => process.stdout.write(`[compose-test ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);

// ---------------------------------------------------------------------------------------------------------
// Commands

let env = { ...process.env, CONTAINERS_CONF: containersConf, OUTRIGGER_IMAGE: IMAGE, OUTRIGGER_TEST_NETWORK: NETWORK };

/** The commands running now: stopped before the teardown, so none creates something after it. */
const running = new Set();

/** Runs a program; resolves { code, stdout, stderr }; rejects only on timeout. */
function run(program, args, { timeoutMs = 120_000, quiet = true } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(program, args, { env, cwd: root, maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      running.delete(child);
      if (err && err.killed) reject(new Error(`${program} ${args.join(' ')}: no answer after ${timeoutMs / 1000} s`));
      else resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    running.add(child);
    if (!quiet) child.stdout?.pipe(process.stdout);
  });
}

/** SIGTERM to every running command, SIGKILL to those still there after 10 s. */
async function stopRunning() {
  const children = [...running];
  if (children.length === 0) return;
  const exited = children.map((c) => new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', resolve))));
  for (const c of children) c.kill('SIGTERM');
  const late = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), 10_000);
  await Promise.all(exited);
  clearTimeout(late);
}

/** Runs a program and fails with its last stderr lines when it does not exit 0. */
async function must(program, args, options) {
  const r = await run(program, args, options);
  if (r.code !== 0) throw new Error(`${program} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join('\n') || '(no output)'}`);
  return r.stdout;
}

const podman = (args, options) => must('podman', args, options);
const compose = (args, options) => must('podman-compose', ['--podman-path', SHIM, ...FILES.flatMap((f) => ['-f', f]), '-p', PROJECT, ...args], options);
const cname = (service, n = 1) => `${PROJECT}_${service}_${n}`;

async function waitUntil(what, timeoutMs, check, intervalMs = 1_000) {
  const deadline = performance.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const r = await check();
      if (r) return r;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${last.message ?? last})` : ''}`);
    await sleep(intervalMs);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Cleanup: everything of this test's project, whatever state a previous run left it in.

async function projectContainers() {
  const r = await run('podman', ['ps', '-a', '--filter', `label=io.podman.compose.project=${PROJECT}`, '--format', '{{.Names}}']);
  return r.stdout.split('\n').filter((l) => l.trim() !== '');
}

/** Images without a name, intermediate ones included (-a): what builds leave. */
async function untaggedImages() {
  const r = await run('podman', ['images', '-a', '--format', '{{.ID}} {{.Repository}}']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter(([id, repo]) => id !== undefined && id !== '' && (repo === '<none>' || repo === undefined))
    .map(([id]) => id);
}

async function leftovers() {
  const found = [];
  found.push(...(await projectContainers()).map((c) => `container ${c}`));
  if ((await run('podman', ['volume', 'exists', VOLUME])).code === 0) found.push(`volume ${VOLUME}`);
  if ((await run('podman', ['network', 'exists', NETWORK])).code === 0) found.push(`network ${NETWORK}`);
  if ((await run('podman', ['image', 'exists', IMAGE])).code === 0) found.push(`image ${IMAGE}`);
  // Build containers of an interrupted `podman build` (buildah's "<id>-working-container").
  const ext = await run('podman', ['ps', '-a', '--external', '--format', '{{.ID}} {{.Names}}']);
  for (const line of ext.stdout.split('\n')) if (/-working-container(-\d+)?$/.test(line.trim())) found.push(`build container ${line.trim()}`);
  for (const id of await untaggedImages()) found.push(`untagged image ${id}`);
  return found;
}

async function cleanup() {
  const names = await projectContainers();
  if (names.length > 0) await run('podman', ['rm', '-f', '-t', '2', ...names], { timeoutMs: 120_000 });
  await run('podman', ['volume', 'rm', '-f', VOLUME]);
  await run('podman', ['network', 'rm', '-f', NETWORK]);
  await run('podman', ['rmi', '-f', IMAGE], { timeoutMs: 120_000 });
  const ext = await run('podman', ['ps', '-a', '--external', '--format', '{{.ID}} {{.Names}}']);
  const builds = ext.stdout.split('\n').filter((l) => /-working-container(-\d+)?$/.test(l.trim())).map((l) => l.trim().split(' ')[0]);
  if (builds.length > 0) await run('podman', ['rm', '-f', ...builds]);
  await run('podman', ['image', 'prune', '-f'], { timeoutMs: 120_000 });
  const untagged = await untaggedImages();
  if (untagged.length > 0) await run('podman', ['rmi', '-f', ...untagged], { timeoutMs: 120_000 });
}

let finishing = false;
async function finish(code, err) {
  if (finishing) return;
  finishing = true;
  await stopRunning();
  if (err) {
    process.stdout.write(`\n[compose-test] FAILED: ${err.stack ?? err}\n`);
    // What the containers said, for the CI log.
    for (const name of await projectContainers().catch(() => [])) {
      const r = await run('podman', ['logs', '--tail', '15', name]).catch(() => undefined);
      const status = await run('podman', ['ps', '-a', '--filter', `name=^${name}$`, '--format', '{{.Status}}']).catch(() => undefined);
      process.stdout.write(`\n--- ${name} (${status?.stdout.trim() ?? '?'}): last log lines\n${((r?.stdout ?? '') + (r?.stderr ?? '')).trim()}\n`);
    }
  }
  if (code === 0 && process.env.OUTRIGGER_COMPOSE_KEEP === '1') {
    log(`leaving the mesh up (OUTRIGGER_COMPOSE_KEEP=1); CONTAINERS_CONF=${containersConf}`);
    process.exit(0);
  }
  log('teardown');
  try {
    await run('podman-compose', ['--podman-path', SHIM, ...FILES.flatMap((f) => ['-f', f]), '-p', PROJECT, 'down', '-v'], { timeoutMs: 180_000 });
  } catch {
    // cleanup() below removes whatever down left.
  }
  await cleanup();
  let left = await leftovers();
  if (left.length > 0) {
    // A command stopped in the middle (a container being created, a build being tagged) may finish late.
    await sleep(5_000);
    await cleanup();
    left = await leftovers();
  }
  rmSync(work, { recursive: true, force: true });
  if (left.length > 0) {
    process.stdout.write(`[compose-test] FAILED: left behind after teardown: ${left.join(', ')}\n`);
    process.exit(1);
  }
  log(`leftovers: none (no container of project ${PROJECT}, no volume ${VOLUME}, no network ${NETWORK}, no image ${IMAGE}, no build leftovers)`);
  log(code === 0 ? `PASSED in ${((performance.now() - started) / 1000).toFixed(0)} s` : 'FAILED');
  process.exit(code);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => void finish(1, new Error(`stopped by ${sig}`)));
process.on('uncaughtException', (err) => void finish(1, err));
process.on('unhandledRejection', (err) => void finish(1, err));
const watchdog = setTimeout(() => void finish(1, new Error(`the whole test took longer than ${OVERALL_MS / 60_000} minutes`)), OVERALL_MS);
watchdog.unref();

// ---------------------------------------------------------------------------------------------------------
// Traffic

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

/** One GET through the edge; resolves { ok, status, inventoryHost }. */
function get(port, path) {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        let inventoryHost;
        try {
          inventoryHost = JSON.parse(body).inventory?.host;
        } catch {
          // not JSON: counted as failed below
        }
        resolve({ ok: res.statusCode === 200 && inventoryHost !== undefined, status: res.statusCode, inventoryHost, body });
      });
      res.on('error', () => resolve({ ok: false, status: 'response cut' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ok: false, status: err.code ?? err.message }));
    req.end();
  });
}

/** Steady load through the edge by `concurrency` loops until stop(); counts sent/ok/failed and the inventory hosts. */
function load(port, name, concurrency = 4) {
  const counts = { name, sent: 0, ok: 0, failed: 0, failures: new Map(), hosts: new Set() };
  const slug = name.replace(/[^a-z0-9]+/gi, '-');
  let running = true;
  const loops = Array.from({ length: concurrency }, async (_, k) => {
    let n = 0;
    while (running) {
      counts.sent++;
      const r = await get(port, `/${slug}/${k}/${n++}`);
      if (r.ok) {
        counts.ok++;
        counts.hosts.add(r.inventoryHost);
      } else {
        counts.failed++;
        const key = String(r.status);
        counts.failures.set(key, (counts.failures.get(key) ?? 0) + 1);
      }
      await sleep(20);
    }
  });
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      const detail = counts.failed > 0 ? ` (${[...counts.failures].map(([k, v]) => `${k}: ${v}`).join(', ')})` : '';
      log(`${name}: sent ${counts.sent}, ok ${counts.ok}, failed ${counts.failed}${detail}; inventory containers that answered: ${counts.hosts.size}`);
      return counts;
    },
  };
}

const results = [];
function expectNoFailures(c) {
  results.push(c);
  if (c.sent === 0) throw new Error(`${c.name}: no request was sent`);
  if (c.failed !== 0) throw new Error(`${c.name}: ${c.failed} of ${c.sent} requests failed`);
}

// ---------------------------------------------------------------------------------------------------------
// The control plane's admin API

let httpPort;
let token;
/** The mesh CA from the control plane's volume: its HTTPS certificate chains to it. */
let caPem;
/** The control plane's API over HTTPS, pinned to the mesh CA, with the admin token. */
function api(path, init = {}) {
  return new Promise((resolve, reject) => {
    const body = init.body;
    const req = httpsRequest(
      { host: '127.0.0.1', port: httpPort, path, method: init.method ?? 'GET', ca: caPem, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) }, timeout: 5_000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          if ((res.statusCode ?? 0) >= 300) reject(new Error(`${init.method ?? 'GET'} ${path}: ${res.statusCode} ${text}`));
          else {
            try {
              resolve(JSON.parse(text));
            } catch (err) {
              reject(err);
            }
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${init.method ?? 'GET'} ${path}: no answer within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}
async function instances(service) {
  const { instances: list } = await api('/api/instances');
  return list.filter((i) => i.service === service && i.state === 'serving');
}

/** Runs each container's own healthcheck (podman runs them from systemd timers, absent here) until it passes. */
async function waitHealthy(names, timeoutMs = 180_000) {
  await Promise.all(
    names.map((name) =>
      waitUntil(`the healthcheck of ${name}`, timeoutMs, async () => (await run('podman', ['healthcheck', 'run', name], { timeoutMs: 30_000 })).code === 0, 2_000),
    ),
  );
}

// ---------------------------------------------------------------------------------------------------------

async function main() {
  for (const tool of ['podman', 'podman-compose']) {
    if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) throw new Error(`${tool} is not installed (apt-get install podman podman-compose debootstrap; bash .ci/run does it)`);
  }
  log(`podman ${(await podman(['--version'])).trim().replace(/^podman version /, '')}, podman-compose ${(await run('podman-compose', ['version'])).stdout.match(/podman-composer? version\s+(\S+)/)?.[1] ?? '?'}`);

  const stale = await leftovers();
  if (stale.length > 0) {
    log(`cleaning up what an earlier run left: ${stale.join(', ')}`);
    await cleanup();
  }

  // 1. Images
  let t = performance.now();
  await must('bash', [join(root, 'scripts/compose-base.sh'), BASE], { timeoutMs: 600_000, quiet: false });
  log(`base image ready in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  t = performance.now();
  // --network host: the build's `npm ci` reaches the registry the way this machine does.
  await podman(['build', '--network', 'host', '--build-arg', `BASE_IMAGE=localhost/${BASE}`, '-t', IMAGE, '-f', join(root, 'Dockerfile'), root], { timeoutMs: 600_000 });
  log(`image ${IMAGE} built from the Dockerfile on ${BASE} in ${((performance.now() - t) / 1000).toFixed(0)} s`);

  // 2. Network and mesh
  await podman(['network', 'create', '--subnet', SUBNET, NETWORK]);
  httpPort = await freePort();
  const edgePort = await freePort();
  env = { ...env, OUTRIGGER_HTTP_PORT: String(httpPort), OUTRIGGER_CATALOG_PORT: String(edgePort) };
  t = performance.now();
  await compose(['up', '-d'], { timeoutMs: 300_000 });
  const names = await projectContainers();
  log(`podman-compose up -d: ${names.length} containers on ${NETWORK} (${SUBNET}); control plane API on 127.0.0.1:${httpPort}, the edge (catalog-1's sidecar) on 127.0.0.1:${edgePort}`);
  if (names.length !== 10) throw new Error(`expected 10 containers, got ${names.length}: ${names.join(', ')}`);

  // 3. Healthchecks and registrations
  await waitHealthy(names);
  log(`all ${names.length} healthchecks pass (${((performance.now() - t) / 1000).toFixed(0)} s after up)`);
  token = (await podman(['exec', cname('control-plane'), 'cat', '/var/lib/outrigger/admin.token'])).trim();
  caPem = await podman(['exec', cname('control-plane'), 'cat', '/var/lib/outrigger/mesh-ca.crt']);
  await waitUntil('2 catalog and 3 inventory instances registered', 60_000, async () => (await instances('catalog')).length === 2 && (await instances('inventory')).length === 3);
  log(`registered: ${(await instances('catalog')).map((i) => i.id).join(', ')}; ${(await instances('inventory')).map((i) => `${i.id} (${i.address})`).join(', ')}`);

  // 4. Traffic through the edge
  await waitUntil('a first answer through the edge', 60_000, async () => (await get(edgePort, '/warm-up')).ok);
  const steady = load(edgePort, 'steady traffic');
  await sleep(5_000);
  expectNoFailures(await steady.stop());

  // 5. Kill an inventory container under load
  const killLoad = load(edgePort, 'podman kill inventory-1 under load');
  await sleep(3_000);
  await podman(['kill', cname('inventory-1')]);
  log(`killed ${cname('inventory-1')} (its sidecar's network namespace went with it)`);
  await waitUntil('inventory-1 to leave the registry (its heartbeats stopped)', 60_000, async () => !(await instances('inventory')).some((i) => i.id === 'inventory-1'));
  log('inventory-1 is out of the registry');
  await sleep(3_000);
  expectNoFailures(await killLoad.stop());
  // Back: the app container first (it owns the namespace), then its sidecar into the new namespace.
  await podman(['start', cname('inventory-1')]);
  await podman(['restart', '-t', '10', cname('inventory-1-sidecar')], { timeoutMs: 60_000 });
  await waitHealthy([cname('inventory-1'), cname('inventory-1-sidecar')]);
  await waitUntil('inventory-1 registered again', 60_000, async () => (await instances('inventory')).some((i) => i.id === 'inventory-1'));
  log('inventory-1 started again and re-registered');

  // 6. The autoscaler's compose driver against the real engine
  const { ComposeDriver } = await import(join(root, 'dist/control-plane/src/autoscale/drivers/compose.js'));
  const quiet = { debug() {}, info() {}, warn() {}, error() {}, child() { return quiet; } };
  const driver = new ComposeDriver(
    'inventory',
    { kind: 'compose', command: [process.execPath, COMPAT, '--podman-path', SHIM, ...FILES.flatMap((f) => ['-f', f])], project: PROJECT, service: 'inventory' },
    quiet,
    { env, timeoutMs: 240_000 },
  );
  const before = await driver.current();
  if (before !== 1) throw new Error(`compose driver: expected 1 inventory replica, current() says ${before}`);
  const scaleLoad = load(edgePort, 'scale inventory 1 → 3 → 1 under load');
  t = performance.now();
  await driver.scaleTo(3, []);
  const up = await driver.current();
  log(`compose driver: scaleTo(3) in ${((performance.now() - t) / 1000).toFixed(0)} s; current() = ${up}`);
  if (up !== 3) throw new Error(`compose driver: expected 3 replicas after scaleTo(3), current() says ${up}`);
  await waitHealthy([cname('inventory', 2), cname('inventory', 3)]);
  await waitUntil('5 inventory instances registered', 60_000, async () => (await instances('inventory')).length === 5);
  log(`registered: ${(await instances('inventory')).map((i) => `${i.id} (${i.address})`).join(', ')}`);
  // The callers know them: catalog-1's sidecar (its admin port, inside its network namespace) lists 5 eligible inventory endpoints.
  const eligible = await waitUntil("5 eligible inventory endpoints in catalog-1's sidecar", 30_000, async () => {
    const out = await podman(['exec', cname('catalog-1'), 'node', '-e', "fetch('http://127.0.0.1:15000/clusters').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    const inv = JSON.parse(out).clusters.find((c) => c.service === 'inventory');
    const n = inv?.endpoints.filter((e) => e.eligible).length ?? 0;
    return n === 5 ? n : undefined;
  });
  log(`catalog-1's sidecar has ${eligible} eligible inventory endpoints`);
  await sleep(3_000);
  t = performance.now();
  await driver.scaleTo(1, []);
  const down = await driver.current();
  log(`compose driver: scaleTo(1) in ${((performance.now() - t) / 1000).toFixed(0)} s; current() = ${down}`);
  if (down !== 1) throw new Error(`compose driver: expected 1 replica after scaleTo(1), current() says ${down}`);
  await waitUntil('3 inventory instances registered', 60_000, async () => (await instances('inventory')).length === 3);
  await sleep(2_000);
  expectNoFailures(await scaleLoad.stop());

  // 7. Restart the control plane
  const cpLoad = load(edgePort, 'control-plane restart under load');
  await sleep(2_000);
  t = performance.now();
  await podman(['restart', '-t', '15', cname('control-plane')], { timeoutMs: 90_000 });
  await waitHealthy([cname('control-plane')], 120_000);
  const tokenAfter = (await podman(['exec', cname('control-plane'), 'cat', '/var/lib/outrigger/admin.token'])).trim();
  if (tokenAfter !== token) throw new Error('the admin token changed across the restart: the state volume was not kept');
  await waitUntil('all 5 instances registered again', 90_000, async () => (await instances('catalog')).length === 2 && (await instances('inventory')).length === 3);
  log(`control plane restarted; healthy with the same state (admin token) and all 5 instances re-registered in ${((performance.now() - t) / 1000).toFixed(0)} s`);
  await sleep(2_000);
  expectNoFailures(await cpLoad.stop());

  const total = results.reduce((a, c) => ({ sent: a.sent + c.sent, failed: a.failed + c.failed }), { sent: 0, failed: 0 });
  log(`traffic in all: ${total.sent} requests through the edge, ${total.failed} failed`);
}

main().then(
  () => finish(0),
  (err) => finish(1, err),
);
