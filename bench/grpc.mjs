// gRPC and HTTP/2 through the sidecar, in one run (npm run bench:grpc; see bench/README.md):
//
//   gRPC unary calls/s with h2load (gRPC frames over h2c) against one @grpc/grpc-js Echo server:
//     direct, through nginx grpc_pass (1 worker), through the sidecar (protocol: grpc)
//   HTTP/2 requests/s with h2load against an nginx backend (HTTP/1.1 upstream keep-alive):
//     direct (nginx over h2c), nginx (1 worker, http2 front, proxy_pass), the sidecar (h2c front, protocol: http)
//   memory: the sidecar's RSS before and while 1,000 gRPC streams are open through it
//
//   node bench/grpc.mjs [--duration SEC] [--clients N] [--streams N]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuModel, fmt, freePorts, gitState } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.dirname(BENCH_DIR);
const RUN_DIR = path.join(BENCH_DIR, '.work', 'grpc');
const HOST = '127.0.0.1';
const GOAL_VS_NGINX = 0.6;

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
if (args.includes('--help')) {
  console.log('Usage: node bench/grpc.mjs [--duration SEC (10)] [--clients N (20)] [--streams N per client (10)]');
  process.exit(0);
}
const DURATION = opt('duration', 10);
const CLIENTS = opt('clients', 20);
const STREAMS = opt('streams', 10);

for (const tool of ['nginx', 'h2load']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    console.error(`${tool} is not installed (apt-get install nginx nghttp2-client)`);
    process.exit(2);
  }
}
const cli = path.join(REPO_DIR, 'bin', 'outrigger.js');
if (!fs.existsSync(path.join(REPO_DIR, 'dist'))) {
  console.error('dist/ not found: run npm run build first');
  process.exit(2);
}

fs.rmSync(RUN_DIR, { recursive: true, force: true });
fs.mkdirSync(RUN_DIR, { recursive: true });
const children = [];
const log = (s) => console.log(s);

function start(name, cmd, argv, options = {}) {
  const out = fs.openSync(path.join(RUN_DIR, `${name}.log`), 'w');
  const child = spawn(cmd, argv, { stdio: ['ignore', out, out], cwd: REPO_DIR, ...options });
  child.name = name;
  children.push(child);
  return child;
}

function stopAll() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForPort(port, what) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = http2.connect(`http://${HOST}:${port}`);
      s.on('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} did not come up on port ${port}`);
}

function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

// The Echo server: @grpc/grpc-js with JSON messages (as test/helpers/grpc.ts), one process.
const GRPC_SERVER = `
const grpc = require('@grpc/grpc-js');
const port = process.argv[1];
const ser = (v) => Buffer.from(JSON.stringify(v));
const de = (b) => JSON.parse(b.toString());
const m = (p, rs, ws) => ({ path: p, requestStream: rs, responseStream: ws, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de });
const server = new grpc.Server();
const held = [];
server.addService({ Unary: m('/test.Echo/Unary', false, false), Hold: m('/test.Echo/Hold', false, false) }, {
  Unary(call, cb) { cb(null, { msg: call.request.msg }); },
  Hold(call, cb) { held.push(cb); if (held.length >= Number(call.request.n)) for (const c of held.splice(0)) c(null, {}); },
});
server.bindAsync('${HOST}:' + port, grpc.ServerCredentials.createInsecure(), (err) => { if (err) { console.error(err); process.exit(1); } });
`;

