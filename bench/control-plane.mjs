// Outrigger control-plane benchmark: push convergence and footprint with many simulated sidecars.
//
// Starts `outrigger control-plane` as a child process with a generated cp.yaml (200 services × 25 static
// endpoints by default), opens 1,000 Discovery streams from this process the way sidecars do (Hello with
// subscriptions, ACK for every Snapshot, heartbeats every TTL/3), then changes one endpoint weight at a
// time through the admin API and measures how long it takes until every sidecar subscribed to that
// service has ACKed the new version.
//
//   npm run bench:control-plane                            # build, then the default run
//   npm run bench:control-plane -- --changes 10 --sidecars 500
//   CP_BENCH_PROFILE=1 npm run bench:control-plane         # also a CPU profile of the control plane
//   npx node bench/control-plane.mjs --help                # all options (needs the build and Node 24)
//   npm run bench:control-plane -- --replicas 3 --etcd     # scale mode: replicas on etcd, a sweep of sidecar
//                                                          # counts up to 10,000 (bench/control-plane-scale.mjs)
//
// Everything is on 127.0.0.1; the control plane is a child in its own process group and is killed on
// exit, on error, on Ctrl-C and when the overall time limit (default 180 s) runs out.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { credentials, Metadata } from '@grpc/grpc-js';
import { cpuModel, decodeSnapshotHead, endpointAddress, fmt, freePorts, gitState, percentile, procStatusKb as statusKb, serviceName, sidecarAddress, signalGroup, skip, tail as tailLines, varint } from './lib.mjs';

const tail = (file, lines = 20) => tailLines(file, lines);
const procStatusKb = (pid, key) => statusKb(pid, key, 0);
import { runScale, scaleUsage, wantsScale } from './control-plane-scale.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.dirname(BENCH_DIR);
const WORK_DIR = path.join(BENCH_DIR, '.work');
const RUN_DIR = path.join(WORK_DIR, 'control-plane');
const HOST = '127.0.0.1';
const BIN = path.join(REPO_DIR, 'bin', 'outrigger.js');
const GEN = path.join(REPO_DIR, 'dist', 'proto', 'gen', 'outrigger', 'v1', 'discovery.js');
// The control plane runs as it does by default: tokens required, both listeners TLS with a certificate from
// its mesh CA (generated beside its state). This process holds an admin token (it may open streams as any
// service) and pins that CA, as a sidecar with controlPlane.caFile does.
const TOKEN = randomBytes(24).toString('base64url');
const CA_FILE = path.join(RUN_DIR, 'mesh-ca.crt');
const caPem = () => fs.readFileSync(CA_FILE);

// Targets (informational: they print PASS/MISS, they do not fail the run).
const GOALS = { p99Ms: 1000, rssMb: 300 };

const log = (msg) => process.stdout.write(`${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Options

function usage() {
  return `Usage: node bench/control-plane.mjs [options]   (normally: npm run bench:control-plane -- [options])

  --services N        services in cp.yaml (default 200)
  --endpoints N       static endpoints per service (default 25)
  --sidecars N        simulated sidecar streams (default 1000)
  --subscriptions N   services each sidecar subscribes to (default 5)
  --channels N        gRPC channels (HTTP/2 connections) the streams are spread over (default 20)
  --changes N         weight changes to time (default 30)
  --quiet-ms N        no snapshot for this long = quiet; waited for between changes (default 200)
  --ttl SEC           instanceTtl in cp.yaml (default 30)
  --no-register       Hello with an empty address (sidecars subscribe only, register no instance)
  --full-decode       decode every Snapshot with the generated decoder (default: read only version/nonce)
  --profile           run the control plane with --cpu-prof and print its top functions
                      (same as CP_BENCH_PROFILE=1)
  --seed N            seed of the change sequence (default 1)
  --timeout SEC       abort the whole run after this long (default 180)
  --help              this text

${scaleUsage()}`;
}

function parseArgs(argv) {
  const opts = {
    services: 200, endpoints: 25, sidecars: 1000, subscriptions: 5, channels: 20, changes: 30, quietMs: 200,
    ttlSec: 30, register: true, fullDecode: false, profile: process.env.CP_BENCH_PROFILE === '1', seed: 1, timeoutSec: 180,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const int = (min) => {
      const raw = inline ?? argv[++i];
      const v = Number(raw);
      if (raw === undefined || !Number.isInteger(v) || v < min) throw new Error(`${flag} must be an integer >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--services': opts.services = int(1); break;
      case '--endpoints': opts.endpoints = int(1); break;
      case '--sidecars': opts.sidecars = int(1); break;
      case '--subscriptions': opts.subscriptions = int(1); break;
      case '--channels': opts.channels = int(1); break;
      case '--changes': opts.changes = int(1); break;
      case '--quiet-ms': opts.quietMs = int(10); break;
      case '--ttl': opts.ttlSec = int(3); break;
      case '--no-register': opts.register = false; break;
      case '--full-decode': opts.fullDecode = true; break;
      case '--profile': opts.profile = true; break;
      case '--seed': opts.seed = int(0); break;
      case '--timeout': opts.timeoutSec = int(10); break;
      case '--help': case '-h': process.stdout.write(usage()); process.exit(0); break;
      default: throw new Error(`unknown option ${arg}\n\n${usage()}`);
    }
  }
  if (opts.subscriptions > opts.services) throw new Error('--subscriptions cannot exceed --services');
  if (opts.services * opts.endpoints > 250 * 256) throw new Error('at most 64,000 static endpoints (198.18.0.0/16)');
  if (opts.sidecars > 250 * 256) throw new Error('at most 64,000 sidecars (198.19.0.0/16)');
  return opts;
}

