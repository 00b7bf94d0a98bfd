// The HTTP/2 floor: an h2c forwarder on node:http2 with nothing but the streams. Each client stream opens a
// stream on one of the backends' sessions (one session per backend, picked round-robin per stream) with the
// client's method, path and non-connection headers, pipes the request body up, and passes the response
// headers, body and trailers back. No header rewriting beyond that, no limits, no retries, no timeouts: not a
// proxy, but where node:http2 itself stops on this machine, as the raw-socket floor is for HTTP/1.1.
//   node bench/h2-floor-forwarder.mjs --listen HOST:PORT --backends HOST:PORT,HOST:PORT   (or LISTEN=, BACKENDS=)
import http2 from 'node:http2';

const args = process.argv.slice(2);
const arg = (name, env) => (args.includes(name) ? args[args.indexOf(name) + 1] : process.env[env]);
const hostPort = (s) => ({ host: s.slice(0, s.lastIndexOf(':')) || '127.0.0.1', port: Number(s.slice(s.lastIndexOf(':') + 1)) });
const listen = hostPort(arg('--listen', 'LISTEN') ?? '127.0.0.1:8092');
const backends = (arg('--backends', 'BACKENDS') ?? '').split(',').filter(Boolean);
if (backends.length === 0) {
  console.error('usage: h2-floor-forwarder.mjs --listen HOST:PORT --backends HOST:PORT,HOST:PORT');
  process.exit(2);
}
const sessions = backends.map(() => null);
const session = (i) => {
  let s = sessions[i];
  if (s === null || s.closed || s.destroyed) {
    s = sessions[i] = http2.connect(`http://${backends[i]}`);
    s.on('error', () => {});
  }
  return s;
};
let next = 0;
const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_SCHEME, HTTP2_HEADER_STATUS } = http2.constants;

const server = http2.createServer();
server.on('stream', (client, headers) => {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (k[0] !== ':' && k !== 'connection' && k !== 'keep-alive') out[k] = v;
  out[HTTP2_HEADER_METHOD] = headers[HTTP2_HEADER_METHOD];
  out[HTTP2_HEADER_PATH] = headers[HTTP2_HEADER_PATH];
  out[HTTP2_HEADER_AUTHORITY] = headers[HTTP2_HEADER_AUTHORITY];
  out[HTTP2_HEADER_SCHEME] = 'http';
  const i = next;
  next = (next + 1) % backends.length;
  const up = session(i).request(out, { endStream: client.readableEnded });
  if (!client.readableEnded) client.pipe(up);
  up.on('response', (h) => {
    if (client.destroyed || client.closed) return up.close(http2.constants.NGHTTP2_CANCEL);
    const res = {};
    for (const [k, v] of Object.entries(h)) if (k[0] !== ':') res[k] = v;
    res[HTTP2_HEADER_STATUS] = h[HTTP2_HEADER_STATUS];
    client.respond(res, { waitForTrailers: true });
  });
  client.on('wantTrailers', () => {
    if (!client.destroyed && !client.closed) client.sendTrailers(up.trailers ?? {});
  });
  up.on('trailers', (t) => (up.trailers = t));
  up.pipe(client);
  up.on('error', () => client.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  client.on('error', () => up.close(http2.constants.NGHTTP2_CANCEL));
  client.on('close', () => {
    if (!up.closed) up.close(http2.constants.NGHTTP2_CANCEL);
  });
});
server.listen(listen.port, listen.host, () => console.log(`h2 floor forwarder on ${listen.host}:${listen.port} -> ${backends.join(', ')}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