/** A gRPC message frame: uncompressed, 4-byte length, JSON body. */
function grpcFrame(obj) {
  const body = Buffer.from(JSON.stringify(obj));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function h2load(name, url, extra) {
  const argv = ['-t', '1', '-c', String(CLIENTS), '-m', String(STREAMS), '-D', String(DURATION), ...extra, url];
  const r = spawnSync('h2load', argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  fs.writeFileSync(path.join(RUN_DIR, `${name}.h2load.log`), `${r.stdout}\n${r.stderr}`);
  const rps = Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(r.stdout)?.[1] ?? NaN);
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(r.stdout);
  const errored = Number(/(\d+) errored/.exec(r.stdout)?.[1] ?? 0);
  const lat = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(r.stdout);
  return { rps, ok2xx: Number(status?.[1] ?? 0), non2xx: Number(status?.[4] ?? 0) + Number(status?.[3] ?? 0), errored, meanLatency: lat?.[3] ?? '–' };
}

function nginxConf(dir, body) {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  http2_max_requests 1000000;
  http2_max_concurrent_streams 1000;
${body}
}
`;
}

function startNginx(name, body) {
  const dir = path.join(RUN_DIR, name);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConf(dir, body));
  return start(name, 'nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;']);
}

function startSidecar(name, admin, services) {
  const cfg = path.join(RUN_DIR, `${name}.yaml`);
  fs.writeFileSync(cfg, `service: bench\nadmin: { listen: ${HOST}:${admin} }\noutbound: { listen: ${HOST}:0 }\nlog: { level: warn }\nservices:\n${services}`);
  return start(name, process.execPath, [cli, 'sidecar', '--config', cfg]);
}

const [grpcPort, nginxGrpcPort, sidecarGrpcPort, sidecarAdmin, backendPort, backendH2Port, nginxH2Port, sidecarH2Port, sidecar2Admin] = await freePorts(9);

const git = gitState(REPO_DIR);
log(`Outrigger gRPC / HTTP/2 bench  |  ${cpuModel()}, node ${process.version}  |  ${git.commit}${git.dirty ? ' (uncommitted changes)' : ''}`);
log(`h2load -t1 -c${CLIENTS} -m${STREAMS} -D${DURATION}; work dir ${path.relative(REPO_DIR, RUN_DIR)}`);

const grpcServer = start('grpc-server', process.execPath, ['-e', GRPC_SERVER, String(grpcPort)]);
startNginx(
  'nginx-grpc',
  `  upstream grpcb { server ${HOST}:${grpcPort}; keepalive 64; }
  server { listen ${HOST}:${nginxGrpcPort} http2; location / { grpc_pass grpc://grpcb; } }`,
);
const sidecar = startSidecar(
  'sidecar-grpc',
  sidecarAdmin,
  `  echo:\n    protocol: grpc\n    listen: ${HOST}:${sidecarGrpcPort}\n    endpoints: [ { address: ${HOST}:${grpcPort} } ]\n    limits: { maxConcurrent: 4096, maxPending: 4096 }\n` +
    // The memory run holds 1,000 calls open for seconds.
    `    timeout: 60s\n    retry: { perTryTimeout: 30s }\n`,
);
startNginx(
  'nginx-backend',
  `  server { listen ${HOST}:${backendPort}; listen ${HOST}:${backendH2Port} http2; location / { default_type text/plain; return 200 "hello, world\\n"; } }`,
);
startNginx(
  'nginx-h2',
  `  upstream b { server ${HOST}:${backendPort}; keepalive 64; }
  server { listen ${HOST}:${nginxH2Port} http2; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
);
const sidecarH2 = startSidecar(
  'sidecar-h2',
  sidecar2Admin,
  `  web:\n    protocol: http\n    listen: ${HOST}:${sidecarH2Port}\n    endpoints: [ { address: ${HOST}:${backendPort} } ]\n    limits: { maxConcurrent: 4096, maxPending: 4096 }\n`,
);
for (const [p, what] of [[grpcPort, 'gRPC server'], [nginxGrpcPort, 'nginx grpc_pass'], [sidecarGrpcPort, 'sidecar'], [backendH2Port, 'nginx backend'], [nginxH2Port, 'nginx h2'], [sidecarH2Port, 'sidecar h2']]) await waitForPort(p, what);

const frame = path.join(RUN_DIR, 'unary.bin');
fs.writeFileSync(frame, grpcFrame({ msg: 'hello' }));
const grpcArgs = ['-d', frame, '-H', 'content-type: application/grpc', '-H', 'te: trailers'];
const rows = [];
const measure = (section, label, url, extra, pids = []) => {
  // A short warm-up, then the measured run.
  spawnSync('h2load', ['-t', '1', '-c', String(CLIENTS), '-m', String(STREAMS), '-D', '2', ...extra, url]);
  let peak = 0;
  const timer = setInterval(() => {
    for (const pid of pids) peak = Math.max(peak, rssKb(pid));
  }, 200);
  const r = h2load(label.replace(/\W+/g, '-'), url, extra);
  clearInterval(timer);
  for (const pid of pids) peak = Math.max(peak, rssKb(pid));
  rows.push({ section, label, ...r, rssMb: pids.length ? peak / 1024 : undefined });
  log(`  ${label.padEnd(34)} ${fmt(r.rps, 0).padStart(8)} req/s  (2xx ${r.ok2xx}, non-2xx ${r.non2xx}, errored ${r.errored}, mean ${r.meanLatency})${pids.length ? `, RSS ${fmt(peak / 1024, 1)} MB` : ''}`);
  return r;
};

// Memory per 1,000 open streams: 10 client sessions x 100 calls the server holds until all have arrived.
log('\n== memory per 1,000 open gRPC streams through the sidecar (first, on a fresh sidecar)');
const before = rssKb(sidecar.pid);
const OPEN = 1000;
const sessions = Array.from({ length: 10 }, () => http2.connect(`http://${HOST}:${sidecarGrpcPort}`));
let answered = 0;
let peakOpen = before;
const hold = grpcFrame({ n: OPEN + 1 });
const streams = [];
for (let i = 0; i < OPEN; i++) {
  const s = sessions[i % sessions.length].request({ ':method': 'POST', ':path': '/test.Echo/Hold', 'content-type': 'application/grpc', te: 'trailers' });
  s.on('error', () => {});
  s.on('data', () => {});
  s.on('end', () => answered++);
  s.end(hold);
  streams.push(s);
}
// Every stream is open once the server holds them all: sample the sidecar's RSS meanwhile.
for (let i = 0; i < 50; i++) {
  await sleep(100);
  peakOpen = Math.max(peakOpen, rssKb(sidecar.pid));
}
const perThousandMb = ((peakOpen - before) / 1024) * (1000 / OPEN);
log(`  RSS before ${fmt(before / 1024, 1)} MB, with ${OPEN} streams open ${fmt(peakOpen / 1024, 1)} MB: ${fmt(perThousandMb, 1)} MB per 1,000 open streams`);
// Release them: the 1,001st call makes the server answer every held one.
await new Promise((resolve) => {
  const s = sessions[0].request({ ':method': 'POST', ':path': '/test.Echo/Hold', 'content-type': 'application/grpc', te: 'trailers' });
  s.on('error', resolve);
  s.on('data', () => {});
  s.on('close', resolve);
  s.end(hold);
});
for (let i = 0; i < 100 && answered < OPEN; i++) await sleep(50);
for (const s of sessions) s.destroy();

log('\n== gRPC unary (POST /test.Echo/Unary, one @grpc/grpc-js server)');
// A synchronous spawn (h2load) blocks this process but not the measured ones: the RSS sampler only runs between runs,
// so the peak is read from the sidecar right after each run too.
const gDirect = measure('grpc', 'direct', `http://${HOST}:${grpcPort}/test.Echo/Unary`, grpcArgs);
const gNginx = measure('grpc', 'nginx grpc_pass (1 worker)', `http://${HOST}:${nginxGrpcPort}/test.Echo/Unary`, grpcArgs);
const gSidecar = measure('grpc', 'Outrigger sidecar (protocol: grpc)', `http://${HOST}:${sidecarGrpcPort}/test.Echo/Unary`, grpcArgs, [sidecar.pid]);

log('\n== HTTP/2 GET / (h2c front, HTTP/1.1 keep-alive to one nginx backend)');
const hDirect = measure('h2', 'direct (nginx backend over h2c)', `http://${HOST}:${backendH2Port}/`, []);
const hNginx = measure('h2', 'nginx (1 worker, http2 + proxy_pass)', `http://${HOST}:${nginxH2Port}/`, []);
const hSidecar = measure('h2', 'Outrigger sidecar (h2c, protocol: http)', `http://${HOST}:${sidecarH2Port}/`, [], [sidecarH2.pid]);

const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const gr = ratio(gSidecar.rps, gNginx.rps);
const hr = ratio(hSidecar.rps, hNginx.rps);
log('\n== summary');
log(`  gRPC unary: sidecar ${fmt(gSidecar.rps, 0)}/s = ${fmt(gr, 2)}x nginx grpc_pass, ${fmt(ratio(gSidecar.rps, gDirect.rps), 2)}x direct  [goal >= ${GOAL_VS_NGINX}x nginx: ${gr >= GOAL_VS_NGINX ? 'PASS' : 'MISS'}]`);
log(`  HTTP/2:     sidecar ${fmt(hSidecar.rps, 0)}/s = ${fmt(hr, 2)}x nginx, ${fmt(ratio(hSidecar.rps, hDirect.rps), 2)}x direct  [goal >= ${GOAL_VS_NGINX}x nginx: ${hr >= GOAL_VS_NGINX ? 'PASS' : 'MISS'}]`);
log(`  memory:     ${fmt(perThousandMb, 1)} MB per 1,000 open streams (${answered}/${OPEN} held calls answered after release)`);
const failed = rows.some((r) => r.non2xx > 0 || r.errored > 0 || !(r.ok2xx > 0));
fs.writeFileSync(path.join(RUN_DIR, 'results.json'), JSON.stringify({ rows, perThousandMb, duration: DURATION, clients: CLIENTS, streams: STREAMS }, null, 2));
void grpcServer;
stopAll();
process.exit(failed ? 1 : 0);
