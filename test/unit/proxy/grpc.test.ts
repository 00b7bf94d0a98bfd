import { describe, expect, it } from 'vitest';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import { Outcome } from '../../../sidecar/src/health/outlier/detector.js';
import {
  encodeGrpcMessage,
  formatGrpcTimeout,
  grpcStatusOfReason,
  GrpcStatus,
  isGrpcContentType,
  outcomeOfGrpcStatus,
  parseGrpcStatus,
  parseGrpcTimeout,
} from '../../../sidecar/src/proxy/grpc.js';
import { flatHeaders, headerObject, parseHeaderBlock, requestHeadersOf } from '../../../sidecar/src/proxy/http2/headers.js';
import { isRetriableFailure } from '../../../sidecar/src/resilience/retry.js';

describe('gRPC semantics', () => {
  it('recognizes gRPC calls by content-type', () => {
    expect(isGrpcContentType('application/grpc')).toBe(true);
    expect(isGrpcContentType('application/grpc+proto')).toBe(true);
    expect(isGrpcContentType('Application/GRPC')).toBe(true);
    expect(isGrpcContentType('application/json')).toBe(false);
    expect(isGrpcContentType(undefined)).toBe(false);
  });

  it('parses grpc-status and maps it to outcomes: only UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED are gateway failures', () => {
    expect(parseGrpcStatus('0')).toBe(0);
    expect(parseGrpcStatus('14')).toBe(14);
    expect(parseGrpcStatus('17')).toBeUndefined();
    expect(parseGrpcStatus('x')).toBeUndefined();
    expect(parseGrpcStatus(undefined)).toBeUndefined();
    const gateway = [GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.RESOURCE_EXHAUSTED];
    const errors = [GrpcStatus.INTERNAL, GrpcStatus.UNKNOWN, GrpcStatus.DATA_LOSS];
    for (let c = 0; c <= 16; c++) {
      const expected = gateway.includes(c as never) ? Outcome.GatewayFailure : errors.includes(c as never) ? Outcome.Error5xx : Outcome.Success;
      expect(outcomeOfGrpcStatus(c)).toBe(expected);
    }
    expect(outcomeOfGrpcStatus(GrpcStatus.NOT_FOUND)).toBe(Outcome.Success);
  });

  it('answers proxy-made errors with UNAVAILABLE, DEADLINE_EXCEEDED for timeouts, PERMISSION_DENIED for forbidden', () => {
    expect(grpcStatusOfReason('no-healthy-upstream')).toBe(14);
    expect(grpcStatusOfReason('connect-failure')).toBe(14);
    expect(grpcStatusOfReason('circuit-open')).toBe(14);
    expect(grpcStatusOfReason('timeout')).toBe(4);
    expect(grpcStatusOfReason('forbidden')).toBe(7);
  });

  it('reads and writes grpc-timeout', () => {
    expect(parseGrpcTimeout('100m')).toBe(100);
    expect(parseGrpcTimeout('2S')).toBe(2_000);
    expect(parseGrpcTimeout('1M')).toBe(60_000);
    expect(parseGrpcTimeout('1H')).toBe(3_600_000);
    expect(parseGrpcTimeout('5000u')).toBe(5);
    expect(parseGrpcTimeout('1000000n')).toBe(1);
    expect(parseGrpcTimeout('123456789m')).toBeUndefined(); // 9 digits
    expect(parseGrpcTimeout('10x')).toBeUndefined();
    expect(parseGrpcTimeout('m')).toBeUndefined();
    expect(parseGrpcTimeout('-1m')).toBeUndefined();
    expect(parseGrpcTimeout('0m')).toBeUndefined();
    expect(formatGrpcTimeout(250)).toBe('250m');
    expect(formatGrpcTimeout(0.2)).toBe('1m');
    expect(formatGrpcTimeout(99_999_999)).toBe('99999999m');
    expect(formatGrpcTimeout(100_000_000)).toBe('100000S');
    for (const ms of [1, 17, 1_000, 86_400_000]) expect(parseGrpcTimeout(formatGrpcTimeout(ms))).toBe(ms);
  });

  it('percent-encodes grpc-message', () => {
    expect(encodeGrpcMessage('plain text: ok')).toBe('plain text: ok');
    expect(encodeGrpcMessage('50% off')).toBe('50%25 off');
    expect(encodeGrpcMessage('é\n')).toBe('%C3%A9%0A');
  });

  it('retries gRPC codes named in retry.on, written in lower case with dashes', () => {
    const retry = parseServiceConfig({ endpoints: [{ address: '127.0.0.1:1' }], retry: { on: ['unavailable', 'resource-exhausted'] } }, 'test').retry;
    expect(isRetriableFailure(retry, { kind: 'grpc', code: GrpcStatus.UNAVAILABLE })).toBe(true);
    expect(isRetriableFailure(retry, { kind: 'grpc', code: GrpcStatus.RESOURCE_EXHAUSTED })).toBe(true);
    expect(isRetriableFailure(retry, { kind: 'grpc', code: GrpcStatus.DEADLINE_EXCEEDED })).toBe(false);
    expect(isRetriableFailure(retry, { kind: 'grpc', code: GrpcStatus.NOT_FOUND })).toBe(false);
    const all = parseServiceConfig({ endpoints: [], retry: { on: ['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'] } }, 'test').retry;
    for (const c of [1, 4, 8, 13, 14]) expect(isRetriableFailure(all, { kind: 'grpc', code: c })).toBe(true);
    for (const c of [0, 2, 3, 5, 6, 7, 9, 10, 11, 12, 15, 16]) expect(isRetriableFailure(all, { kind: 'grpc', code: c })).toBe(false);
    // UNAVAILABLE is gRPC's 503: gateway-error (in the default conditions) and 5xx cover it, and no other code.
    for (const on of [['gateway-error'], ['5xx'], ['connect-failure', 'reset', 'gateway-error']]) {
      const http = parseServiceConfig({ endpoints: [], retry: { on } }, 'test').retry;
      for (let c = 0; c <= 16; c++) expect(isRetriableFailure(http, { kind: 'grpc', code: c })).toBe(c === GrpcStatus.UNAVAILABLE);
    }
    const none = parseServiceConfig({ endpoints: [], retry: { on: ['connect-failure', 'reset', 'timeout', 'retriable-status'], statuses: [503] } }, 'test').retry;
    expect(isRetriableFailure(none, { kind: 'grpc', code: GrpcStatus.UNAVAILABLE })).toBe(false);
  });

  it('accepts protocol http2 and grpc', () => {
    expect(parseServiceConfig({ protocol: 'grpc' }, 'test').protocol).toBe('grpc');
    expect(parseServiceConfig({ protocol: 'http2' }, 'test').protocol).toBe('http2');
  });
});

