// Outrigger benchmark harness: the sidecar against nginx, HAProxy, a plain http-proxy forwarder, a
// plain undici forwarder and a raw-socket floor, all in front of the same three nginx backends on
// 127.0.0.1; two sidecars in a row (caller -> callee, plaintext and mutual TLS, certificates from a
// control plane the bench starts) against two nginx in a row (plaintext, and TLS with client certificates);
// HTTP/2 (h2c) and gRPC unary calls through the sidecar against direct and nginx (grpc_pass), with h2load;
// and the memory that open HTTP/2 streams cost the sidecar and nginx.
// See bench/README.md for what it measures and how to read the output.
//
//   npm run bench                                   # build, then every target
//   npm run bench -- --only direct,nginx,sidecar    # a subset
//   node bench/run.mjs --help
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuModel, freePorts, gitState } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.dirname(BENCH_DIR);
const WORK_DIR = path.join(BENCH_DIR, '.work');
const RUN_DIR = path.join(WORK_DIR, 'run');
const HOST = '127.0.0.1';
const SIDECAR_HOST_HEADER = 'bench';
const HTTP1_TARGETS = ['direct', 'nginx', 'haproxy', 'http-proxy', 'undici', 'raw', 'sidecar', 'sidecar-ft', 'nginx-pair', 'nginx-pair-tls', 'pair', 'pair-mtls'];
// HTTP/2 (h2c, prior knowledge) GETs and gRPC unary calls, measured with h2load against three more nginx
// backend ports that speak HTTP/2; and open long-lived HTTP/2 streams (memory per stream).
const H2_TARGETS = ['h2-direct', 'h2-nginx', 'h2-floor', 'h2-sidecar', 'grpc-direct', 'grpc-nginx', 'grpc-floor', 'grpc-sidecar'];
const STREAMS_TARGETS = ['streams-nginx', 'streams-sidecar'];
const ALL_TARGETS = [...HTTP1_TARGETS, ...H2_TARGETS, ...STREAMS_TARGETS];
const PAIR_TARGETS = ['pair', 'pair-mtls']; // need the control plane
/** What a target is sent: HTTP/1.1 (wrk, h2load --h1), HTTP/2 GETs, gRPC unary calls, or held-open streams. */
const kindOf = (name) => (name.startsWith('h2-') ? 'h2' : name.startsWith('grpc-') ? 'grpc' : name.startsWith('streams-') ? 'streams' : 'http1');
/** The row that "added p50" is measured from, per kind. */
const DIRECT_OF = { http1: 'direct', h2: 'h2-direct', grpc: 'grpc-direct' };
// The sidecar's services for the HTTP/2 targets; the sidecar routes on :authority, so each is also the
// :authority sent (nginx ignores it).
const H2_SERVICE = 'bench-h2';
const GRPC_SERVICE = 'bench-grpc';
const HOLD_SERVICE = 'bench-hold';
// The gRPC method called, and the one message used as both request and response: a protobuf message with
// field 1 (string) = "hello, world\n", in a gRPC frame (flag 0 = not compressed, 4-byte length): 20 bytes.
const GRPC_METHOD = '/bench.Bench/Unary';
const GRPC_MESSAGE = Buffer.concat([Buffer.from([0x0a, 13]), Buffer.from('hello, world\n')]);
const GRPC_FRAME = Buffer.concat([Buffer.from([0, 0, 0, 0, GRPC_MESSAGE.length]), GRPC_MESSAGE]);
const HELLO = 'hello, world\n';
// The callee's service for each sidecar pair: the caller routes on Host, so it is also the Host header sent.
const PAIR_SERVICE = { pair: 'bench-pair', 'pair-mtls': 'bench-pair-mtls' };
// Name in the nginx TLS upstream's server certificate, checked by the front nginx (proxy_ssl_name).
const TLS_UPSTREAM_NAME = 'bench-tls-upstream';
const LABELS = {
  direct: 'direct (no proxy)',
  nginx: 'nginx',
  haproxy: 'HAProxy',
  'http-proxy': 'http-proxy',
  undici: 'plain undici forwarder',
  raw: 'raw-socket floor',
  sidecar: 'Outrigger sidecar',
  'sidecar-ft': 'sidecar, all fault tolerance on',
  'nginx-pair': 'nginx → nginx, plaintext',
  'nginx-pair-tls': 'nginx → nginx, TLS + client cert',
  pair: 'sidecar → sidecar, plaintext',
  'pair-mtls': 'sidecar → sidecar, mutual TLS',
  'h2-direct': 'HTTP/2 direct (no proxy)',
  'h2-nginx': 'HTTP/2 nginx (grpc_pass)',
  'h2-floor': 'HTTP/2 node:http2 floor',
  'h2-sidecar': 'HTTP/2 sidecar (protocol: http2)',
  'grpc-direct': 'gRPC unary direct (no proxy)',
  'grpc-nginx': 'gRPC unary nginx (grpc_pass)',
  'grpc-floor': 'gRPC unary node:http2 floor',
  'grpc-sidecar': 'gRPC unary sidecar (protocol: grpc)',
  'streams-nginx': 'open HTTP/2 streams, nginx (grpc_pass)',
  'streams-sidecar': 'open HTTP/2 streams, sidecar (protocol: http2)',
};
const TOOLS = { nginx: 'nginx', haproxy: 'haproxy', wrk: 'wrk', h2load: 'nghttp2-client' };

// Targets the sidecar with everything on (sidecar-ft) is held to, relative to nginx and http-proxy in the
// same run (informational: they print PASS/MISS, they do not fail the run).
const GOAL_TARGET = 'sidecar-ft';
const GOALS = {
  vsNginx: 0.7, // throughput >= 0.7x nginx
  vsHttpProxy: 3, // throughput >= 3x http-proxy
  addedP50OverNginxMs: 0.15, // added p50 at the fixed rate <= nginx's added p50 + 0.15 ms
  p99OverNginxMs: 0.3, // p99 at the fixed rate <= nginx's p99 + 0.3 ms
  rssAnonMb: 40, // max RssAnon under load <= 40 MB
};
// HTTP/2 and gRPC unary throughput through the sidecar (h2-sidecar, grpc-sidecar) >= 0.6x nginx with grpc_pass.
const H2_GOALS = { h2VsNginx: 0.6, grpcVsNginx: 0.6 };
// Client streams per HTTP/2 connection for the open-streams targets (less if the proxy announces fewer).
const STREAMS_PER_CONNECTION = 100;
// The gRPC targets' cross-check after the load: this many unary calls with @grpc/grpc-js, so many at a time.
const GRPC_JS_CHECK = { calls: 2000, concurrency: 50 };

// ---------------------------------------------------------------------------------------------
// Options

function usage() {
  return `Usage: node bench/run.mjs [options]   (normally: npm run bench -- [options])

  --only LIST        comma-separated subset of: ${ALL_TARGETS.join(',')}   (default: all)
  --duration SEC     length of each throughput run (wrk, or h2load for HTTP/2) and of each h2load latency run (default 10)
  --warmup SEC       warm-up (wrk, or h2load for HTTP/2) before each target's measurements (default 2)
  --connections N    wrk connections for the throughput run (default 50)
  --rate N           total request rate of the latency run, spread over 10 h2load clients (default 2000)
  --h2-connections N h2load connections for the HTTP/2 and gRPC throughput runs (default 10)
  --h2-streams N     concurrent streams per h2load connection in those runs (default 10)
  --open-streams L   comma-separated, increasing numbers of streams held open by the streams-* targets (default 1000,5000)
  --help             this text
`;
}

function parseArgs(argv) {
  const opts = { only: [...ALL_TARGETS], duration: 10, warmup: 2, connections: 50, rate: 2000, clients: 10, h2Connections: 10, h2Streams: 10, openStreams: [1000, 5000] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (min) => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < min) throw new Error(`${flag} must be an integer >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--only': {
        const names = value().split(',').map((s) => s.trim()).filter(Boolean);
        const unknown = names.filter((n) => !ALL_TARGETS.includes(n));
        if (unknown.length) throw new Error(`unknown target(s) ${unknown.join(', ')}; choose from ${ALL_TARGETS.join(',')}`);
        opts.only = ALL_TARGETS.filter((t) => names.includes(t));
        break;
      }
      case '--duration': opts.duration = int(1); break;
      case '--warmup': opts.warmup = int(0); break;
      case '--connections': opts.connections = int(1); break;
      case '--rate': opts.rate = int(opts.clients); break;
      case '--h2-connections': opts.h2Connections = int(1); break;
      case '--h2-streams': opts.h2Streams = int(1); break;
      case '--open-streams': {
        const levels = value().split(',').map((v) => Number(v.trim()));
        if (!levels.length || levels.some((n, i) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= levels[i - 1]))) {
          throw new Error(`${flag} must be increasing integers >= 1, comma-separated (e.g. 1000,5000)`);
        }
        opts.openStreams = levels;
        break;
      }
      case '--help': case '-h': process.stdout.write(usage()); process.exit(0); break;
      default: throw new Error(`unknown option ${arg}\n\n${usage()}`);
    }
  }
  if (opts.rate % opts.clients !== 0) throw new Error(`--rate must be a multiple of ${opts.clients} (h2load's --rps is per client)`);
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (msg) => process.stdout.write(`${msg}\n`);

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', ...opts });
}

function tail(file, lines = 20) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/** Absolute path of a command: PATH first, then the sbin dirs a non-root PATH often lacks. */
function which(name) {
  const r = run('sh', ['-c', `command -v ${name}`]);
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/local/sbin', '/sbin']) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not there
    }
  }
  return null;
}

