import { execFile } from 'node:child_process';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { request as httpRequest, Agent } from 'node:http';
import { ProxyAgent, request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { echo, send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

/** A raw TCP upstream: records every byte it receives and answers with what `answer` writes. */
interface RawUpstream {
  readonly server: NetServer;
  readonly address: string;
  /** Everything received, per connection, in order. */
  readonly received: string[];
  connections: number;
  close(): Promise<void>;
}

async function rawUpstream(answer: (socket: Socket, data: string, conn: number) => void): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  const up = {
    received: [] as string[],
    connections: 0,
  };
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const index = up.connections++;
    up.received[index] = '';
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      up.received[index] += d.toString('latin1');
      answer(socket, up.received[index]!, index);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return Object.assign(up, {
    server,
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}

/** Sends raw bytes on a fresh connection and returns everything the sidecar answered until it closed. */
function rawExchange(address: string, bytes: string | Buffer, opts: { endAfterMs?: number; waitMs?: number } = {}): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    let data = '';
    const sock = connect(port, host, () => sock.write(bytes));
    sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => resolve(data));
    // Tests that expect the sidecar to keep the connection open stop waiting after `waitMs`.
    setTimeout(() => sock.destroy(), opts.waitMs ?? 5_000).unref();
  });
}

function statusOf(raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

describe('HTTP/1.1 engine: framing, keep-alive, pipelining', () => {
  let framed: RawUpstream;
  let app: Upstream;
  let sidecar: Sidecar;
  let out: string;
  let inbound: string;

  beforeAll(async () => {
    // Answers by path with a hand-written response, to exercise every framing an upstream may use.
    framed = await rawUpstream((socket, data) => {
      if (!data.includes('\r\n\r\n')) return;
      const path = /^[A-Z]+ (\S+)/.exec(data)?.[1] ?? '';
      const method = /^([A-Z]+)/.exec(data)?.[1] ?? '';
      const waitBody = /content-length: (\d+)/i.exec(data);
      if (waitBody && data.length - data.indexOf('\r\n\r\n') - 4 < Number(waitBody[1])) return;
      if (/transfer-encoding: chunked/i.test(data) && !data.slice(data.indexOf('\r\n\r\n') + 4).endsWith('0\r\n\r\n')) return;
      switch (path) {
        case '/length':
          socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello');
          return;
        case '/chunked':
          socket.end('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\nconnection: close\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n');
          return;
        case '/close-delimited':
          socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the ');
          setTimeout(() => socket.end('end'), 20);
          return;
        case '/head':
          socket.end(`HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nconnection: close\r\n\r\n${method === 'HEAD' ? '' : 'x'.repeat(1234)}`);
          return;
        case '/no-content':
          socket.end('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n');
          return;
        case '/not-modified':
          socket.end('HTTP/1.1 304 Not Modified\r\netag: "x"\r\nconnection: close\r\n\r\n');
          return;
        case '/interim':
          socket.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
          return;
        case '/echo-raw':
          socket.end(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(data, 'latin1')}\r\nconnection: close\r\n\r\n${data}`);
          return;
        case '/split':
          // The head and body arrive in many small pieces.
          socket.write('HTTP/1.1 200 OK\r\ncont');
          setTimeout(() => socket.write('ent-length: 6\r\n\r'), 10);
          setTimeout(() => socket.write('\nsp'), 20);
          setTimeout(() => socket.end('lit!'), 30);
          return;
        default:
          socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      }
    });
    app = await startUpstream(echo('app'));
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }
log: { level: silent }
services:
  framed: { endpoints: [ { address: ${framed.address} } ], retry: { attempts: 0 } }
  app: { endpoints: [ { address: ${app.address} } ] }
`);
    out = sidecar.addresses.outbound;
    inbound = sidecar.addresses.inbound!;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await Promise.all([framed.close(), app.close()]);
  });

  it('passes a Content-Length body', async () => {
    const r = await send(out, { path: '/length', headers: { host: 'framed' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('hello');
    expect(r.headers['content-length']).toBe('5');
  });

  it('passes a chunked body with extensions and trailers through as it came', async () => {
    const raw = await rawExchange(out, 'GET /chunked HTTP/1.1\r\nhost: framed\r\nconnection: close\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    expect(raw).toContain('transfer-encoding: chunked\r\n');
    expect(raw.endsWith('3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n')).toBe(true);
    // node:http reads it as a client would: body and trailers.
    const got = await new Promise<{ body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: Number(out.split(':')[1]), path: '/chunked', headers: { host: 'framed' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ body, trailers: res.trailers }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(got).toEqual({ body: 'abcdefg', trailers: { 'x-sum': '7' } });
  });

  it('de-chunks for an HTTP/1.0 client and closes', async () => {
    const raw = await rawExchange(out, 'GET /chunked HTTP/1.0\r\nhost: framed\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    expect(raw).not.toContain('transfer-encoding');
    expect(raw).toContain('connection: close');
    expect(raw.endsWith('\r\n\r\nabcdefg')).toBe(true);
  });

  it('passes a close-delimited body and closes the client connection after it', async () => {
    const raw = await rawExchange(out, 'GET /close-delimited HTTP/1.1\r\nhost: framed\r\n\r\n');
    expect(statusOf(raw)).toBe(200);
    expect(raw).toContain('connection: close');
    expect(raw.endsWith('\r\n\r\nuntil the end')).toBe(true);
  });

  it('sends no body for HEAD, 204 and 304, and keeps the connection for the next request', async () => {
    const raw = await rawExchange(
      out,
      'HEAD /head HTTP/1.1\r\nhost: framed\r\n\r\nGET /no-content HTTP/1.1\r\nhost: framed\r\n\r\nGET /not-modified HTTP/1.1\r\nhost: framed\r\n\r\nGET /length HTTP/1.1\r\nhost: framed\r\nconnection: close\r\n\r\n',
    );
    const heads = raw.split(/(?=HTTP\/1\.1 \d{3} )/);
    expect(heads.map(statusOf)).toEqual([200, 204, 304, 200]);
    expect(heads[0]).toContain('content-length: 1234');
    expect(heads[0]!.endsWith('\r\n\r\n')).toBe(true);
    expect(heads[1]!.endsWith('\r\n\r\n')).toBe(true);
    expect(heads[2]!.endsWith('\r\n\r\n')).toBe(true);
    expect(heads[3]!.endsWith('hello')).toBe(true);
  });

  it('skips interim 1xx responses from the upstream', async () => {
    const r = await send(out, { path: '/interim', headers: { host: 'framed' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok');
  });

  it('reads a response head and body that arrive in small pieces', async () => {
    const r = await send(out, { path: '/split', headers: { host: 'framed' } });
    expect(r.body).toBe('split!');
  });

  it('forwards a chunked request body as chunks, and answers Expect: 100-continue itself', async () => {
    // The client sends its head, waits for 100 Continue, then sends the body.
    const raw = await new Promise<string>((resolve) => {
      let data = '';
      const sock = connect(Number(out.split(':')[1]), '127.0.0.1', () =>
        sock.write('POST /echo-raw HTTP/1.1\r\nhost: framed\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n'),
      );
      sock.on('data', (d: Buffer) => {
        if (data === '' && d.toString().startsWith('HTTP/1.1 100 Continue\r\n\r\n')) sock.write('5\r\nhello\r\n0\r\n\r\n');
        data += d.toString();
      });
      sock.on('close', () => resolve(data));
    });
    expect(raw.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
    const upstreamSaw = raw.slice(raw.indexOf('\r\n\r\n', raw.indexOf('200 OK')) + 4);
    expect(upstreamSaw).toMatch(/^POST \/echo-raw HTTP\/1\.1\r\n/);
    expect(upstreamSaw).toContain('transfer-encoding: chunked\r\n');
    expect(upstreamSaw).not.toMatch(/expect:/i);
    expect(upstreamSaw.endsWith('\r\n\r\n5\r\nhello\r\n0\r\n\r\n')).toBe(true);
  });

  it('serves many requests on one client connection over one upstream connection (keep-alive both ways)', async () => {
    const before = app.count;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: Number(out.split(':')[1]), path: `/k${i}`, headers: { host: 'app' }, agent }, (res) => {
          sockets.add(req.socket);
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', reject);
        req.end();
      });
    }
    agent.destroy();
    expect(sockets.size).toBe(1);
    expect(app.count - before).toBe(20);
    const conns = await new Promise<number>((resolve) => app.server.getConnections((_e, n) => resolve(n)));
    expect(conns).toBeLessThanOrEqual(2);
  });

  it('answers pipelined requests in order', async () => {
    const raw = await rawExchange(out, 'GET /p1 HTTP/1.1\r\nhost: app\r\n\r\nGET /p2 HTTP/1.1\r\nhost: app\r\n\r\nGET /p3 HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
    const urls = [...raw.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual(['/p1', '/p2', '/p3']);
  });

  it('serves the inbound listener the same way', async () => {
    const r = await send(inbound, { method: 'POST', path: '/in', body: 'abc' });
    expect(JSON.parse(r.body)).toMatchObject({ name: 'app', method: 'POST', url: '/in', body: 'abc' });
  });
});

/** Requests no strict parser may pass on, each with the status it must get. */
const malformed: readonly { readonly name: string; readonly bytes: string; readonly status: number }[] = [
  { name: 'Content-Length and Transfer-Encoding', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400 },
  { name: 'two differing Content-Length', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', status: 400 },
  { name: 'repeated equal Content-Length', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello', status: 400 },
  { name: 'Content-Length list', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello', status: 400 },
  { name: 'signed Content-Length', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello', status: 400 },
  { name: 'obs-fold', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n', status: 400 },
  { name: 'bare LF line ending', bytes: 'GET / HTTP/1.1\nHost: x\n\n', status: 400 },
  { name: 'bare LF inside the head', bytes: 'GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n', status: 400 },
  { name: 'whitespace before the colon', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', status: 400 },
  { name: 'control character in a value', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n', status: 400 },
  { name: 'NUL in a value', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', status: 400 },
  { name: 'control character in a name', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nX\u0007A: 1\r\n\r\n', status: 400 },
  { name: 'invalid chunk size', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', status: 400 },
  { name: 'overflowing chunk size', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n', status: 400 },
  { name: 'chunk data without CRLF', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n', status: 400 },
  { name: 'Transfer-Encoding other than chunked', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello', status: 400 },
  { name: 'Transfer-Encoding chunked twice', bytes: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400 },
  { name: 'two Host headers', bytes: 'GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n', status: 400 },
  { name: 'HTTP/1.1 without Host', bytes: 'GET / HTTP/1.1\r\nX-A: 1\r\n\r\n', status: 400 },
  { name: 'unknown method', bytes: 'FROB / HTTP/1.1\r\nHost: x\r\n\r\n', status: 501 },
  { name: 'unsupported version', bytes: 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', status: 505 },
  { name: 'space in the target', bytes: 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n', status: 400 },
  { name: 'head too large', bytes: `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431 },
  { name: 'too many header fields', bytes: `GET / HTTP/1.1\r\nHost: x\r\n${'X-A: 1\r\n'.repeat(150)}\r\n`, status: 431 },
  { name: 'target too long', bytes: `GET /${'a'.repeat(9_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, status: 414 },
];

describe('HTTP/1.1 engine: strict parsing', () => {
  let backend: RawUpstream;
  let sidecar: Sidecar;
  let out: string;
  let inbound: string;

  beforeAll(async () => {
    backend = await rawUpstream((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok'));
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${backend.address} }
log: { level: silent }
services:
  x: { endpoints: [ { address: ${backend.address} } ] }
`);
    out = sidecar.addresses.outbound;
    inbound = sidecar.addresses.inbound!;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await backend.close();
  });

  for (const listener of ['outbound', 'inbound'] as const) {
    it(`refuses every malformed or ambiguous request on the ${listener} listener, and the backend receives nothing`, async () => {
      const address = listener === 'outbound' ? out : inbound;
      const before = backend.connections;
      const results: { name: string; status: number }[] = [];
      for (const m of malformed) results.push({ name: m.name, status: statusOf(await rawExchange(address, m.bytes)) });
      expect(results).toEqual(malformed.map((m) => ({ name: m.name, status: m.status })));
      expect(backend.connections - before).toBe(0);
      // The listener still serves well-formed requests.
      const ok = await rawExchange(address, 'GET / HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n');
      expect(statusOf(ok)).toBe(200);
    });
  }
});

describe('HTTP/1.1 engine: timeouts and limits', () => {
  let app: Upstream;
  let sidecar: Sidecar;
  let out: string;
  let inbound: string;

  beforeAll(async () => {
    app = await startUpstream(echo('app'));
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address}, maxConcurrent: 2 }
http: { headerTimeout: 300ms, bodyTimeout: 300ms, idleTimeout: 400ms, maxConnections: 20 }
log: { level: silent }
services:
  app: { endpoints: [ { address: ${app.address} } ] }
`);
    out = sidecar.addresses.outbound;
    inbound = sidecar.addresses.inbound!;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await app.close();
  });

  it('answers 408 to a client that does not finish its head in time, while others are served', async () => {
    const slow = rawExchange(out, 'GET / HTTP/1.1\r\nHost: app\r\nX-Slow: ');
    const ok = await send(out, { headers: { host: 'app' } });
    expect(ok.status).toBe(200);
    const raw = await slow;
    expect(statusOf(raw)).toBe(408);
  });

  it('cuts slow uploads so they cannot hold the inbound admission slots', async () => {
    // Two uploads that stop sending take both slots of maxConcurrent 2 ...
    const stuck = [0, 1].map(() => rawExchange(inbound, 'POST /upload HTTP/1.1\r\nHost: me\r\nContent-Length: 1000\r\n\r\npartial'));
    await waitFor(() => sidecar.metrics !== undefined);
    // ... until the body timeout answers them 408 and frees the slots.
    const raws = await Promise.all(stuck);
    expect(raws.map(statusOf)).toEqual([408, 408]);
    const ok = await send(inbound, { path: '/after' });
    expect(ok.status).toBe(200);
  });

  it('closes keep-alive connections that stay idle', async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const sock = connect(Number(out.split(':')[1]), '127.0.0.1', () => sock.write('GET / HTTP/1.1\r\nHost: app\r\n\r\n'));
      sock.on('data', () => {});
      sock.on('error', () => {});
      sock.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 5_000).unref();
    });
    expect(closed).toBe(true);
  });

  it('caps the connections a listener holds', async () => {
    const socks: Socket[] = [];
    for (let i = 0; i < 25; i++) {
      const s = connect(Number(out.split(':')[1]), '127.0.0.1');
      s.on('error', () => {});
      socks.push(s);
    }
    const closedEarly = await new Promise<number>((resolve) => {
      let n = 0;
      for (const s of socks) s.on('close', () => n++);
      setTimeout(() => resolve(n), 200);
    });
    for (const s of socks) s.destroy();
    expect(closedEarly).toBeGreaterThanOrEqual(5);
  });
});

describe('HTTP/1.1 engine: upgrades, CONNECT and what counts as an upstream failure', () => {
  let app: Upstream;
  let wsLike: RawUpstream;
  let stale: RawUpstream;
  let sidecar: Sidecar;
  let out: string;
  let admin: string;

  beforeAll(async () => {
    app = await startUpstream(echo('inventory'));
    // Accepts an upgrade, then echoes every byte back upper-cased.
    wsLike = await rawUpstream((socket, data) => {
      const headEnd = data.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      if (!socket.listenerCount('upgraded')) {
        socket.on('upgraded', () => {});
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
        const rest = data.slice(headEnd + 4);
        if (rest) socket.write(rest.toUpperCase());
        socket.removeAllListeners('data');
        socket.on('data', (d: Buffer) => socket.write(d.toString('latin1').toUpperCase()));
      }
    });
    // Keeps a connection alive after its first answer, then drops it at the second request unanswered.
    stale = await rawUpstream((socket, data) => {
      const requests = data.split('\r\n\r\n').length - 1;
      if (requests === 1) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh');
      else socket.destroy();
    });
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
log: { level: silent }
services:
  inventory:
    endpoints: [ { address: ${app.address} } ]
    outlierDetection: { consecutiveGatewayFailure: 1, consecutive5xx: 1 }
    circuitBreaker: { volumeThreshold: 1, errorThresholdPercentage: 1 }
  ws: { endpoints: [ { address: ${wsLike.address} } ] }
  stale:
    endpoints: [ { address: ${stale.address} } ]
    retry: { attempts: 0 }
    outlierDetection: { consecutiveGatewayFailure: 1 }
`);
    out = sidecar.addresses.outbound;
    admin = sidecar.addresses.admin;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await Promise.all([app.close(), wsLike.close(), stale.close()]);
  });

  it('joins an upgraded connection both ways after 101, and counts it', async () => {
    const got = await new Promise<string>((resolve) => {
      let data = '';
      const sock = connect(Number(out.split(':')[1]), '127.0.0.1', () => sock.write('GET /chat HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'));
      sock.on('data', (d: Buffer) => {
        data += d.toString();
        if (data.includes('\r\n\r\n') && !data.includes('HELLO')) sock.write('hello');
        if (data.includes('HELLO')) {
          sock.end();
          resolve(data);
        }
      });
      sock.on('error', () => {});
    });
    expect(got).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(got.toLowerCase()).toContain('upgrade: echo');
    expect(got.toLowerCase()).toContain('connection: upgrade');
    expect(got.endsWith('HELLO')).toBe(true);
    // The upstream saw the upgrade request with its hop-by-hop fields kept for it.
    expect(wsLike.received.at(-1)!.toLowerCase()).toContain('upgrade: echo');
    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    expect(metrics).toMatch(/outrigger_upgrades_total\{direction="outbound",service="ws"\} 1/);
  });

  it('accepts CONNECT to a mesh service and balances the requests inside the tunnel', async () => {
    const raw = await rawExchange(out, 'CONNECT inventory:80 HTTP/1.1\r\nHost: inventory:80\r\n\r\nGET /in-tunnel HTTP/1.1\r\nHost: inventory\r\nconnection: close\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK')).toBe(true);
    expect(raw).toContain('"url":"/in-tunnel"');
  });

  it('refuses CONNECT to anything that is not a mesh service', async () => {
    const before = app.count;
    const raw = await rawExchange(out, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    expect(statusOf(raw)).toBe(404);
    expect(raw).toContain('x-outrigger-error: unknown-service');
    expect(app.count).toBe(before);
  });

  it("works for undici's ProxyAgent (a CONNECT tunnel for http:// URLs)", async () => {
    const agent = new ProxyAgent(`http://${out}`);
    try {
      const r = await undiciRequest('http://inventory/items?via=proxy-agent', { dispatcher: agent });
      expect(r.statusCode).toBe(200);
      expect(JSON.parse(await r.body.text())).toMatchObject({ name: 'inventory', url: '/items?via=proxy-agent' });
    } finally {
      await agent.close();
    }
  });

  it("works for Node's own fetch with NODE_USE_ENV_PROXY=1 and HTTP_PROXY", async () => {
    const script = "fetch('http://inventory/items?via=fetch').then(async (r) => console.log(r.status, await r.text()))";
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { env: { ...process.env, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: `http://${out}`, NO_PROXY: '' }, timeout: 10_000 }, (err, so, se) => {
        if (err) reject(new Error(`${err.message}\n${se}`));
        else resolve(so);
      });
    });
    expect(stdout).toMatch(/^200 /);
    expect(stdout).toContain('"url":"/items?via=fetch"');
  });

  it('does not count requests the sidecar refuses or handles itself as upstream failures', async () => {
    const odd = ['OPTIONS * HTTP/1.1\r\nHost: inventory\r\nconnection: close\r\n\r\n', 'GET / HTTP/1.1\r\nHost: inventory\r\nHost: inventory\r\n\r\n', 'GET / HTTP/1.1\r\nHost: inventory\r\nX-A: \u0001\r\n\r\n'];
    for (const bytes of odd) await rawExchange(out, bytes);
    const ok = await send(out, { headers: { host: 'inventory' } });
    expect(ok.status).toBe(200);
    const { clusters } = (await (await fetch(`http://${admin}/clusters`)).json()) as { clusters: { service: string; endpoints: { eligible: boolean }[] }[] };
    expect(clusters.find((c) => c.service === 'inventory')!.endpoints.every((e) => e.eligible)).toBe(true);
    const { circuits } = (await (await fetch(`http://${admin}/circuits`)).json()) as { circuits: { service: string; state: string }[] };
    expect(circuits.filter((c) => c.service === 'inventory').map((c) => c.state)).toEqual(['closed', 'closed']);
  });

  it('sends a request again on a fresh connection when a kept-alive one was closed under it, without blaming the endpoint', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push(
        await new Promise<number>((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port: Number(out.split(':')[1]), path: '/s', headers: { host: 'stale' }, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          });
          req.on('error', reject);
          req.end();
        }),
      );
    }
    agent.destroy();
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    expect(sidecar.clusters.get('stale')!.endpoints[0]!.eligible).toBe(true);
    expect(stale.connections).toBeGreaterThanOrEqual(5);
  });
});
