// Outrigger control-plane scale benchmark: replicas on etcd, thousands of simulated sidecars.
//
// Started by bench/control-plane.mjs when it is given --replicas, --etcd or --sweep:
//
//   npm run bench:control-plane -- --replicas 3 --etcd                        # sweep 100,1000,3000,10000
//   npm run bench:control-plane -- --replicas 3 --etcd --sweep 100,1000 --changes 10
//
// For every sidecar count of the sweep (each a fresh step): a local etcd (/usr/bin/etcd, free loopback ports,
// a temporary data directory), R control-plane replicas as real processes (`store.etcd`, each with its own
// data directory; the mesh CA is generated once and shared through etcd, and each replica writes it beside
// its state), and W simulator processes (this file with --worker) that open the sidecar streams: sidecar i
// talks to replica i mod R, says Hello with its own instance and its subscriptions (the shared service
// svc-000 and two others), ACKs every snapshot and heartbeats every TTL/3. Then N weight changes of an
// endpoint of svc-000, one at a time, through replica 0's API: change-to-last-ACK is the time from just
// before the PUT until every simulated sidecar, on every replica, has ACKed a version >= the one the PUT
// returned. After the changes: VmRSS, RssAnon and VmHWM of every replica from /proc/PID/status.
//
// Bounded: each step has a timeout (--step-timeout), the whole run one more (--timeout). Every process started
// (etcd, replicas, simulators) is killed and every temporary directory removed at the end of a step, on a
// failure, on Ctrl-C and on the time limits.
import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuModel, decodeSnapshotHead, endpointAddress, fmt, freePorts, gitState, percentile, procStatusKb as statusKb, serviceName, sidecarAddress, signalGroup as killGroup, skip, tail as tailLines, varint } from './lib.mjs';

const tail = (file, lines = 15) => tailLines(file, lines);
const procStatusKb = (pid, key) => statusKb(pid, key, NaN);

const SELF = fileURLToPath(import.meta.url);
const BENCH_DIR = path.dirname(SELF);
const REPO_DIR = path.dirname(BENCH_DIR);
const WORK_DIR = path.join(BENCH_DIR, '.work');
const HOST = '127.0.0.1';
const BIN = path.join(REPO_DIR, 'bin', 'outrigger.js');
const GEN = path.join(REPO_DIR, 'dist', 'proto', 'gen', 'outrigger', 'v1', 'discovery.js');
const ETCD = process.env.OUTRIGGER_ETCD ?? '/usr/bin/etcd';
const SHARED = 0; // svc-000: every sidecar subscribes to it, every change is to it