describe('HTTP/2 header conversion', () => {
  it('turns the head the Call writes into HTTP/2 request headers without connection-specific fields', () => {
    const head =
      'POST /pkg.Svc/Method HTTP/1.1\r\nhost: echo\r\ncontent-type: application/grpc\r\nte: trailers\r\nconnection: keep-alive\r\n' +
      'transfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\nkeep-alive: timeout=5\r\n\r\n';
    const p = requestHeadersOf(head, 'http', 'fallback:1');
    expect(p.chunked).toBe(true);
    expect(p.headers).toEqual({
      ':method': 'POST',
      ':scheme': 'http',
      ':path': '/pkg.Svc/Method',
      ':authority': 'echo',
      'content-type': 'application/grpc',
      te: 'trailers',
      'x-a': ['1', '2'],
    });
    const noHost = requestHeadersOf('GET / HTTP/1.1\r\nte: gzip\r\n\r\n', 'https', 'fallback:1');
    expect(noHost.headers).toEqual({ ':method': 'GET', ':scheme': 'https', ':path': '/', ':authority': 'fallback:1' });
    expect(noHost.chunked).toBe(false);
  });

  it('parses a response header block and flattens HTTP/2 headers', () => {
    const into = { ':status': 200 };
    parseHeaderBlock('content-type: text/plain\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nupgrade: h2c\r\n', 0, into);
    expect(into).toEqual({ ':status': 200, 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
    expect(flatHeaders({ ':status': '200', 'grpc-status': '0', 'set-cookie': ['a', 'b'] })).toEqual(['grpc-status', '0', 'set-cookie', 'a', 'set-cookie', 'b']);
    expect(headerObject(['Grpc-Status', '5', 'connection', 'close', 'x', '1', 'x', '2'])).toEqual({ 'grpc-status': '5', x: ['1', '2'] });
  });
});