/** Finds nginx, haproxy, wrk and h2load; installs the missing ones with apt-get. */
function ensureTools() {
  let missing = Object.keys(TOOLS).filter((t) => !which(t));
  if (missing.length) {
    const pkgs = missing.map((t) => TOOLS[t]);
    log(`Installing missing tools (${missing.join(', ')}) with apt-get: ${pkgs.join(' ')}`);
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    const prefix = isRoot ? [] : which('sudo') ? ['sudo', '-n'] : null;
    if (!prefix) throw new Error(`missing ${missing.join(', ')}; install them: apt-get install -y ${pkgs.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['apt-get', '-q', 'update'], ['apt-get', '-q', 'install', '-y', '--no-install-recommends', ...pkgs]]) {
      const full = [...prefix, ...args];
      const r = spawnSync(full[0], full.slice(1), { stdio: 'inherit', env });
      if (r.status !== 0) throw new Error(`${full.join(' ')} failed (exit ${r.status})`);
    }
    missing = Object.keys(TOOLS).filter((t) => !which(t));
    if (missing.length) throw new Error(`still missing after apt-get: ${missing.join(', ')}`);
  }
  return Object.fromEntries(Object.keys(TOOLS).map((t) => [t, which(t)]));
}


// ---------------------------------------------------------------------------------------------
// Child processes: every child gets its own process group, so that a stop reaches nginx and
// HAProxy workers too. Anything still alive when this process exits (normally, on error, on
// SIGINT/SIGTERM) is killed.

const children = new Set();
let interrupted = false;

function startChild(name, cmd, args, { env, cwd = RUN_DIR } = {}) {
  if (interrupted) throw new Error('interrupted');
  const logFile = path.join(RUN_DIR, `${name}.out.log`);
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const child = { name, proc, pid: proc.pid, logFile, exited: false, exitInfo: null };
  child.done = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      child.exited = true;
      child.exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
      children.delete(child);
      resolve();
    });
    proc.once('error', (err) => {
      child.exited = true;
      child.exitInfo = err.message;
      children.delete(child);
      resolve();
    });
  });
  children.add(child);
  return child;
}

function signalGroup(child, signal) {
  if (child.exited || !child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
}

async function stopChild(child, graceMs = 3000) {
  if (!child || child.exited) return;
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await child.done;
  clearTimeout(timer);
  // The leader is gone; make sure nothing else in its group lingers.
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // group empty
  }
}

function killAllNow() {
  for (const child of children) signalGroup(child, 'SIGKILL');
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`\nReceived ${sig}: stopping ${children.size} child process(es).`);
    for (const child of children) signalGroup(child, 'SIGTERM');
    setTimeout(() => process.exit(130), 500).unref();
  });
}

/** Runs a bounded load-generator command to completion; killed if it overruns. */
async function runTool(name, cmd, args, timeoutMs, onStart) {
  const child = startChild(name, cmd, args);
  onStart?.(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    signalGroup(child, 'SIGKILL');
  }, timeoutMs);
  await child.done;
  clearTimeout(timer);
  const output = fs.readFileSync(child.logFile, 'utf8');
  if (timedOut) throw new Error(`${name} did not finish within ${Math.round(timeoutMs / 1000)} s and was killed:\n${tail(child.logFile)}`);
  return { output, exitInfo: child.exitInfo, ok: child.exitInfo === 'exit code 0' };
}

// ---------------------------------------------------------------------------------------------
// HTTP probes

function httpGet(port, { path: urlPath = '/', host = SIDECAR_HOST_HEADER, timeoutMs = 2000 } = {}) {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: urlPath, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', (err) => resolve({ status: 0, error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
  });
}

function exitedError(child) {
  const out = tail(child.logFile);
  return new Error(`${child.name} exited (${child.exitInfo}) before it was ready: ${out.split('\n').at(-1)}\n${out}`);
}

/** Polls GET port/path (with Host: host) until 200, or throws (early if the child exits). */
async function waitFor200(child, port, urlPath, timeoutMs, host = SIDECAR_HOST_HEADER) {
  const deadline = performance.now() + timeoutMs;
  let last = null;
  while (performance.now() < deadline) {
    if (child?.exited) throw exitedError(child);
    last = await httpGet(port, { path: urlPath, host, timeoutMs: 1000 });
    if (last.status === 200) return last;
    await sleep(100);
  }
  const what = last ? (last.status ? `HTTP ${last.status}` : last.error) : 'no answer';
  throw new Error(`GET http://${HOST}:${port}${urlPath} did not return 200 within ${timeoutMs / 1000} s (last: ${what})${child ? `\n${tail(child.logFile)}` : ''}`);
}

/** Polls until port accepts a TCP connection (for a listener that does not speak plain HTTP), or throws. */
async function waitForListen(child, port, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exited) throw exitedError(child);
    const ok = await new Promise((resolve) => {
      const sock = net.connect({ host: HOST, port }, () => { sock.destroy(); resolve(true); });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${child.name} did not listen on ${HOST}:${port} within ${timeoutMs / 1000} s:\n${tail(child.logFile)}`);
}

/** GET over TLS trusting `ca`, with no client certificate: the status, or 0 and the error. */
function httpsGetNoClientCert(port, ca, servername) {
  return new Promise((resolve) => {
    const req = https.get({ host: HOST, port, path: '/', ca, servername, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, error: err.message }));
  });
}

/**
 * One HTTP/2 (h2c, prior knowledge) GET on a connection of its own: { status, body }, or status 0 and the
 * error. `authority` is the :authority sent (the sidecar routes on it).
 */
function h2Get(port, { path: urlPath = '/', authority, timeoutMs = 2000 } = {}) {
  return new Promise((resolve) => {
    const session = http2.connect(`http://${HOST}:${port}`);
    let settled = false;
    const done = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ status: 0, error: 'timeout' }), timeoutMs);
    session.on('error', (err) => done({ status: 0, error: err.message }));
    const req = session.request({ ':method': 'GET', ':path': urlPath, ':authority': authority ?? `${HOST}:${port}` });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => { status = Number(h[':status']); });
    req.on('data', (c) => { body += c; });
    req.on('end', () => done({ status, body }));
    req.on('error', (err) => done({ status: 0, error: err.message }));
  });
}

/** Polls an HTTP/2 GET until it answers 200, or throws (early if the child exits). */
async function waitForH2(child, port, urlPath, timeoutMs, authority) {
  const deadline = performance.now() + timeoutMs;
  let last = null;
  while (performance.now() < deadline) {
    if (child?.exited) throw exitedError(child);
    last = await h2Get(port, { path: urlPath, authority, timeoutMs: 1000 });
    if (last.status === 200) return last;
    await sleep(100);
  }
  const what = last ? (last.status ? `HTTP ${last.status}` : last.error) : 'no answer';
  throw new Error(`HTTP/2 GET http://${HOST}:${port}${urlPath} did not return 200 within ${timeoutMs / 1000} s (last: ${what})${child ? `\n${tail(child.logFile)}` : ''}`);
}

/**
 * A real gRPC client (@grpc/grpc-js) makes `calls` unary calls of GRPC_METHOD through `port` (:authority
 * `authority`), `concurrency` at a time, and checks that each ends with status OK and the expected message.
 * Returns { calls, seconds } or throws on the first failure.
 */
async function grpcUnaryCalls(port, authority, { calls = 1, concurrency = 1, timeoutMs = 5000 } = {}) {
  const { default: grpc } = await import('@grpc/grpc-js');
  const client = new grpc.Client(`${HOST}:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority });
  const identity = (b) => b;
  const one = () => new Promise((resolve, reject) => {
    const call = client.makeUnaryRequest(GRPC_METHOD, identity, identity, GRPC_MESSAGE, new grpc.Metadata(), {}, (err, reply) => {
      clearTimeout(timer);
      if (err) reject(new Error(`gRPC ${GRPC_METHOD} via ${HOST}:${port} (:authority ${authority}) failed: ${grpc.status[err.code] ?? err.code} ${err.details ?? err.message}`));
      else if (!Buffer.isBuffer(reply) || !reply.equals(GRPC_MESSAGE)) reject(new Error(`gRPC ${GRPC_METHOD} via ${HOST}:${port} returned ${reply?.toString('hex')}, expected ${GRPC_MESSAGE.toString('hex')}`));
      else resolve();
    });
    const timer = setTimeout(() => call.cancel(), timeoutMs);
  });
  const t0 = performance.now();
  let next = 0;
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, async () => {
      while (next < calls) {
        next++;
        await one();
      }
    }));
  } finally {
    client.close();
  }
  return { calls, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// /proc sampling: RSS and CPU time of a process group (nginx/HAProxy master + workers, node).

function groupPids(pgid) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // raced with an exit
    }
  }
  return pids;
}

/** VmRSS (all resident memory) and RssAnon (resident private memory: heap, stacks) of a pid, in kB. */
function memKb(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return { rss: Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0), anon: Number(/^RssAnon:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0) };
  } catch {
    return { rss: 0, anon: 0 };
  }
}

const CLK_TCK = (() => {
  const r = run('getconf', ['CLK_TCK']);
  return Number(r.stdout?.trim()) || 100;
})();

/** utime + stime of the pids, in seconds. */
function cpuSeconds(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks / CLK_TCK;
}

/** CPU time the whole machine spent in user + system mode, in seconds (all cores). */
function machineBusySeconds() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2]) / CLK_TCK;
}

/**
 * Measures one load run: max summed VmRSS and max summed RssAnon of the proxy's processes (sampled
 * every 250 ms), CPU used by the proxy, the backends, the control plane (sidecar pairs only: not proxy
 * CPU, not "other") and the load generator, and by everything else on the machine (a noise indicator:
 * other work running during the measurement). CPU % is of one core.
 */
function startProbe(proxyPids, backendPids, controlPlanePids = []) {
  const t0 = performance.now();
  const proxy0 = cpuSeconds(proxyPids);
  const backends0 = cpuSeconds(backendPids);
  const cp0 = cpuSeconds(controlPlanePids);
  const busy0 = machineBusySeconds();
  let loadPid = null;
  let loadCpu = 0;
  let maxKb = 0;
  let maxAnonKb = 0;
  const sample = () => {
    let kb = 0;
    let anonKb = 0;
    for (const p of proxyPids) {
      const m = memKb(p);
      kb += m.rss;
      anonKb += m.anon;
    }
    if (kb > maxKb) maxKb = kb;
    if (anonKb > maxAnonKb) maxAnonKb = anonKb;
    if (loadPid) {
      const c = cpuSeconds([loadPid]);
      if (c > loadCpu) loadCpu = c; // stays at the last value seen once the generator exits
    }
  };
  sample();
  const timer = setInterval(sample, 250);
  return {
    track: (child) => { loadPid = child.pid; },
    stop: () => {
      clearInterval(timer);
      const wall = (performance.now() - t0) / 1000;
      const pct = (sec) => (sec / wall) * 100;
      const proxy = cpuSeconds(proxyPids) - proxy0;
      const backends = cpuSeconds(backendPids) - backends0;
      const controlPlane = cpuSeconds(controlPlanePids) - cp0;
      const other = machineBusySeconds() - busy0 - proxy - backends - controlPlane - loadCpu;
      return {
        maxRssMb: proxyPids.length ? maxKb / 1024 : null,
        maxRssAnonMb: proxyPids.length ? maxAnonKb / 1024 : null,
        proxyCpuPct: proxyPids.length ? pct(proxy) : null,
        backendCpuPct: pct(backends),
        controlPlaneCpuPct: controlPlanePids.length ? pct(controlPlane) : null,
        loadGenCpuPct: pct(loadCpu),
        otherCpuPct: Math.max(0, pct(other)),
      };
    },
  };
}

/**
 * Waits (bounded) until the rest of the machine is quiet: under 20% of one core busy over a
 * 1 s window. Other work on a 2-core box skews every number; this only narrows the window.
 */
async function waitForQuiet(maxSeconds) {
  let busyPct = 0;
  for (let i = 0; i < maxSeconds; i++) {
    const b0 = machineBusySeconds();
    const t0 = performance.now();
    await sleep(1000);
    busyPct = ((machineBusySeconds() - b0) / ((performance.now() - t0) / 1000)) * 100;
    if (busyPct < 20) return { quiet: true, busyPct, waited: i };
  }
  return { quiet: false, busyPct, waited: maxSeconds };
}

// ---------------------------------------------------------------------------------------------
// Load generators

const UNITS_MS = { us: 0.001, ms: 1, s: 1000, m: 60000, h: 3600000 };
function wrkDurationMs(text) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * UNITS_MS[m[2]] : NaN;
}

function parseWrk(output) {
  const num = (re) => {
    const m = re.exec(output);
    return m ? Number(m[1]) : 0;
  };
  const rpsMatch = /Requests\/sec:\s+([\d.]+)/.exec(output);
  if (!rpsMatch) throw new Error(`could not parse wrk output:\n${output}`);
  const latency = /Latency\s+(\S+)\s+(\S+)\s+(\S+)/.exec(output);
  const dist = {};
  for (const m of output.matchAll(/^\s+(50|75|90|99)%\s+(\S+)$/gm)) dist[m[1]] = wrkDurationMs(m[2]);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    rps: Number(rpsMatch[1]),
    requests: num(/(\d+) requests in/),
    latencyAvgMs: latency ? wrkDurationMs(latency[1]) : NaN,
    latencyMaxMs: latency ? wrkDurationMs(latency[3]) : NaN,
    p50Ms: dist['50'] ?? NaN,
    p99Ms: dist['99'] ?? NaN,
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    socketErrors: socket ? { connect: +socket[1], read: +socket[2], write: +socket[3], timeout: +socket[4] } : { connect: 0, read: 0, write: 0, timeout: 0 },
  };
}

function wrkArgs(port, seconds, connections, host) {
  return ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, `http://${HOST}:${port}/`];
}

async function runWrk(tools, name, port, host, seconds, connections, onStart) {
  const res = await runTool(name, tools.wrk, wrkArgs(port, seconds, connections, host), (seconds + 30) * 1000, onStart);
  if (!res.ok) throw new Error(`wrk failed (${res.exitInfo}):\n${res.output}`);
  return parseWrk(res.output);
}

/** Nearest-rank percentile of a sorted array. */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * What h2load sends for a kind of target: HTTP/1.1 GETs (--h1), HTTP/2 GETs (h2c with prior knowledge,
 * h2load's default for http://), or gRPC unary calls (POST of a gRPC frame from a file, with the gRPC
 * headers); and the response body each should get (its size is checked against h2load's data bytes).
 */
function h2loadRequest(kind, host) {
  // With --h1, a "-H host: ..." header is sent in addition to the Host that h2load derives from
  // :authority (nginx answers the duplicate with 400); setting :authority sets the single Host.
  const authority = ['-H', `:authority: ${host}`];
  if (kind === 'http1') return { flags: ['--h1', ...authority], path: '/', bodyBytes: HELLO.length };
  if (kind === 'h2') return { flags: authority, path: '/', bodyBytes: HELLO.length };
  return {
    flags: [...authority, '-d', path.join(RUN_DIR, 'grpc', 'request.grpc'), '-H', 'content-type: application/grpc', '-H', 'te: trailers'],
    path: GRPC_METHOD, bodyBytes: GRPC_FRAME.length,
  };
}

async function runH2load(tools, name, port, host, opts, onStart, kind = 'http1') {
  const logFile = path.join(RUN_DIR, `${name}.tsv`);
  fs.rmSync(logFile, { force: true });
  const req = h2loadRequest(kind, host);
  const args = ['-t', '1', '-c', String(opts.clients), '--rps', String(opts.rate / opts.clients), '-D', String(opts.duration),
    '--log-file', logFile, ...req.flags, `http://${HOST}:${port}${req.path}`];
  const res = await runTool(name, tools.h2load, args, (opts.duration + 30) * 1000, onStart);
  if (!res.ok) throw new Error(`h2load failed (${res.exitInfo}):\n${res.output}`);
  // --log-file rows: start time (µs since epoch) \t HTTP status (-1 = failed) \t µs until end of response.
  const times = [];
  const statuses = new Map();
  for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
    if (!line) continue;
    const [, status, micros] = line.split('\t');
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status === '200') times.push(Number(micros) / 1000);
  }
  times.sort((a, b) => a - b);
  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  const bad = Object.fromEntries([...statuses].filter(([s]) => !s.startsWith('2')));
  return {
    requests: total,
    achievedRps: total / opts.duration,
    failures: bad,
    p50Ms: percentile(times, 50),
    p90Ms: percentile(times, 90),
    p99Ms: percentile(times, 99),
    p999Ms: percentile(times, 99.9),
    maxMs: times.length ? times[times.length - 1] : NaN,
  };
}