const log = (msg) => process.stdout.write(`${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Wall-clock ms with sub-ms precision, comparable between the processes of this machine. */
const absNow = () => performance.timeOrigin + performance.now();
/** Sidecar i subscribes to the shared service and `subscriptions - 1` others. */
function subscriptionsOf(opts, i) {
  const out = [SHARED];
  for (let k = 1; out.length < opts.subscriptions; k++) {
    const s = 1 + ((i * 7 + k * 13) % (opts.services - 1));
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Options

export function scaleUsage() {
  return `Scale mode: node bench/control-plane.mjs --replicas N --etcd [options]

  --replicas N        control-plane replicas sharing one etcd (default 3)
  --etcd              keep the state in a local etcd (implied by --replicas/--sweep)
  --sweep LIST        sidecar counts, one step each (default 100,1000,3000,10000)
  --sidecars N        a single step of N sidecars (same as --sweep N)
  --services N        services in cp.yaml (default 50)
  --endpoints N       static endpoints per service (default 5)
  --subscriptions N   services each sidecar subscribes to, svc-000 included (default 3)
  --changes N         weight changes of svc-000 timed per step (default 20)
  --streams-per-worker N  sidecar streams per simulator process (default 2500)
  --streams-per-channel N streams per HTTP/2 connection (default 100)
  --ttl SEC           instanceTtl (default 30)
  --connect-rate N    new streams per second over the whole fleet while connecting (default 1000; 0 = all at once)
  --lease-ttl SEC     store.etcd.leaseTtl of the replicas (default 5, the control plane's default)
  --no-register       Hello with an empty address (subscribe only)
  --step-timeout SEC  abort a step after this long (default 300)
  --timeout SEC       abort the whole run after this long (default 1500)
  --out FILE          also write the results as JSON to FILE (always: bench/.work/control-plane-scale-last.json)
`;
}

export function wantsScale(argv) {
  return argv.some((a) => /^--(replicas|etcd|sweep|streams-per-worker|streams-per-channel|step-timeout)(=|$)/.test(a));
}

function parseArgs(argv) {
  const opts = {
    replicas: 3, sweep: [100, 1000, 3000, 10000], services: 50, endpoints: 5, subscriptions: 3, changes: 20,
    perWorker: 2500, perChannel: 100, ttlSec: 30, connectRate: 1000, leaseTtlSec: 5, register: true, stepTimeoutSec: 300, timeoutSec: 1500, out: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const raw = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (min) => {
      const v = Number(raw());
      if (!Number.isInteger(v) || v < min) throw new Error(`${flag} must be an integer >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--replicas': opts.replicas = int(1); break;
      case '--etcd': break;
      case '--sweep': opts.sweep = raw().split(',').map((s) => {
        const v = Number(s);
        if (!Number.isInteger(v) || v < 1) throw new Error('--sweep must be a comma-separated list of integers >= 1');
        return v;
      }); break;
      case '--sidecars': opts.sweep = [int(1)]; break;
      case '--services': opts.services = int(2); break;
      case '--endpoints': opts.endpoints = int(1); break;
      case '--subscriptions': opts.subscriptions = int(1); break;
      case '--changes': opts.changes = int(1); break;
      case '--streams-per-worker': opts.perWorker = int(1); break;
      case '--streams-per-channel': opts.perChannel = int(1); break;
      case '--ttl': opts.ttlSec = int(3); break;
      case '--connect-rate': opts.connectRate = int(0); break;
      case '--lease-ttl': opts.leaseTtlSec = int(2); break;
      case '--no-register': opts.register = false; break;
      case '--step-timeout': opts.stepTimeoutSec = int(10); break;
      case '--timeout': opts.timeoutSec = int(10); break;
      case '--out': opts.out = raw(); break;
      case '--help': case '-h': process.stdout.write(scaleUsage()); process.exit(0); break;
      default: throw new Error(`unknown option ${arg} in scale mode\n\n${scaleUsage()}`);
    }
  }
  if (opts.subscriptions > opts.services) throw new Error('--subscriptions cannot exceed --services');
  if (Math.max(...opts.sweep) > 250 * 256) throw new Error('at most 64,000 sidecars (198.19.0.0/16)');
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Processes: every child is tracked and killed (its process group) on the way out.

const children = new Set(); // { name, proc, pid, exited, exitInfo, done, logFile }
const tempDirs = new Set();
let interrupted = false;

function track(name, proc, logFile) {
  const c = { name, proc, pid: proc.pid, exited: false, exitInfo: null, logFile };
  c.done = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      c.exited = true;
      c.exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
      resolve();
    });
    proc.once('error', (err) => {
      c.exited = true;
      c.exitInfo = err.message;
      resolve();
    });
  });
  children.add(c);
  return c;
}

