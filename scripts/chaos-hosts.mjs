// Multi-host chaos run (`npm run chaos:hosts`): three "hosts" as network namespaces joined by veth links to a
// bridge, addresses in 198.18.0.0/15 only; a 3-member etcd cluster (one member per host), control-plane
// replicas on h1 and h2, an inventory instance with its sidecar on every host, and a caller (`web`) sidecar on
// h1 and on h3. Under steady load through both web sidecars (idempotent GETs) it runs, in sequence:
//
//   1. partition h2 from the other hosts (iptables DROP inside h2's namespace), then heal;
//   2. SIGKILL the leading control-plane replica, then start it again;
//   3. SIGKILL etcd's raft leader member, then start it again;
//   4. a rolling restart of inventory (each instance drained through the control-plane API, stopped, started,
//      undrained);
//   5. everything healed: a steady-state check.
//
// For each scenario it prints a table row: requests sent and failed, ejection and recovery times, and how long a
// policy change made through the control-plane API took to reach every sidecar (each sidecar's admin
// /config/status version), during and after the fault. Failed requests are asserted (exit 1 when any
// failed); times are reported with PASS/MISS against the goals, never asserted. The table is also written to
// bench/CHAOS-HOSTS.md.
//
// Root only (ip netns, veth, bridge, iptables). Bounded (TIME_LIMIT_MS); everything it creates (namespaces,
// veths, bridge, the iptables rules inside the namespaces, processes, the temporary directory) is removed at
// the end, after a failure, on Ctrl-C, and, at start, what an aborted earlier run left behind.
//
//   npm run chaos:hosts                      # build, then run
//   node scripts/chaos-hosts.mjs             # needs the build (dist/) and Node 24 (node_modules/.bin/node)
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, Pool, request } from 'undici';

const REPO = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const BIN = path.join(REPO, 'bin', 'outrigger.js');
const NODE = process.execPath;
const ETCD = process.env.OUTRIGGER_ETCD ?? '/usr/bin/etcd';
/** etcd's election timeout in ms (heartbeat a tenth of it); unset: etcd's defaults (1000 ms, 100 ms). */
const ETCD_ELECTION_MS = process.env.OUTRIGGER_CHAOS_ETCD_ELECTION_MS === undefined ? undefined : Number(process.env.OUTRIGGER_CHAOS_ETCD_ELECTION_MS);
const REPORT = path.join(REPO, 'bench', 'CHAOS-HOSTS.md');

/** Everything this run creates is named with this prefix (namespaces, the root-side veth, temp dirs). */
const PREFIX = 'orchaos';
const TMP_PREFIX = 'outrigger-chaos-hosts-';
/** A /24 inside 198.18.0.0/15 (the benchmarking range, the only one test hosts may use here). */
const SUBNET = process.env.OUTRIGGER_CHAOS_SUBNET ?? '198.19.241';
const OPERATOR_IP = `${SUBNET}.254`;
const NET_NS = `${PREFIX}-net`;
const OPERATOR_LINK = `${PREFIX}-op`;
const HOSTS = [1, 2, 3].map((i) => ({ name: `h${i}`, ns: `${PREFIX}-h${i}`, ip: `${SUBNET}.${i}` }));
const NAMESPACES = [NET_NS, ...HOSTS.map((h) => h.ns)];

const TIME_LIMIT_MS = 170_000;
const RPS_PER_CALLER = 50;
const GOAL_POLICY_MS = 1_000;
const STEP_TIMEOUT_MS = 25_000;
const LEASE_TTL = '5s';

const ADMIN_TOKEN = randomBytes(24).toString('hex');
const SIDECAR_TOKEN = randomBytes(24).toString('hex');