/** h2load's summary: requests by outcome, status classes, bytes, and the run's length. */
function parseH2loadSummary(output) {
  const finished = /finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req\/s/.exec(output);
  const reqs = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const traffic = /traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers .*?, \S+ \((\d+)\) data/.exec(output);
  if (!finished || !reqs || !codes || !traffic) throw new Error(`could not parse h2load output:\n${output}`);
  const time = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(output);
  return {
    seconds: wrkDurationMs(`${finished[1]}${finished[2]}`) / 1000,
    total: +reqs[1], done: +reqs[3], succeeded: +reqs[4], failed: +reqs[5], errored: +reqs[6], timeout: +reqs[7],
    status2xx: +codes[1], non2xx: +codes[2] + +codes[3] + +codes[4],
    bytesTotal: +traffic[1], headerBytes: +traffic[2], dataBytes: +traffic[3],
    latencyMeanMs: time ? wrkDurationMs(time[3]) : NaN, latencyMaxMs: time ? wrkDurationMs(time[2]) : NaN,
  };
}

/**
 * Closed-loop HTTP/2 throughput: h2load -c N -m M for `seconds` (h2c; gRPC unary calls for kind grpc).
 * h2load stops at the end of -D with streams still in flight, which it counts as failed: up to N x M of
 * them are expected; more fail the target, as does any non-2xx answer or a response body missing from
 * the data bytes (e.g. a gRPC error answered as trailers only, which is HTTP 200).
 */
async function runH2loadThroughput(tools, name, port, host, kind, seconds, opts, onStart) {
  const req = h2loadRequest(kind, host);
  const inFlight = opts.h2Connections * opts.h2Streams;
  const args = ['-t', '1', '-c', String(opts.h2Connections), '-m', String(opts.h2Streams), '-D', String(seconds), ...req.flags, `http://${HOST}:${port}${req.path}`];
  const res = await runTool(name, tools.h2load, args, (seconds + 30) * 1000, onStart);
  if (!res.ok) throw new Error(`h2load failed (${res.exitInfo}):\n${res.output}`);
  const r = parseH2loadSummary(res.output);
  const log = path.join(RUN_DIR, `${name}.out.log`);
  if (r.non2xx > 0) throw new Error(`returned ${r.non2xx} non-2xx responses under h2load (see ${log})`);
  if (r.failed > inFlight) throw new Error(`${r.failed} streams failed under h2load, more than the ${inFlight} in flight when it stops (see ${log})`);
  // Streams cut at the end may have their status but not their body.
  const fullBodies = Math.floor(r.dataBytes / req.bodyBytes);
  if (fullBodies < r.status2xx - inFlight) {
    throw new Error(`h2load got ${r.dataBytes} bytes of response bodies for ${r.status2xx} 2xx answers of ${req.bodyBytes} bytes each: answers without the body (see ${log})`);
  }
  if (r.succeeded === 0) throw new Error(`no request succeeded under h2load (see ${log})`);
  return { ...r, rps: r.succeeded / r.seconds, cutAtEnd: r.failed };
}

// ---------------------------------------------------------------------------------------------
// Configs

function nginxCommon(dir, workerConnections = 4096) {
  return `worker_processes 1;
${workerConnections > 4096 ? `worker_rlimit_nofile ${workerConnections + 1024};\n` : ''}pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${workerConnections}; }
`;
}

function nginxHttpCommon(dir) {
  return `  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
`;
}

/**
 * The backends: one nginx (1 worker). HTTP/1.1 on `ports`; HTTP/2 (h2c, prior knowledge) on `h2Ports`,
 * where GET answers the same 13 bytes and a POST to /bench.Bench/... is a gRPC unary call answered with
 * GRPC_FRAME (the file `grpcDir`/reply.grpc) and the trailer grpc-status: 0. The static module refuses a POST
 * with 405, which error_page turns into a GET of the same file with status 200. The request body is read
 * before the answer (the mirror with mirror_request_body, to an internal location that does nothing): an
 * answer sent before it would be followed by a RST_STREAM for a stream nginx's grpc_pass has already
 * finished ("upstream sent frame for unknown stream"), which fails that upstream connection.
 */
function backendsNginxConf(dir, ports, h2Ports, grpcDir) {
  const hello = `    location / {
      default_type text/plain;
      return 200 "hello, world\\n";
    }
`;
  const servers = ports.map((p) => `  server {
    listen ${HOST}:${p};
${hello}  }
`).join('');
  const h2Servers = h2Ports.map((p) => `  server {
    listen ${HOST}:${p} http2;
${hello}    location /bench.Bench/ {
      root ${grpcDir};
      types { }
      default_type application/grpc;
      etag off;
      mirror /bench-read-body;
      mirror_request_body on;
      try_files /reply.grpc =404;
      error_page 405 =200 /bench.Bench/reply;
      add_trailer grpc-status 0 always;
    }
    location = /bench-read-body {
      internal;
      return 204;
    }
  }
`).join('');
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}${servers}${h2Servers}}
`;
}

/**
 * nginx as an HTTP/2 proxy (1 worker): h2c listener, grpc_pass to an upstream of HTTP/2 backends. nginx's
 * gRPC proxy is its only HTTP/2 upstream (proxy_pass speaks HTTP/1.x), and it passes plain HTTP/2 GETs too,
 * so it serves both the HTTP/2 and the gRPC rows. It does not multiplex upstream: one upstream connection
 * per stream in flight, so `keepalive` is at least the streams h2load keeps in flight, or it would reconnect
 * all the time. `streams` (the open-streams target) raises worker_connections and the read timeout.
 */
function h2ProxyNginxConf(dir, port, backendPorts, keepalive, streams = 0) {
  // Held streams: a connection upstream each, plus the few client connections.
  return `${nginxCommon(dir, streams ? streams + 1024 : 4096)}http {
${nginxHttpCommon(dir)}  upstream h2_backends {
${backendPorts.map((p) => `    server ${HOST}:${p};\n`).join('')}    keepalive ${keepalive};
    keepalive_requests 1000000;
  }
  server {
    listen ${HOST}:${port} http2;
    location / {
      grpc_pass grpc://h2_backends;
${streams ? '      grpc_read_timeout 10m;\n      grpc_send_timeout 10m;\n' : ''}    }
  }
}
`;
}

function proxyNginxConf(dir, port, backendPorts) {
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  upstream backends {
${backendPorts.map((p) => `    server ${HOST}:${p};\n`).join('')}    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen ${HOST}:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

function haproxyCfg(port, backendPorts) {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s

frontend bench_in
  bind ${HOST}:${port}
  default_backend bench_backends

backend bench_backends
  balance roundrobin
${backendPorts.map((p, i) => `  server b${i + 1} ${HOST}:${p}\n`).join('')}`;
}

/**
 * The nginx pair's front: one upstream (the terminator) with keep-alive connections; with `tls`, over
 * TLS, presenting the client certificate, verifying the terminator's certificate against the bench CA and
 * reusing TLS sessions when it reconnects. TLS 1.2 and 1.3 as the sidecars (nginx 1.22 leaves 1.3 out by default).
 */