function startDetached(name, cmd, args, logFile, cwd) {
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(cmd, args, { cwd, env: process.env, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  return track(name, proc, logFile);
}


/** SIGTERM everything, SIGKILL after `graceMs`, remove the temporary directories. */
async function cleanup(graceMs = 3_000) {
  const all = [...children];
  for (const c of all) killGroup(c, 'SIGTERM');
  const timer = setTimeout(() => all.forEach((c) => killGroup(c)), graceMs);
  await Promise.all(all.map((c) => c.done));
  clearTimeout(timer);
  for (const c of all) {
    killGroup(c); // the rest of its group
    children.delete(c);
  }
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Copies the logs of a failed step (etcd, replicas, simulators) to bench/.work/control-plane-scale-failed-N/. */
function keepLogs(sidecars) {
  const dest = path.join(WORK_DIR, `control-plane-scale-failed-${sidecars}`);
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest, { recursive: true });
  for (const c of children) {
    if (c.logFile && fs.existsSync(c.logFile)) fs.copyFileSync(c.logFile, path.join(dest, `${c.name.replace(/\s+/g, '-')}.log`));
  }
  log(`  logs of the failed step: ${path.relative(REPO_DIR, dest)}/`);
}

function cleanupSync() {
  for (const c of children) killGroup(c);
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}



// ---------------------------------------------------------------------------------------------
// etcd and the replicas

async function startEtcd(dir) {
  const [client, peer] = await freePorts(2, HOST);
  const url = `http://${HOST}:${client}`;
  const dataDir = path.join(dir, 'etcd-data');
  const c = startDetached('etcd', ETCD, [
    '--name', 'bench', '--data-dir', dataDir,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://${HOST}:${peer}`, '--initial-advertise-peer-urls', `http://${HOST}:${peer}`,
    '--initial-cluster', `bench=http://${HOST}:${peer}`, '--initial-cluster-state', 'new', '--log-level', 'error',
  ], path.join(dir, 'etcd.log'), dir);
  const deadline = performance.now() + 30_000;
  for (;;) {
    if (c.exited) throw new Error(`etcd exited (${c.exitInfo}):\n${tail(c.logFile)}`);
    const ok = await fetch(`${url}/health`).then((r) => r.ok, () => false);
    if (ok) return { url, proc: c };
    if (performance.now() > deadline) throw new Error(`etcd did not become healthy within 30 s:\n${tail(c.logFile)}`);
    await sleep(100);
  }
}

function cpYaml(opts, r, grpcPort, httpPort, etcdUrl, token) {
  const lines = [
    `# Generated by bench/control-plane-scale.mjs: replica ${r}`,
    `listen: { grpc: ${HOST}:${grpcPort}, http: ${HOST}:${httpPort} }`,
    'store:',
    `  file: ${path.join(opts.dirOf(r), 'state.json')}`,
    `  etcd: { endpoints: [${etcdUrl}], leaseTtl: ${opts.leaseTtlSec}s }`,
    `instanceTtl: ${opts.ttlSec}s`,
    `auth: { tokens: [ { name: bench, secret: ${token}, role: admin } ] }`,
    'services:',
  ];
  for (let s = 0; s < opts.services; s++) {
    lines.push(`  ${serviceName(s)}:`, '    endpoints:');
    for (let e = 0; e < opts.endpoints; e++) lines.push(`      - { address: ${endpointAddress(opts, s, e)} }`);
  }
  return `${lines.join('\n')}\n`;
}

function api(replica, token, method, urlPath, body, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let ca;
    try {
      ca = fs.readFileSync(replica.caFile);
    } catch (err) {
      reject(err);
      return;
    }
    replica.agent ??= new https.Agent({ keepAlive: true, maxSockets: 2, ca });
    const headers = { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) };
    const req = https.request({ host: HOST, port: replica.httpPort, method, path: urlPath, agent: replica.agent, timeout: timeoutMs, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`${method} ${urlPath} on replica ${replica.index}: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
        else {
          try {
            resolve(JSON.parse(text));
          } catch {
            resolve(undefined);
          }
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A replica's /metrics (Prometheus text) → { name{labels}: value } for the lines whose name starts with `prefix`. */
function scrapeMetrics(replica, token, prefix = 'outrigger_cp_e', timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: HOST, port: replica.httpPort, method: 'GET', path: '/metrics', agent: replica.agent, timeout: timeoutMs, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const out = {};
        for (const line of Buffer.concat(chunks).toString('utf8').split('\n')) {
          if (!line.startsWith(prefix)) continue;
          const at = line.lastIndexOf(' ');
          out[line.slice(0, at)] = Number(line.slice(at + 1));
        }
        resolve(out);
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET /metrics: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** What a replica's metrics say of its etcd traffic and its event loop since it started. */
async function etcdMetrics(replica, token) {
  const m = await scrapeMetrics(replica, token);
  return {
    loopMaxMs: (m['outrigger_cp_event_loop_delay_seconds{quantile="max"}'] ?? NaN) * 1000,
    loopP99Ms: (m['outrigger_cp_event_loop_delay_seconds{quantile="0.99"}'] ?? NaN) * 1000,
    keepaliveGapMaxMs: (m.outrigger_cp_etcd_keepalive_gap_max_seconds ?? NaN) * 1000,
    txns: m.outrigger_cp_etcd_txns_total ?? NaN,
    txnOps: m.outrigger_cp_etcd_txn_ops_total ?? NaN,
    watchResponses: m.outrigger_cp_etcd_watch_responses_total ?? NaN,
    watchEvents: m.outrigger_cp_etcd_watch_events_total ?? NaN,
    contactLost: m.outrigger_cp_etcd_contact_lost_total ?? NaN,
  };
}

async function waitHealthy(replica, token, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (replica.proc.exited) throw new Error(`replica ${replica.index} exited (${replica.proc.exitInfo}):\n${tail(replica.proc.logFile)}`);
    try {
      await api(replica, token, 'GET', '/healthz', undefined, 2_000);
      return;
    } catch {
      replica.agent?.destroy();
      replica.agent = undefined;
    }
    if (performance.now() > deadline) throw new Error(`replica ${replica.index} did not answer /healthz within ${timeoutMs} ms:\n${tail(replica.proc.logFile)}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Simulator processes (this file with --worker), driven over IPC

function startWorker(index, dir) {
  const logFile = path.join(dir, `sim-${index}.log`);
  const fd = fs.openSync(logFile, 'w');
  const proc = fork(SELF, ['--worker'], { stdio: ['ignore', fd, fd, 'ipc'], execArgv: ['--max-old-space-size=2048'] });
  fs.closeSync(fd);
  const c = track(`simulator ${index}`, proc, logFile);
  proc.on('error', () => undefined); // a message to a simulator that just died: its exit is what counts
  const w = { index, c, proc, handlers: new Map(), error: null };
  proc.on('message', (m) => {
    if (m.t === 'fatal') {
      w.error ??= m.msg;
      return;
    }
    const h = w.handlers.get(m.t);
    if (h) h(m);
  });
  return w;
}

/** Sends `msg` and resolves with the worker's reply of type `reply` (which carries the same `id`). */
let nextId = 1;
function ask(w, msg, reply, timeoutMs) {
  const id = nextId++;
  let timer;
  let check;
  return new Promise((resolve, reject) => {
    if (w.error) {
      reject(new Error(`simulator ${w.index}: ${w.error}`));
      return;
    }
    timer = setTimeout(() => reject(new Error(`simulator ${w.index}: no '${reply}' within ${timeoutMs} ms`)), timeoutMs);
    check = setInterval(() => {
      if (w.error) reject(new Error(`simulator ${w.index}: ${w.error}`));
      else if (w.c.exited) reject(new Error(`simulator ${w.index} exited (${w.c.exitInfo}):\n${tail(w.c.logFile)}`));
    }, 100);
    w.handlers.set(reply, (m) => {
      if (m.id === id) resolve(m);
    });
    w.proc.send({ ...msg, id });
  }).finally(() => {
    // Whichever way it ended: nothing of it may keep the process alive.
    clearTimeout(timer);
    clearInterval(check);
  });
}

// ---------------------------------------------------------------------------------------------
// One sweep step

async function runStep(opts, sidecars, token) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outrigger-cp-scale-'));
  tempDirs.add(dir);
  const stepOpts = { ...opts, dirOf: (r) => path.join(dir, `replica-${r}`) };
  const step = { sidecars, replicas: opts.replicas, ok: false };
  const t0 = performance.now();
  const etcd = await startEtcd(dir);
  log(`  etcd ${etcd.url} (pid ${etcd.proc.pid})`);
  const replicas = [];
  for (let r = 0; r < opts.replicas; r++) {
    fs.mkdirSync(stepOpts.dirOf(r));
    const [grpcPort, httpPort] = await freePorts(2, HOST);
    const configFile = path.join(stepOpts.dirOf(r), 'cp.yaml');
    fs.writeFileSync(configFile, cpYaml(stepOpts, r, grpcPort, httpPort, etcd.url, token));
    const proc = startDetached(`replica ${r}`, process.execPath, [BIN, 'control-plane', '--config', configFile], path.join(stepOpts.dirOf(r), 'control-plane.log'), stepOpts.dirOf(r));
    replicas.push({ index: r, grpcPort, httpPort, proc, caFile: path.join(stepOpts.dirOf(r), 'mesh-ca.crt'), agent: undefined });
  }
  await Promise.all(replicas.map((rep) => waitHealthy(rep, token, 60_000)));
  step.readyMs = performance.now() - t0;
  step.idle = replicas.map((rep) => ({ rssKb: procStatusKb(rep.proc.pid, 'VmRSS'), anonKb: procStatusKb(rep.proc.pid, 'RssAnon') }));
  const caPem = fs.readFileSync(replicas[0].caFile, 'utf8');
  for (const rep of replicas.slice(1)) {
    if (fs.readFileSync(rep.caFile, 'utf8') !== caPem) throw new Error(`replica ${rep.index} wrote another mesh CA than replica 0: the CA is not shared`);
  }
  log(`  ${opts.replicas} replicas ready in ${Math.round(step.readyMs)} ms (one mesh CA), pids ${replicas.map((r) => r.proc.pid).join(' ')}`);

  // Simulators: sidecars [from, to) each.
  const nWorkers = Math.ceil(sidecars / opts.perWorker);
  const workers = [];
  for (let k = 0; k < nWorkers; k++) workers.push(startWorker(k, dir));
  const tConnect = absNow();
  const connecting = Promise.all(workers.map((w, k) => {
    const from = Math.floor((k * sidecars) / nWorkers);
    const to = Math.floor(((k + 1) * sidecars) / nWorkers);
    return ask(w, {
      t: 'start', from, to, caPem, token, ttlSec: opts.ttlSec, rate: opts.connectRate / nWorkers, register: opts.register, perChannel: opts.perChannel,
      targets: replicas.map((rep) => `${HOST}:${rep.grpcPort}`),
      subs: Array.from({ length: to - from }, (_, j) => subscriptionsOf(opts, from + j).map(serviceName)),
    }, 'ready', opts.stepTimeoutSec * 1000);
  }));
  let startReplies;
  try {
    startReplies = await connecting;
  } catch (err) {
    // What the replicas measured up to the failure (a replica starved of CPU answers late or not at all).
    err.etcd = await Promise.all(replicas.map((rep) => etcdMetrics(rep, token).catch(() => undefined)));
    log(`  at the failure, per replica: ${err.etcd.map((e) => (e === undefined ? 'no metrics' : `event-loop delay max ${fmt(e.loopMaxMs, 0)} ms, longest keepalive gap ${fmt(e.keepaliveGapMaxMs, 0)} ms, ${e.txns} txns (${e.txnOps} ops), ${e.watchResponses} watch responses (${e.watchEvents} events), contact lost ${e.contactLost}`)).join('; ')}`);
    throw err;
  }
  step.allAckedMs = Math.max(...startReplies.map((m) => m.lastFirstAckAt)) - tConnect;
  log(`  ${sidecars} streams over ${nWorkers} simulator process(es) ACKed their first snapshot after ${Math.round(step.allAckedMs)} ms`);
  // Settle: registrations move versions without pushes; wait until no snapshot for 1 s anywhere.
  for (let waited = 0; ; waited++) {
    const st = await Promise.all(workers.map((w) => ask(w, { t: 'stat' }, 'stat', 10_000)));
    if (absNow() - Math.max(...st.map((s) => s.lastSnapshotAt)) >= 1_000) break;
    if (waited > 120) throw new Error('the fleet did not settle within about 60 s');
    await sleep(500);
  }
  const counts = await Promise.all(replicas.map((rep) => api(rep, token, 'GET', '/api/sidecars', undefined, 30_000).then((r) => r.sidecars.length)));
  step.sidecarsPerReplica = counts;
  log(`  settled; sidecars seen per replica: ${counts.join(' / ')}`);
  step.etcdConnect = await Promise.all(replicas.map((rep) => etcdMetrics(rep, token)));
  log(`  while connecting, per replica: event-loop delay max ${step.etcdConnect.map((e) => fmt(e.loopMaxMs, 0)).join(' / ')} ms (p99 ${step.etcdConnect.map((e) => fmt(e.loopP99Ms, 0)).join(' / ')} ms), ` +
    `longest keepalive gap ${step.etcdConnect.map((e) => fmt(e.keepaliveGapMaxMs, 0)).join(' / ')} ms, etcd txns ${step.etcdConnect.map((e) => e.txns).join(' / ')} ` +
    `(ops ${step.etcdConnect.map((e) => e.txnOps).join(' / ')}), watch responses ${step.etcdConnect.map((e) => e.watchResponses).join(' / ')} (events ${step.etcdConnect.map((e) => e.watchEvents).join(' / ')}), contact lost ${step.etcdConnect.map((e) => e.contactLost).join(' / ')}`);

  // Timed changes through replica 0.
  const changes = [];
  let weight = 2;
  for (let n = 0; n < opts.changes; n++) {
    if (interrupted) throw new Error('interrupted');
    await Promise.all(workers.map((w) => ask(w, { t: 'arm' }, 'armed', 10_000)));
    const ep = n % opts.endpoints;
    weight = weight >= 900 ? 2 : weight + 37;
    const address = endpointAddress(opts, SHARED, ep);
    const tStart = absNow();
    const res = await api(replicas[0], token, 'PUT', `/api/services/${serviceName(SHARED)}/weights/${encodeURIComponent(address)}`, { weight });
    const putMs = absNow() - tStart;
    const V = Number(res.version);
    let convergenceMs = Infinity;
    let pending = 0;
    try {
      const done = await Promise.all(workers.map((w) => ask(w, { t: 'watch', version: V }, 'done', 30_000)));
      convergenceMs = Math.max(...done.map((d) => d.lastAt)) - tStart;
    } catch (err) {
      const st = await Promise.all(workers.map((w) => ask(w, { t: 'stat', version: V }, 'stat', 10_000)));
      pending = st.reduce((a, s) => a + s.pending, 0);
      log(`    change ${n + 1}: ${err.message}; ${pending} sidecar(s) had not ACKed version ${V}`);
    }
    changes.push({ n: n + 1, version: V, putMs, convergenceMs, pending });
    log(`    #${String(n + 1).padStart(2)} v${V}: PUT ${putMs.toFixed(1)} ms, last of ${sidecars} ACKs after ${Number.isFinite(convergenceMs) ? convergenceMs.toFixed(1) : 'timeout'} ms`);
    await sleep(300);
  }
  step.changes = changes;
  step.memory = replicas.map((rep) => ({
    rssKb: procStatusKb(rep.proc.pid, 'VmRSS'), anonKb: procStatusKb(rep.proc.pid, 'RssAnon'), hwmKb: procStatusKb(rep.proc.pid, 'VmHWM'),
  }));
  const wst = await Promise.all(workers.map((w) => ask(w, { t: 'stat' }, 'stat', 10_000)));
  step.simulatorRssKb = workers.map((w) => procStatusKb(w.proc.pid, 'VmRSS'));
  step.streamErrors = wst.reduce((a, s) => a + s.errors, 0);
  const conv = changes.map((c) => c.convergenceMs).sort((a, b) => a - b);
  step.p50Ms = percentile(conv, 0.5);
  step.p99Ms = percentile(conv, 0.99);
  step.maxMs = conv.at(-1);
  step.timeouts = changes.filter((c) => !Number.isFinite(c.convergenceMs)).length;
  step.ok = step.timeouts === 0 && step.streamErrors === 0;
  step.load = os.loadavg()[0];
  for (const w of workers) w.proc.send({ t: 'close' });
  for (const rep of replicas) rep.agent?.destroy();
  return step;
}


const mb = (kb) => fmt(kb / 1024, 0);

export function tableRows(steps) {
  return steps.map((s) => [
    String(s.sidecars), String(s.replicas), s.ok ? fmt(s.p50Ms, 0) : s.p50Ms ? fmt(s.p50Ms, 0) : 'failed', s.ok || s.p99Ms ? fmt(s.p99Ms, 0) : 'failed',
    s.memory ? s.memory.map((m) => mb(m.rssKb)).join(' / ') : '–',
    s.memory ? s.memory.map((m) => mb(m.anonKb)).join(' / ') : '–',
    s.idle ? s.idle.map((m) => mb(m.rssKb)).join(' / ') : '–',
    fmt(s.allAckedMs, 0),
    s.error ? `failed: ${s.error.split('\n')[0].slice(0, 120)}` : `${s.changes?.length ?? 0} changes, ${s.timeouts ?? 0} timeouts, ${s.streamErrors ?? 0} stream errors`,
  ]);
}

export const TABLE_HEADER = ['sidecars', 'replicas', 'p50 ms', 'p99 ms', 'RSS MB per replica', 'RssAnon MB per replica', 'idle RSS MB', 'connect ms', 'notes'];

// ---------------------------------------------------------------------------------------------

export async function runScale(argv) {
  const opts = parseArgs(argv);
  if (!fs.existsSync(GEN)) throw new Error('dist/ is missing: run `npm run build` first (npm run bench:control-plane does)');
  if (!fs.existsSync(ETCD)) throw new Error(`no etcd at ${ETCD} (Debian's etcd-server; or set OUTRIGGER_ETCD)`);
  const token = randomBytes(24).toString('base64url');
  const { commit, dirty } = gitState(REPO_DIR);
  const machine = {
    date: new Date().toISOString(), nproc: os.availableParallelism(), cpu: cpuModel(), memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version, loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '), commit: `${commit}${dirty ? ' (with uncommitted changes)' : ''}`,
  };
  log(`Outrigger control-plane scale bench | ${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}, load ${machine.loadavg}`);
  log(`${opts.replicas} replica(s) on etcd, sweep ${opts.sweep.join(', ')} sidecars, ${opts.changes} changes per step`);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`\nReceived ${sig}: stopping every process.`);
      cleanup(1_000).finally(() => process.exit(130));
    });
  }
  process.on('exit', cleanupSync);
  const overall = setTimeout(() => {
    log(`\nAborting: the run took longer than ${opts.timeoutSec} s.`);
    cleanupSync();
    process.exit(1);
  }, opts.timeoutSec * 1000);

  const steps = [];
  try {
    for (const sidecars of opts.sweep) {
      log(`\nstep: ${sidecars} sidecars, ${opts.replicas} replicas`);
      let timer;
      let step;
      try {
        step = await Promise.race([
          runStep(opts, sidecars, token),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`the step took longer than ${opts.stepTimeoutSec} s`)), opts.stepTimeoutSec * 1000);
          }),
        ]);
      } catch (err) {
        if (interrupted) throw err;
        step = { sidecars, replicas: opts.replicas, ok: false, error: err.message, ...(err.etcd ? { etcdConnect: err.etcd } : {}) };
        log(`  step failed: ${err.message}`);
        keepLogs(sidecars);
      } finally {
        clearTimeout(timer);
        await cleanup();
      }
      steps.push(step);
      if (step.ok) log(`  => p50 ${fmt(step.p50Ms, 1)} ms, p99 ${fmt(step.p99Ms, 1)} ms, RSS ${step.memory.map((m) => mb(m.rssKb)).join('/')} MB, RssAnon ${step.memory.map((m) => mb(m.anonKb)).join('/')} MB`);
      if (!step.ok && step.error) break; // larger steps would not do better
    }
  } finally {
    clearTimeout(overall);
  }
  const result = { machine, opts: { ...opts, dirOf: undefined }, steps };
  const json = `${JSON.stringify(result, (k, v) => (v === Infinity ? 'timeout' : v), 2)}\n`;
  fs.mkdirSync(WORK_DIR, { recursive: true });
  fs.writeFileSync(path.join(WORK_DIR, 'control-plane-scale-last.json'), json);
  if (opts.out) fs.writeFileSync(opts.out, json);
  const widths = TABLE_HEADER.map((h, i) => Math.max(h.length, ...tableRows(steps).map((r) => r[i].length)));
  log(`\n${[TABLE_HEADER, ...tableRows(steps)].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n')}`);
  log(`\nWrote bench/.work/control-plane-scale-last.json${opts.out ? ` and ${opts.out}` : ''}`);
  if (steps.some((s) => !s.ok)) process.exitCode = 1;
}