// ---------------------------------------------------------------------------------------------
// The simulated fleet's shape. Addresses are in 198.18.0.0/15 (benchmark range): nothing dials them.

/** Static endpoint e of service s: 198.18.0.0/16. */
/** Sidecar i's own (registered) instance: 198.19.0.0/16. */
/**
 * The services sidecar i subscribes to: i, i + step, i + 2·step, ... (mod services), step = services /
 * subscriptions. With the defaults every service has exactly sidecars × subscriptions / services = 25
 * subscribers.
 */
function subscriptionsOf(opts, i) {
  const step = Math.max(1, Math.floor(opts.services / opts.subscriptions));
  const out = new Set();
  for (let k = 0; out.size < opts.subscriptions; k++) out.add((i + k * step + Math.floor(k / opts.subscriptions)) % opts.services);
  return [...out];
}

function cpYaml(opts, grpcPort, httpPort) {
  const lines = [
    '# Generated by bench/control-plane.mjs',
    `listen: { grpc: ${HOST}:${grpcPort}, http: ${HOST}:${httpPort} }`,
    `store: { file: ${path.join(RUN_DIR, 'state.json')} }`,
    `instanceTtl: ${opts.ttlSec}s`,
    `auth: { tokens: [ { name: bench, secret: ${TOKEN}, role: admin } ] }`,
    'services:',
  ];
  for (let s = 0; s < opts.services; s++) {
    lines.push(`  ${serviceName(s)}:`, '    endpoints:');
    for (let e = 0; e < opts.endpoints; e++) lines.push(`      - { address: ${endpointAddress(opts, s, e)} }`);
  }
  return `${lines.join('\n')}\n`;
}

/** mulberry32: a small seeded PRNG, so the change sequence is the same on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// Processes, /proc and ports

function run(cmd, args) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
}


let child = null; // { proc, pid, logFile, exited, exitInfo, done }
let interrupted = false;
let shuttingDown = false; // streams ending from here on are expected

function startControlPlane(args) {
  const logFile = path.join(RUN_DIR, 'control-plane.log');
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(process.execPath, args, { cwd: RUN_DIR, env: process.env, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const c = { proc, pid: proc.pid, logFile, exited: false, exitInfo: null };
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
  child = c;
  return c;
}


/** SIGTERM (the control plane stops cleanly and writes its CPU profile), SIGKILL after `graceMs`. */
async function stopControlPlane(graceMs = 10_000) {
  const c = child;
  if (!c || c.exited) return;
  signalGroup(c, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(c, 'SIGKILL'), graceMs);
  await c.done;
  clearTimeout(timer);
  try {
    process.kill(-c.pid, 'SIGKILL');
  } catch {
    // group empty
  }
}

process.on('exit', () => signalGroup(child, 'SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    shuttingDown = true;
    log(`\nReceived ${sig}: stopping the control plane.`);
    signalGroup(child, 'SIGTERM');
    setTimeout(() => process.exit(130), 1_000).unref();
  });
}



const CLK_TCK = Number(run('getconf', ['CLK_TCK']).stdout?.trim()) || 100;

/** utime + stime of `pid`, in seconds. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** This process's CPU time in seconds. */
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Monotonic µs, on the clock V8's CPU profiles use (CLOCK_MONOTONIC), for cutting the profile into phases. */
const monoUs = () => Number(process.hrtime.bigint() / 1000n);

// ---------------------------------------------------------------------------------------------
// Admin API (one keep-alive connection)

let agent; // an https.Agent pinned to the CA, made once the control plane wrote it

