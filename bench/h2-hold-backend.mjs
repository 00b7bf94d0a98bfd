// The backend of the open-streams targets (streams-nginx, streams-sidecar): an HTTP/2 (h2c, prior
// knowledge) server that answers every request with 200 and a first body chunk, then holds the stream open
// until the client (or the proxy in front) closes it. Two paths are answered and ended at once:
//   GET /ping   -> 200 "pong\n" (readiness, and the probe through the proxy)
//   GET /count  -> 200 "<streams held open now>\n" (so the bench knows its streams reached the backend)
//
//   node bench/h2-hold-backend.mjs --listen 127.0.0.1:PORT
import http2 from 'node:http2';

function parseArgs(argv) {
  const i = argv.indexOf('--listen');
  const listen = i >= 0 ? argv[i + 1] : undefined;
  if (!listen || !/^[\d.]+:\d+$/.test(listen)) throw new Error('usage: node bench/h2-hold-backend.mjs --listen HOST:PORT');
  const [host, port] = listen.split(':');
  return { host, port: Number(port) };
}

const { host, port } = parseArgs(process.argv.slice(2));
let held = 0;

// Many streams on one session (a multiplexing proxy puts them all on one connection), and enough session
// memory for them: node's default (10 MB) would refuse streams long before 5,000.
const server = http2.createServer({ settings: { maxConcurrentStreams: 100_000 }, maxSessionMemory: 1024 });
server.on('stream', (stream, headers) => {
  stream.on('error', () => {}); // a reset by the client is how a held stream ends
  const p = headers[':path'];
  if (p === '/ping' || p === '/count') {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(p === '/ping' ? 'pong\n' : `${held}\n`);
    return;
  }
  held++;
  stream.once('close', () => { held--; });
  stream.respond({ ':status': 200, 'content-type': 'text/plain' });
  stream.write('open\n');
});
server.on('sessionError', () => {});
server.listen(port, host);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
