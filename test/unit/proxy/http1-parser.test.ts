import { describe, expect, it } from 'vitest';
import { ChunkedScanner } from '../../../sidecar/src/proxy/http1/chunked.js';
import {
  defaultParseLimits,
  HttpParseError,
  type ParseLimits,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from '../../../sidecar/src/proxy/http1/parser.js';

const L = defaultParseLimits;

/** The bytes of `s` (latin1) inside a larger buffer: garbage before `start` and after `end` that must not be read. */
function embed(s: string): { buf: Buffer; start: number; end: number } {
  const bytes = Buffer.from(s, 'latin1');
  const pre = Buffer.from('\r\n\r\nXX\r\n', 'latin1');
  const post = Buffer.from('\r\n\r\n\r\nHost: x\r\n\r\n', 'latin1');
  return { buf: Buffer.concat([pre, bytes, post]), start: pre.length, end: pre.length + bytes.length };
}

function req(s: string, limits: ParseLimits = L): RequestHead | null {
  const { buf, start, end } = embed(s);
  return parseRequestHead(buf, start, end, limits);
}

function res(s: string, limits: ParseLimits = L): ResponseHead | null {
  const { buf, start, end } = embed(s);
  return parseResponseHead(buf, start, end, limits);
}

function caught(f: () => unknown): HttpParseError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(HttpParseError);
    return err as HttpParseError;
  }
  throw new Error('expected an HttpParseError, got none');
}

function refusedRequest(s: string, status: number, code: string, limits: ParseLimits = L): void {
  const err = caught(() => req(s, limits));
  expect({ status: err.status, code: err.code }, JSON.stringify(s)).toEqual({ status, code });
}

function refusedResponse(s: string, code: string, limits: ParseLimits = L): void {
  const err = caught(() => res(s, limits));
  expect({ status: err.status, code: err.code }, JSON.stringify(s)).toEqual({ status: 502, code });
}

const GET = 'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n';

