import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedScanner } from '../../../sidecar/src/proxy/http1/chunked.js';
import { defaultParseLimits, HttpParseError, parseRequestHead } from '../../../sidecar/src/proxy/http1/parser.js';

/**
 * Differential fuzzing of the request parser against Node's own (llhttp, strict mode, the default of
 * http.createServer): requests from a fixed seed, valid templates and mutations of them, are sent raw to a
 * node:http server and run through parseRequestHead + ChunkedScanner / Content-Length framing. Whatever Node
 * refuses we must refuse; where both accept we must see the same messages (method, target, body length).
 * Where we are stricter than Node is printed, not asserted.
 *
 * Node's verdict is made deterministic by sending the whole input and the FIN in one go (`end(bytes)`) and
 * letting the server finish its answers on a half-closed socket (`httpAllowHalfOpen`): the server parses all
 * the data, then sees EOF (an error if a message is incomplete), and answers every request it accepted before
 * closing. Each connection gets an id; the server records what it saw and every parser error for that id, and
 * the answers name the id, so the verdict does not depend on how the bytes were split into reads.
 */

// Fixed by default; HTTP1_FUZZ_SEED / HTTP1_FUZZ_INPUTS explore further (a failure prints the inputs).
const SEED = Number(process.env.HTTP1_FUZZ_SEED ?? 0x5eed_1e57);
const INPUTS = Number(process.env.HTTP1_FUZZ_INPUTS ?? 3000);
const CONCURRENCY = 16;
/**
 * Node never answers nor closes some inputs (an upgrade request whose body is cut short by the FIN: it waits
 * for the rest forever). The client is not served: such an input counts as refused by Node after this wait.
 */
const HUNG_AFTER_MS = 3_000;

// ---------------------------------------------------------------------------------------------------------
// Seeded generator

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  letters(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x61 + this.int(26));
    return s;
  }
}

const PATHS = ['/', '/a', '/api/v1/items', '/x/y.z?q=a%20b&r=1', '/p;m=1/q', '/search?q=x,y:z', "/a/b/c/d/e/f!$&'()*+=@~"];
const EXTRA_HEADERS = [
  'User-Agent: fuzz/1.0',
  'Accept: */*',
  'Accept-Encoding: gzip, deflate, br',
  'Cookie: a=b; c=d',
  'X-Request-Id: 0123-4567',
  'Connection: keep-alive',
  'Cache-Control: no-cache',
  'X-Empty:',
  'X-Spaces:   padded value\t ',
];

function someHeaders(g: Gen): string {
  let s = '';
  const n = g.int(4);
  for (let i = 0; i < n; i++) s += `${g.pick(EXTRA_HEADERS)}\r\n`;
  return s;
}

function chunkedBody(g: Gen): string {
  let s = '';
  const chunks = g.int(4);
  for (let i = 0; i < chunks; i++) {
    const data = g.letters(1 + g.int(20));
    let size = data.length.toString(16);
    if (g.chance(0.3)) size = size.toUpperCase();
    if (g.chance(0.2)) size = `0${size}`;
    let ext = '';
    if (g.chance(0.4)) ext = g.pick([';a=b', ';name', ';q="x y"', ';a=1;b', ';k="\\"q\\""']);
    s += `${size}${ext}\r\n${data}\r\n`;
  }
  s += g.chance(0.3) ? '0;last\r\n' : '0\r\n';
  if (g.chance(0.4)) s += g.pick(['Expires: never\r\n', 'X-Checksum: abc\r\nX-Other: 1\r\n', 'T:\r\n']);
  return `${s}\r\n`;
}