function api(port, method, urlPath, body, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    agent ??= new https.Agent({ keepAlive: true, maxSockets: 2, ca: caPem() });
    const headers = { authorization: `Bearer ${TOKEN}`, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) };
    const req = https.request(
      { host: HOST, port, method, path: urlPath, agent, timeout: timeoutMs, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          if (res.statusCode !== 200) reject(new Error(`${method} ${urlPath}: HTTP ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(json);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

async function waitHealthy(port, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (child?.exited) throw new Error(`the control plane exited (${child.exitInfo}):\n${tail(child.logFile)}`);
    try {
      await api(port, 'GET', '/healthz', undefined, 1_000);
      return;
    } catch {
      // not yet
    }
    if (performance.now() > deadline) throw new Error(`the control plane did not answer /healthz within ${timeoutMs} ms:\n${tail(child.logFile)}`);
    await sleep(25);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Snapshot decoding. A real sidecar parses and validates every policy; here only the version and nonce
// are needed for the ACK, so by default the ControlPlaneMessage is walked for them (and the number of
// services and bytes, for the report) instead of decoding ~10 KB of policy JSON per message in the one
// process that plays 1,000 sidecars. --full-decode uses the generated decoder instead.



function lightDecode(buf) {
  let snapshot;
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p] = varint(buf, pos);
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const [len, q] = varint(buf, p);
      snapshot = decodeSnapshotHead(buf.subarray(q, q + len));
      pos = q + len;
    } else {
      pos = skip(buf, p, tag & 7);
    }
  }
  return { msg: snapshot === undefined ? undefined : { $case: 'snapshot', snapshot }, bytes: buf.length };
}


// ---------------------------------------------------------------------------------------------
// The simulated sidecars

const stats = { snapshots: 0, acks: 0, bytes: 0, heartbeats: 0, streamErrors: 0, badSnapshots: 0, lastSnapshotAt: 0 };
let currentRound = null;
let fatal = null; // first unexpected stream failure

function openFleet(opts, gen, grpcAddress) {
  const { DiscoveryClient, DiscoveryService, ControlPlaneMessage } = gen;
  const method = DiscoveryService.stream;
  const deserialize = opts.fullDecode ? (buf) => ({ ...ControlPlaneMessage.decode(buf), bytes: buf.length }) : lightDecode;
  const clients = [];
  for (let c = 0; c < opts.channels; c++) {
    clients.push(
      new DiscoveryClient(grpcAddress, credentials.createSsl(caPem()), {
        // Each client its own HTTP/2 connection (grpc-js shares subchannels between equal channels otherwise).
        'grpc.use_local_subchannel_pool': 1,
        'grpc.keepalive_time_ms': 60_000,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }),
    );
  }
  const streams = [];
  const subscribersOf = Array.from({ length: opts.services }, () => []);
  let firstAcked = 0;
  let resolveAll;
  const allAcked = new Promise((r) => (resolveAll = r));
  const rand = prng(opts.seed ^ 0x5eed);
  const t0 = performance.now();
  for (let i = 0; i < opts.sidecars; i++) {
    const subs = subscriptionsOf(opts, i);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${TOKEN}`);
    const call = clients[i % opts.channels].makeBidiStreamRequest(method.path, method.requestSerialize, deserialize, metadata);
    const st = { i, subs, call, firstAckAt: undefined, version: 0, log: [], nextHeartbeat: Infinity, jitter: rand() };
    streams.push(st);
    for (const s of subs) subscribersOf[s].push(st);
    call.on('data', (msg) => {
      const snap = msg.msg?.$case === 'snapshot' ? msg.msg.snapshot : undefined;
      if (snap === undefined) return;
      const t = performance.now();
      // As a sidecar does once the snapshot is applied (applying is what is left out here).
      call.write({ msg: { $case: 'ack', ack: { version: snap.version, nonce: snap.nonce } } });
      const v = Number(snap.version);
      stats.snapshots++;
      stats.acks++;
      stats.bytes += msg.bytes ?? 0;
      stats.lastSnapshotAt = t;
      const count = snap.serviceCount ?? snap.services.length;
      if (count < subs.length) stats.badSnapshots++;
      st.version = v;
      st.log.push(v, t);
      if (st.firstAckAt === undefined) {
        st.firstAckAt = t;
        const ttl = snap.instanceTtlMs > 0 ? snap.instanceTtlMs : opts.ttlSec * 1000;
        st.heartbeatEvery = ttl / 3;
        st.nextHeartbeat = t + st.jitter * st.heartbeatEvery;
        if (++firstAcked === opts.sidecars) resolveAll(t);
      }
      currentRound?.onAck(st, v, t);
    });
    call.on('error', (err) => {
      if (shuttingDown) return;
      stats.streamErrors++;
      fatal ??= new Error(`stream of sidecar ${i} failed: ${err.message}`);
    });
    call.on('end', () => {
      if (shuttingDown) return;
      stats.streamErrors++;
      fatal ??= new Error(`the control plane ended the stream of sidecar ${i}`);
    });
    const instance = opts.register
      ? { service: `sim-${i}`, id: `sim-${i}-15006`, address: sidecarAddress(i), weight: 0, capacity: 0, zone: '', mtls: 'off' }
      : { service: `sim-${i}`, id: `sim-${i}-15006`, address: '', weight: 0, capacity: 0, zone: '', mtls: 'off' };
    call.write({ msg: { $case: 'hello', hello: { instance, subscriptions: subs.map(serviceName), lastVersion: '' } } });
  }
  // Heartbeats every TTL/3 per stream (phase spread by a per-stream jitter), checked every 250 ms.
  const heartbeatTimer = setInterval(() => {
    const now = performance.now();
    for (const st of streams) {
      if (now < st.nextHeartbeat) continue;
      st.call.write({ msg: { $case: 'heartbeat', heartbeat: {} } });
      stats.heartbeats++;
      st.nextHeartbeat += st.heartbeatEvery;
    }
  }, 250);
  return {
    t0,
    streams,
    subscribersOf,
    allAcked,
    acked: () => firstAcked,
    close: () => {
      shuttingDown = true;
      clearInterval(heartbeatTimer);
      for (const st of streams) st.call.cancel();
      for (const c of clients) c.close();
    },
  };
}

/** Resolves once no snapshot has arrived for `quietMs` (at most `maxMs`); the quiet time is not counted. */
async function waitQuiet(quietMs, maxMs = 20_000) {
  const start = performance.now();
  for (;;) {
    if (fatal) throw fatal;
    const now = performance.now();
    if (now - Math.max(stats.lastSnapshotAt, start) >= quietMs) return true;
    if (now - start > maxMs) return false;
    await sleep(Math.min(10, quietMs / 4));
  }
}

async function until(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  const failed = new Promise((_, reject) => {
    const check = setInterval(() => fatal && reject(fatal), 50);
    promise.finally(() => clearInterval(check)).catch(() => undefined);
    timeout.catch(() => clearInterval(check));
  });
  try {
    return await Promise.race([promise, timeout, failed]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// One timed change

const ROUND_TIMEOUT_MS = 15_000;

async function timedChange(opts, fleet, httpPort, r, change) {
  const { svc, ep, weight } = change;
  for (const st of fleet.streams) st.log.length = 0;
  const before = { ...stats };
  let resolveDone;
  const done = new Promise((res) => (resolveDone = res));
  const round = {
    V: null,
    pending: new Set(fleet.subscribersOf[svc]),
    lastAt: 0,
    onAck(st, v, t) {
      if (round.V === null || v < round.V || !round.pending.delete(st)) return;
      round.lastAt = Math.max(round.lastAt, t);
      if (round.pending.size === 0) resolveDone();
    },
  };
  currentRound = round;
  const address = endpointAddress(opts, svc, ep);
  const t0 = performance.now();
  const res = await api(httpPort, 'PUT', `/api/services/${serviceName(svc)}/weights/${encodeURIComponent(address)}`, { weight });
  const tPut = performance.now();
  round.V = Number(res.version);
  // ACKs that arrived before the PUT's answer did.
  for (const st of [...round.pending]) {
    for (let k = 0; k < st.log.length; k += 2) {
      if (st.log[k] >= round.V) {
        round.onAck(st, st.log[k], st.log[k + 1]);
        break;
      }
    }
  }
  if (round.pending.size === 0) resolveDone();
  let convergenceMs = Infinity;
  try {
    await until(done, ROUND_TIMEOUT_MS, `change ${r + 1}: ${round.pending.size} subscriber(s) of ${serviceName(svc)} ACKing version ${round.V}`);
    convergenceMs = round.lastAt - t0;
  } catch (err) {
    if (fatal) throw fatal;
    log(`  ${err.message}`);
  }
  const tConverged = performance.now();
  await waitQuiet(opts.quietMs);
  currentRound = null;
  // After the fact: which streams (subscribed or not) got a snapshot at >= V, and when the last one ACKed it.
  let reached = 0;
  let fleetLast = 0;
  for (const st of fleet.streams) {
    for (let k = 0; k < st.log.length; k += 2) {
      if (st.log[k] >= round.V) {
        reached++;
        fleetLast = Math.max(fleetLast, st.log[k + 1]);
        break;
      }
    }
  }
  return {
    n: r + 1,
    service: serviceName(svc),
    endpoint: address,
    weight,
    version: round.V,
    putMs: tPut - t0,
    convergenceMs,
    subscribers: fleet.subscribersOf[svc].length,
    reached,
    fleetMs: reached > 0 ? fleetLast - t0 : NaN,
    acks: stats.acks - before.acks,
    snapshots: stats.snapshots - before.snapshots,
    bytes: stats.bytes - before.bytes,
    waitedMs: tConverged - t0,
  };
}

// ---------------------------------------------------------------------------------------------
// CPU profile (V8 .cpuprofile): self and total time per function, within a time window.

function shortUrl(url) {
  if (!url) return '';
  const repo = pathToFileURL(REPO_DIR).href + '/';
  if (url.startsWith(repo)) return url.slice(repo.length).replace(/^node_modules\//, 'nm/');
  return url.replace(/^file:\/\/\/.*\/node_modules\//, 'nm/');
}

function summarizeProfile(file, fromUs, toUs, top = 15) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map();
  const parent = new Map();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (n) => {
    const f = n.callFrame;
    const name = f.functionName || '(anonymous)';
    const url = shortUrl(f.url);
    return url ? `${name} ${url}:${f.lineNumber + 1}` : name;
  };
  const self = new Map();
  const total = new Map();
  let all = 0;
  let idle = 0;
  let t = prof.startTime;
  const inWindow = fromUs !== undefined && prof.startTime <= toUs && prof.endTime >= fromUs;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i] ?? 0;
    if (inWindow && (t < fromUs || t > toUs)) continue;
    const dt = (prof.timeDeltas[i + 1] ?? 0) / 1000; // ms until the next sample
    const node = byId.get(prof.samples[i]);
    const k = key(node);
    all += dt;
    if (k === '(idle)') {
      idle += dt;
      continue;
    }
    self.set(k, (self.get(k) ?? 0) + dt);
    const seen = new Set();
    for (let id = node.id; id !== undefined; id = parent.get(id)) {
      const kk = key(byId.get(id));
      if (kk === '(root)' || seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + dt);
    }
  }
  const busy = all - idle;
  const rank = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, ms]) => ({ name, ms, pct: busy > 0 ? (100 * ms) / busy : 0, totalMs: total.get(name) ?? ms }));
  return { windowed: inWindow, wallMs: all, busyMs: busy, self: rank(self), total: rank(total) };
}

