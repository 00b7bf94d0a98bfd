/**
 * The HTTP/2 engine against real node:http2 servers and clients on loopback: per-endpoint session pools that
 * honour SETTINGS_MAX_CONCURRENT_STREAMS, GOAWAY drains without failing calls, RST_STREAM passed on both
 * ways, and conversions between HTTP/1.1 and HTTP/2 on either side. Assertions are about counts and states.
 */
import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { send, waitFor } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

const cleanups: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface H2Upstream {
  readonly address: string;
  sessions: number;
  /** RST_STREAM codes of streams the client (the sidecar) reset. */
  readonly resets: number[];
}

/** An h2c server on loopback; `onStream` answers each stream. */
async function h2Upstream(
  onStream: (stream: ServerHttp2Stream, headers: http2.IncomingHttpHeaders, up: H2Upstream) => void,
  settings: http2.Settings = {},
): Promise<H2Upstream> {
  const server = http2.createServer({ settings });
  const sessions = new Set<ServerHttp2Session>();
  const up: H2Upstream = { address: '', sessions: 0, resets: [] };
  server.on('session', (s) => {
    up.sessions++;
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.on('close', () => {
      if (stream.rstCode !== undefined && stream.rstCode !== 0) up.resets.push(stream.rstCode);
    });
    onStream(stream, headers, up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (up as { address: string }).address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  );
  return up;
}

async function sidecarFor(protocol: string, endpoints: readonly string[], extra = ''): Promise<Sidecar> {
  const s = await startSidecar(`
service: caller
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
log: { level: silent }
services:
  up:
    protocol: ${protocol}
    endpoints: [ ${endpoints.map((e) => `{ address: ${e} }`).join(', ')} ]
${extra}`);
  cleanups.push(() => s.stop());
  return s;
}

/** An HTTP/2 client session to `address` (h2c with prior knowledge). */
function h2Client(address: string): http2.ClientHttp2Session {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  cleanups.push(() => void session.destroy());
  return session;
}

interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
}

function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':authority': 'up', ...headers }, { endStream: body === undefined });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (rh) => {
      status = Number(rh[':status']);
      h = rh;
    });
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: h, body: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

