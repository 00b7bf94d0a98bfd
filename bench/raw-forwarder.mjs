// The raw-socket floor: an HTTP/1.1 forwarder on node:net sockets with nothing but message framing. It
// finds where each request and response ends (Content-Length only; chunked bodies are refused), picks
// the backends round-robin per request, keeps connections alive on both sides (a pool of idle upstream
// sockets per backend) and writes the bytes of head and body through unchanged. It parses no headers
// beyond that and ignores backpressure, so it is not a proxy: `npm run bench` runs it to show where
// Node.js itself stops.
//   node bench/raw-forwarder.mjs --listen HOST:PORT --backends HOST:PORT,HOST:PORT   (or LISTEN=, BACKENDS=)
import net from 'node:net';

const args = process.argv.slice(2);
const arg = (name, env) => (args.includes(name) ? args[args.indexOf(name) + 1] : process.env[env]);
const hostPort = (s) => ({ host: s.includes(':') ? s.slice(0, s.lastIndexOf(':')) : '127.0.0.1', port: Number(s.slice(s.lastIndexOf(':') + 1)) });
const listen = hostPort(arg('--listen', 'LISTEN') ?? '127.0.0.1:8091');
const pools = (arg('--backends', 'BACKENDS') ?? '').split(',').filter(Boolean).map((b) => ({ ...hostPort(b), idle: [] }));
if (pools.length === 0) {
  console.error('usage: raw-forwarder.mjs --listen HOST:PORT --backends HOST:PORT,HOST:PORT');
  process.exit(2);
}
const END = Buffer.from('\r\n\r\n');
let next = 0;

/** Body length from a message head: Content-Length, 0 without one, -1 for Transfer-Encoding (unsupported). */
function bodyLength(buf, headEnd) {
  const head = buf.toString('latin1', 0, headEnd);
  if (/\r\ntransfer-encoding:/i.test(head)) return -1;
  const m = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
  return m ? Number(m[1]) : 0;
}

function upstream() {
  const pool = pools[next];
  next = (next + 1) % pools.length;
  const idle = pool.idle.pop();
  if (idle) return idle;
  const s = net.connect(pool.port, pool.host);
  s.setNoDelay(true);
  s.pool = pool;
  s.on('data', (chunk) => (s.onData ? s.onData(chunk) : s.destroy()));
  s.on('error', () => s.destroy());
  s.on('close', () => {
    if (s.onData) s.onClose(); // closed mid-exchange: the client's request is lost
    else if (pool.idle.includes(s)) pool.idle.splice(pool.idle.indexOf(s), 1);
  });
  return s;
}

net.createServer((client) => {
  client.setNoDelay(true);
  let buf = null; // bytes read from the client and not yet forwarded
  let up = null; // upstream socket of the request in flight (one at a time; pipelined requests wait in buf)
  let reqLeft = 0; // request body bytes still to forward
  const fail = () => { client.destroy(); up?.destroy(); };
  const pump = () => {
    if (!buf || up) return;
    const end = buf.indexOf(END);
    if (end < 0) return buf.length > 65536 ? fail() : undefined;
    const len = bodyLength(buf, end + 4);
    if (len < 0) return fail();
    const n = Math.min(buf.length, end + 4 + len);
    up = upstream();
    up.write(n === buf.length ? buf : buf.subarray(0, n));
    reqLeft = end + 4 + len - n;
    buf = n === buf.length ? null : buf.subarray(n);
    let head = null;
    let resLeft = -1; // response bytes still expected once its head is complete
    let keep = true;
    up.onClose = fail;
    up.onData = (chunk) => {
      client.write(chunk);
      if (resLeft >= 0) resLeft -= chunk.length;
      else {
        head = head ? Buffer.concat([head, chunk]) : chunk;
        const e = head.indexOf(END);
        if (e < 0) return;
        const bl = bodyLength(head, e + 4);
        if (bl < 0) return fail();
        keep = !/\r\nconnection:[ \t]*close/i.test(head.toString('latin1', 0, e));
        resLeft = bl - (head.length - e - 4);
      }
      if (resLeft < 0) return fail();
      if (resLeft > 0) return;
      if (reqLeft > 0) return fail(); // answered before the request body was sent: give up on both
      up.onData = null;
      if (keep) up.pool.idle.push(up);
      else up.end();
      up = null;
      pump();
    };
  };
  client.on('data', (chunk) => {
    if (reqLeft > 0) {
      const n = Math.min(reqLeft, chunk.length);
      up.write(chunk.subarray(0, n));
      reqLeft -= n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    buf = buf ? Buffer.concat([buf, chunk]) : chunk;
    pump();
  });
  client.on('error', () => client.destroy());
  client.on('close', () => up?.destroy());
}).listen(listen.port, listen.host, () => console.log(`raw forwarder on ${listen.host}:${listen.port} -> ${pools.map((p) => `${p.host}:${p.port}`).join(', ')}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