// ---------------------------------------------------------------------------------------------
// Reporting



function textTable({ header, rows }) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function markdownTable({ header, rows }) {
  const esc = (s) => String(s).replace(/\|/g, '\\|');
  return [`| ${header.map(esc).join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

function machineInfo() {
  const cpu = cpuModel();
  const { commit: git, dirty } = gitState(REPO_DIR);
  const grpcVersion = (() => {
    try {
      return JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'node_modules', '@grpc', 'grpc-js', 'package.json'), 'utf8')).version;
    } catch {
      return '?';
    }
  })();
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    grpcJs: grpcVersion,
    loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    commit: git ? `${git}${dirty ? ' (with uncommitted changes)' : ''}` : '?',
  };
}

function summaryRows(res) {
  const c = res.changes;
  const conv = c.map((x) => x.convergenceMs).sort((a, b) => a - b);
  const fleet = c.map((x) => x.fleetMs).filter(Number.isFinite).sort((a, b) => a - b);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const p99 = percentile(conv, 0.99);
  const rssMb = res.rss.maxKb / 1024;
  const rows = [
    ['control plane ready (spawn → /healthz)', `${fmt(res.readyMs)} ms`, '', ''],
    [`initial: all ${res.opts.sidecars} streams ACKed their first snapshot`, `${fmt(res.initial.allAckedMs)} ms`, '', ''],
    ['initial: fleet settled (quiet, all on one version)', `${fmt(res.initial.settledMs)} ms`, '', ''],
    ['initial: snapshots sent / MB', `${res.initial.snapshots} / ${fmt(res.initial.bytes / 2 ** 20, 1)}`, '', ''],
    [`convergence p50 (${c.length} changes)`, `${fmt(percentile(conv, 0.5), 1)} ms`, '', ''],
    ['convergence p99', `${fmt(p99, 1)} ms`, `< ${GOALS.p99Ms} ms`, p99 < GOALS.p99Ms ? 'PASS' : 'MISS'],
    ['convergence max', `${fmt(conv.at(-1), 1)} ms`, '', ''],
    ['all streams ACKed the change, p50 / max', `${fmt(percentile(fleet, 0.5), 1)} / ${fmt(fleet.at(-1), 1)} ms`, '', ''],
    ['PUT round trip, p50', `${fmt(percentile(c.map((x) => x.putMs).sort((a, b) => a - b), 0.5), 1)} ms`, '', ''],
    ['subscribers per changed service', fmt(mean(c.map((x) => x.subscribers)), 1), '', ''],
    ['streams sent a snapshot per change (mean)', fmt(mean(c.map((x) => x.reached)), 1), '', ''],
    ['ACK messages per change (mean / max)', `${fmt(mean(c.map((x) => x.acks)), 1)} / ${Math.max(...c.map((x) => x.acks))}`, '', ''],
    ['snapshot MB pushed per change (mean)', fmt(mean(c.map((x) => x.bytes)) / 2 ** 20, 2), '', ''],
    ['control plane max RSS (VmRSS sampled / VmHWM)', `${fmt(rssMb, 1)} / ${fmt(res.rss.hwmKb / 1024, 1)} MB`, `< ${GOALS.rssMb} MB`, Math.max(rssMb, res.rss.hwmKb / 1024) < GOALS.rssMb ? 'PASS' : 'MISS'],
    ['control plane RSS idle before the fleet / after settle', `${fmt(res.rss.idleKb / 1024, 1)} / ${fmt(res.rss.settledKb / 1024, 1)} MB`, '', ''],
    ['control plane CPU: start / connect+settle / changes', `${fmt(res.cpu.start, 2)} / ${fmt(res.cpu.connect, 2)} / ${fmt(res.cpu.changes, 2)} s`, '', ''],
    ['control plane CPU per change', `${fmt((1000 * res.cpu.changes) / c.length, 0)} ms`, '', ''],
    ['bench process CPU: connect+settle / changes', `${fmt(res.selfCpu.connect, 2)} / ${fmt(res.selfCpu.changes, 2)} s`, '', ''],
    ['stream errors / short snapshots / round timeouts', `${res.streamErrors} / ${res.badSnapshots} / ${c.filter((x) => x.convergenceMs === Infinity).length}`, '', ''],
  ];
  return { header: ['Metric', 'Value', 'Target', ''], rows };
}

function changeRows(res) {
  return {
    header: ['#', 'service', 'version', 'PUT ms', 'converged ms', 'all streams ms', 'streams reached', 'ACKs', 'snapshot MB'],
    rows: res.changes.map((x) => [String(x.n), x.service, String(x.version), fmt(x.putMs, 1), fmt(x.convergenceMs, 1), fmt(x.fleetMs, 1), String(x.reached), String(x.acks), fmt(x.bytes / 2 ** 20, 2)]),
  };
}

function profileMarkdown(p) {
  if (!p) return '';
  const parts = [];
  for (const [label, s] of Object.entries(p)) {
    if (!s) continue;
    parts.push(`#### ${label}: ${fmt(s.busyMs)} ms busy of ${fmt(s.wallMs)} ms${s.windowed ? '' : ' (whole profile: the window could not be matched)'}\n`);
    parts.push('Self time:\n');
    parts.push(markdownTable({ header: ['function', 'self ms', '% of busy', 'total ms'], rows: s.self.map((f) => [`\`${f.name}\``, fmt(f.ms), fmt(f.pct, 1), fmt(f.totalMs)]) }));
    parts.push('\nTotal (inclusive) time:\n');
    parts.push(markdownTable({ header: ['function', 'total ms', '% of busy'], rows: s.total.map((f) => [`\`${f.name}\``, fmt(f.ms), fmt(f.pct, 1)]) }));
    parts.push('');
  }
  return parts.join('\n');
}