function nginxPairFrontConf(dir, port, upstreamPort, tls) {
  const ssl = tls ? `      proxy_ssl_certificate ${tls.clientCert};
      proxy_ssl_certificate_key ${tls.clientKey};
      proxy_ssl_trusted_certificate ${tls.caCert};
      proxy_ssl_verify on;
      proxy_ssl_name ${TLS_UPSTREAM_NAME};
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
` : '';
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  upstream pair_upstream {
    server ${HOST}:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen ${HOST}:${port};
    location / {
      proxy_pass ${tls ? 'https' : 'http'}://pair_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${ssl}    }
  }
}
`;
}

/**
 * The nginx pair's second hop, in front of one backend (keep-alive); with `tls`, a TLS listener that
 * requires a client certificate signed by the bench CA.
 */
function nginxPairTerminatorConf(dir, port, backendPort, tls) {
  const ssl = tls ? `    ssl_certificate ${tls.serverCert};
    ssl_certificate_key ${tls.serverKey};
    ssl_client_certificate ${tls.caCert};
    ssl_verify_client on;
    ssl_session_cache shared:bench_tls:1m;
    ssl_protocols TLSv1.2 TLSv1.3;
` : '';
  return `${nginxCommon(dir)}http {
${nginxHttpCommon(dir)}  upstream backend {
    server ${HOST}:${backendPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen ${HOST}:${port}${tls ? ' ssl' : ''};
${ssl}    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/**
 * The nginx TLS pair's certificates, made with openssl in `dir`: a CA, a server certificate for the
 * terminator (DNS name TLS_UPSTREAM_NAME and 127.0.0.1) and a client certificate for the front, all
 * ECDSA P-256, valid 7 days.
 */
function makeNginxTlsFiles(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const openssl = (args) => {
    const r = run('openssl', args, { cwd: dir });
    if (r.error) throw new Error(`openssl not found (${r.error.message}): install it (apt-get install -y openssl)`);
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
  };
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', '-new', ...newKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '7', '-subj', '/CN=outrigger bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const leaf = (name, subject, ext) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n${ext}\n`);
    openssl(['req', '-new', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${subject}`]);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '7',
      '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  };
  leaf('server', TLS_UPSTREAM_NAME, `extendedKeyUsage=serverAuth\nsubjectAltName=DNS:${TLS_UPSTREAM_NAME},IP:${HOST}`);
  leaf('client', 'bench-client', 'extendedKeyUsage=clientAuth\nsubjectAltName=DNS:bench-client');
  const f = (n) => path.join(dir, n);
  return { caCert: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key'), clientCert: f('client.crt'), clientKey: f('client.key') };
}

/** cp.yaml of the control plane the sidecar pairs register with and get their certificates from. */
function controlPlaneYaml(dir, grpcPort, httpPort) {
  return `listen: { grpc: ${HOST}:${grpcPort}, http: ${HOST}:${httpPort} }
store: { file: ${path.join(dir, 'state.json')} }
`;
}

/**
 * How a pair's sidecar reaches the control plane: the sidecar token it generated and its mesh CA, both beside
 * its state (its gRPC is TLS, the default).
 */
function pairControlPlaneKeys() {
  const dir = path.join(RUN_DIR, 'control-plane');
  return `tokenFile: ${path.join(dir, 'sidecar.token')}, caFile: ${path.join(dir, 'mesh-ca.crt')}`;
}

/**
 * A sidecar pair's callee: registers `service` with the control plane, its inbound listener (mTLS
 * `mtls`) in front of one backend. Its outbound listener is unused but needs a port of its own.
 */
function pairCalleeYaml(service, p, cpGrpcPort, backendPort, mtls) {
  return `service: ${service}
instance: ${service}-1
admin: { listen: ${HOST}:${p.calleeAdmin} }
outbound: { listen: ${HOST}:${p.calleeOut} }
inbound: { listen: ${HOST}:${p.calleeIn}, target: http://${HOST}:${backendPort}, mtls: ${mtls} }
controlPlane: { addresses: [${HOST}:${cpGrpcPort}], ${pairControlPlaneKeys()} }
log: { level: warn, accessLog: { enabled: false } }
services: {}
`;
}

/** A sidecar pair's caller: no services of its own, subscribed to the callee's service. */
function pairCallerYaml(service, p, cpGrpcPort) {
  return `service: bench-caller
admin: { listen: ${HOST}:${p.callerAdmin} }
outbound: { listen: ${HOST}:${p.callerOut} }
controlPlane: { addresses: [${HOST}:${cpGrpcPort}], subscribe: [${service}], ${pairControlPlaneKeys()} }
log: { level: warn, accessLog: { enabled: false } }
services: {}
`;
}

/**
 * sidecar-ft: the least-load balancer and every fault-tolerance feature on (active health checks,
 * outlier detection, circuit breakers, limits, retries; metrics explicitly on), with thresholds a healthy
 * backend never reaches, so they cost their bookkeeping on every request but never act.
 */
const FAULT_TOLERANCE_YAML = `    lb: least-load
    healthCheck: { http: { path: / }, interval: 2s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3 }
    outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 3, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 5s }
    limits: { maxConcurrent: 1024, maxPending: 1024, maxRetries: 64 }
    retry: { attempts: 2, on: [connect-failure, reset, gateway-error], perTryTimeout: 1s, backoff: { base: 25ms, max: 250ms } }
`;

/**
 * sidecar: the service with its endpoints and nothing else, so every policy is the default (round-robin,
 * default limits and retries, metrics on; no health checks, outlier detection or breakers). Both sidecars
 * log at warn with the access log off: one line per request would measure the log, not the proxy.
 */
function sidecarYaml(outPort, adminPort, backendPorts, faultTolerance = false) {
  return `service: bench-client
admin: { listen: ${HOST}:${adminPort} }
outbound: { listen: ${HOST}:${outPort} }
log: { level: warn, accessLog: { enabled: false } }
${faultTolerance ? 'metrics: { enabled: true }\n' : ''}services:
  ${SIDECAR_HOST_HEADER}:
    endpoints:
${backendPorts.map((p) => `      - { address: ${HOST}:${p} }\n`).join('')}${faultTolerance ? FAULT_TOLERANCE_YAML : ''}`;
}

/**
 * The sidecar for the HTTP/2 targets: `services` = [{ name, protocol, ports, extra }], each with every policy
 * at its default unless `extra` (YAML lines) says otherwise. Log level warn, access log off, like `sidecar`.
 */
function h2SidecarYaml(outPort, adminPort, services) {
  return `service: bench-client
admin: { listen: ${HOST}:${adminPort} }
outbound: { listen: ${HOST}:${outPort} }
log: { level: warn, accessLog: { enabled: false } }
services:
${services.map((s) => `  ${s.name}:
    protocol: ${s.protocol}
    endpoints:
${s.ports.map((p) => `      - { address: ${HOST}:${p} }\n`).join('')}${s.extra ?? ''}`).join('')}`;
}

async function startNginx(tools, name, conf) {
  const dir = path.join(RUN_DIR, name);
  fs.mkdirSync(dir, { recursive: true });
  const confFile = path.join(dir, 'nginx.conf');
  fs.writeFileSync(confFile, conf(dir));
  const test = run(tools.nginx, ['-t', '-q', '-p', dir, '-e', path.join(dir, 'error.log'), '-c', confFile]);
  if (test.status !== 0) throw new Error(`nginx -t rejected ${confFile}:\n${test.stderr}`);
  return startChild(name, tools.nginx, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', confFile, '-g', 'daemon off;']);
}

/** `outrigger control-plane` with its state (and the mesh CA it generates) under RUN_DIR/control-plane. */
async function startControlPlane(grpcPort, httpPort) {
  const cli = path.join(REPO_DIR, 'bin', 'outrigger.js');
  if (!fs.existsSync(cli)) throw new Error(`${path.relative(REPO_DIR, cli)} not found (run npm run build)`);
  const dir = path.join(RUN_DIR, 'control-plane');
  fs.mkdirSync(dir, { recursive: true });
  const cfg = path.join(dir, 'cp.yaml');
  fs.writeFileSync(cfg, controlPlaneYaml(dir, grpcPort, httpPort));
  const child = startChild('control-plane', process.execPath, [cli, 'control-plane', '--config', cfg], { env: nodeEnv(), cwd: REPO_DIR });
  try {
    // HTTPS (the default): ready once it listens, which it does after writing its tokens and CA.
    await waitForListen(child, httpPort, 15_000);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return child;
}

// ---------------------------------------------------------------------------------------------
// Targets: each start() returns { child, port } (or { children, port, host } for a pair of proxies)
// once the target answers 200 through it. Whatever a start() leaves running, also when it throws, is
// stopped by benchTarget.

function nodeEnv() {
  return { ...process.env, NODE_ENV: 'production' };
}

function defineTargets(tools, ports, shared, opts) {
  const { backends } = ports;
  return {
    direct: {
      start: async () => ({ child: null, port: backends[0] }),
    },
    nginx: {
      start: async () => {
        const child = await startNginx(tools, 'nginx-proxy', (dir) => proxyNginxConf(dir, ports.nginx, backends));
        await waitFor200(child, ports.nginx, '/', 10_000);
        return { child, port: ports.nginx };
      },
    },
    haproxy: {
      start: async () => {
        const cfg = path.join(RUN_DIR, 'haproxy.cfg');
        fs.writeFileSync(cfg, haproxyCfg(ports.haproxy, backends));
        const check = run(tools.haproxy, ['-c', '-q', '-f', cfg]);
        if (check.status !== 0) throw new Error(`haproxy -c rejected ${cfg}:\n${check.stdout}${check.stderr}`);
        const child = startChild('haproxy', tools.haproxy, ['-f', cfg, '-db']);
        await waitFor200(child, ports.haproxy, '/', 10_000);
        return { child, port: ports.haproxy };
      },
    },
    'http-proxy': {
      start: async () => {
        const child = startChild('http-proxy', process.execPath, ['--no-deprecation', path.join(BENCH_DIR, 'http-proxy-forwarder.mjs'),
          '--listen', `${HOST}:${ports.httpProxy}`, '--backends', backends.map((p) => `${HOST}:${p}`).join(',')], { env: nodeEnv(), cwd: REPO_DIR });
        await waitFor200(child, ports.httpProxy, '/', 10_000);
        return { child, port: ports.httpProxy };
      },
    },
    undici: { start: () => startForwarder('undici', 'undici-forwarder.mjs', ports.undici) },
    raw: { start: () => startForwarder('raw', 'raw-forwarder.mjs', ports.raw) },
    sidecar: { start: () => startSidecar('sidecar', false) },
    'sidecar-ft': { start: () => startSidecar('sidecar-ft', true) },
    'nginx-pair': { start: () => startNginxPair('nginx-pair', false) },
    'nginx-pair-tls': { start: () => startNginxPair('nginx-pair-tls', true) },
    pair: { start: () => startSidecarPair('pair', 'off') },
    'pair-mtls': { start: () => startSidecarPair('pair-mtls', 'strict') },
    'h2-direct': { start: async () => ({ child: null, port: ports.h2Backends[0], host: H2_SERVICE }) },
    'h2-nginx': { start: () => startH2Nginx('h2-nginx', ports.h2Nginx, H2_SERVICE) },
    'h2-floor': { start: () => startH2Floor('h2-floor', H2_SERVICE) },
    'h2-sidecar': { start: () => startH2Sidecar('h2-sidecar', [{ name: H2_SERVICE, protocol: 'http2', ports: ports.h2Backends }], H2_SERVICE) },
    'grpc-direct': { start: async () => ({ child: null, port: ports.h2Backends[0], host: GRPC_SERVICE }) },
    'grpc-nginx': { start: () => startH2Nginx('grpc-nginx', ports.grpcNginx, GRPC_SERVICE) },
    'grpc-floor': { start: () => startH2Floor('grpc-floor', GRPC_SERVICE) },
    'grpc-sidecar': { start: () => startH2Sidecar('grpc-sidecar', [{ name: GRPC_SERVICE, protocol: 'grpc', ports: ports.h2Backends }], GRPC_SERVICE) },
    'streams-nginx': {
      start: async () => {
        const hold = needHold();
        const max = opts.openStreams.at(-1);
        const child = await startNginx(tools, 'streams-nginx', (dir) => h2ProxyNginxConf(dir, ports.streamsNginx, [hold.port], 64, max));
        await waitForH2(child, ports.streamsNginx, '/ping', 10_000, HOLD_SERVICE);
        return { child, port: ports.streamsNginx, host: HOLD_SERVICE };
      },
    },
    'streams-sidecar': {
      start: () => {
        const hold = needHold();
        // Held streams are requests in flight: the service's limit is raised above the most held at once, and
        // its deadline to 10 minutes (a held response sends nothing after its first chunk).
        const max = opts.openStreams.at(-1);
        const extra = `    timeout: 10m\n    limits: { maxConcurrent: ${max + 1024} }\n`;
        return startH2Sidecar('streams-sidecar', [{ name: HOLD_SERVICE, protocol: 'http2', ports: [hold.port], extra }], HOLD_SERVICE, '/ping');
      },
    },
  };

  function needHold() {
    if (!shared.hold) throw new Error(`no HTTP/2 hold backend: ${shared.holdError ?? 'not started'}`);
    return shared.hold;
  }

  /** nginx with grpc_pass in front of the three HTTP/2 backends; keepalive covers h2load's streams in flight. */
  async function startH2Nginx(name, port, host) {
    const keepalive = Math.max(64, opts.h2Connections * opts.h2Streams);
    const child = await startNginx(tools, name, (dir) => h2ProxyNginxConf(dir, port, ports.h2Backends, keepalive));
    await waitForH2(child, port, '/', 10_000, host);
    return { child, port, host };
  }

  /** bench/h2-floor-forwarder.mjs in front of the three HTTP/2 backends: where node:http2 itself stops. */
  async function startH2Floor(name, host) {
    const child = startChild(name, process.execPath, [path.join(BENCH_DIR, 'h2-floor-forwarder.mjs'),
      '--listen', `${HOST}:${ports.h2Floor}`, '--backends', ports.h2Backends.map((p) => `${HOST}:${p}`).join(',')], { env: nodeEnv(), cwd: REPO_DIR });
    await waitForH2(child, ports.h2Floor, '/', 10_000, host);
    return { child, port: ports.h2Floor, host };
  }

  /**
   * The sidecar with HTTP/2 services (protocol http2 or grpc); ready once /ready answers 200 and an HTTP/2
   * GET of `probePath` with :authority `host` through the outbound listener answers 200. (A gRPC service
   * is then checked with a real gRPC call before it is measured.)
   */
  async function startH2Sidecar(name, services, host, probePath = '/') {
    const cli = path.join(REPO_DIR, 'bin', 'outrigger.js');
    if (!fs.existsSync(cli)) throw new Error(`${path.relative(REPO_DIR, cli)} not found (run npm run build)`);
    const cfg = path.join(RUN_DIR, `${name}.yaml`);
    fs.writeFileSync(cfg, h2SidecarYaml(ports.h2SidecarOut, ports.h2SidecarAdmin, services));
    const nodeArgs = process.env.SIDECAR_NODE_ARGS ? process.env.SIDECAR_NODE_ARGS.split(' ') : [];
    const child = startChild(name, process.execPath, [...nodeArgs, cli, 'sidecar', '--config', cfg], { env: nodeEnv(), cwd: REPO_DIR });
    await waitFor200(child, ports.h2SidecarAdmin, '/ready', 10_000);
    if (services.every((s) => s.protocol !== 'grpc')) await waitForH2(child, ports.h2SidecarOut, probePath, 10_000, host);
    return { child, port: ports.h2SidecarOut, host };
  }

  /** nginx (front) -> nginx (terminator) -> one backend; with tls, the middle hop is TLS with client certificates. */
  async function startNginxPair(name, tls) {
    if (tls && shared.tlsError) throw new Error(`no certificates: ${shared.tlsError}`);
    const p = ports[name];
    const files = tls ? shared.tls : null;
    const term = await startNginx(tools, `${name}-terminator`, (dir) => nginxPairTerminatorConf(dir, p.terminator, backends[0], files));
    await waitForListen(term, p.terminator, 10_000);
    if (tls) {
      // The terminator must refuse a client without a certificate (nginx answers 400), or this is not mutual TLS.
      const r = await httpsGetNoClientCert(p.terminator, fs.readFileSync(files.caCert), TLS_UPSTREAM_NAME);
      if (r.status !== 400) throw new Error(`the TLS terminator answered a client without a certificate with ${r.status || r.error}, expected 400`);
    }
    const front = await startNginx(tools, `${name}-front`, (dir) => nginxPairFrontConf(dir, p.front, p.terminator, files));
    await waitFor200(front, p.front, '/', 10_000);
    return { children: [front, term], port: p.front };
  }

  /**
   * caller sidecar (outbound) -> callee sidecar (inbound, mtls mode) -> one backend. The callee registers
   * with the control plane, which pushes it to the caller (as a mesh endpoint when mtls is strict).
   */
  async function startSidecarPair(name, mtls) {
    if (!shared.controlPlane) throw new Error(`no control plane: ${shared.controlPlaneError ?? 'not started'}`);
    const cli = path.join(REPO_DIR, 'bin', 'outrigger.js');
    if (!fs.existsSync(cli)) throw new Error(`${path.relative(REPO_DIR, cli)} not found (run npm run build)`);
    const service = PAIR_SERVICE[name];
    const p = ports[name];
    const grpc = shared.controlPlane.grpcPort;
    const nodeArgs = process.env.SIDECAR_NODE_ARGS ? process.env.SIDECAR_NODE_ARGS.split(' ') : [];
    const spawnSidecar = (role, yaml) => {
      const cfg = path.join(RUN_DIR, `${name}-${role}.yaml`);
      fs.writeFileSync(cfg, yaml);
      return startChild(`${name}-${role}`, process.execPath, [...nodeArgs, cli, 'sidecar', '--config', cfg], { env: nodeEnv(), cwd: REPO_DIR });
    };
    // A strict callee is ready once it has its certificate.
    const callee = spawnSidecar('callee', pairCalleeYaml(service, p, grpc, backends[0], mtls));
    await waitFor200(callee, p.calleeAdmin, '/ready', 15_000);
    const caller = spawnSidecar('caller', pairCallerYaml(service, p, grpc));
    await waitFor200(caller, p.callerAdmin, '/ready', 15_000);
    // Until the caller has the callee's endpoint (and, for mTLS, its own certificate) this is 404/503/403.
    await waitFor200(caller, p.callerOut, '/', 15_000, service);
    // What is measured is the path asked for: the endpoint the caller got is (or is not) a mesh endpoint,
    // and a strict callee refuses plaintext.
    const cfg = await httpGet(p.callerAdmin, { path: '/config?format=json', host: 'localhost' });
    let endpoints;
    try {
      endpoints = JSON.parse(cfg.body).services?.[service]?.endpoints;
    } catch {
      endpoints = undefined;
    }
    const want = `${HOST}:${p.calleeIn}`;
    const ep = Array.isArray(endpoints) && endpoints.length === 1 && endpoints[0].address === want ? endpoints[0] : null;
    if (!ep) throw new Error(`the caller's endpoints for ${service} are ${JSON.stringify(endpoints)}, expected only ${want}`);
    if (Boolean(ep.mesh) !== (mtls === 'strict')) throw new Error(`the caller's endpoint ${want} has mesh: ${ep.mesh}, expected ${mtls === 'strict'}`);
    if (mtls === 'strict') {
      const plain = await httpGet(p.calleeIn, { host: service });
      if (plain.status !== 403) throw new Error(`plaintext straight to the strict inbound listener got ${plain.status || plain.error}, expected 403`);
    }
    return { children: [caller, callee], port: p.callerOut, host: service };
  }

  async function startForwarder(name, script, port) {
    const child = startChild(name, process.execPath, [path.join(BENCH_DIR, script),
      '--listen', `${HOST}:${port}`, '--backends', backends.map((p) => `${HOST}:${p}`).join(',')], { env: nodeEnv(), cwd: REPO_DIR });
    await waitFor200(child, port, '/', 10_000);
    return { child, port };
  }

  async function startSidecar(name, faultTolerance) {
    const cli = path.join(REPO_DIR, 'bin', 'outrigger.js');
    if (!fs.existsSync(cli)) throw new Error(`${path.relative(REPO_DIR, cli)} not found (run npm run build)`);
    const cfg = path.join(RUN_DIR, `${name}.yaml`);
    fs.writeFileSync(cfg, sidecarYaml(ports.sidecarOut, ports.sidecarAdmin, backends, faultTolerance));
    const nodeArgs = process.env.SIDECAR_NODE_ARGS ? process.env.SIDECAR_NODE_ARGS.split(' ') : [];
    const child = startChild(name, process.execPath, [...nodeArgs, cli, 'sidecar', '--config', cfg], { env: nodeEnv(), cwd: REPO_DIR });
    await waitFor200(child, ports.sidecarAdmin, '/ready', 10_000);
    const probe = await httpGet(ports.sidecarOut);
    if (probe.status !== 200) throw new Error(`sidecar is ready but GET / (Host: ${SIDECAR_HOST_HEADER}) through it returned ${probe.status || probe.error}:\n${tail(child.logFile)}`);
    return { child, port: ports.sidecarOut };
  }
}

// ---------------------------------------------------------------------------------------------
// One target: warm-up, throughput (with RSS/CPU sampling), latency at a fixed rate.

async function benchTarget(name, target, tools, opts, backendChild, controlPlaneChild, shared) {
  log(`\n== ${LABELS[name]}`);
  // Everything this target starts (also what a failed start() left behind) is stopped at its end.
  const runningBefore = new Set(children);
  try {
    const started = await target.start();
    const { port } = started;
    const proxies = started.children ?? (started.child ? [started.child] : []);
    const host = started.host ?? SIDECAR_HOST_HEADER;
    log(`  listening on ${HOST}:${port}${proxies.length ? ` (${proxies.map((c) => `${c.name} pid ${c.pid}`).join(', ')})` : ''}` +
      `${host !== SIDECAR_HOST_HEADER ? `, ${kindOf(name) === 'http1' ? 'Host' : ':authority'}: ${host}` : ''}`);
    if (kindOf(name) === 'h2' || kindOf(name) === 'grpc') return await measureH2(name, port, host, proxies, tools, opts, backendChild);
    if (kindOf(name) === 'streams') return await measureStreams(name, port, host, proxies, opts, shared);

    if (opts.warmup > 0) {
      log(`  warm-up: wrk ${opts.warmup}s`);
      const warm = await runWrk(tools, `${name}.warmup.wrk`, port, host, opts.warmup, opts.connections);
      if (warm.non2xx > 0) throw new Error(`returned ${warm.non2xx} non-2xx responses during warm-up (see ${path.join(RUN_DIR, `${name}.warmup.wrk.out.log`)})`);
    }

    const quiet = await waitForQuiet(10);
    if (!quiet.quiet) log(`  note: the machine stayed busy (${fmt(quiet.busyPct, 0)}% of a core used by others) for 10 s; measuring anyway`);
    const proxyPids = proxies.flatMap((c) => groupPids(c.pid));
    const backendPids = groupPids(backendChild.pid);
    const cpPids = PAIR_TARGETS.includes(name) && controlPlaneChild ? groupPids(controlPlaneChild.pid) : [];
    log(`  throughput: wrk -t1 -c${opts.connections} -d${opts.duration}s`);
    const probe = startProbe(proxyPids, backendPids, cpPids);
    const wrk = await runWrk(tools, `${name}.wrk`, port, host, opts.duration, opts.connections, probe.track);
    const tp = probe.stop();
    const sockErr = Object.values(wrk.socketErrors).reduce((a, b) => a + b, 0);
    log(`    ${fmt(wrk.rps, 0)} req/s, wrk latency p50 ${fmt(wrk.p50Ms, 2)} ms / p99 ${fmt(wrk.p99Ms, 2)} ms, non-2xx ${wrk.non2xx}, socket errors ${sockErr}`);
    log(`    CPU: ${tp.proxyCpuPct !== null ? `proxy ${fmt(tp.proxyCpuPct, 0)}%, ` : ''}backends ${fmt(tp.backendCpuPct, 0)}%, ` +
      `${tp.controlPlaneCpuPct !== null ? `control plane ${fmt(tp.controlPlaneCpuPct, 0)}%, ` : ''}wrk ${fmt(tp.loadGenCpuPct, 0)}%, ` +
      `other ${fmt(tp.otherCpuPct, 0)}%${tp.maxRssMb !== null ? `; proxy max RSS ${fmt(tp.maxRssMb, 1)} MB, RssAnon ${fmt(tp.maxRssAnonMb, 1)} MB` : ''}`);
    if (wrk.non2xx > 0) throw new Error(`returned ${wrk.non2xx} non-2xx responses under wrk (see ${path.join(RUN_DIR, `${name}.wrk.out.log`)})`);

    log(`  latency: h2load --h1 -c ${opts.clients} --rps ${opts.rate / opts.clients} -D ${opts.duration} (${opts.rate} req/s)`);
    const probe2 = startProbe(proxyPids, backendPids, cpPids);
    const lat = await runH2load(tools, `${name}.h2load`, port, host, opts, probe2.track);
    const lp = probe2.stop();
    log(`    ${lat.requests} requests (${fmt(lat.achievedRps, 0)}/s): p50 ${fmt(lat.p50Ms, 3)} ms, p90 ${fmt(lat.p90Ms, 3)} ms, ` +
      `p99 ${fmt(lat.p99Ms, 3)} ms, p99.9 ${fmt(lat.p999Ms, 3)} ms, max ${fmt(lat.maxMs, 3)} ms`);
    log(`    CPU: ${lp.proxyCpuPct !== null ? `proxy ${fmt(lp.proxyCpuPct, 0)}%, ` : ''}backends ${fmt(lp.backendCpuPct, 0)}%, ` +
      `${lp.controlPlaneCpuPct !== null ? `control plane ${fmt(lp.controlPlaneCpuPct, 0)}%, ` : ''}h2load ${fmt(lp.loadGenCpuPct, 0)}%, ` +
      `other ${fmt(lp.otherCpuPct, 0)}%${lp.maxRssMb !== null ? `; proxy max RSS ${fmt(lp.maxRssMb, 1)} MB, RssAnon ${fmt(lp.maxRssAnonMb, 1)} MB` : ''}`);
    const failed = Object.values(lat.failures).reduce((a, b) => a + b, 0);
    if (failed > 0) throw new Error(`non-2xx/failed requests in the latency run: ${JSON.stringify(lat.failures)} (status -1 = failed stream)`);
    const warnings = [];
    if (lat.achievedRps < opts.rate * 0.95) warnings.push(`latency run reached only ${fmt(lat.achievedRps, 0)} of ${opts.rate} req/s`);
    if (sockErr > 0) warnings.push(`wrk socket errors ${JSON.stringify(wrk.socketErrors)}`);
    const otherCpuPct = Math.max(tp.otherCpuPct, lp.otherCpuPct);
    if (otherCpuPct > 15) warnings.push(`other processes used ${fmt(otherCpuPct, 0)}% CPU during the measurements: numbers are noisy`);
    for (const w of warnings) log(`  WARNING: ${w}`);

    return {
      name, ok: true, kind: 'http1', rps: wrk.rps, wrk, lat, throughputRun: tp, latencyRun: lp, warnings,
      proxyProcesses: proxyPids.length,
      proxyCpuPct: tp.proxyCpuPct,
      backendCpuPct: tp.backendCpuPct,
      controlPlaneCpuPct: tp.controlPlaneCpuPct,
      otherCpuPct,
      maxRssMb: tp.maxRssMb === null ? null : Math.max(tp.maxRssMb, lp.maxRssMb),
      maxRssAnonMb: tp.maxRssAnonMb === null ? null : Math.max(tp.maxRssAnonMb, lp.maxRssAnonMb),
      errors: wrk.non2xx + sockErr + failed,
    };
  } catch (err) {
    log(`  FAILED: ${err.message}`);
    return { name, ok: false, error: err.message.split('\n')[0] };
  } finally {
    // Newest first: a caller before its callee, a front before its terminator.
    for (const child of [...children].filter((c) => !runningBefore.has(c)).reverse()) await stopChild(child);
  }
}

/**
 * An HTTP/2 or gRPC target: a check that the path works (an HTTP/2 GET with the expected body, or a real
 * gRPC unary call with status OK and the expected message), warm-up, closed-loop throughput with h2load
 * -c N -m M (with RSS/CPU sampling), then latency at the fixed rate over HTTP/2 (one stream per
 * connection at a time, as the HTTP/1.1 latency run).
 */
async function measureH2(name, port, host, proxies, tools, opts, backendChild) {
  const kind = kindOf(name);
  const proc = proxies[0] ?? null;
  if (kind === 'grpc') {
    // Retried for up to 10 s: a proxy may be ready before its upstream sessions are.
    const deadline = performance.now() + 10_000;
    for (;;) {
      if (proc?.exited) throw exitedError(proc);
      try {
        await grpcUnaryCalls(port, host);
        break;
      } catch (err) {
        if (performance.now() > deadline) throw err;
        await sleep(200);
      }
    }
    log(`  check: a @grpc/grpc-js unary call ${GRPC_METHOD} ended with status OK and the expected reply`);
  } else {
    const r = await h2Get(port, { authority: host });
    if (r.status !== 200 || r.body !== HELLO) throw new Error(`an HTTP/2 GET / (:authority ${host}) returned ${r.status || r.error} ${JSON.stringify(r.body ?? '')}, expected 200 ${JSON.stringify(HELLO)}`);
    log(`  check: an HTTP/2 GET / answered 200 with the backend's body`);
  }
  const cm = `-c ${opts.h2Connections} -m ${opts.h2Streams}`;
  if (opts.warmup > 0) {
    log(`  warm-up: h2load ${cm} -D ${opts.warmup}`);
    await runH2loadThroughput(tools, `${name}.warmup.h2load`, port, host, kind, opts.warmup, opts);
  }
  const quiet = await waitForQuiet(10);
  if (!quiet.quiet) log(`  note: the machine stayed busy (${fmt(quiet.busyPct, 0)}% of a core used by others) for 10 s; measuring anyway`);
  const proxyPids = proxies.flatMap((c) => groupPids(c.pid));
  const backendPids = groupPids(backendChild.pid);
  log(`  throughput: h2load -t1 ${cm} -D ${opts.duration}${kind === 'grpc' ? ` (gRPC unary: POST ${GRPC_METHOD}, content-type application/grpc, te: trailers)` : ''}`);
  const probe = startProbe(proxyPids, backendPids);
  const h2 = await runH2loadThroughput(tools, `${name}.h2load-throughput`, port, host, kind, opts.duration, opts, probe.track);
  const tp = probe.stop();
  log(`    ${fmt(h2.rps, 0)} req/s (${h2.succeeded} succeeded in ${fmt(h2.seconds, 2)} s, ${h2.cutAtEnd} cut at the end), h2load mean ${fmt(h2.latencyMeanMs, 2)} ms`);
  log(`    CPU: ${tp.proxyCpuPct !== null ? `proxy ${fmt(tp.proxyCpuPct, 0)}%, ` : ''}backends ${fmt(tp.backendCpuPct, 0)}%, h2load ${fmt(tp.loadGenCpuPct, 0)}%, ` +
    `other ${fmt(tp.otherCpuPct, 0)}%${tp.maxRssMb !== null ? `; proxy max RSS ${fmt(tp.maxRssMb, 1)} MB, RssAnon ${fmt(tp.maxRssAnonMb, 1)} MB` : ''}`);

  log(`  latency: h2load -c ${opts.clients} --rps ${opts.rate / opts.clients} -D ${opts.duration} over HTTP/2 (${opts.rate} req/s)`);
  const probe2 = startProbe(proxyPids, backendPids);
  const lat = await runH2load(tools, `${name}.h2load`, port, host, opts, probe2.track, kind);
  const lp = probe2.stop();
  log(`    ${lat.requests} requests (${fmt(lat.achievedRps, 0)}/s): p50 ${fmt(lat.p50Ms, 3)} ms, p90 ${fmt(lat.p90Ms, 3)} ms, ` +
    `p99 ${fmt(lat.p99Ms, 3)} ms, p99.9 ${fmt(lat.p999Ms, 3)} ms, max ${fmt(lat.maxMs, 3)} ms`);
  log(`    CPU: ${lp.proxyCpuPct !== null ? `proxy ${fmt(lp.proxyCpuPct, 0)}%, ` : ''}backends ${fmt(lp.backendCpuPct, 0)}%, h2load ${fmt(lp.loadGenCpuPct, 0)}%, ` +
    `other ${fmt(lp.otherCpuPct, 0)}%${lp.maxRssMb !== null ? `; proxy max RSS ${fmt(lp.maxRssMb, 1)} MB, RssAnon ${fmt(lp.maxRssAnonMb, 1)} MB` : ''}`);
  const failed = Object.values(lat.failures).reduce((a, b) => a + b, 0);
  if (failed > 0) throw new Error(`non-2xx/failed requests in the latency run: ${JSON.stringify(lat.failures)} (status -1 = failed stream)`);
  // A cross-check with a real gRPC client after the load: every call must end OK. Its rate is grpc-js's (in
  // the bench process, sharing the machine), far below what the proxies can do: not a throughput figure.
  let grpcJs = null;
  if (kind === 'grpc') {
    const g = await grpcUnaryCalls(port, host, GRPC_JS_CHECK);
    grpcJs = { ...GRPC_JS_CHECK, seconds: g.seconds, callsPerSecond: g.calls / g.seconds };
    log(`  check: @grpc/grpc-js, ${g.calls} unary calls ${GRPC_JS_CHECK.concurrency} at a time after the load: all status OK ` +
      `(${fmt(grpcJs.callsPerSecond, 0)} calls/s, bounded by grpc-js in the bench process)`);
  }
  const warnings = [];
  if (lat.achievedRps < opts.rate * 0.95) warnings.push(`latency run reached only ${fmt(lat.achievedRps, 0)} of ${opts.rate} req/s`);
  const otherCpuPct = Math.max(tp.otherCpuPct, lp.otherCpuPct);
  if (otherCpuPct > 15) warnings.push(`other processes used ${fmt(otherCpuPct, 0)}% CPU during the measurements: numbers are noisy`);
  for (const w of warnings) log(`  WARNING: ${w}`);
  return {
    name, ok: true, kind, rps: h2.rps, h2load: h2, lat, grpcJs, throughputRun: tp, latencyRun: lp, warnings,
    proxyProcesses: proxyPids.length,
    proxyCpuPct: tp.proxyCpuPct,
    backendCpuPct: tp.backendCpuPct,
    controlPlaneCpuPct: null,
    otherCpuPct,
    maxRssMb: tp.maxRssMb === null ? null : Math.max(tp.maxRssMb, lp.maxRssMb),
    maxRssAnonMb: tp.maxRssAnonMb === null ? null : Math.max(tp.maxRssAnonMb, lp.maxRssAnonMb),
    // Streams h2load cut when it stopped are not errors of the proxy.
    errors: h2.non2xx + failed,
  };
}

/** Median summed VmRSS and RssAnon (MB) of `pids` over `samples` readings 250 ms apart. */
async function medianMemMb(pids, samples = 8) {
  const rss = [];
  const anon = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await sleep(250);
    let r = 0;
    let a = 0;
    for (const p of pids) {
      const m = memKb(p);
      r += m.rss;
      a += m.anon;
    }
    rss.push(r / 1024);
    anon.push(a / 1024);
  }
  const med = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  return { rssMb: med(rss), rssAnonMb: med(anon) };
}

/**
 * Opens HTTP/2 streams through `port` (:authority `authority`) until `state` holds `total` of them, each a
 * GET the hold backend answers with 200 and a first chunk and then keeps open. New connections are opened
 * as needed, each with up to STREAMS_PER_CONNECTION streams (fewer if the proxy allows fewer at once).
 */
async function openHeldStreams(port, authority, total, state, timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  while (state.streams < total) {
    if (performance.now() > deadline) throw new Error(`only ${state.streams} of ${total} streams opened within ${timeoutMs / 1000} s`);
    const session = http2.connect(`http://${HOST}:${port}`);
    state.sessions.push(session);
    session.on('error', (err) => { state.errors.push(err.message); });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no SETTINGS from the proxy within 10 s')), 10_000);
      session.once('remoteSettings', () => { clearTimeout(timer); resolve(); });
      session.once('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const allowed = session.remoteSettings.maxConcurrentStreams ?? STREAMS_PER_CONNECTION;
    const n = Math.min(STREAMS_PER_CONNECTION, allowed, total - state.streams);
    await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'GET', ':path': '/hold', ':authority': authority });
      const timer = setTimeout(() => reject(new Error('a held stream got no answer within 20 s')), 20_000);
      req.on('response', (h) => {
        if (h[':status'] !== 200) {
          clearTimeout(timer);
          reject(new Error(`a held stream was answered ${h[':status']}`));
        }
      });
      req.once('data', () => { clearTimeout(timer); resolve(); }); // the backend's first chunk: the stream is open end to end
      req.on('error', (err) => { clearTimeout(timer); reject(err); });
      req.on('close', () => { state.closed++; });
    })));
    state.streams += n;
  }
}

