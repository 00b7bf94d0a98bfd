import { describe, expect, it } from 'vitest';
import {
  ServingStatus,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  frameGrpcMessage,
  grpcStatusName,
  servingStatusName,
  unframeGrpcMessages,
} from '../../../../sidecar/src/health/active/grpc-health.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('HealthCheckRequest encoding', () => {
  it('omits an empty service (proto3 default)', () => {
    expect(encodeHealthCheckRequest('')).toHaveLength(0);
  });

  it('encodes field 1 as a length-delimited string', () => {
    // 0x0a = field 1, wire type 2; 0x0b = 11 bytes
    expect(hex(encodeHealthCheckRequest('orders.v1.X'))).toBe('0a0b' + Buffer.from('orders.v1.X').toString('hex'));
  });

  it('uses a multi-byte varint length for long names, in UTF-8 bytes', () => {
    const name = 'é'.repeat(100); // 200 bytes
    const enc = encodeHealthCheckRequest(name);
    expect(hex(enc.subarray(0, 3))).toBe('0ac801'); // 200 = 0xc8 0x01
    expect(enc.subarray(3).toString('utf8')).toBe(name);
    const big = encodeHealthCheckRequest('a'.repeat(20_000)); // 20000 = 0xa0 0x9c 0x01
    expect(hex(big.subarray(0, 4))).toBe('0aa09c01');
  });
});

describe('gRPC framing', () => {
  it('prefixes an uncompressed flag and the big-endian length', () => {
    expect(hex(frameGrpcMessage(Buffer.from([0x08, 0x01])))).toBe('00000000020801');
    expect(hex(frameGrpcMessage(Buffer.alloc(0)))).toBe('0000000000');
  });

  it('splits frames and rejects truncated or compressed ones', () => {
    const body = Buffer.concat([frameGrpcMessage(Buffer.from([0x08, 0x01])), frameGrpcMessage(Buffer.alloc(0))]);
    expect(unframeGrpcMessages(body).map(hex)).toEqual(['0801', '']);
    expect(unframeGrpcMessages(Buffer.alloc(0))).toEqual([]);
    expect(() => unframeGrpcMessages(Buffer.from('000000', 'hex'))).toThrow(/truncated/);
    expect(() => unframeGrpcMessages(Buffer.from('000000000208', 'hex'))).toThrow(/truncated/);
    expect(() => unframeGrpcMessages(Buffer.from('01000000020801', 'hex'))).toThrow(/compressed/);
  });
});

describe('HealthCheckResponse decoding', () => {
  it('reads the status enum', () => {
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x01]))).toBe(ServingStatus.SERVING);
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x02]))).toBe(ServingStatus.NOT_SERVING);
    expect(decodeHealthCheckResponse(Buffer.from([0x08, 0x03]))).toBe(ServingStatus.SERVICE_UNKNOWN);
  });

  it('treats an empty message as UNKNOWN (proto3 default)', () => {
    expect(decodeHealthCheckResponse(Buffer.alloc(0))).toBe(ServingStatus.UNKNOWN);
  });

  it('skips unknown fields of every wire type, last occurrence of field 1 wins', () => {
    const msg = Buffer.from([
      0x10, 0x96, 0x01, // field 2 varint 150
      0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
      0x22, 0x03, 0x61, 0x62, 0x63, // field 4 bytes "abc"
      0x2d, 1, 2, 3, 4, // field 5 fixed32
      0x08, 0x02, // status NOT_SERVING
      0x08, 0x01, // status SERVING
    ]);
    expect(decodeHealthCheckResponse(msg)).toBe(ServingStatus.SERVING);
  });

  it('rejects malformed input', () => {
    expect(() => decodeHealthCheckResponse(Buffer.from([0x08]))).toThrow(/truncated varint/);
    expect(() => decodeHealthCheckResponse(Buffer.from([0x22, 0x05, 0x61]))).toThrow(/truncated field/);
    expect(() => decodeHealthCheckResponse(Buffer.from([0x0b]))).toThrow(/wire type 3/);
    expect(() => decodeHealthCheckResponse(Buffer.from([0x00, 0x00]))).toThrow(/field number 0/);
    expect(() => decodeHealthCheckResponse(Buffer.from([0x08, ...Array<number>(11).fill(0xff)]))).toThrow(/varint/);
  });

  it('names statuses', () => {
    expect(servingStatusName(1)).toBe('SERVING');
    expect(servingStatusName(2)).toBe('NOT_SERVING');
    expect(servingStatusName(9)).toBe('status 9');
    expect(grpcStatusName(5)).toBe('NOT_FOUND');
    expect(grpcStatusName(12)).toBe('UNIMPLEMENTED');
    expect(grpcStatusName(99)).toBe('UNKNOWN_CODE');
  });
});