// ---------------------------------------------------------------------------------------------
// The simulator (child process): holds many sidecar streams.



/** Only what an ACK needs: the snapshot's version and nonce (and its instance TTL). */
function lightDecode(buf) {
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p] = varint(buf, pos);
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const [len, q] = varint(buf, p);
      return decodeSnapshotHead(buf.subarray(q, q + len));
    }
    pos = skip(buf, p, tag & 7);
  }
  return undefined;
}

async function worker() {
  const { credentials, Metadata } = await import('@grpc/grpc-js');
  const gen = await import(pathToFileURL(GEN).href);
  const { DiscoveryClient, DiscoveryService } = gen;
  const method = DiscoveryService.stream;
  const send = (m) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  let streams = [];
  let clients = [];
  let closing = false;
  let lastSnapshotAt = 0;
  let errors = 0;
  let watch = null; // { V, pending: Set, lastAt, id }
  let heartbeatTimer;

  const start = (m) => {
    const n = m.to - m.from;
    const perTarget = m.targets.map(() => []);
    for (let j = 0; j < n; j++) perTarget[(m.from + j) % m.targets.length].push(j);
    const channelsOf = m.targets.map((target, r) => {
      const count = Math.max(1, Math.ceil(perTarget[r].length / m.perChannel));
      return Array.from({ length: count }, () => new DiscoveryClient(target, credentials.createSsl(Buffer.from(m.caPem)), {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.keepalive_time_ms': 60_000,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }));
    });
    clients = channelsOf.flat();
    let firstAcked = 0;
    let lastFirstAckAt = 0;
    const open = (j) => {
      const i = m.from + j;
      const r = i % m.targets.length;
      const chans = channelsOf[r];
      const client = chans[Math.floor(j / m.targets.length) % chans.length];
      const metadata = new Metadata();
      metadata.set('authorization', `Bearer ${m.token}`);
      const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, lightDecode, metadata);
      const st = { i, call, version: 0, first: true, log: [], next: Infinity, every: 0 };
      streams.push(st);
      call.on('data', (snap) => {
        if (snap === undefined) return;
        const t = absNow();
        call.write({ msg: { $case: 'ack', ack: { version: snap.version, nonce: snap.nonce } } });
        const v = Number(snap.version);
        lastSnapshotAt = t;
        st.version = v;
        st.log.push(v, t);
        if (st.first) {
          st.first = false;
          st.every = (snap.instanceTtlMs > 0 ? snap.instanceTtlMs : m.ttlSec * 1000) / 3;
          st.next = performance.now() + ((i * 7919) % 1000) / 1000 * st.every;
          lastFirstAckAt = t;
          if (++firstAcked === n) send({ t: 'ready', id: m.id, lastFirstAckAt });
        }
        if (watch && v >= watch.V && watch.pending.delete(st)) {
          watch.lastAt = Math.max(watch.lastAt, t);
          if (watch.pending.size === 0) {
            send({ t: 'done', id: watch.id, lastAt: watch.lastAt });
            watch = null;
          }
        }
      });
      const failed = (what) => {
        if (closing) return;
        errors++;
        send({ t: 'fatal', msg: `sidecar ${i}: ${what}` });
      };
      call.on('error', (err) => failed(err.message));
      call.on('end', () => failed('the control plane ended the stream'));
      const instance = { service: `sim-${i}`, id: `sim-${i}-15006`, address: m.register ? sidecarAddress(i) : '', weight: 0, capacity: 0, zone: '', mtls: 'off' };
      call.write({ msg: { $case: 'hello', hello: { instance, subscriptions: m.subs[j], lastVersion: '' } } });
    };
    // At most m.rate new streams per second (in batches every 100 ms), as a fleet that does not start in
    // one instant; rate 0: all at once.
    if (!(m.rate > 0)) for (let j = 0; j < n; j++) open(j);
    else {
      let j = 0;
      const batch = Math.max(1, Math.round(m.rate / 10));
      const ramp = setInterval(() => {
        for (let k = 0; k < batch && j < n; k++) open(j++);
        if (j >= n) clearInterval(ramp);
      }, 100);
    }
    heartbeatTimer = setInterval(() => {
      const now = performance.now();
      for (const st of streams) {
        if (now < st.next) continue;
        st.call.write({ msg: { $case: 'heartbeat', heartbeat: {} } });
        st.next += st.every;
      }
    }, 250);
  };

  process.on('message', (m) => {
    switch (m.t) {
      case 'start':
        start(m);
        break;
      case 'arm':
        for (const st of streams) st.log.length = 0;
        send({ t: 'armed', id: m.id });
        break;
      case 'watch': {
        const w = { V: m.version, pending: new Set(), lastAt: 0, id: m.id };
        for (const st of streams) {
          let hit = false;
          for (let k = 0; k < st.log.length; k += 2) {
            if (st.log[k] >= w.V) {
              w.lastAt = Math.max(w.lastAt, st.log[k + 1]);
              hit = true;
              break;
            }
          }
          if (!hit) w.pending.add(st);
        }
        if (w.pending.size === 0) send({ t: 'done', id: m.id, lastAt: w.lastAt });
        else watch = w;
        break;
      }
      case 'stat':
        send({ t: 'stat', id: m.id, lastSnapshotAt, errors, pending: m.version === undefined ? 0 : streams.filter((s) => s.version < m.version).length });
        break;
      case 'close':
        closing = true;
        clearInterval(heartbeatTimer);
        for (const st of streams) st.call.cancel();
        for (const c of clients) c.close();
        streams = [];
        setTimeout(() => process.exit(0), 200);
        break;
      default:
        break;
    }
  });
}

if (process.argv[2] === '--worker') {
  worker().catch((err) => {
    process.stderr.write(`simulator failed: ${err.stack ?? err}\n`);
    process.exit(1);
  });
}