/**
 * An open-streams target: the proxy's memory (median of 2 s of samples) idle, then with each number of
 * streams in opts.openStreams held open through it to the hold backend, which must count them all;
 * reported as MB per 1,000 streams.
 */
async function measureStreams(name, port, host, proxies, opts, shared) {
  const proxyPids = proxies.flatMap((c) => groupPids(c.pid));
  const holdCount = async () => {
    const r = await h2Get(shared.hold.port, { path: '/count' });
    return r.status === 200 ? Number(r.body) : NaN;
  };
  const state = { sessions: [], streams: 0, closed: 0, errors: [] };
  try {
    const before = await holdCount();
    if (before !== 0) throw new Error(`the hold backend holds ${before} streams before the target starts, expected 0`);
    await sleep(1000);
    const idle = await medianMemMb(proxyPids);
    log(`  idle: RssAnon ${fmt(idle.rssAnonMb, 1)} MB, RSS ${fmt(idle.rssMb, 1)} MB`);
    const levels = [];
    for (const total of opts.openStreams) {
      await openHeldStreams(port, host, total, state);
      const held = await holdCount();
      if (state.closed > 0 || held !== total) {
        throw new Error(`${total} streams opened, but the hold backend holds ${held} and ${state.closed} were closed${state.errors.length ? ` (${state.errors[0]})` : ''}`);
      }
      await sleep(2000);
      const mem = await medianMemMb(proxyPids);
      if (state.closed > 0) throw new Error(`${state.closed} held streams were closed by the proxy while held`);
      const perThousand = ((mem.rssAnonMb - idle.rssAnonMb) / total) * 1000;
      levels.push({ streams: total, connections: state.sessions.length, ...mem, mbPer1000: perThousand });
      log(`  ${total} streams open on ${state.sessions.length} connections (the backend holds ${held}): RssAnon ${fmt(mem.rssAnonMb, 1)} MB, ` +
        `RSS ${fmt(mem.rssMb, 1)} MB: ${fmt(perThousand, 2)} MB RssAnon per 1,000 streams`);
    }
    const last = levels.at(-1);
    const prev = levels.at(-2);
    const marginal = prev ? ((last.rssAnonMb - prev.rssAnonMb) / (last.streams - prev.streams)) * 1000 : null;
    if (prev) log(`  from ${prev.streams} to ${last.streams} streams: ${fmt(marginal, 2)} MB RssAnon per 1,000 more`);
    return { name, ok: true, kind: 'streams', idle, levels, mbPer1000: last.mbPer1000, marginalMbPer1000: marginal, proxyProcesses: proxyPids.length };
  } finally {
    for (const s of state.sessions) s.destroy();
    // The next target starts from a backend that holds nothing.
    const deadline = performance.now() + 15_000;
    while (performance.now() < deadline && (await holdCount()) !== 0) await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function fmt(n, digits) {
  return n === null || n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits);
}

function signed(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`;
}

/** The table of one kind of target: http1 (wrk), or h2 (the HTTP/2 and gRPC targets, h2load). */
function tableRows(results, opts, kind = 'http1') {
  const direct = (r) => results.find((d) => d.name === DIRECT_OF[r.kind ?? kindOf(r.name)] && d.ok);
  const load = kind === 'http1' ? `wrk -c${opts.connections}` : `h2load -c${opts.h2Connections} -m${opts.h2Streams}`;
  results = results.filter((r) => (kind === 'http1' ? kindOf(r.name) === 'http1' : ['h2', 'grpc'].includes(kindOf(r.name))));
  const header = ['Target', `req/s (${load})`, 'proxy CPU %', 'backends CPU %', `p50 ms @${opts.rate / 1000}k`, 'p90 ms',
    'p99 ms', 'p99.9 ms', 'added p50 ms', 'max RSS MB', 'max RssAnon MB', 'errors', 'other CPU %'];
  const rows = results.map((r) => {
    if (!r.ok) return [LABELS[r.name], `FAILED: ${r.error}`, ...header.slice(2).map(() => '')];
    const isDirect = Object.values(DIRECT_OF).includes(r.name);
    const added = direct(r) && !isDirect ? r.lat.p50Ms - direct(r).lat.p50Ms : null;
    return [LABELS[r.name], fmt(r.rps, 0), fmt(r.proxyCpuPct, 0), fmt(r.backendCpuPct, 0), fmt(r.lat.p50Ms, 3), fmt(r.lat.p90Ms, 3),
      fmt(r.lat.p99Ms, 3), fmt(r.lat.p999Ms, 3), isDirect ? '0' : signed(added, 3), fmt(r.maxRssMb, 1), fmt(r.maxRssAnonMb, 1), String(r.errors),
      fmt(r.otherCpuPct, 0)];
  });
  return { header, rows };
}

/** The open-streams table: the proxy's RssAnon idle and at each number of held streams, and per 1,000. */
function streamsTableRows(results, opts) {
  results = results.filter((r) => kindOf(r.name) === 'streams');
  const n = (v) => v.toLocaleString('en-US');
  const last = opts.openStreams.at(-1);
  const prev = opts.openStreams.at(-2);
  const header = ['Target', 'idle RssAnon MB', ...opts.openStreams.map((v) => `RssAnon MB @${n(v)}`), `MB per 1,000 (0→${n(last)})`,
    ...(prev ? [`MB per 1,000 (${n(prev)}→${n(last)})`] : []), `connections @${n(last)}`, `RSS MB @${n(last)}`];
  const rows = results.map((r) => {
    if (!r.ok) return [LABELS[r.name], `FAILED: ${r.error}`, ...header.slice(2).map(() => '')];
    const top = r.levels.at(-1);
    return [LABELS[r.name], fmt(r.idle.rssAnonMb, 1), ...r.levels.map((l) => fmt(l.rssAnonMb, 1)), fmt(r.mbPer1000, 2),
      ...(prev ? [fmt(r.marginalMbPer1000, 2)] : []), String(top.connections), fmt(top.rssMb, 1)];
  });
  return { header, rows };
}

function textTable({ header, rows }) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i].startsWith('FAILED') ? 0 : r[i].length))));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map((r) => (r[1].startsWith('FAILED') ? `${r[0].padEnd(widths[0])}  ${r[1]}` : line(r)))].join('\n');
}

function markdownTable({ header, rows }) {
  const esc = (s) => s.replace(/\|/g, '\\|');
  return [`| ${header.map(esc).join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

const SHORT = {
  direct: 'direct', nginx: 'nginx', haproxy: 'HAProxy', 'http-proxy': 'http-proxy', undici: 'undici forwarder', raw: 'raw-socket floor', sidecar: 'sidecar', 'sidecar-ft': 'sidecar-ft',
  'nginx-pair': 'nginx-pair', 'nginx-pair-tls': 'nginx-pair-tls', pair: 'pair', 'pair-mtls': 'pair-mtls',
  ...Object.fromEntries([...H2_TARGETS, ...STREAMS_TARGETS].map((t) => [t, t])),
};

/**
 * Ratio lines (the sidecars against the proxies and the two Node.js floors, the floors against nginx)
 * and the goal checks of GOAL_TARGET: { ratios: string[], checks: string[], goals: object[] }.
 */
function comparisons(results) {
  const get = (n) => results.find((r) => r.name === n && r.ok);
  const nginx = get('nginx');
  const hp = get('http-proxy');
  const direct = get('direct');
  const ratios = [];
  const ratio = (a, b) => (a && b ? a.rps / b.rps : null);
  const x = (n) => `${fmt(n, 2)}x`;

  // Where the Node.js floors are against the C proxies and the plain Node proxy.
  for (const floor of ['undici', 'raw'].map(get).filter(Boolean)) {
    const vs = ['nginx', 'haproxy', 'http-proxy'].map(get).filter(Boolean).map((o) => `${x(ratio(floor, o))} ${SHORT[o.name]}`);
    if (vs.length) ratios.push(`${SHORT[floor.name]} throughput: ${vs.join(', ')}`);
  }
  const sidecars = ['sidecar', 'sidecar-ft'].map(get).filter(Boolean);
  if (sidecars.length === 0 && results.some((r) => r.name === 'sidecar' || r.name === 'sidecar-ft')) ratios.push('no sidecar result (failed): no sidecar ratios');
  for (const s of sidecars) {
    const vs = ['nginx', 'haproxy', 'http-proxy'].map(get).filter(Boolean).map((o) => `${x(ratio(s, o))} ${SHORT[o.name]}`);
    if (vs.length) ratios.push(`${SHORT[s.name]} throughput: ${vs.join(', ')}`);
    // Against the Node.js floors: how much of the sidecar's cost is its own and how much is Node's.
    for (const floor of ['undici', 'raw'].map(get).filter(Boolean)) {
      ratios.push(`${SHORT[s.name]} / ${SHORT[floor.name]}: ${x(ratio(s, floor))} throughput, ` +
        `p50 ${signed(s.lat.p50Ms - floor.lat.p50Ms, 3)} ms, p99 ${signed(s.lat.p99Ms - floor.lat.p99Ms, 3)} ms`);
    }
  }
  const plain = get('sidecar');
  const ft = get('sidecar-ft');
  if (plain && ft) ratios.push(`sidecar-ft / sidecar: ${x(ratio(ft, plain))} throughput; p99 ${fmt(ft.lat.p99Ms, 3)} vs ${fmt(plain.lat.p99Ms, 3)} ms`);

  // Two proxies in a row: what (mutual) TLS on the middle hop costs each, and the sidecars against nginx.
  // CPU per request (both proxies' CPU time during the wrk run / requests) depends less than req/s on how
  // much of the machine the proxies got, so it is the steadier figure on a busy machine.
  const cpuUsPerReq = (r) => (r.proxyCpuPct / 100) * 1e6 / r.rps;
  const pairRatio = (a, b, what) => {
    const [ra, rb] = [get(a), get(b)];
    if (ra && rb) {
      ratios.push(`${SHORT[a]} / ${SHORT[b]}${what ? ` (${what})` : ''}: ${x(ratio(ra, rb))} throughput; ` +
        `p50 ${signed(ra.lat.p50Ms - rb.lat.p50Ms, 3)} ms, p99 ${signed(ra.lat.p99Ms - rb.lat.p99Ms, 3)} ms; ` +
        `proxy CPU per request ${fmt(cpuUsPerReq(ra), 0)} vs ${fmt(cpuUsPerReq(rb), 0)} µs`);
    }
  };
  pairRatio('pair-mtls', 'pair', 'what mutual TLS adds to a sidecar hop');
  pairRatio('nginx-pair-tls', 'nginx-pair', 'what TLS with client certificates adds to an nginx hop');
  pairRatio('pair', 'nginx-pair');
  pairRatio('pair-mtls', 'nginx-pair-tls');
  const withCp = PAIR_TARGETS.map(get).filter((r) => r && r.controlPlaneCpuPct !== null);
  if (withCp.length) {
    ratios.push(`control plane CPU during the wrk run (not in proxy CPU %): ${withCp.map((r) => `${SHORT[r.name]} ${fmt(r.controlPlaneCpuPct, 1)}%`).join(', ')}`);
  }
  if (direct && nginx) {
    const others = results.filter((r) => r.ok && kindOf(r.name) === 'http1' && r.name !== 'direct' && r.name !== 'nginx');
    ratios.push(`added p50 over direct: nginx ${signed(nginx.lat.p50Ms - direct.lat.p50Ms, 3)} ms` +
      others.map((r) => `, ${SHORT[r.name]} ${signed(r.lat.p50Ms - direct.lat.p50Ms, 3)} ms`).join(''));
  }

  // HTTP/2 and gRPC: the sidecar and nginx against direct and each other, with CPU per request; added p50.
  for (const kind of ['h2', 'grpc']) {
    const what = kind === 'h2' ? 'HTTP/2' : 'gRPC unary';
    pairRatio(`${kind}-sidecar`, `${kind}-nginx`, what);
    pairRatio(`${kind}-sidecar`, `${kind}-floor`, `${what}: the sidecar against the node:http2 floor`);
    pairRatio(`${kind}-floor`, `${kind}-nginx`, `${what}: where node:http2 itself stops`);
    const d = get(`${kind}-direct`);
    const viaProxies = [`${kind}-nginx`, `${kind}-floor`, `${kind}-sidecar`].map(get).filter(Boolean);
    if (d && viaProxies.length) {
      ratios.push(`${what} through a proxy / direct: ${viaProxies.map((r) => `${SHORT[r.name]} ${x(ratio(r, d))}`).join(', ')}; ` +
        `added p50 over ${SHORT[d.name]}: ${viaProxies.map((r) => `${SHORT[r.name]} ${signed(r.lat.p50Ms - d.lat.p50Ms, 3)} ms`).join(', ')}`);
    }
  }
  const streams = STREAMS_TARGETS.map(get).filter(Boolean);
  if (streams.length) {
    ratios.push(`open HTTP/2 streams, RssAnon per 1,000: ${streams.map((r) => `${SHORT[r.name]} ${fmt(r.mbPer1000, 2)} MB` +
      `${r.marginalMbPer1000 !== null ? ` (${fmt(r.marginalMbPer1000, 2)} MB for each 1,000 beyond ${r.levels.at(-2).streams.toLocaleString('en-US')})` : ''}`).join(', ')}`);
  }

  // Goals. Each: measured figures, the limit it is held to, and the margin in marginUnit (>= 0: passed with
  // that much to spare; < 0: missed by that much). The HTTP/1.1 goals are held by GOAL_TARGET.
  const t = get(GOAL_TARGET);
  const name = SHORT[GOAL_TARGET];
  const goals = [];
  const goal = (label, needs, compute) => {
    const missing = needs.filter((n) => !get(n));
    if (missing.length) {
      goals.push({ goal: label, status: 'SKIP', text: `(not measured: needs ${missing.join(', ')})` });
      return;
    }
    const g = compute();
    goals.push({ goal: label, status: g.margin >= 0 ? 'PASS' : 'MISS', ...g, text: `${g.text}; ${g.margin >= 0 ? `${g.marginText} to spare` : `misses by ${g.marginText}`}` });
  };
  const throughputGoal = (factor, other, target = t) => {
    const need = factor * other.rps;
    const margin = target.rps - need;
    return {
      ratio: ratio(target, other), limitRatio: factor, margin: ratio(target, other) - factor, marginUnit: 'x', rps: target.rps, otherRps: other.rps, neededRps: need,
      text: `${x(ratio(target, other))} (${fmt(target.rps, 0)} vs ${fmt(other.rps, 0)} req/s; needs ${fmt(need, 0)})`,
      marginText: `${fmt(Math.abs(ratio(target, other) - factor), 2)}x = ${fmt(Math.abs(margin), 0)} req/s${margin < 0 ? ` (+${fmt((-margin / target.rps) * 100, 0)}% needed)` : ''}`,
    };
  };
  goal(`${name} throughput >= ${GOALS.vsNginx}x nginx`, [GOAL_TARGET, 'nginx'], () => throughputGoal(GOALS.vsNginx, nginx));
  goal(`${name} throughput >= ${GOALS.vsHttpProxy}x http-proxy`, [GOAL_TARGET, 'http-proxy'], () => throughputGoal(GOALS.vsHttpProxy, hp));
  goal(`${name} added p50 <= nginx's added p50 + ${GOALS.addedP50OverNginxMs} ms at the fixed rate`, [GOAL_TARGET, 'nginx'], () => {
    // Both added p50s subtract direct's p50, so the check itself needs no direct run; without one the p50s are shown.
    const base = direct ? direct.lat.p50Ms : 0;
    const show = (p50) => (direct ? `${signed(p50 - base, 3)} ms` : `p50 ${fmt(p50, 3)} ms`);
    const limit = nginx.lat.p50Ms + GOALS.addedP50OverNginxMs;
    const margin = limit - t.lat.p50Ms;
    return {
      addedP50Ms: direct ? t.lat.p50Ms - base : null, nginxAddedP50Ms: direct ? nginx.lat.p50Ms - base : null,
      p50Ms: t.lat.p50Ms, nginxP50Ms: nginx.lat.p50Ms, limitP50Ms: limit, margin, marginUnit: 'ms',
      text: `${show(t.lat.p50Ms)} vs nginx ${show(nginx.lat.p50Ms)} (limit ${show(limit)}${direct ? '' : '; no direct run'})`,
      marginText: `${fmt(Math.abs(margin), 3)} ms`,
    };
  });
  goal(`${name} p99 <= nginx's p99 + ${GOALS.p99OverNginxMs} ms at the fixed rate`, [GOAL_TARGET, 'nginx'], () => {
    const limit = nginx.lat.p99Ms + GOALS.p99OverNginxMs;
    const margin = limit - t.lat.p99Ms;
    return {
      p99Ms: t.lat.p99Ms, nginxP99Ms: nginx.lat.p99Ms, limitMs: limit, margin, marginUnit: 'ms',
      text: `${fmt(t.lat.p99Ms, 3)} ms vs nginx ${fmt(nginx.lat.p99Ms, 3)} ms (limit ${fmt(limit, 3)} ms)`,
      marginText: `${fmt(Math.abs(margin), 3)} ms`,
    };
  });
  goal(`${name} max RssAnon under load <= ${GOALS.rssAnonMb} MB`, [GOAL_TARGET], () => {
    const margin = GOALS.rssAnonMb - t.maxRssAnonMb;
    return {
      maxRssAnonMb: t.maxRssAnonMb, maxRssMb: t.maxRssMb, limitMb: GOALS.rssAnonMb, margin, marginUnit: 'MB',
      text: `${fmt(t.maxRssAnonMb, 1)} MB (max RSS ${fmt(t.maxRssMb, 1)} MB)`,
      marginText: `${fmt(Math.abs(margin), 1)} MB`,
    };
  });
  // The HTTP/2 goals, on the h2load throughput of the sidecar against nginx with grpc_pass.
  goal(`h2-sidecar HTTP/2 throughput >= ${H2_GOALS.h2VsNginx}x nginx (grpc_pass)`, ['h2-sidecar', 'h2-nginx'],
    () => throughputGoal(H2_GOALS.h2VsNginx, get('h2-nginx'), get('h2-sidecar')));
  goal(`grpc-sidecar gRPC unary throughput >= ${H2_GOALS.grpcVsNginx}x nginx (grpc_pass)`, ['grpc-sidecar', 'grpc-nginx'],
    () => throughputGoal(H2_GOALS.grpcVsNginx, get('grpc-nginx'), get('grpc-sidecar')));
  const checks = goals.map((g) => `${g.status}  ${g.goal}${g.status === 'SKIP' ? ' ' : ': '}${g.text}`);
  for (const g of goals) delete g.marginText;
  return { ratios, checks, goals };
}

function firstLine(cmd, args) {
  const r = run(cmd, args);
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim())?.trim() ?? '?';
}

function machineInfo(tools) {
  const cpu = cpuModel();
  const { commit: git, dirty } = gitState(REPO_DIR);
  return {
    date: new Date().toISOString(),
    nproc: os.availableParallelism(),
    cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    nginx: firstLine(tools.nginx, ['-v']).replace(/^nginx version:\s*/, ''),
    haproxy: firstLine(tools.haproxy, ['-v']).replace(/ - https?:.*$/, ''),
    wrk: firstLine(tools.wrk, ['--version']).replace(/\s+Copyright.*$/, ''),
    h2load: firstLine(tools.h2load, ['--version']),
    loadavg: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    commit: git ? `${git}${dirty ? ' (with uncommitted changes)' : ''}` : '?',
  };
}

function markdownReport(machine, opts, tables, comp) {
  const { table, h2Table, streamsTable } = tables;
  const h2Part = h2Table.rows.length ? `
HTTP/2 and gRPC unary (h2c with prior knowledge): throughput \`h2load -t1 -c ${opts.h2Connections} -m ${opts.h2Streams} -D ${opts.duration}\` after a ${opts.warmup} s warm-up
(closed loop; gRPC = POST ${GRPC_METHOD} of a ${GRPC_FRAME.length}-byte gRPC frame, content-type application/grpc, te: trailers); latency
\`h2load -c ${opts.clients} --rps ${opts.rate / opts.clients} -D ${opts.duration}\` over HTTP/2. nginx proxies with grpc_pass (1 worker); the sidecar's
service has \`protocol: http2\` or \`protocol: grpc\`. Each gRPC row was checked with a @grpc/grpc-js unary call (status OK) before and after its load.

${markdownTable(h2Table)}
` : '';
  const streamsPart = streamsTable.rows.length ? `
Open HTTP/2 streams: GETs held open through the proxy to a node:http2 backend that answers 200 and a first chunk and then
waits, ${STREAMS_PER_CONNECTION} streams per client connection; RssAnon = median of 2 s of samples once all are open and counted by the backend.

${markdownTable(streamsTable)}
` : '';
  return `# Outrigger benchmark run

${machine.date}, commit ${machine.commit}

| Machine | |
| --- | --- |
| CPUs (nproc) | ${machine.nproc} |
| CPU model | ${machine.cpu} |
| Memory | ${machine.memory} |
| Kernel | ${machine.kernel} |
| Node | ${machine.node} |
| nginx | ${machine.nginx} |
| HAProxy | ${machine.haproxy} |
| wrk | ${machine.wrk} |
| h2load | ${machine.h2load} |

Throughput: \`wrk -t1 -c${opts.connections} -d${opts.duration}s\` after a ${opts.warmup} s warm-up (closed loop, keep-alive).
Latency: \`h2load --h1 -c ${opts.clients} --rps ${opts.rate / opts.clients} -D ${opts.duration}\` = ${opts.rate} req/s (open loop); percentiles from h2load's per-request log.
"added p50" = p50 through the proxy minus p50 straight to a backend at the same rate.
RSS = max summed VmRSS of the proxy's processes, sampled every 250 ms under load (both runs); RssAnon = the same for RssAnon (the processes' own anonymous memory: heap and stacks, not the mapped binary, libraries or shared memory).
The pair targets are two proxies in a row in front of one backend; their CPU, RSS and RssAnon are the sum of both (both sidecars; both nginx, masters and workers). The control plane the sidecar pairs use is not counted as proxy CPU, nor as "other".
CPU % = CPU time / wall time during the wrk run (100% = one core of ${machine.nproc}); "other" is CPU used by processes outside the bench during either run (noise: should be near 0).
Load average at start: ${machine.loadavg}.

${table.rows.length ? markdownTable(table) : '(no HTTP/1.1 target run)'}
${h2Part}${streamsPart}
${comp.ratios.map((l) => `- ${l}`).join('\n')}

Goals (informational; the HTTP/1.1 ones on ${LABELS[GOAL_TARGET]}, the HTTP/2 ones on h2-sidecar and grpc-sidecar):

${comp.checks.map((l) => `- ${l}`).join('\n')}
`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const nodeMajor = Number(process.versions.node.split('.')[0]);
  if (nodeMajor < 24) log(`warning: running under Node ${process.version}; the node proxies are spawned with this binary. Use \`npm run bench\` (Node 24 from the node devDependency).`);
  if (process.platform !== 'linux') throw new Error('the bench reads /proc and installs tools with apt-get: Linux only');

  const tools = ensureTools();
  fs.rmSync(RUN_DIR, { recursive: true, force: true });
  fs.mkdirSync(RUN_DIR, { recursive: true });
  const machine = machineInfo(tools);
  log(`Outrigger bench: ${opts.only.join(', ')}  |  ${machine.nproc} CPUs, ${machine.cpu}, ${machine.memory}, node ${machine.node}`);
  if (os.loadavg()[0] > 0.5) log(`warning: load average ${machine.loadavg}: something else is running; results will be noisy`);
  log(`work dir: ${path.relative(REPO_DIR, RUN_DIR)} (configs, child logs, h2load request logs)`);

  // Every listener gets its own port, so that no target waits for another's sockets to close.
  const free = await freePorts(35, HOST);
  const [b1, b2, b3, nginxPort, haproxyPort, httpProxyPort, undiciPort, rawPort, sidecarOut, sidecarAdmin, cpGrpc, cpHttp] = free.splice(0, 12);
  const ports = { backends: [b1, b2, b3], nginx: nginxPort, haproxy: haproxyPort, httpProxy: httpProxyPort, undici: undiciPort, raw: rawPort, sidecarOut, sidecarAdmin };
  const [h2b1, h2b2, h2b3, h2Nginx, grpcNginx, streamsNginx, h2SidecarOut, h2SidecarAdmin, hold, h2Floor] = free.splice(0, 10);
  Object.assign(ports, { h2Backends: [h2b1, h2b2, h2b3], h2Nginx, grpcNginx, streamsNginx, h2SidecarOut, h2SidecarAdmin, hold, h2Floor });
  for (const name of ['nginx-pair', 'nginx-pair-tls']) ports[name] = { front: free.shift(), terminator: free.shift() };
  for (const name of PAIR_TARGETS) {
    const [callerOut, callerAdmin, calleeIn, calleeOut, calleeAdmin] = free.splice(0, 5);
    ports[name] = { callerOut, callerAdmin, calleeIn, calleeOut, calleeAdmin };
  }

  // Shared by the pair targets: the nginx TLS pair's certificates, and one control plane (the mesh CA, and
  // discovery) for both sidecar pairs. A failure here fails those targets only.
  const shared = { tls: null, tlsError: null, controlPlane: null, controlPlaneError: null, hold: null, holdError: null };
  // The gRPC message as h2load's request body and as the backends' reply.
  const grpcDir = path.join(RUN_DIR, 'grpc');
  fs.mkdirSync(grpcDir, { recursive: true });
  fs.writeFileSync(path.join(grpcDir, 'request.grpc'), GRPC_FRAME);
  fs.writeFileSync(path.join(grpcDir, 'reply.grpc'), GRPC_FRAME);
  if (opts.only.includes('nginx-pair-tls')) {
    try {
      shared.tls = makeNginxTlsFiles(path.join(RUN_DIR, 'tls'));
      log(`certificates for nginx-pair-tls (openssl, ECDSA P-256): ${path.relative(REPO_DIR, path.join(RUN_DIR, 'tls'))}/{ca,server,client}.crt`);
    } catch (err) {
      shared.tlsError = err.message.split('\n')[0];
      log(`could not make certificates: ${err.message}`);
    }
  }

  const results = [];
  let backendChild = null;
  let cpChild = null;
  let holdChild = null;
  try {
    backendChild = await startNginx(tools, 'backends', (dir) => backendsNginxConf(dir, ports.backends, ports.h2Backends, grpcDir));
    for (const p of ports.backends) await waitFor200(backendChild, p, '/', 10_000);
    for (const p of ports.h2Backends) await waitForH2(backendChild, p, '/', 10_000);
    log(`backends: nginx (1 worker) on ${ports.backends.map((p) => `${HOST}:${p}`).join(', ')} (HTTP/1.1) and ` +
      `${ports.h2Backends.map((p) => `${HOST}:${p}`).join(', ')} (HTTP/2 h2c, GET and gRPC ${GRPC_METHOD})`);

    if (opts.only.some((t) => STREAMS_TARGETS.includes(t))) {
      try {
        holdChild = startChild('h2-hold-backend', process.execPath, [path.join(BENCH_DIR, 'h2-hold-backend.mjs'), '--listen', `${HOST}:${ports.hold}`],
          { env: nodeEnv(), cwd: REPO_DIR });
        await waitForH2(holdChild, ports.hold, '/ping', 10_000);
        shared.hold = { child: holdChild, port: ports.hold };
        log(`hold backend (HTTP/2, holds every stream open): ${HOST}:${ports.hold} (pid ${holdChild.pid})`);
      } catch (err) {
        shared.holdError = err.message.split('\n')[0];
        log(`hold backend did not start: ${err.message}`);
      }
    }

    if (opts.only.some((t) => PAIR_TARGETS.includes(t))) {
      try {
        cpChild = await startControlPlane(cpGrpc, cpHttp);
        shared.controlPlane = { child: cpChild, grpcPort: cpGrpc };
        log(`control plane: grpc ${HOST}:${cpGrpc}, http ${HOST}:${cpHttp} (pid ${cpChild.pid}; its CPU is reported apart, not as proxy CPU)`);
      } catch (err) {
        shared.controlPlaneError = err.message.split('\n')[0];
        log(`control plane did not start: ${err.message}`);
      }
    }

    const targets = defineTargets(tools, ports, shared, opts);
    for (const name of opts.only) results.push(await benchTarget(name, targets[name], tools, opts, backendChild, cpChild, shared));
  } finally {
    await stopChild(holdChild);
    await stopChild(cpChild);
    await stopChild(backendChild);
  }
  if (interrupted) {
    log('Interrupted: no report written.');
    process.exit(130);
  }

  const tables = { table: tableRows(results, opts), h2Table: tableRows(results, opts, 'h2'), streamsTable: streamsTableRows(results, opts) };
  const comp = comparisons(results);
  for (const t of Object.values(tables)) if (t.rows.length) log(`\n${textTable(t)}`);
  log('');
  for (const l of comp.ratios) log(l);
  log('');
  for (const l of comp.checks) log(l);

  const md = markdownReport(machine, opts, tables, comp);
  fs.writeFileSync(path.join(WORK_DIR, 'last-run.md'), md);
  fs.writeFileSync(path.join(WORK_DIR, 'last-run.json'), `${JSON.stringify({ machine, opts, results, ratios: comp.ratios, goals: comp.goals }, null, 2)}\n`);
  log(`\nWrote ${path.relative(REPO_DIR, path.join(WORK_DIR, 'last-run.md'))} (and last-run.json)`);

  const failed = results.filter((r) => !r.ok);
  if (failed.length) {
    log(`\n${failed.length} target(s) could not be run: ${failed.map((r) => `${r.name} (${r.error})`).join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  killAllNow();
  process.exitCode = 1;
});
