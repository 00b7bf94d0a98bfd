// Baseline for the benchmark: the "plain Node proxy" most shops start with.
// node:http server + http-proxy, a keep-alive http.Agent, round-robin over the backends.
// No health checks, no retries, no metrics: the floor a Node proxy costs.
//
// Usage:
//   node bench/http-proxy-forwarder.mjs --listen 127.0.0.1:8080 --backends 127.0.0.1:9001,127.0.0.1:9002
// or with the environment: LISTEN=127.0.0.1:8080 BACKENDS=127.0.0.1:9001,127.0.0.1:9002
// (a bare port in --listen / LISTEN means 127.0.0.1:<port>).
import http from 'node:http';
import httpProxy from 'http-proxy';

function option(name, envName) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  return process.env[envName];
}

function parseHostPort(value, what) {
  const text = String(value ?? '').trim();
  const m = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!m) throw new Error(`bad ${what} "${text}": expected host:port or port`);
  return { host: m[1] ?? '127.0.0.1', port: Number(m[2]) };
}

const listen = parseHostPort(option('listen', 'LISTEN'), '--listen');
const backendList = String(option('backends', 'BACKENDS') ?? '').split(',').filter(Boolean);
if (backendList.length === 0) throw new Error('no backends: pass --backends host:port,host:port or BACKENDS=...');
const targets = backendList.map((b) => {
  const { host, port } = parseHostPort(b, 'backend');
  return `http://${host}:${port}`;
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 64 });
const proxy = httpProxy.createProxyServer({ agent, xfwd: false });

proxy.on('error', (err, _req, res) => {
  // res is a ServerResponse for HTTP requests (a socket for upgrades, which the bench never sends).
  if (res && typeof res.writeHead === 'function' && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`bad gateway: ${err.code ?? err.message}\n`);
  } else if (res && typeof res.destroy === 'function') {
    res.destroy();
  }
});

let next = 0;
const server = http.createServer((req, res) => {
  const target = targets[next];
  next = (next + 1) % targets.length;
  proxy.web(req, res, { target });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(listen.port, listen.host, () => {
  const addr = server.address();
  console.log(`http-proxy forwarder listening on ${addr.address}:${addr.port} -> ${targets.join(', ')}`);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  agent.destroy();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