describe('HTTP/2 upstreams', () => {
  it('multiplexes calls on a session and opens another when SETTINGS_MAX_CONCURRENT_STREAMS is reached', async () => {
    // The server holds every stream until 6 are open at once, so the sidecar must hold 6 streams open.
    const held: ServerHttp2Stream[] = [];
    const up = await h2Upstream(
      (stream) => {
        held.push(stream);
        if (held.length === 6) {
          for (const s of held.splice(0)) {
            s.respond({ ':status': 200 });
            s.end('ok');
          }
        }
      },
      { maxConcurrentStreams: 2 },
    );
    const s = await sidecarFor('http2', [up.address]);
    const replies = await Promise.all(Array.from({ length: 6 }, () => send(s.addresses.outbound, { headers: { host: 'up' } })));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(replies.map((r) => r.body)).toEqual(Array(6).fill('ok'));
    expect(up.sessions).toBeGreaterThanOrEqual(3);
  });

  it('reuses one session for sequential calls', async () => {
    const up = await h2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('x');
    });
    const s = await sidecarFor('http2', [up.address]);
    for (let i = 0; i < 20; i++) expect((await send(s.addresses.outbound, { headers: { host: 'up' } })).status).toBe(200);
    expect(up.sessions).toBe(1);
  });

  it('GOAWAY from the upstream drains its session without failing calls', async () => {
    // The first session answers its first stream and says GOAWAY (last stream = that one), as a server that
    // shuts down: streams sent after it on that session were not processed and go again on a new session.
    let said = false;
    const up = await h2Upstream((stream) => {
      if (!said) {
        said = true;
        stream.session!.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
      }
      stream.respond({ ':status': 200 });
      stream.end(`served on stream ${stream.id}`);
    });
    const s = await sidecarFor('http2', [up.address]);
    const replies = await Promise.all(Array.from({ length: 10 }, () => send(s.addresses.outbound, { headers: { host: 'up' } })));
    expect(replies.filter((r) => r.status !== 200).map((r) => r.body)).toEqual([]);
    expect(up.sessions).toBeGreaterThan(1);
  });

  it('passes RST_STREAM on: a client reset reaches the upstream, an upstream reset reaches the client', async () => {
    const started: ServerHttp2Stream[] = [];
    const up = await h2Upstream((stream, headers) => {
      if (headers[':path'] === '/reset') {
        stream.respond({ ':status': 200 });
        stream.write('partial');
        // destroy() resets the stream at once (close(code) would end the response first, then reset).
        setImmediate(() => stream.destroy(new Error('upstream gives up')));
        return;
      }
      // Never answers: the client gives up.
      started.push(stream);
    });
    const s = await sidecarFor('http2', [up.address]);
    const client = h2Client(s.addresses.outbound);
    // The client resets its stream: the sidecar cancels the upstream stream.
    const req = client.request({ ':path': '/hang', ':authority': 'up' });
    req.on('error', () => {});
    await waitFor(() => started.length === 1);
    req.close(http2.constants.NGHTTP2_CANCEL);
    await waitFor(() => up.resets.includes(http2.constants.NGHTTP2_CANCEL));
    // The upstream resets mid-response (INTERNAL_ERROR): the client's stream is reset with the same code.
    const code = await new Promise<number>((resolve) => {
      const r = client.request({ ':path': '/reset', ':authority': 'up', ':method': 'POST' }, { endStream: false });
      r.write('part of a body');
      r.on('error', () => {});
      r.resume();
      r.on('close', () => resolve(r.rstCode ?? -1));
    });
    expect(code).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });

  it('carries large bodies both ways with flow control (h2 client, h2 upstream)', async () => {
    const up = await h2Upstream((stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-length': String(body.length) }));
        // Echo it back twice: more than any window.
        stream.write(body);
        stream.end(body);
      });
    });
    const s = await sidecarFor('http2', [up.address]);
    const client = h2Client(s.addresses.outbound);
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    // `te: trailers`: this client takes trailers (gRPC clients always send it).
    const r = await h2Request(client, { ':method': 'POST', ':path': '/echo', te: 'trailers' }, body);
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(2 * body.length);
    expect(r.body.every((b) => b === 7)).toBe(true);
    expect(r.trailers?.['x-length']).toBe(String(body.length));
  });

  it('an HTTP/1.1 client reaches an HTTP/2 upstream: the body is chunked for it', async () => {
    const up = await h2Upstream((stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        stream.respond({ ':status': 201, 'x-method': String(headers[':method']) });
        stream.write('got ');
        stream.end(Buffer.concat(chunks));
      });
    });
    const s = await sidecarFor('http2', [up.address]);
    const r = await send(s.addresses.outbound, { method: 'POST', headers: { host: 'up' }, body: 'hello' });
    expect(r.status).toBe(201);
    expect(r.headers['x-method']).toBe('POST');
    expect(r.headers['transfer-encoding']).toBe('chunked');
    expect(r.body).toBe('got hello');
  });

  it('an HTTP/2 client reaches an HTTP/1.1 upstream through protocol http', async () => {
    const { startUpstream } = await import('../helpers/net.js');
    const app = await startUpstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('x-version', req.httpVersion);
        // No content-length: the sidecar reads it chunked and passes the payload alone to the HTTP/2 client.
        res.write('one ');
        res.end(Buffer.concat(chunks));
      });
    });
    cleanups.push(() => app.close());
    const s = await sidecarFor('http', [app.address]);
    const client = h2Client(s.addresses.outbound);
    const r = await h2Request(client, { ':method': 'POST', ':path': '/' }, Buffer.from('two'));
    expect(r.status).toBe(200);
    expect(r.headers['x-version']).toBe('1.1');
    expect(r.body.toString()).toBe('one two');
  });
});
