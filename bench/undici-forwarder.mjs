// The floor of a Node.js forwarder: node:http server + one undici Pool per backend, round-robin, streaming
// with Pool.stream and nothing else (no header rules, no metrics, no policies). `npm run bench` runs it to
// show how much of the sidecar's cost is Node.js itself.
import http from 'node:http';
import { Pool } from 'undici';

const args = process.argv.slice(2);
const arg = (name, env) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : process.env[env];
};
const listen = arg('--listen', 'LISTEN') ?? '127.0.0.1:8090';
const backends = (arg('--backends', 'BACKENDS') ?? '').split(',').filter(Boolean);
if (backends.length === 0) {
  console.error('usage: undici-forwarder.mjs --listen HOST:PORT --backends HOST:PORT,HOST:PORT');
  process.exit(2);
}
const pools = backends.map((b) => new Pool(`http://${b}`, { connections: 128, pipelining: 1 }));
let next = 0;
const server = http.createServer((req, res) => {
  const pool = pools[next];
  next = (next + 1) % pools.length;
  pool.stream({ path: req.url, method: req.method, headers: req.headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }, ({ statusCode, headers }) => {
    delete headers.connection;
    delete headers['keep-alive'];
    delete headers['transfer-encoding'];
    res.writeHead(statusCode, headers);
    return res;
  }, (err) => {
    if (err) {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  });
});
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];
server.listen(port, host, () => console.log(`undici forwarder on ${listen} -> ${backends.join(', ')}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