const log = (msg) => process.stdout.write(`${msg}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const since = (t0) => Math.round(performance.now() - t0);

// ---------------------------------------------------------------------------------------------
// Configuration: the one place where cp.yaml and sidecar.yaml are written (TLS, tokens and mTLS settings go
// here).

/** The inventory policy every replica starts with: retries on everything an idempotent GET may retry. */
const INVENTORY_POLICY = `    lb: round-robin
    timeout: 5s
    connectTimeout: 250ms
    retry: { attempts: 3, on: [connect-failure, reset, gateway-error, timeout], perTryTimeout: 1s, backoff: { base: 10ms, max: 100ms }, budget: { ratio: 0.5, minPerSecond: 50 } }
    outlierDetection: { consecutiveGatewayFailure: 2, consecutive5xx: 3, interval: 1s, baseEjectionTime: 5s, maxEjectionTime: 10s, maxEjectionPercent: 67 }
    healthCheck: { http: { path: /healthz }, interval: 1s, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 2 }
`;

/** cp.yaml of the replica on `host`. */
function cpYaml(host, dir) {
  return `listen: { grpc: ${host.ip}:15010, http: ${host.ip}:15080 }
store:
  file: ${path.join(dir, 'state.json')}
  etcd: { endpoints: [${HOSTS.map((h) => `http://${h.ip}:2379`).join(', ')}], prefix: /chaos-hosts, leaseTtl: ${LEASE_TTL} }
auth:
  tokens:
    - { name: chaos-admin, secret: ${ADMIN_TOKEN}, role: admin }
    - { name: chaos-sidecars, secret: ${SIDECAR_TOKEN}, role: sidecar }
instanceTtl: 10s
drainTime: 2s
weightInterval: 1s
services:
  inventory:
${INVENTORY_POLICY}`;
}

/**
 * sidecar.yaml of one sidecar. `s`: { service, name, host, admin, outbound, inbound?, app?, cps }. The inbound
 * listener follows the mesh-wide mode (strict mutual TLS); the sidecar pins the control plane's CA by
 * bootstrapping with its token (GetCA), as a sidecar on another host without the CA file does.
 */
function sidecarYaml(s) {
  const inbound = s.inbound === undefined ? '' : `inbound: { listen: ${s.host.ip}:${s.inbound}, target: http://127.0.0.1:${s.app} }\n`;
  const advertise = s.inbound === undefined ? '' : `, advertise: ${s.host.ip}:${s.inbound}`;
  return `service: ${s.service}
instance: ${s.name}
admin: { listen: ${s.host.ip}:${s.admin} }
outbound: { listen: ${s.outboundIp ?? '127.0.0.1'}:${s.outbound} }
${inbound}controlPlane: { addresses: [${s.cps.map((h) => `${h.ip}:15010`).join(', ')}], subscribe: [inventory, web], token: ${SIDECAR_TOKEN}, reportInterval: 1s${advertise} }
log: { level: warn }
services: {}
`;
}

/** The inventory app: a tiny HTTP server on the host's loopback. */
const APP = `
const http = require('node:http');
http.createServer((req, res) => {
  if (req.url === '/healthz') { res.end('ok'); return; }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ host: process.argv[2], pid: process.pid }));
}).listen(Number(process.argv[1]), '127.0.0.1');
`;

// ---------------------------------------------------------------------------------------------
// Shell, namespaces, processes, cleanup

function run(cmd, args, { check = true } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${(r.stderr || r.stdout || '').trim()}`);
  return r;
}
const ip = (...args) => run('ip', args);
const nsIptables = (ns, ...args) => run('ip', ['netns', 'exec', ns, 'iptables', ...args]);

let runDir = '';
/** Every process this run started (by pid): killed at cleanup. */
const children = new Set();

function startIn(ns, cmd, args, logName, env = {}) {
  const out = fs.openSync(path.join(runDir, `${logName}.log`), 'a');
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  fs.closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function exited(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

async function stopChild(child, signal = 'SIGTERM') {
  const done = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await done;
  clearTimeout(timer);
}

/** Removes everything this script creates; safe to call twice and when nothing exists. */
function cleanup({ quiet = false } = {}) {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  const existing = run('ip', ['netns', 'list'], { check: false }).stdout ?? '';
  for (const ns of NAMESPACES) {
    if (!new RegExp(`^${ns}( |$)`, 'm').test(existing)) continue;
    // Processes still running inside our namespaces (this run's, or an aborted run's) are ours.
    const pids = (run('ip', ['netns', 'pids', ns], { check: false }).stdout ?? '').split('\n').filter((p) => /^\d+$/.test(p));
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    run('ip', ['netns', 'del', ns], { check: false });
    if (!quiet) log(`removed network namespace ${ns}`);
  }
  // Deleting the namespaces deletes the veth pairs (and the bridge and the iptables rules inside them); the
  // root-side end survives only if its peer was never moved.
  run('ip', ['link', 'del', OPERATOR_LINK], { check: false });
  for (const entry of fs.readdirSync(os.tmpdir())) {
    if (entry.startsWith(TMP_PREFIX)) fs.rmSync(path.join(os.tmpdir(), entry), { recursive: true, force: true });
  }
}

function preflight() {
  const why = [];
  if (process.getuid?.() !== 0) why.push('it must run as root (network namespaces, veth links, a bridge and iptables rules)');
  else {
    if (run('ip', ['netns', 'list'], { check: false }).status !== 0) why.push('`ip netns` is not available (iproute2)');
    if (run('iptables', ['-V'], { check: false }).status !== 0) why.push('iptables is not available');
  }
  if (!fs.existsSync(ETCD)) why.push(`${ETCD} is missing (Debian's etcd-server; OUTRIGGER_ETCD names another binary)`);
  if (!fs.existsSync(path.join(REPO, 'dist', 'cli', 'src'))) why.push('the build is missing: run `npm run build` (npm run chaos:hosts does)');
  if (Number(process.versions.node.split('.')[0]) < 24) why.push(`Node 24 is needed (this is ${process.version}): use node_modules/.bin/node or npm run chaos:hosts`);
  if (why.length > 0) {
    process.stderr.write(`chaos:hosts cannot run: ${why.join('; ')}\n`);
    process.exit(1);
  }
}

function setUpNetwork() {
  ip('netns', 'add', NET_NS);
  ip('-n', NET_NS, 'link', 'set', 'lo', 'up');
  ip('-n', NET_NS, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', NET_NS, 'link', 'set', 'br0', 'up');
  const attach = (rootEnd, bridgeEnd) => {
    ip('link', 'add', rootEnd, 'type', 'veth', 'peer', 'name', bridgeEnd);
    ip('link', 'set', bridgeEnd, 'netns', NET_NS);
    ip('-n', NET_NS, 'link', 'set', bridgeEnd, 'master', 'br0');
    ip('-n', NET_NS, 'link', 'set', bridgeEnd, 'up');
  };
  for (const h of HOSTS) {
    ip('netns', 'add', h.ns);
    ip('-n', h.ns, 'link', 'set', 'lo', 'up');
    const hostEnd = `${PREFIX}-${h.name}`;
    attach(hostEnd, `${PREFIX}-${h.name}b`);
    ip('link', 'set', hostEnd, 'netns', h.ns);
    ip('-n', h.ns, 'link', 'set', hostEnd, 'name', 'eth0');
    ip('-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0');
    ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
  }
  // The operator (this script: load generator, API calls, admin polls) sits on the same bridge and is never
  // partitioned.
  attach(OPERATOR_LINK, `${PREFIX}-opb`);
  ip('addr', 'add', `${OPERATOR_IP}/24`, 'dev', OPERATOR_LINK);
  ip('link', 'set', OPERATOR_LINK, 'up');
}

/** Cuts `host` off the other hosts (both directions, established connections too); the operator keeps access. */
function partition(host) {
  for (const [chain, dir, lo] of [
    ['INPUT', '-s', '-i'],
    ['OUTPUT', '-d', '-o'],
  ]) {
    nsIptables(host.ns, '-A', chain, lo, 'lo', '-j', 'ACCEPT');
    nsIptables(host.ns, '-A', chain, dir, OPERATOR_IP, '-j', 'ACCEPT');
    nsIptables(host.ns, '-A', chain, dir, `${SUBNET}.0/24`, '-j', 'DROP');
  }
}
function heal(host) {
  nsIptables(host.ns, '-F', 'INPUT');
  nsIptables(host.ns, '-F', 'OUTPUT');
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers (undici; every call bounded)

async function http(method, url, { body, headers = {}, timeoutMs = 8_000, dispatcher } = {}) {
  const res = await request(url, {
    method,
    dispatcher,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const text = await res.body.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, text, json };
}
const tryHttp = (method, url, options) => http(method, url, options).catch(() => ({ status: 0, text: '', json: undefined }));

/**
 * The control plane's HTTP API is HTTPS with a certificate from the mesh CA, which every replica writes beside
 * its state (mesh-ca.crt; the same CA for all, shared through etcd). Read once a replica has written it.
 */
let cpDispatcher;
function cpAgent(cp) {
  if (cpDispatcher === undefined) {
    const file = path.join(cp.dir, 'mesh-ca.crt');
    if (!fs.existsSync(file)) return undefined;
    cpDispatcher = new Agent({ connect: { ca: fs.readFileSync(file, 'utf8') } });
  }
  return cpDispatcher;
}
/** A request to a replica's API (no answer, status 0, until its CA is known). */
function cpHttp(cp, method, p, options = {}) {
  const dispatcher = cpAgent(cp);
  if (dispatcher === undefined) return Promise.resolve({ status: 0, text: '', json: undefined });
  return tryHttp(method, `https://${cp.host.ip}:15080${p}`, { ...options, dispatcher });
}
const api = (cp, method, p, body) => cpHttp(cp, method, p, { body, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

/** Polls `check` every 100 ms until it is truthy; returns ms taken, or undefined after `timeoutMs`. */
async function waitFor(check, timeoutMs = STEP_TIMEOUT_MS) {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    try {
      if (await check()) return since(t0);
    } catch {
      // not yet
    }
    await sleep(100);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The mesh

const etcds = new Map(); // host name -> { host, dir, child }
const cps = new Map(); // host name -> { host, dir, child }
const sidecars = new Map(); // name -> { spec, file, child, app?: { port, child } }

function etcdArgs(h, dir) {
  const cluster = HOSTS.map((x) => `e${x.name}=http://${x.ip}:2380`).join(',');
  return ['--name', `e${h.name}`, '--data-dir', dir, '--listen-client-urls', `http://${h.ip}:2379`, '--advertise-client-urls', `http://${h.ip}:2379`,
    '--listen-peer-urls', `http://${h.ip}:2380`, '--initial-advertise-peer-urls', `http://${h.ip}:2380`, '--initial-cluster', cluster,
    '--initial-cluster-state', 'new', '--initial-cluster-token', `${PREFIX}-cluster`, '--log-level', 'error',
    ...(ETCD_ELECTION_MS === undefined ? [] : ['--election-timeout', String(ETCD_ELECTION_MS), '--heartbeat-interval', String(Math.round(ETCD_ELECTION_MS / 10))])];
}
const etcdHealthy = async (h) => (await tryHttp('GET', `http://${h.ip}:2379/health`, { timeoutMs: 1_000 })).json?.health === 'true';

function startEtcd(e) {
  e.child = startIn(e.host.ns, ETCD, etcdArgs(e.host, e.dir), `etcd-${e.host.name}`, { ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' });
}

/** The etcd member that leads the raft group. */
async function etcdLeader() {
  for (const e of etcds.values()) {
    const r = await tryHttp('POST', `http://${e.host.ip}:2379/v3/maintenance/status`, { body: {}, timeoutMs: 1_000 });
    if (r.json?.header?.member_id !== undefined && r.json.leader === r.json.header.member_id) return e;
  }
  return undefined;
}

async function startCp(cp) {
  cp.child = startIn(cp.host.ns, NODE, [BIN, 'control-plane', '--config', path.join(cp.dir, 'cp.yaml')], `cp-${cp.host.name}`);
  if ((await waitFor(async () => (await cpHttp(cp, 'GET', '/healthz', { timeoutMs: 1_000 })).status === 200)) === undefined) {
    throw new Error(`control plane on ${cp.host.name} did not become healthy`);
  }
}
const cpInfo = async (cp) => (await cpHttp(cp, 'GET', '/api/version', { timeoutMs: 2_000 })).json;
/** The sidecars connected to `cp`: instance ids (those that register one) and the count of all. */
async function connectedTo(cp) {
  const list = (await api(cp, 'GET', '/api/sidecars')).json?.sidecars ?? [];
  return { ids: list.map((s) => s.instance?.id ?? ''), count: list.length };
}
/** Whether every sidecar in `group` is connected to `cp` (by id for instances, by count for callers). */
async function allOn(cp, group) {
  const { ids, count } = await connectedTo(cp);
  return count >= group.length && group.filter((s) => s.spec.inbound !== undefined).every((s) => ids.includes(s.spec.name));
}

async function startSidecar(s) {
  if (s.spec.app !== undefined) {
    s.appChild = startIn(s.spec.host.ns, NODE, ['-e', APP, String(s.spec.app), s.spec.host.name], `app-${s.spec.name}`);
  }
  s.child = startIn(s.spec.host.ns, NODE, [BIN, 'sidecar', '--config', s.file], `sidecar-${s.spec.name}`);
  const ready = await waitFor(async () => (await tryHttp('GET', `http://${s.spec.host.ip}:${s.spec.admin}/ready`, { timeoutMs: 1_000 })).status === 200);
  if (ready === undefined) throw new Error(`sidecar ${s.spec.name} did not become ready`);
}
async function stopSidecar(s) {
  await stopChild(s.child);
  if (s.appChild !== undefined) await stopChild(s.appChild);
}

const adminGet = async (s, p) => (await tryHttp('GET', `http://${s.spec.host.ip}:${s.spec.admin}${p}`, { timeoutMs: 2_000 })).json;
const callers = () => [...sidecars.values()].filter((s) => s.spec.service === 'web');
const inventoryAddress = (s) => `${s.spec.host.ip}:${s.spec.inbound}`;

/** Whether `address` is an eligible inventory endpoint in caller `s`. */
async function eligibleIn(s, address) {
  const clusters = (await adminGet(s, '/clusters'))?.clusters ?? [];
  const ep = clusters.find((c) => c.service === 'inventory')?.endpoints.find((e) => e.address === address);
  return ep?.eligible === true;
}
const everyCaller = async (pred) => (await Promise.all(callers().map(pred))).every(Boolean);

let policyChanges = 0;
/**
 * A policy change through `cp`'s API (a merge patch of inventory's timeout to a value not used before); returns
 * the ms from the API call until every sidecar in `reach` shows the new value in its admin /config, or a string
 * saying why not. An API answer other than 200 (503: etcd did not take the write within 5 s; the change stays
 * pending and is written once it does) is noted, and the time is still measured.
 */
async function policyChange(cp, reach, service = 'inventory') {
  policyChanges++;
  // As /config writes it back: "5.1s", "5.2s", ...
  const timeout = `${(5_000 + policyChanges * 100) / 1000}s`;
  const t0 = performance.now();
  // inventory's policy is patched (its other keys stay); web's (nobody calls web) is set whole.
  const r = await api(cp, service === 'inventory' ? 'PATCH' : 'PUT', `/api/services/${service}/policy`, { timeout });
  const applied = await waitFor(async () => {
    const configs = await Promise.all(reach.map((s) => adminGet(s, '/config?format=json')));
    return configs.every((c) => c?.services?.[service]?.timeout === timeout);
  });
  const note = r.status === 200 ? '' : ` (API ${r.status})`;
  return applied === undefined ? `> ${STEP_TIMEOUT_MS / 1000} s${note}` : note === '' ? since(t0) : `${since(t0)} ms${note}`;
}

/** CHAOS_DEBUG=1: what every caller holds for inventory and who is connected where. */
async function debugDump(label) {
  if (process.env.CHAOS_DEBUG !== '1') return;
  for (const c of callers()) {
    const cl = ((await adminGet(c, '/clusters'))?.clusters ?? []).find((x) => x.service === 'inventory');
    log(`  [${label}] ${c.spec.name}: ${JSON.stringify(cl?.endpoints.map((e) => [e.address, e.eligible, e.health]))}`);
  }
  for (const cp of cps.values()) log(`  [${label}] cp ${cp.host.name}: ${JSON.stringify(await connectedTo(cp))} ${JSON.stringify(await cpInfo(cp))}`);
}

// ---------------------------------------------------------------------------------------------
// Load: open loop, RPS_PER_CALLER idempotent GETs per second through each web sidecar's outbound listener

function startLoad() {
  const pools = callers().map((s) => ({ name: s.spec.name, pool: new Pool(`http://${s.spec.host.ip}:${s.spec.outbound}`, { connections: 64 }) }));
  const failures = [];
  const pending = [];
  let sent = 0;
  let failed = 0;
  let stopping = false;
  const t0 = performance.now();
  const one = async ({ name, pool }) => {
    try {
      const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'inventory' }, headersTimeout: 10_000, bodyTimeout: 10_000 });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode > 299) {
        failed++;
        failures.push(`${name}: ${res.statusCode} ${res.headers['x-outrigger-error'] ?? ''} at ${since(t0)} ms`);
      }
    } catch (err) {
      failed++;
      failures.push(`${name}: ${err.message} at ${since(t0)} ms`);
    }
  };
  let due = 0;
  const timer = setInterval(() => {
    if (stopping) return;
    const target = Math.floor((since(t0) / 1000) * RPS_PER_CALLER) + 1;
    while (due < target) {
      due++;
      for (const pool of pools) {
        sent++;
        pending.push(one(pool));
      }
    }
  }, 10);
  return async () => {
    stopping = true;
    clearInterval(timer);
    await Promise.all(pending);
    await Promise.all(pools.map((p) => p.pool.close()));
    return { sent, failed, failures };
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios: each returns { ejection, recovery, during, after, note } (times in ms, or strings)

const ms = (v) => (v === undefined ? `> ${STEP_TIMEOUT_MS / 1000} s` : v);
const all = () => [...sidecars.values()];

async function scenarioPartition() {
  const victim = HOSTS[1];
  const address = inventoryAddress(sidecars.get('inv-h2'));
  const t0 = performance.now();
  partition(victim);
  const ejection = ms(await waitFor(() => everyCaller((s) => eligibleIn(s, address).then((e) => !e))));
  const others = all().filter((s) => s.spec.host !== victim);
  const moved = (await waitFor(() => allOn(cps.get('h1'), others))) === undefined ? ms(undefined) : since(t0);
  await debugDump('cut');
  const during = await policyChange(cps.get('h1'), others);
  for (let i = 0; i < 3; i++) {
    await sleep(2_000);
    await debugDump(`cut +${since(t0)} ms`);
  }
  await sleep(Math.max(0, 8_000 - since(t0)));
  const t1 = performance.now();
  heal(victim);
  const recovery = ms(await waitFor(() => everyCaller((s) => eligibleIn(s, address))));
  // The cut-off replica is back in contact with etcd: a change made through it reaches everyone.
  await waitFor(async () => (await cpInfo(cps.get('h2')))?.version >= (await cpInfo(cps.get('h1')))?.version);
  const after = await policyChange(cps.get('h2'), all());
  const lostH1 = (fs.readFileSync(path.join(runDir, 'cp-h1.log'), 'utf8').match(/etcd: lost/g) ?? []).length;
  return { ejection, recovery, during, after, note: `the h1 replica ${lostH1 === 0 ? 'kept its contact with etcd' : `LOST etcd ${lostH1} time(s)`}; h2 cut for ${since(t0) - since(t1)} ms; h1/h3 sidecars on the h1 replica ${moved} ms after the cut; recovery counted from the heal` };
}

async function scenarioLeaderKill() {
  const infos = await Promise.all([...cps.values()].map(async (cp) => ({ cp, info: await cpInfo(cp) })));
  const leader = infos.find((x) => x.info?.leader === true)?.cp;
  if (leader === undefined) throw new Error('no control-plane replica leads');
  const survivor = [...cps.values()].find((cp) => cp !== leader);
  const t0 = performance.now();
  await stopChild(leader.child, 'SIGKILL');
  const moved = (await waitFor(() => allOn(survivor, all()))) === undefined ? ms(undefined) : since(t0);
  const during = await policyChange(survivor, all());
  const recovery = (await waitFor(async () => (await cpInfo(survivor))?.leader === true)) === undefined ? ms(undefined) : since(t0);
  const tRestart = performance.now();
  await startCp(leader);
  const rejoined = since(tRestart);
  const after = await policyChange(leader, all());
  return { ejection: '—', recovery, during, after, note: `killed the leader on ${leader.host.name}; every sidecar on ${survivor.host.name} ${moved} ms after; recovery: ${survivor.host.name} leads (ms after the kill); the killed replica served again ${rejoined} ms after its restart` };
}

async function scenarioEtcdKill() {
  const leaderMember = await etcdLeader();
  const victim = leaderMember ?? etcds.get('h3');
  const t0 = performance.now();
  const killedAt = new Date().getTime();
  await stopChild(victim.child, 'SIGKILL');
  const first = policyChange(cps.get('h1'), all());
  // A second change (of another service's policy, so the two do not overwrite each other), through the other
  // replica, once the remaining members have elected a leader (etcd's election timeout is 1 s).
  await sleep(Math.max(0, 2_000 - since(t0)));
  const laterAt = since(t0);
  const later = await policyChange(cps.get('h2'), all(), 'web');
  const during = await first;
  if (process.env.CHAOS_DEBUG === '1') {
    for (const cp of cps.values()) {
      const lines = fs.readFileSync(path.join(runDir, `cp-${cp.host.name}.log`), 'utf8').split('\n').filter((l) => l.includes('etcd'));
      for (const l of lines.slice(-12)) log(`  [cp ${cp.host.name}, +${new Date(JSON.parse(l).time).getTime() - killedAt} ms] ${l.slice(0, 300)}`);
    }
  }
  await sleep(Math.max(0, 3_000 - since(t0)));
  const tRestart = performance.now();
  startEtcd(victim);
  const recovery = ms(await waitFor(() => etcdHealthy(victim.host)));
  const after = await policyChange(cps.get('h2'), all());
  return { ejection: '—', recovery, during, after, note: `SIGKILLed ${leaderMember === undefined ? 'an etcd member (no leader found)' : "etcd's raft leader"} (member on ${victim.host.name}) for ${Math.round(tRestart - t0)} ms; the policy change "during" was made right after the kill, another one made ${laterAt} ms after the kill took ${fmtTime(later)}; recovery: the member healthy after its restart` };
}

async function scenarioRollingRestart() {
  const cp = cps.get('h1');
  let ejection = 0;
  let recovery = 0;
  let during = '';
  const instances = all().filter((s) => s.spec.service === 'inventory');
  for (const [i, s] of instances.entries()) {
    const address = inventoryAddress(s);
    const t0 = performance.now();
    const drained = await api(cp, 'POST', '/api/drain', { address });
    if (drained.status !== 200) throw new Error(`drain ${address}: ${drained.status} ${drained.text}`);
    const out = await waitFor(() => everyCaller((c) => eligibleIn(c, address).then((e) => !e)));
    ejection = Math.max(ejection, out ?? Infinity);
    await sleep(300); // requests in flight to it finish
    await stopSidecar(s);
    await startSidecar(s);
    const t1 = performance.now();
    const undrained = await api(cp, 'POST', '/api/undrain', { address });
    if (undrained.status !== 200) throw new Error(`undrain ${address}: ${undrained.status} ${undrained.text}`);
    const back = await waitFor(() => everyCaller((c) => eligibleIn(c, address)));
    recovery = Math.max(recovery, back ?? Infinity);
    if (i === 1) during = await policyChange(cps.get('h2'), all());
    log(`  ${s.spec.name}: out of every caller ${ms(out)} ms after the drain, restarted in ${Math.round(t1 - t0)} ms, back ${ms(back)} ms after the undrain`);
  }
  const after = await policyChange(cp, all());
  const fmt = (v) => (Number.isFinite(v) ? v : `> ${STEP_TIMEOUT_MS / 1000} s`);
  return { ejection: fmt(ejection), recovery: fmt(recovery), during, after, note: 'each instance: drained (ejection: until out of every caller), stopped, started, undrained (recovery: until back in every caller); worst of the three' };
}

async function scenarioHealed() {
  const healthy = await waitFor(async () => (await Promise.all(HOSTS.map(etcdHealthy))).every(Boolean));
  const leaders = (await Promise.all([...cps.values()].map(cpInfo))).filter((i) => i?.leader === true).length;
  const everywhere = await waitFor(() => everyCaller(async (c) => (await Promise.all(all().filter((s) => s.spec.service === 'inventory').map((s) => eligibleIn(c, inventoryAddress(s))))).every(Boolean)));
  const during = await policyChange(cps.get('h1'), all());
  await sleep(3_000);
  const after = await policyChange(cps.get('h2'), all());
  return { ejection: '—', recovery: '—', during, after, note: `etcd ${healthy === undefined ? 'NOT all healthy' : '3/3 healthy'}; ${leaders} leading replica(s); every instance eligible in every caller: ${everywhere === undefined ? 'no' : 'yes'}` };
}

// ---------------------------------------------------------------------------------------------
// Main

async function setUpMesh() {
  for (const h of HOSTS) {
    const dir = fs.mkdtempSync(path.join(runDir, `etcd-${h.name}-`));
    etcds.set(h.name, { host: h, dir, child: undefined });
  }
  for (const e of etcds.values()) startEtcd(e);
  if ((await waitFor(async () => (await Promise.all(HOSTS.map(etcdHealthy))).every(Boolean), 30_000)) === undefined) {
    throw new Error('the etcd cluster did not become healthy');
  }
  for (const h of HOSTS.slice(0, 2)) {
    const dir = fs.mkdtempSync(path.join(runDir, `cp-${h.name}-`));
    fs.writeFileSync(path.join(dir, 'cp.yaml'), cpYaml(h, dir));
    const cp = { host: h, dir, child: undefined };
    cps.set(h.name, cp);
    await startCp(cp);
  }
  const [cpA, cpB] = [HOSTS[0], HOSTS[1]];
  const specs = [
    { service: 'inventory', name: 'inv-h1', host: HOSTS[0], admin: 15000, outbound: 15001, inbound: 15006, app: 8080, cps: [cpA, cpB] },
    { service: 'inventory', name: 'inv-h2', host: HOSTS[1], admin: 15000, outbound: 15001, inbound: 15006, app: 8080, cps: [cpB, cpA] },
    { service: 'inventory', name: 'inv-h3', host: HOSTS[2], admin: 15000, outbound: 15001, inbound: 15006, app: 8080, cps: [cpA, cpB] },
    { service: 'web', name: 'web-h1', host: HOSTS[0], admin: 15100, outbound: 15101, outboundIp: HOSTS[0].ip, cps: [cpA, cpB] },
    { service: 'web', name: 'web-h3', host: HOSTS[2], admin: 15100, outbound: 15101, outboundIp: HOSTS[2].ip, cps: [cpB, cpA] },
  ];
  for (const spec of specs) {
    const file = path.join(runDir, `sidecar-${spec.name}.yaml`);
    fs.writeFileSync(file, sidecarYaml(spec));
    const s = { spec, file, child: undefined, appChild: undefined };
    sidecars.set(spec.name, s);
    await startSidecar(s);
  }
  const ready = await waitFor(() => everyCaller(async (c) => (await Promise.all(specs.filter((s) => s.service === 'inventory').map((s) => eligibleIn(c, `${s.host.ip}:${s.inbound}`)))).every(Boolean)), 30_000);
  if (ready === undefined) throw new Error('the callers never saw all three inventory instances eligible');
}

function printLogTails() {
  if (runDir === '' || !fs.existsSync(runDir)) return;
  for (const f of fs.readdirSync(runDir).filter((x) => x.endsWith('.log'))) {
    const lines = fs.readFileSync(path.join(runDir, f), 'utf8').trim().split('\n').slice(-12);
    if (lines.join('') !== '') log(`--- ${f} (last lines)\n${lines.join('\n')}`);
  }
}

const verdict = (v) => {
  const n = typeof v === 'number' ? v : Number(/^(\d+) ms/.exec(v)?.[1] ?? NaN);
  return `${typeof v === 'number' ? `${v} ms` : v} ${n <= GOAL_POLICY_MS ? 'PASS' : 'MISS'}`;
};
const fmtTime = (v) => (typeof v === 'number' ? `${v} ms` : v);

function table(rows) {
  const head = '| scenario | requests sent | failed | ejection | recovery | policy → every sidecar, during | policy → every sidecar, after |\n|---|---:|---:|---:|---:|---:|---:|';
  const body = rows.map((r) => `| ${r.name} | ${r.sent} | ${r.failed} | ${fmtTime(r.ejection)} | ${fmtTime(r.recovery)} | ${verdict(r.during)} | ${verdict(r.after)} |`);
  return [head, ...body].join('\n');
}

async function main() {
  preflight();
  const wall0 = performance.now();
  const limit = setTimeout(() => {
    process.stderr.write(`chaos:hosts: time limit of ${TIME_LIMIT_MS / 1000} s reached; cleaning up\n`);
    printLogTails();
    cleanup();
    process.exit(2);
  }, TIME_LIMIT_MS);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      process.stderr.write(`chaos:hosts: ${sig}; cleaning up\n`);
      cleanup();
      process.exit(130);
    });
  }
  cleanup({ quiet: false }); // leftovers of an aborted run
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), TMP_PREFIX));
  log(`chaos:hosts: 3 hosts in network namespaces on ${SUBNET}.0/24, etcd 3 members, 2 control-plane replicas, 3 inventory + 2 web sidecars`);
  setUpNetwork();
  await setUpMesh();
  log(`mesh up in ${since(wall0)} ms`);

  const scenarios = [
    ['partition h2, heal', scenarioPartition],
    ['kill the leading control plane, restart', scenarioLeaderKill],
    ['kill etcd\'s leader member, restart', scenarioEtcdKill],
    ['rolling restart of inventory', scenarioRollingRestart],
    ['healed (steady state)', scenarioHealed],
  ];
  const rows = [];
  const only = process.env.CHAOS_SCENARIOS?.split(',').map(Number); // e.g. CHAOS_SCENARIOS=3 while debugging
  for (const [i, [name, fn]] of scenarios.entries()) {
    if (only !== undefined && !only.includes(i + 1)) continue;
    log(`scenario: ${name}`);
    const stopLoad = startLoad();
    await sleep(1_500);
    let result;
    try {
      result = await fn();
    } finally {
      await sleep(1_500);
    }
    const load = await stopLoad();
    rows.push({ name, ...load, ...result });
    log(`  ${load.sent} sent, ${load.failed} failed; ${result.note}`);
    for (const f of load.failures.slice(0, 10)) log(`  failed: ${f}`);
  }
  clearTimeout(limit);
  const wall = Math.round((performance.now() - wall0) / 1000);
  const failed = rows.reduce((n, r) => n + r.failed, 0);
  const sent = rows.reduce((n, r) => n + r.sent, 0);
  const out = table(rows);
  log(`\n${out}\n`);
  log(`goals: zero failed idempotent requests (${failed === 0 ? 'PASS' : 'FAIL'}: ${failed} of ${sent}); policy changes on every sidecar within ${GOAL_POLICY_MS} ms while a majority of etcd is reachable (reported, not asserted); wall time ${wall} s`);

  const commit = run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { check: false }).stdout?.trim() ?? '?';
  const etcdVersion = /etcd Version: (\S+)/.exec(run(ETCD, ['--version'], { check: false }).stdout ?? '')?.[1] ?? '?';
  const machine = `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the end, Linux ${os.release()}, Node ${process.version}, etcd ${etcdVersion}${ETCD_ELECTION_MS === undefined ? "" : ` (--election-timeout ${ETCD_ELECTION_MS})`}`;
  const notes = rows.map((r) => `- **${r.name}**: ${r.note}.`).join('\n');
  fs.writeFileSync(
    REPORT,
    `# Multi-host chaos run (\`npm run chaos:hosts\`)\n\nThe latest run's table, written by scripts/chaos-hosts.mjs (docs/ha.md explains the setup).\n\n` +
      `Run ${new Date().toISOString()} at ${commit}; ${machine}; wall time ${wall} s. ` +
      `Load: ${RPS_PER_CALLER} GET/s through each of the two web sidecars, open loop. Policy times: from the API call until every sidecar that can be reached shows the change in its admin /config; goal ${GOAL_POLICY_MS} ms (PASS/MISS, not asserted).\n\n` +
      `${out}\n\n${notes}\n\nZero failed requests: ${failed === 0 ? 'PASS' : 'FAIL'} (${failed} of ${sent}).\n`,
  );
  log(`table written to ${path.relative(REPO, REPORT)}`);
  return failed === 0 ? 0 : 1;
}

async function runOnce() {
  try {
    return await main();
  } catch (err) {
    process.stderr.write(`chaos:hosts failed: ${err.stack ?? err}\n`);
    printLogTails();
    return 1;
  } finally {
    cleanup({ quiet: true });
  }
}
process.exit(await runOnce());