function markdownReport(res) {
  const m = res.machine;
  const o = res.opts;
  return `# Outrigger control-plane benchmark run

${m.date}, commit ${m.commit}

| Machine | |
| --- | --- |
| CPUs (nproc) | ${m.nproc} |
| CPU model | ${m.cpu} |
| Memory | ${m.memory} |
| Kernel | ${m.kernel} |
| Node | ${m.node} |
| @grpc/grpc-js | ${m.grpcJs} |
| Load average at start | ${m.loadavg} |

Setup: one control plane (\`node bin/outrigger.js control-plane\`, child process) with ${o.services} services × ${o.endpoints} static
endpoints = ${o.services * o.endpoints} endpoints in cp.yaml, \`instanceTtl: ${o.ttlSec}s\`. This process plays ${o.sidecars} sidecars: one
\`Discovery.Stream\` each, over ${o.channels} gRPC channels (HTTP/2 connections) on 127.0.0.1; each Hello subscribes to ${o.subscriptions}
services (every service has ${res.changes[0]?.subscribers ?? '?'} subscribers) and ${o.register ? `registers the sidecar's own instance (\`sim-N\`, a 198.19.x.y address nothing dials)` : 'registers nothing (empty address)'};
every Snapshot is ACKed on arrival (${o.fullDecode ? 'fully decoded first' : 'only version and nonce are read'}), heartbeats go every TTL/3.
Then ${o.changes} changes, one at a time: \`PUT /api/services/NAME/weights/ADDRESS\` with a new weight for one static endpoint
of a random service (seed ${o.seed}). Convergence = from just before the PUT until the last stream subscribed to that service has
ACKed a version ≥ the one the PUT returned (time of the ACK's write in this process). Between changes the bench waits until no
snapshot has arrived for ${o.quietMs} ms. With ${o.changes} samples, p99 is the slowest change.
RSS: VmRSS of the control plane sampled every 100 ms, and its VmHWM (kernel peak) at the end; CPU: utime + stime from /proc.

${markdownTable(summaryRows(res))}

Goals (informational): convergence p99 < ${GOALS.p99Ms} ms, RSS < ${GOALS.rssMb} MB.

<details><summary>Every change</summary>

${markdownTable(changeRows(res))}

</details>
${res.profile ? `\n### CPU profile of the control plane (--cpu-prof)\n\n${profileMarkdown(res.profile)}` : ''}`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const argv = process.argv.slice(2);
  if (wantsScale(argv)) {
    // Replicas on etcd and a sweep of sidecar counts: bench/control-plane-scale.mjs.
    await runScale(argv);
    // Everything it started is gone; do not wait for stray handles (sockets to an etcd that was killed).
    process.exit(process.exitCode ?? 0);
  }
  const opts = parseArgs(argv);
  if (Number(process.versions.node.split('.')[0]) < 22) throw new Error(`Node ${process.version}: the control plane needs Node 22+. Use \`npm run bench:control-plane\` (Node 24 from the node devDependency).`);
  if (process.platform !== 'linux') throw new Error('the bench reads /proc: Linux only');
  if (!fs.existsSync(GEN)) throw new Error('dist/ is missing: run `npm run build` first (npm run bench:control-plane does)');
  const gen = await import(pathToFileURL(GEN).href);

  fs.rmSync(RUN_DIR, { recursive: true, force: true });
  fs.mkdirSync(RUN_DIR, { recursive: true });
  const machine = machineInfo();
  log(`Outrigger control-plane bench  |  ${machine.nproc} CPUs, ${machine.cpu}, node ${machine.node}`);
  if (os.loadavg()[0] > 0.5) log(`warning: load average ${machine.loadavg}: something else is running; results will be noisy`);

  const deadline = setTimeout(() => {
    log(`\nAborting: the run took longer than ${opts.timeoutSec} s.`);
    if (child) log(`control plane log (tail):\n${tail(child.logFile, 10)}`);
    signalGroup(child, 'SIGKILL');
    process.exit(1);
  }, opts.timeoutSec * 1000);

  const [grpcPort, httpPort] = await freePorts(2, HOST);
  const configFile = path.join(RUN_DIR, 'cp.yaml');
  fs.writeFileSync(configFile, cpYaml(opts, grpcPort, httpPort));
  const profDir = path.join(RUN_DIR, 'cpu-prof');
  const nodeArgs = opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  log(`work dir: ${path.relative(REPO_DIR, RUN_DIR)} (cp.yaml, control-plane.log${opts.profile ? ', cpu-prof/' : ''})`);
  log(`cp.yaml: ${opts.services} services × ${opts.endpoints} endpoints = ${opts.services * opts.endpoints}, instanceTtl ${opts.ttlSec}s; grpc ${HOST}:${grpcPort}, http ${HOST}:${httpPort}`);

  const mono = { spawn: monoUs() };
  const tSpawn = performance.now();
  const cp = startControlPlane([...nodeArgs, BIN, 'control-plane', '--config', configFile]);
  let fleet = null;
  let sampler = null;
  const rss = { maxKb: 0, hwmKb: 0, idleKb: 0, settledKb: 0 };
  try {
    await waitHealthy(httpPort, 30_000);
    const readyMs = performance.now() - tSpawn;
    mono.ready = monoUs();
    const cpu0 = cpuSeconds(cp.pid);
    rss.idleKb = procStatusKb(cp.pid, 'VmRSS');
    log(`control plane pid ${cp.pid} ready in ${fmt(readyMs)} ms, RSS ${fmt(rss.idleKb / 1024, 1)} MB, CPU ${fmt(cpu0, 2)} s`);
    sampler = setInterval(() => {
      rss.maxKb = Math.max(rss.maxKb, procStatusKb(cp.pid, 'VmRSS'));
    }, 100);

    // Connect the fleet.
    const self0 = selfCpu();
    log(`opening ${opts.sidecars} streams over ${opts.channels} channels (${opts.register ? 'registering' : 'not registering'} instances)...`);
    fleet = openFleet(opts, gen, `${HOST}:${grpcPort}`);
    let lastProgress = performance.now();
    const progress = setInterval(() => {
      if (performance.now() - lastProgress >= 2_000) {
        lastProgress = performance.now();
        log(`  ${fleet.acked()} / ${opts.sidecars} streams ACKed, ${stats.snapshots} snapshots so far`);
      }
    }, 250);
    let allAckedAt;
    try {
      allAckedAt = await until(fleet.allAcked, 60_000, `all ${opts.sidecars} streams ACKing a first snapshot (${fleet.acked()} did)`);
    } finally {
      clearInterval(progress);
    }
    const allAckedMs = allAckedAt - fleet.t0;
    log(`all ${opts.sidecars} streams ACKed their first snapshot after ${fmt(allAckedMs)} ms`);
    if (!(await waitQuiet(500, 60_000))) throw new Error('the fleet did not settle (snapshots kept coming for 60 s)');
    const settledMs = stats.lastSnapshotAt - fleet.t0;
    const { version } = await api(httpPort, 'GET', '/api/version');
    const behind = fleet.streams.filter((s) => s.version !== version).length;
    const { sidecars } = await api(httpPort, 'GET', '/api/sidecars', undefined, 20_000);
    const ackedCurrent = sidecars.filter((s) => s.ackedVersion === String(version)).length;
    log(`settled after ${fmt(settledMs)} ms: version ${version}, ${stats.snapshots} snapshots (${fmt(stats.bytes / 2 ** 20, 1)} MB), ${behind} stream(s) not at it; control plane sees ${sidecars.length} sidecars, ${ackedCurrent} ACKed it`);
    if (sidecars.length !== opts.sidecars) throw new Error(`the control plane sees ${sidecars.length} sidecars, expected ${opts.sidecars}`);
    await waitQuiet(opts.quietMs);
    const initial = { allAckedMs, settledMs, snapshots: stats.snapshots, bytes: stats.bytes, version };
    mono.connected = monoUs();
    const cpu1 = cpuSeconds(cp.pid);
    const self1 = selfCpu();
    rss.settledKb = procStatusKb(cp.pid, 'VmRSS');

    // Timed changes.
    const rand = prng(opts.seed);
    const pinned = new Map();
    const changes = [];
    log(`\n${opts.changes} changes (weight of one endpoint of a random service, ${opts.quietMs} ms quiet between):`);
    for (let r = 0; r < opts.changes; r++) {
      if (interrupted) throw new Error('interrupted');
      const svc = Math.floor(rand() * opts.services);
      const ep = Math.floor(rand() * opts.endpoints);
      const key = `${svc}/${ep}`;
      let weight = 2 + Math.floor(rand() * 999);
      if (weight === (pinned.get(key) ?? 1)) weight = weight === 1000 ? 2 : weight + 1; // must change something
      pinned.set(key, weight);
      const x = await timedChange(opts, fleet, httpPort, r, { svc, ep, weight });
      changes.push(x);
      log(`  #${String(x.n).padStart(2)} ${x.service} v${x.version}: converged ${fmt(x.convergenceMs, 1).padStart(7)} ms, all streams ${fmt(x.fleetMs, 1).padStart(7)} ms, ${x.acks} ACKs, ${fmt(x.bytes / 2 ** 20, 2)} MB pushed`);
    }
    mono.changed = monoUs();
    const cpu2 = cpuSeconds(cp.pid);
    const self2 = selfCpu();
    rss.hwmKb = procStatusKb(cp.pid, 'VmHWM');
    rss.maxKb = Math.max(rss.maxKb, procStatusKb(cp.pid, 'VmRSS'));
    clearInterval(sampler);
    sampler = null;

    fleet.close();
    fleet = null;
    await stopControlPlane();
    log(`control plane stopped (${cp.exitInfo})`);

    const res = {
      machine,
      opts,
      readyMs,
      initial,
      changes,
      rss,
      cpu: { start: cpu0, connect: cpu1 - cpu0, changes: cpu2 - cpu1 },
      selfCpu: { connect: self1 - self0, changes: self2 - self1 },
      streamErrors: stats.streamErrors,
      badSnapshots: stats.badSnapshots,
      heartbeats: stats.heartbeats,
      profile: null,
    };
    if (opts.profile) {
      const files = fs.existsSync(profDir) ? fs.readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')) : [];
      if (files.length === 0) log('no CPU profile was written (did the control plane exit cleanly?)');
      else {
        const file = path.join(profDir, files.sort().at(-1));
        res.profileFile = path.relative(REPO_DIR, file);
        res.profile = {
          'connect and settle': summarizeProfile(file, mono.ready, mono.connected),
          [`${opts.changes} changes`]: summarizeProfile(file, mono.connected, mono.changed),
        };
      }
    }

    log(`\n${textTable(summaryRows(res))}\n`);
    if (res.profile) {
      for (const [label, s] of Object.entries(res.profile)) {
        log(`Control plane CPU profile, ${label} (${fmt(s.busyMs)} ms busy of ${fmt(s.wallMs)} ms${s.windowed ? '' : ', whole profile'}), top by self time:`);
        log(textTable({ header: ['function', 'self ms', '%', 'total ms'], rows: s.self.map((f) => [f.name, fmt(f.ms), fmt(f.pct, 1), fmt(f.totalMs)]) }));
        log(`top by total time:\n${textTable({ header: ['function', 'total ms', '%'], rows: s.total.map((f) => [f.name, fmt(f.ms), fmt(f.pct, 1)]) })}\n`);
      }
      log(`profile: ${res.profileFile}`);
    }
    const md = markdownReport(res);
    fs.writeFileSync(path.join(WORK_DIR, 'control-plane-last.md'), md);
    fs.writeFileSync(path.join(WORK_DIR, 'control-plane-last.json'), `${JSON.stringify(res, (k, v) => (v === Infinity ? 'timeout' : v), 2)}\n`);
    log(`Wrote ${path.relative(REPO_DIR, path.join(WORK_DIR, 'control-plane-last.md'))} (and control-plane-last.json)`);
    if (changes.some((x) => x.convergenceMs === Infinity)) process.exitCode = 1;
  } finally {
    clearTimeout(deadline);
    if (sampler) clearInterval(sampler);
    fleet?.close();
    agent?.destroy();
    await stopControlPlane(3_000);
  }
}

main().catch((err) => {
  if (interrupted) {
    log('Interrupted: no report written.');
    signalGroup(child, 'SIGKILL');
    process.exitCode = 130;
    return;
  }
  process.stderr.write(`control-plane bench failed: ${err.stack ?? err}\n`);
  if (child && !child.exited) process.stderr.write(`control plane log (tail):\n${tail(child.logFile, 10)}\n`);
  signalGroup(child, 'SIGKILL');
  process.exitCode = 1;
});