describe('parseRequestHead: valid requests', () => {
  it('parses a typical request', () => {
    const s =
      'POST /api/items?x=1 HTTP/1.1\r\nHost: api.svc:8080\r\nUser-Agent: t/1.0\r\nContent-Type: application/json\r\n' +
      'Content-Length: 17\r\nX-Empty:\r\nX-Spaces: \t a  b \t\r\nx-obs: caf\xe9\xff\r\n\r\n';
    const h = req(s)!;
    expect(h).toMatchObject({
      method: 'POST',
      target: '/api/items?x=1',
      minor: 1,
      host: 'api.svc:8080',
      contentLength: 17,
      chunked: false,
      keepAlive: true,
      connectionUpgrade: false,
      upgrade: undefined,
      expectContinue: false,
      headBytes: s.length,
    });
    expect(h.headers).toEqual([
      'Host', 'api.svc:8080', 'User-Agent', 't/1.0', 'Content-Type', 'application/json', 'Content-Length', '17',
      'X-Empty', '', 'X-Spaces', 'a  b', 'x-obs', 'caf\xe9\xff',
    ]);
  });

  it('accepts every method of http.METHODS and no other', () => {
    for (const m of ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'M-SEARCH', 'QUERY', 'UNSUBSCRIBE']) {
      expect(req(`${m} / HTTP/1.1\r\nHost: a\r\n\r\n`)!.method).toBe(m);
    }
    refusedRequest('get / HTTP/1.1\r\nHost: a\r\n\r\n', 501, 'unknown-method');
    refusedRequest('FOO / HTTP/1.1\r\nHost: a\r\n\r\n', 501, 'unknown-method');
    refusedRequest('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 501, 'unknown-method');
    refusedRequest('G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-method');
  });

  it('parses the target forms', () => {
    expect(req('GET http://Example.com:80/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n')!.target).toBe('http://Example.com:80/p?q');
    expect(req('GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n')!.target).toBe('HTTPS://example.com');
    expect(req('GET http://[::1]:8080?x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n')!.target).toBe('http://[::1]:8080?x');
    expect(req('GET https://a.b-c_d~e%41!$&\'()*+;=:8443 HTTP/1.1\r\nHost: a.b-c_d~e%41!$&\'()*+;=:8443\r\n\r\n')!.host).toBe("a.b-c_d~e%41!$&'()*+;=:8443");
    expect(req('OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n')!.target).toBe('*');
    expect(req('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')!.target).toBe('example.com:443');
    expect(req('CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n')!.target).toBe('[2001:db8::1]:443');
    expect(req("GET //a/./b/%41?x=/y&z=:@!$'()*+,;=~|{}^`[]\"<>\\ HTTP/1.1\r\nHost: a\r\n\r\n")!.target).toBe("//a/./b/%41?x=/y&z=:@!$'()*+,;=~|{}^`[]\"<>\\");
  });

  it('parses HTTP/1.0 and keep-alive rules', () => {
    expect(req('GET / HTTP/1.0\r\n\r\n')).toMatchObject({ minor: 0, keepAlive: false, host: undefined, headers: [] });
    expect(req('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n')!.keepAlive).toBe(true);
    expect(req('GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n')!.keepAlive).toBe(false);
    expect(req('GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n')!.keepAlive).toBe(false);
    expect(req('GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n')!.keepAlive).toBe(false);
    expect(req('GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, keep-alive ,\r\n\r\n')!.keepAlive).toBe(true);
  });

  it('parses upgrade, expect, chunked', () => {
    const up = req('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n')!;
    expect(up).toMatchObject({ connectionUpgrade: true, upgrade: 'websocket', keepAlive: true });
    expect(req('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n')).toMatchObject({ connectionUpgrade: false, upgrade: 'h2c' });
    expect(req('PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n')).toMatchObject({ expectContinue: true, contentLength: 3 });
    expect(req('PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continued\r\n\r\n')!.expectContinue).toBe(false);
    expect(req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChunKed \r\n\r\n')).toMatchObject({ chunked: true, contentLength: -1 });
  });

  it('parses content-length values', () => {
    expect(req('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n')!.contentLength).toBe(0);
    expect(req('POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t007 \r\n\r\n')!.contentLength).toBe(7);
    expect(req('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740991\r\n\r\n')!.contentLength).toBe(Number.MAX_SAFE_INTEGER);
    expect(req(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${'0'.repeat(40)}12\r\n\r\n`)!.contentLength).toBe(12);
  });

  it('skips empty lines before the request line and counts them', () => {
    const h = req(`\r\n\r\n${GET}`)!;
    expect(h.method).toBe('GET');
    expect(h.headBytes).toBe(GET.length + 4);
    expect(req('\r\n\r\n')).toBeNull();
  });

  it('returns null until the head is complete, and ignores what follows it', () => {
    const s = `${GET}GET /next HTTP/1.1\r\n`;
    const h = req(s)!;
    expect(h.headBytes).toBe(GET.length);
    expect(req(GET.slice(0, -1))).toBeNull();
    expect(req('')).toBeNull();
  });

  it('gives the same result for every split of the bytes, and never reads before start or past end', () => {
    const heads = [
      GET,
      'POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n',
      'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
      '\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
    ];
    for (const s of heads) {
      const full = req(s);
      expect(full).not.toBeNull();
      const { buf, start, end } = embed(s);
      for (let k = start; k < end; k++) expect(parseRequestHead(buf, start, k, L), `${JSON.stringify(s)} at ${k - start}`).toBeNull();
      expect(parseRequestHead(buf, start, end, L)).toEqual(full);
      // The same bytes with more after them.
      expect(parseRequestHead(Buffer.from(`${s}GARBAGE\n\r`, 'latin1'), 0, s.length + 10, L)).toEqual(full);
    }
  });

  it('once a prefix is refused every longer one is, with the same status at the end', () => {
    const bad = [
      'GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n X: y\r\n\r\n',
      'GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n',
      'GeT / HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.1\rHost: a\r\n\r\n',
      'GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\nHost: a\r\n\r\n',
    ];
    for (const s of bad) {
      const finalErr = caught(() => req(s));
      const { buf, start, end } = embed(s);
      let refused = false;
      for (let k = start; k <= end; k++) {
        let r: string;
        try {
          r = parseRequestHead(buf, start, k, L) === null ? 'null' : 'head';
        } catch (err) {
          expect(err).toBeInstanceOf(HttpParseError);
          r = 'refused';
        }
        expect(r, `${JSON.stringify(s)} at ${k - start}`).not.toBe('head');
        if (refused) expect(r, `${JSON.stringify(s)} at ${k - start}`).toBe('refused');
        refused = r === 'refused';
      }
      expect(finalErr.status).toBe(s.startsWith('GeT') ? 501 : 400);
    }
  });
});

describe('parseRequestHead: refusals', () => {
  const cases: [string, string, number, string][] = [
    // request line
    ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['two spaces after the target', 'GET /  HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['a tab as separator', 'GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-method'],
    ['a space at the start', ' GET / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-method'],
    ['HTTP/0.9 request line', 'GET /\r\n\r\n', 400, 'bad-target'],
    ['missing version', 'GET / \r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['lower-case version', 'GET / http/1.1\r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['version with trailing space', 'GET / HTTP/1.1 \r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['version 1.10', 'GET / HTTP/1.10\r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['version 1', 'GET / HTTP/1\r\nHost: a\r\n\r\n', 400, 'bad-version'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 505, 'unsupported-version'],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505, 'unsupported-version'],
    ['HTTP/0.9', 'GET / HTTP/0.9\r\nHost: a\r\n\r\n', 505, 'unsupported-version'],
    // targets
    ['a control char in the target', 'GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['DEL in the target', 'GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['obs-text in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['a fragment in the target', 'GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['a fragment in absolute-form', 'GET http://a#f HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['a relative target', 'GET a/b HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['another scheme', 'GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['an empty authority', 'GET http:///b HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['userinfo in absolute-form', 'GET http://u@a/b HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['absolute-form with two ports', 'GET http://a:80:90/ HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['absolute-form with a bad port', 'GET http://a:8x/ HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['asterisk with GET', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['asterisk with more', 'OPTIONS *a HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['authority-form without CONNECT', 'GET a.com:443 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['CONNECT with origin-form', 'CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['CONNECT without port', 'CONNECT a.com HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['CONNECT with a bad port', 'CONNECT a.com:70000 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['CONNECT with a path', 'CONNECT a.com:443/x HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    ['CONNECT with absolute-form', 'CONNECT http://a.com:443 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bad-target'],
    // line endings
    ['bare LF after the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 400, 'bare-lf'],
    ['bare LF after a field', 'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', 400, 'bare-lf'],
    ['LF LF at the end', 'GET / HTTP/1.1\r\nHost: a\n\n', 400, 'bare-lf'],
    ['bare CR in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', 400, 'bare-cr'],
    ['bare CR in the request line', 'GET /\r HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'bare-cr'],
    ['CR CR LF', 'GET / HTTP/1.1\r\nHost: a\r\r\n\r\n', 400, 'bare-cr'],
    // field lines
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n', 400, 'obs-fold'],
    ['obs-fold with a tab', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n', 400, 'obs-fold'],
    ['whitespace before the first field', 'GET / HTTP/1.1\r\n Host: a\r\n\r\n', 400, 'obs-fold'],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400, 'space-before-colon'],
    ['tab before the colon', 'GET / HTTP/1.1\r\nHost\t: a\r\n\r\n', 400, 'space-before-colon'],
    ['no colon', 'GET / HTTP/1.1\r\nHost: a\r\nXY\r\n\r\n', 400, 'bad-header-name'],
    ['empty name', 'GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n', 400, 'bad-header-name'],
    ['non-token name', 'GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n', 400, 'bad-header-name'],
    ['obs-text in a name', 'GET / HTTP/1.1\r\nHost: a\r\nX\xe9: v\r\n\r\n', 400, 'bad-header-name'],
    ['NUL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n', 400, 'bad-header-value'],
    ['DEL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n', 400, 'bad-header-value'],
    ['a control char in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n', 400, 'bad-header-value'],
    // content-length
    ['two content-lengths', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 400, 'duplicate-content-length'],
    ['a content-length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n', 400, 'bad-content-length'],
    ['a signed content-length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n', 400, 'bad-content-length'],
    ['a negative content-length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400, 'bad-content-length'],
    ['a space inside content-length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n', 400, 'bad-content-length'],
    ['an empty content-length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n', 400, 'bad-content-length'],
    ['a hex content-length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n', 400, 'bad-content-length'],
    ['content-length over 2^53-1', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9007199254740992\r\n\r\n', 400, 'bad-content-length'],
    ['a huge content-length', `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${'9'.repeat(400)}\r\n\r\n`, 400, 'bad-content-length'],
    // transfer-encoding
    ['gzip, chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 400, 'bad-transfer-encoding'],
    ['chunked, chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 400, 'bad-transfer-encoding'],
    ['identity', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n', 400, 'bad-transfer-encoding'],
    ['chunked with a parameter', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n', 400, 'bad-transfer-encoding'],
    ['an empty TE', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n', 400, 'bad-transfer-encoding'],
    ['two TE fields', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 400, 'duplicate-transfer-encoding'],
    ['a tab after chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n', 400, 'bad-transfer-encoding'],
    ['TE and CL', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n', 400, 'cl-and-te'],
    ['CL and TE', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', 400, 'cl-and-te'],
    ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400, 'te-http10'],
    // host
    ['no host in HTTP/1.1', 'GET / HTTP/1.1\r\nX: a\r\n\r\n', 400, 'missing-host'],
    ['two hosts', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 400, 'duplicate-host'],
    ['an empty host', 'GET / HTTP/1.1\r\nHost:\r\n\r\n', 400, 'bad-host'],
    ['an empty host in HTTP/1.0', 'GET / HTTP/1.0\r\nHost: \r\n\r\n', 400, 'bad-host'],
    ['a host with a space', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 400, 'bad-host'],
    ['a host with a slash', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', 400, 'bad-host'],
    ['a host with userinfo', 'GET / HTTP/1.1\r\nHost: u@a\r\n\r\n', 400, 'bad-host'],
    ['a host list', 'GET / HTTP/1.1\r\nHost: a,b\r\n\r\n', 400, 'bad-host'],
    ['a host with ?', 'GET / HTTP/1.1\r\nHost: a?b\r\n\r\n', 400, 'bad-host'],
    ['a host with #', 'GET / HTTP/1.1\r\nHost: a#b\r\n\r\n', 400, 'bad-host'],
    ['a host with two colons', 'GET / HTTP/1.1\r\nHost: a:80:90\r\n\r\n', 400, 'bad-host'],
    ['a host with an empty port', 'GET / HTTP/1.1\r\nHost: a:\r\n\r\n', 400, 'bad-host'],
    ['a host with a port over 65535', 'GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n', 400, 'bad-host'],
    ['a host with only a port', 'GET / HTTP/1.1\r\nHost: :80\r\n\r\n', 400, 'bad-host'],
    ['a host with an unclosed bracket', 'GET / HTTP/1.1\r\nHost: [::1\r\n\r\n', 400, 'bad-host'],
    ['a host with obs-text', 'GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n', 400, 'bad-host'],
    // connection
    ['a connection value that is not a token list', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: "close"\r\n\r\n', 400, 'bad-connection'],
    ['a tab after a connection token', 'GET / HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\n', 400, 'bad-connection'],
    ['a tab between connection tokens', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,\tclose\r\n\r\n', 400, 'bad-connection'],
    ['a connection value with inner space', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep alive\r\n\r\n', 400, 'bad-connection'],
  ];
  for (const [name, s, status, code] of cases) {
    it(`refuses ${name} (${status} ${code})`, () => refusedRequest(s, status, code));
  }

  it('refuses early, before the head is complete', () => {
    refusedRequest('GET / HTTP/1.1\r\nHost: a\nX', 400, 'bare-lf');
    refusedRequest('\nGET', 400, 'bare-lf');
    refusedRequest('GET / HTTP/1.1\r\nHost: a\rX', 400, 'bare-cr');
    refusedRequest('G\0', 400, 'bad-method');
    refusedRequest('get ', 501, 'unknown-method');
    refusedRequest('ABCDEFGHIJKLMNOP', 501, 'unknown-method');
    refusedRequest('GET /a\0', 400, 'bad-target');
    expect(req('GET / HTTP/1.1\r\nHost: a\r')).toBeNull();
    expect(req('GET / HTTP/1.1\r\nHost: a\r\n\r')).toBeNull();
    expect(req('GET /')).toBeNull();
  });
});

describe('parseRequestHead: limits', () => {
  const small: ParseLimits = { maxHeadBytes: 256, maxTargetBytes: 64, maxHeaders: 4 };

  it('431 when the head is larger than maxHeadBytes, complete or not', () => {
    const fits = `GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(256 - 32)}\r\n\r\n`;
    expect(fits.length).toBe(256);
    expect(req(fits, small)!.headBytes).toBe(256);
    const over = `GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(256 - 31)}\r\n\r\n`;
    refusedRequest(over, 431, 'head-too-large', small);
    refusedRequest(over.slice(0, 256), 431, 'head-too-large', small);
    expect(req(over.slice(0, 255), small)).toBeNull();
    refusedRequest(`${'\r\n'.repeat(200)}GET / HTTP/1.1\r\n`, 431, 'head-too-large', small);
  });

  it('431 when there are more than maxHeaders fields', () => {
    expect(req('GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', small)!.headers).toHaveLength(8);
    refusedRequest('GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n', 431, 'too-many-headers', small);
  });

  it('414 when the target is longer than maxTargetBytes, complete or not', () => {
    expect(req(`GET /${'a'.repeat(63)} HTTP/1.1\r\nHost: a\r\n\r\n`, small)!.target).toHaveLength(64);
    refusedRequest(`GET /${'a'.repeat(64)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414, 'target-too-long', small);
    refusedRequest(`GET /${'a'.repeat(64)}`, 414, 'target-too-long', small);
    expect(req(`GET /${'a'.repeat(63)}`, small)).toBeNull();
    // The default limits: a target of 8193 bytes.
    refusedRequest(`GET /${'a'.repeat(8192)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414, 'target-too-long');
  });
});

describe('parseResponseHead', () => {
  it('parses a typical response', () => {
    const s = 'HTTP/1.1 201 Created Here\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nSet-Cookie: a=b\r\n\r\n';
    expect(res(s)).toEqual({
      status: 201,
      reason: 'Created Here',
      closeDelimited: false,
      minor: 1,
      headers: ['Content-Type', 'text/plain', 'Content-Length', '12', 'Set-Cookie', 'a=b'],
      contentLength: 12,
      chunked: false,
      keepAlive: true,
      connectionUpgrade: false,
      upgrade: undefined,
      headBytes: s.length,
    });
  });

  it('accepts an empty reason, with or without its space, and obs-text in it', () => {
    expect(res('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')).toMatchObject({ status: 200, reason: '' });
    expect(res('HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n')).toMatchObject({ status: 200, reason: '' });
    expect(res('HTTP/1.0 404 Nicht gefunden \xfc\t!\r\n\r\n')).toMatchObject({ status: 404, reason: 'Nicht gefunden \xfc\t!', minor: 0 });
  });

  it('frames the body: length, chunked, close-delimited, none', () => {
    expect(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')).toMatchObject({ chunked: true, closeDelimited: false, keepAlive: true });
    expect(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n')).toMatchObject({ chunked: true, closeDelimited: false });
    expect(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n')).toMatchObject({ chunked: false, closeDelimited: true, keepAlive: false });
    expect(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n')).toMatchObject({ chunked: false, closeDelimited: true, keepAlive: false });
    expect(res('HTTP/1.1 200 OK\r\nServer: x\r\n\r\n')).toMatchObject({ chunked: false, contentLength: -1, closeDelimited: true, keepAlive: false });
    for (const status of [100, 101, 103, 204, 304]) {
      expect(res(`HTTP/1.1 ${status} X\r\n\r\n`)).toMatchObject({ status, closeDelimited: false, keepAlive: true });
    }
    expect(res('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n')!.keepAlive).toBe(false);
    expect(res('HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n')!.keepAlive).toBe(true);
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n')!.keepAlive).toBe(false);
  });

  it('parses a 101 upgrade', () => {
    expect(res('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')).toMatchObject({
      status: 101,
      connectionUpgrade: true,
      upgrade: 'websocket',
    });
  });

  it('returns null until complete, same result for every split', () => {
    const s = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
    const full = res(s);
    const { buf, start, end } = embed(s);
    for (let k = start; k < end; k++) expect(parseResponseHead(buf, start, k, L)).toBeNull();
    expect(parseResponseHead(buf, start, end, L)).toEqual(full);
  });

  const cases: [string, string, string][] = [
    ['a lower-case version', 'http/1.1 200 OK\r\n\r\n', 'bad-status-line'],
    ['HTTP/2', 'HTTP/2.0 200 OK\r\n\r\n', 'unsupported-version'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'bad-status'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 'bad-status-line'],
    ['status 099', 'HTTP/1.1 099 OK\r\n\r\n', 'bad-status'],
    ['no space after the version', 'HTTP/1.1200 OK\r\n\r\n', 'bad-status-line'],
    ['a control char in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', 'bad-status-line'],
    ['a bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', 'bare-lf'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n', 'obs-fold'],
    ['CL and TE', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n', 'cl-and-te'],
    ['two CLs', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n', 'duplicate-content-length'],
    ['two TEs', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n', 'duplicate-transfer-encoding'],
    ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', 'bad-transfer-encoding'],
    ['a TE that is not a list of tokens', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: "chunked"\r\n\r\n', 'bad-transfer-encoding'],
    ['a bad CL', 'HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n', 'bad-content-length'],
    ['NUL in a value', 'HTTP/1.1 200 OK\r\nX: \0\r\n\r\n', 'bad-header-value'],
  ];
  for (const [name, s, code] of cases) {
    it(`refuses ${name} (502 ${code})`, () => refusedResponse(s, code));
  }

  it('refuses a head over the limits with 502', () => {
    const small: ParseLimits = { maxHeadBytes: 64, maxTargetBytes: 64, maxHeaders: 1 };
    refusedResponse(`HTTP/1.1 200 OK\r\nX: ${'v'.repeat(64)}`, 'head-too-large', small);
    refusedResponse('HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n', 'too-many-headers', small);
  });
});

// ---------------------------------------------------------------------------------------------------------

interface Scan {
  consumed: number;
  done: boolean;
  payload: string;
  trailers: string[];
}

/** Runs a scanner over `s` cut at the given positions (each piece in its own buffer, with garbage around it). */
function scan(s: string, cuts: readonly number[], limits: ParseLimits = L, scanner = new ChunkedScanner(limits)): Scan {
  let payload = '';
  scanner.onData = (b, a, e) => {
    expect(a).toBeLessThanOrEqual(e);
    payload += b.toString('latin1', a, e);
  };
  let consumed = 0;
  const bounds = [0, ...cuts, s.length];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const { buf, start, end } = embed(s.slice(bounds[k], bounds[k + 1]));
    const n = scanner.push(buf, start, end);
    expect(n).toBeGreaterThanOrEqual(0);
    expect(n).toBeLessThanOrEqual(end - start);
    consumed += n;
    if (n < end - start) {
      expect(scanner.done).toBe(true);
      break;
    }
  }
  return { consumed, done: scanner.done, payload, trailers: scanner.trailers };
}

function refusedChunked(s: string, code: string, limits: ParseLimits = L): void {
  const err = caught(() => scan(s, [], limits));
  expect({ status: err.status, code: err.code }, JSON.stringify(s)).toEqual({ status: 400, code });
  // Byte at a time: the same refusal.
  const err1 = caught(() => scan(s, Array.from({ length: s.length - 1 }, (_, i) => i + 1), limits));
  expect({ status: err1.status, code: err1.code }, JSON.stringify(s)).toEqual({ status: 400, code });
}

describe('ChunkedScanner', () => {
  const bodies: [string, string, string[]][] = [
    ['0\r\n\r\n', '', []],
    ['5\r\nhello\r\n0\r\n\r\n', 'hello', []],
    ['5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n', 'hello world', []],
    ['A\r\n0123456789\r\n000\r\n\r\n', '0123456789', []],
    ['a;x\r\n\r\n\r\n\r\n\r\n\r\n\r\n0\r\n\r\n', '\r\n\r\n\r\n\r\n\r\n', []],
    ['3;name=val;flag;q="a \\"b\\" \t\xe9";t=!#$\r\nabc\r\n0;last=1\r\n\r\n', 'abc', []],
    ['0000000000000004\r\nwxyz\r\n0\r\n\r\n', 'wxyz', []],
    ['2\r\nhi\r\n0\r\nExpires: never \r\nX-Checksum:\tab cd\r\nX-Empty:\r\nX-Obs: \xe9\r\n\r\n', 'hi', ['Expires', 'never', 'X-Checksum', 'ab cd', 'X-Empty', '', 'X-Obs', '\xe9']],
  ];

  it('scans valid bodies at every split position, and byte at a time', () => {
    for (const [body, payload, trailers] of bodies) {
      const s = `${body}GET / HTTP/1.1\r\n`;
      const want: Scan = { consumed: body.length, done: true, payload, trailers };
      expect(scan(s, []), JSON.stringify(body)).toEqual(want);
      for (let k = 1; k < s.length; k++) expect(scan(s, [k]), `${JSON.stringify(body)} cut at ${k}`).toEqual(want);
      expect(scan(s, Array.from({ length: s.length - 1 }, (_, i) => i + 1))).toEqual(want);
      // Not done on any strict prefix.
      for (let k = 0; k < body.length; k++) expect(scan(body.slice(0, k), []).done).toBe(false);
    }
  });

  it('gives onData spans within the pushed range, without copying', () => {
    const sc = new ChunkedScanner(L);
    const buf = Buffer.from('4\r\nabcd\r\n0\r\n\r\n');
    const spans: [Buffer, number, number][] = [];
    sc.onData = (b, s, e) => spans.push([b, s, e]);
    expect(sc.push(buf, 0, buf.length)).toBe(buf.length);
    expect(spans).toEqual([[buf, 3, 7]]);
    expect(spans[0]![0]).toBe(buf);
  });

  it('is reusable after reset(), and consumes nothing once done', () => {
    const sc = new ChunkedScanner(L);
    expect(scan('1\r\na\r\n0\r\nT: 1\r\n\r\n', [], L, sc)).toMatchObject({ done: true, trailers: ['T', '1'] });
    expect(sc.push(Buffer.from('1\r\n'), 0, 3)).toBe(0);
    const before = sc.trailers;
    sc.reset();
    expect(sc.done).toBe(false);
    expect(sc.trailers).toEqual([]);
    expect(before).toEqual(['T', '1']);
    expect(scan('2\r\nbc\r\n0\r\n\r\n', [1], L, sc)).toMatchObject({ done: true, payload: 'bc', trailers: [] });
  });

  it('accepts sizes up to 2^53-1 and 16 digits', () => {
    const sc = new ChunkedScanner(L);
    expect(sc.push(Buffer.from('1fffffffffffff\r\nab'), 0, 18)).toBe(18);
    expect(sc.done).toBe(false);
    sc.reset();
    expect(sc.push(Buffer.from('000000000000000a\r\n'), 0, 18)).toBe(18);
  });

  const bad: [string, string, string][] = [
    ['an empty size', '\r\n', 'bad-chunk-size'],
    ['a non-hex size', 'g\r\n', 'bad-chunk-size'],
    ['a sign', '+5\r\nhello\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['space after the size', '5 \r\nhello\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['space before the size', ' 5\r\nhello\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['a tab before an extension', '5\t;a\r\nhello\r\n0\r\n\r\n', 'bad-chunk-size'],
    ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n', 'bare-lf'],
    ['a bare LF after an extension', '5;a=b\nhello\r\n0\r\n\r\n', 'bare-lf'],
    ['a bare CR after the size', '5\rhello\r\n0\r\n\r\n', 'bare-cr'],
    ['17 hex digits', '00000000000000005\r\nhello\r\n0\r\n\r\n', 'chunk-size-too-large'],
    ['a size over 2^53-1', '20000000000000\r\n', 'chunk-size-too-large'],
    ['a size over 2^64', 'ffffffffffffffffff\r\n', 'chunk-size-too-large'],
    ['an empty extension', '5;\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['space in an extension', '5; a=b\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['space around =', '5;a =b\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['an empty extension value', '5;a=\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['a control char in an extension', '5;a=b\x01\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['a control char in a quoted extension', '5;a="b\x01"\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['DEL in a quoted extension', '5;a="b\x7f"\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['an unterminated quoted extension', '5;a="b\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['text after a quoted extension', '5;a="b"c\r\nhello\r\n0\r\n\r\n', 'bad-chunk-ext'],
    ['a size line over 4096 bytes', `5;a=${'b'.repeat(4100)}\r\nhello\r\n0\r\n\r\n`, 'chunk-line-too-long'],
    ['data longer than the size', '5\r\nhello!\r\n0\r\n\r\n', 'bad-chunk-data'],
    ['data shorter than the size', '5\r\nhell\r\n0\r\n\r\n', 'bad-chunk-data'],
    ['data ended by LF', '5\r\nhello\n0\r\n\r\n', 'bad-chunk-data'],
    ['data ended by CR', '5\r\nhello\r0\r\n\r\n', 'bad-chunk-data'],
    ['a bare LF at the end', '0\r\n\n', 'bare-lf'],
    ['a bare CR at the end', '0\r\n\rX', 'bare-cr'],
    ['obs-fold in the trailers', '0\r\nA: 1\r\n 2\r\n\r\n', 'obs-fold'],
    ['space before a trailer colon', '0\r\nA : 1\r\n\r\n', 'space-before-colon'],
    ['a trailer without colon', '0\r\nA\r\n\r\n', 'bad-trailer-name'],
    ['an empty trailer name', '0\r\n: 1\r\n\r\n', 'bad-trailer-name'],
    ['NUL in a trailer value', '0\r\nA: \0\r\n\r\n', 'bad-trailer-value'],
    ['a bare LF in the trailers', '0\r\nA: 1\n\r\n', 'bare-lf'],
    ['a bare CR in the trailers', '0\r\nA: 1\rB\r\n\r\n', 'bare-cr'],
  ];
  for (const [name, s, code] of bad) {
    it(`refuses ${name} (400 ${code})`, () => refusedChunked(s, code));
  }

  it('bounds the trailer section by maxHeadBytes and maxHeaders', () => {
    const small: ParseLimits = { maxHeadBytes: 32, maxTargetBytes: 64, maxHeaders: 2 };
    expect(scan('0\r\nA: 1\r\nB: 2\r\n\r\n', [], small)).toMatchObject({ done: true, trailers: ['A', '1', 'B', '2'] });
    refusedChunked('0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 'too-many-trailers', small);
    refusedChunked(`0\r\nA: ${'x'.repeat(40)}\r\n\r\n`, 'trailers-too-large', small);
  });

  it('keeps refusing after an error until reset()', () => {
    const sc = new ChunkedScanner(L);
    expect(() => sc.push(Buffer.from('x'), 0, 1)).toThrow(HttpParseError);
    expect(sc.done).toBe(false);
    expect(() => sc.push(Buffer.from('0\r\n\r\n'), 0, 5)).toThrow(HttpParseError);
    sc.reset();
    expect(sc.push(Buffer.from('0\r\n\r\n'), 0, 5)).toBe(5);
    expect(sc.done).toBe(true);
  });
});