function oneRequest(g: Gen): string {
  switch (g.int(8)) {
    case 0:
    case 1:
      return `${g.pick(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'GET'])} ${g.pick(PATHS)} HTTP/1.1\r\nHost: example.com\r\n${someHeaders(g)}\r\n`;
    case 2:
    case 3: {
      const body = g.letters(g.int(30));
      return `${g.pick(['POST', 'PUT', 'PATCH'])} ${g.pick(PATHS)} HTTP/1.1\r\nHost: example.com:8080\r\n${someHeaders(g)}Content-Length: ${body.length}\r\n\r\n${body}`;
    }
    case 4:
      return `POST ${g.pick(PATHS)} HTTP/1.1\r\n${someHeaders(g)}Transfer-Encoding: chunked\r\nHost: example.com\r\n${someHeaders(g)}\r\n${chunkedBody(g)}`;
    case 5:
      return `GET ${g.pick(PATHS)} HTTP/1.0\r\n${g.pick(['', 'Host: a\r\n', 'Connection: keep-alive\r\n', 'Host: a\r\nConnection: keep-alive\r\n'])}\r\n`;
    case 6:
      return g.pick([
        `GET http://example.com:8080${g.pick(PATHS)} HTTP/1.1\r\nHost: example.com:8080\r\n\r\n`,
        'OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n',
        // Node has no 'upgrade' listener here: it answers like any request and ignores what follows.
        'GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      ]);
    default:
      return g.chance(0.7)
        ? `GET ${g.pick(PATHS)} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`
        : 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n';
  }
}

function template(g: Gen): string {
  if (g.chance(0.25)) {
    // A keep-alive pipeline of two requests (sometimes with an empty line between them).
    const first = oneRequest(g).replace('Connection: close\r\n', '').replace('CONNECT example.com:443', 'GET /');
    return `${first}${g.chance(0.1) ? '\r\n' : ''}${oneRequest(g)}`;
  }
  return oneRequest(g);
}

const BYTES = ['\r', '\n', '\0', ' ', '\t', ':', ',', '\x7f', '\x80', '\xff', '0', '1', '9', 'x', ';', '=', '"', '/', '?', '#', '@', 'F', '\x0b', '\x01'];
const ADDED_LINES = [
  'Content-Length: 5',
  'Content-Length: 0',
  'Content-Length: 00',
  'Content-Length: 1, 1',
  'Content-Length: +3',
  'Content-Length: 3 ',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: gzip, chunked',
  'Transfer-Encoding: chunked, identity',
  'Transfer-Encoding: identity',
  'transfer-encoding:\tChunked',
  'Transfer-Encoding: chunked\t',
  'Connection: keep-alive\t',
  'Connection: close, \tkeep-alive',
  'Host: other.example',
  'Host:',
  'Connection: close',
  'Connection: keep-alive, Upgrade',
  'Upgrade: websocket',
  'X-Obs: caf\xe9 \xff',
  'X:y',
  ': empty-name',
  'X Y: 1',
];
const VERSIONS = ['HTTP/1.0', 'HTTP/1.1', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/11', 'HTTP/1.1 ', 'HTTP/1.01', 'HTTP/3.0'];
const METHOD_SWAPS = ['GET', 'POST', 'get', 'Get', 'FOO', 'M-SEARCH', 'PRI', 'OPTIONS', 'PROPFIND', 'G\tET'];

/** Ends of the lines of the first head in `s`: the index of each CRLF before the first CRLF CRLF. */
function headLineEnds(s: string): number[] {
  const end = s.indexOf('\r\n\r\n');
  const out: number[] = [];
  for (let i = s.indexOf('\r\n'); i !== -1 && (end === -1 || i <= end); i = s.indexOf('\r\n', i + 2)) out.push(i);
  return out;
}

function mutate(g: Gen, s: string): string {
  const pos = g.int(s.length + 1);
  switch (g.int(14)) {
    case 0:
      return s.slice(0, pos) + g.pick(BYTES) + s.slice(pos + 1);
    case 1:
      return s.slice(0, pos) + g.pick(BYTES) + s.slice(pos);
    case 2:
      return s.slice(0, pos) + s.slice(pos + 1);
    case 3: {
      // Duplicate a header line.
      const ends = headLineEnds(s);
      if (ends.length < 2) return s;
      const k = 1 + g.int(ends.length - 1);
      const line = s.slice(ends[k - 1]! + 2, ends[k]! + 2);
      return s.slice(0, ends[k]! + 2) + line + s.slice(ends[k]! + 2);
    }
    case 4: {
      // One CRLF becomes LF or CR.
      const ends: number[] = [];
      for (let i = s.indexOf('\r\n'); i !== -1; i = s.indexOf('\r\n', i + 2)) ends.push(i);
      if (ends.length === 0) return s;
      const at = g.pick(ends);
      return s.slice(0, at) + g.pick(['\n', '\r', '\n\r']) + s.slice(at + 2);
    }
    case 5: {
      // obs-fold: a continuation line after a header line.
      const ends = headLineEnds(s);
      if (ends.length === 0) return s;
      const at = g.pick(ends) + 2;
      return `${s.slice(0, at)}${g.pick([' ', '\t'])}folded\r\n${s.slice(at)}`;
    }
    case 6: {
      // An added header line (a second Content-Length, a Transfer-Encoding, ...).
      const ends = headLineEnds(s);
      if (ends.length === 0) return s;
      const at = g.pick(ends) + 2;
      return `${s.slice(0, at)}${g.pick(ADDED_LINES)}\r\n${s.slice(at)}`;
    }
    case 7: {
      // Flip the case of a letter.
      for (let tries = 0; tries < 20 && s.length > 0; tries++) {
        const i = g.int(s.length);
        const c = s[i]!;
        if (/[a-z]/i.test(c)) return s.slice(0, i) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + s.slice(i + 1);
      }
      return s;
    }
    case 8: {
      const at = s.search(/HTTP\/1\.[01]/);
      return at === -1 ? s : s.slice(0, at) + g.pick(VERSIONS) + s.slice(at + 8);
    }
    case 9:
      return s.slice(0, pos);
    case 10: {
      // Another Content-Length value.
      const m = /Content-Length: (\d+)/.exec(s);
      if (m === null) return s;
      const n = Number(m[1]);
      return s.replace(m[0], `Content-Length: ${g.pick([String(n + 1), String(n - 1), '0', String(n * 2), '9007199254740993'])}`);
    }
    case 11: {
      // Whitespace before a colon.
      const ends = headLineEnds(s);
      if (ends.length < 2) return s;
      const k = 1 + g.int(ends.length - 1);
      const colon = s.indexOf(':', ends[k - 1]!);
      return colon === -1 ? s : `${s.slice(0, colon)}${g.pick([' ', '\t'])}${s.slice(colon)}`;
    }
    case 12: {
      const sp = s.indexOf(' ');
      return sp === -1 ? s : g.pick(METHOD_SWAPS) + s.slice(sp);
    }
    default: {
      // A byte in the chunk framing: after a CRLF in the body part.
      const headEnd = s.indexOf('\r\n\r\n');
      if (headEnd === -1) return s;
      const i = headEnd + 4 + g.int(Math.max(1, s.length - headEnd - 4));
      return s.slice(0, i) + g.pick([' ', ';', '\t', 'g', '\r', '\n', '0', 'F', '=', '"', '\\', '\x80', '\0', ';a', ';"x"', ';a=\xff', ';a="\x80\t"', ';a=b c', '\r\n', 'X: 1\r\n']) + s.slice(i);
    }
  }
}

function generate(seed: number, count: number): Buffer[] {
  const g = new Gen(seed);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    let s = template(g);
    if (!g.chance(0.15)) {
      const n = 1 + g.int(3);
      for (let k = 0; k < n; k++) s = mutate(g, s);
    }
    out.push(Buffer.from(s, 'latin1'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Verdicts

interface Seen {
  readonly method: string;
  readonly target: string;
  readonly bodyLength: number;
}
type Verdict = { readonly ok: true; readonly msgs: Seen[] } | { readonly ok: false; readonly why: string };

/** What our parser makes of the bytes, message after message, as the connection code would. */
function ourVerdict(input: Buffer): Verdict {
  const limits = defaultParseLimits;
  const scanner = new ChunkedScanner(limits);
  const msgs: Seen[] = [];
  let pos = 0;
  const onlyEmptyLines = (at: number): boolean => {
    for (let i = at; i < input.length; i += 2) if (input[i] !== 0x0d || input[i + 1] !== 0x0a) return false;
    return true;
  };
  try {
    while (pos < input.length) {
      const head = parseRequestHead(input, pos, input.length, limits);
      if (head === null) {
        if (msgs.length > 0 && onlyEmptyLines(pos)) break;
        return { ok: false, why: 'incomplete-head' };
      }
      pos += head.headBytes;
      if (head.method === 'CONNECT') {
        // The rest of the connection is the tunnel.
        msgs.push({ method: head.method, target: head.target, bodyLength: 0 });
        break;
      }
      let bodyLength = 0;
      if (head.chunked) {
        scanner.reset();
        scanner.onData = (_b, a, e) => (bodyLength += e - a);
        pos += scanner.push(input, pos, input.length);
        if (!scanner.done) return { ok: false, why: 'incomplete-body' };
      } else if (head.contentLength > 0) {
        if (pos + head.contentLength > input.length) return { ok: false, why: 'incomplete-body' };
        pos += head.contentLength;
        bodyLength = head.contentLength;
      }
      msgs.push({ method: head.method, target: head.target, bodyLength });
      // After an upgrade request the bytes belong to the other protocol.
      if (head.connectionUpgrade && head.upgrade !== undefined) break;
      if (!head.keepAlive) {
        if (!onlyEmptyLines(pos)) return { ok: false, why: 'data-after-close' };
        break;
      }
    }
  } catch (err) {
    if (err instanceof HttpParseError) return { ok: false, why: `${err.status} ${err.code}` };
    throw err;
  }
  return msgs.length === 0 ? { ok: false, why: 'empty' } : { ok: true, msgs };
}

interface ConnRecord {
  readonly id: number;
  readonly seen: Seen[];
  readonly errors: string[];
  /** Requests not answered yet, and what to do once they are (a pipelined CONNECT answers after them). */
  pending: number;
  whenIdle: (() => void) | undefined;
}

class NodeOracle {
  private readonly server: http.Server;
  private readonly bySocket = new WeakMap<object, ConnRecord>();
  private readonly records = new Map<number, ConnRecord>();
  private nextId = 0;
  port = 0;

  constructor() {
    this.server = http.createServer({ maxHeaderSize: 16384 }, (req, res) => {
      const rec = this.bySocket.get(req.socket)!;
      rec.pending++;
      res.on('finish', () => {
        if (--rec.pending === 0) rec.whenIdle?.();
      });
      // Recorded in arrival order; the body length once it has been read.
      const seen = { method: req.method!, target: req.url!, bodyLength: -1 };
      rec.seen.push(seen);
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('error', (e) => rec.errors.push(`request error: ${e.message}`));
      req.on('end', () => {
        seen.bodyLength = n;
        const body = JSON.stringify(seen);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-conn': rec.id });
        res.end(body);
      });
    });
    // Answer what was accepted even though the client has already sent its FIN (see the file comment).
    (this.server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    this.server.on('connection', (socket: net.Socket) => {
      const rec: ConnRecord = { id: ++this.nextId, seen: [], errors: [], pending: 0, whenIdle: undefined };
      this.bySocket.set(socket, rec);
      this.records.set(rec.id, rec);
    });
    this.server.on('clientError', (err: Error & { code?: string }, socket: net.Socket) => {
      this.bySocket.get(socket)?.errors.push(err.code ?? err.message);
      socket.destroy();
    });
    this.server.on('connect', (req: http.IncomingMessage, socket: net.Socket) => {
      const rec = this.bySocket.get(socket)!;
      // Node no longer watches the socket: a late answer to an earlier request may fail on it.
      socket.on('error', () => {});
      rec.seen.push({ method: req.method!, target: req.url!, bodyLength: 0 });
      const answer = (): void => void socket.end(`HTTP/1.1 200 OK\r\nx-conn: ${rec.id}\r\ncontent-length: 0\r\n\r\n`);
      if (rec.pending === 0) answer();
      else rec.whenIdle = answer;
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Sends the input and its FIN in one go, collects everything until the server closes. */
  private exchange(input: Buffer): Promise<{ data: Buffer; timedOut: boolean }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let timedOut = false;
      const socket = net.connect({ port: this.port, host: '127.0.0.1' });
      const timer = setTimeout(() => {
        timedOut = true;
        socket.destroy();
      }, HUNG_AFTER_MS);
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('error', () => {});
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ data: Buffer.concat(chunks), timedOut });
      });
      socket.end(input);
    });
  }

  async verdict(input: Buffer): Promise<Verdict | 'timeout'> {
    const { data, timedOut } = await this.exchange(input);
    if (timedOut) return 'timeout';
    // The answers: heads with a status and x-conn; bodies by content-length.
    const text = data.toString('latin1');
    let pos = 0;
    let answers = 0;
    let conn: number | undefined;
    while (pos < text.length) {
      const end = text.indexOf('\r\n\r\n', pos);
      if (end === -1) return { ok: false, why: 'partial answer' };
      const head = text.slice(pos, end);
      const status = Number(head.slice(9, 12));
      if (status !== 200) return { ok: false, why: `node answered ${status}` };
      const id = /\r\nx-conn: (\d+)/i.exec(head);
      const len = /\r\ncontent-length: (\d+)/i.exec(head);
      if (id === null || len === null) return { ok: false, why: 'odd answer' };
      conn = Number(id[1]);
      answers++;
      const rec = this.records.get(conn)!;
      const headRequest = rec.seen[answers - 1]?.method === 'HEAD';
      pos = end + 4 + (headRequest ? 0 : Number(len[1]));
    }
    if (conn === undefined) return { ok: false, why: 'no answer' };
    const rec = this.records.get(conn)!;
    if (rec.errors.length > 0) return { ok: false, why: rec.errors.join(', ') };
    if (answers !== rec.seen.length) return { ok: false, why: `${answers} answers to ${rec.seen.length} requests` };
    return { ok: true, msgs: rec.seen };
  }
}

async function mapLimited<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}

const show = (b: Buffer): string => JSON.stringify(b.toString('latin1'));

// ---------------------------------------------------------------------------------------------------------

describe('request parser vs node:http (differential fuzzing)', () => {
  const oracle = new NodeOracle();
  beforeAll(() => oracle.start());
  afterAll(() => oracle.stop());

  it('generates the same inputs from the same seed', () => {
    const a = generate(SEED, 50);
    const b = generate(SEED, 50);
    expect(a).toEqual(b);
    expect(new Set(a.map((x) => x.toString('latin1'))).size).toBeGreaterThan(40);
  });

  it('refuses everything node refuses, and agrees on what both accept', { timeout: 60_000 }, async () => {
    const inputs = generate(SEED, INPUTS);
    const started = performance.now();
    const nodeVerdicts = await mapLimited(inputs, CONCURRENCY, (input) => oracle.verdict(input));
    const elapsed = performance.now() - started;

    const hung: string[] = [];
    const laxer: string[] = [];
    const disagree: string[] = [];
    const stricter = new Map<string, string[]>();
    let nodeAccepted = 0;
    let bothAccepted = 0;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      const theirs = nodeVerdicts[i]!;
      const ours = ourVerdict(input);
      if (theirs === 'timeout') {
        hung.push(show(input));
        if (ours.ok) laxer.push(`${show(input)}: node never answered, we accepted ${JSON.stringify(ours.msgs)}`);
        continue;
      }
      if (theirs.ok) nodeAccepted++;
      if (!theirs.ok && ours.ok) laxer.push(`${show(input)}: node refused (${theirs.why}), we accepted ${JSON.stringify(ours.msgs)}`);
      else if (theirs.ok && !ours.ok) {
        const list = stricter.get(ours.why) ?? [];
        list.push(show(input));
        stricter.set(ours.why, list);
      } else if (theirs.ok && ours.ok) {
        bothAccepted++;
        if (JSON.stringify(theirs.msgs) !== JSON.stringify(ours.msgs)) {
          disagree.push(`${show(input)}: node saw ${JSON.stringify(theirs.msgs)}, we saw ${JSON.stringify(ours.msgs)}`);
        }
      }
    }

    const stricterCount = [...stricter.values()].reduce((n, l) => n + l.length, 0);
    console.log(
      `http1 fuzz: ${inputs.length} inputs in ${(elapsed / 1000).toFixed(1)} s; node accepted ${nodeAccepted}, refused ${inputs.length - nodeAccepted - hung.length}, hung ${hung.length}; ` +
        `both accepted ${bothAccepted}; node accepted but we refused ${stricterCount}`,
    );
    for (const [why, list] of [...stricter].sort((a, b) => b[1].length - a[1].length)) {
      console.log(`  stricter than node (${why}): ${list.length}, e.g. ${list.slice(0, 2).join('  |  ')}`);
    }

    expect(laxer, 'inputs node refused and we accepted').toEqual([]);
    expect(disagree, 'inputs both accepted but read differently').toEqual([]);
    // The templates are valid: most unmutated inputs and a good share overall must pass both parsers.
    expect(bothAccepted).toBeGreaterThan(inputs.length / 10);
  });
});
