/**
 * The two tiny messages of grpc.health.v1 (https://github.com/grpc/grpc/blob/master/doc/health-checking.md),
 * hand-encoded so the sidecar needs no protobuf dependency:
 *
 *   message HealthCheckRequest  { string service = 1; }
 *   message HealthCheckResponse { enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2;
 *                                                      SERVICE_UNKNOWN = 3; } ServingStatus status = 1; }
 *
 * plus the 5-byte gRPC length prefix (1 byte compressed flag, 4 bytes big-endian message length).
 */

export const GRPC_HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

export const ServingStatus = {
  UNKNOWN: 0,
  SERVING: 1,
  NOT_SERVING: 2,
  SERVICE_UNKNOWN: 3,
} as const;

const servingStatusNames: Readonly<Record<number, string>> = { 0: 'UNKNOWN', 1: 'SERVING', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN' };

export function servingStatusName(status: number): string {
  return servingStatusNames[status] ?? `status ${status}`;
}

const grpcStatusNames: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** Name of a gRPC status code (`5` → `NOT_FOUND`). */
export function grpcStatusName(code: number): string {
  return grpcStatusNames[code] ?? 'UNKNOWN_CODE';
}

function encodeVarint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** Serialized HealthCheckRequest (no frame prefix). An empty service is omitted, as proto3 does. */
export function encodeHealthCheckRequest(service: string): Buffer {
  if (service === '') return Buffer.alloc(0);
  const name = Buffer.from(service, 'utf8');
  // field 1, wire type 2 (length-delimited): key 0x0a
  return Buffer.concat([Buffer.from([0x0a, ...encodeVarint(name.length)]), name]);
}

/** Wraps one message in the gRPC length prefix (uncompressed). */
export function frameGrpcMessage(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(0, 0);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error('truncated varint');
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new Error('varint too large');
        return result;
      }
      scale *= 0x80;
    }
    throw new Error('varint longer than 10 bytes');
  }

  skip(n: number): void {
    if (this.pos + n > this.buf.length) throw new Error('truncated field');
    this.pos += n;
  }
}

/**
 * Reads `status` (field 1) of a serialized HealthCheckResponse; unknown fields are skipped, an absent field
 * is UNKNOWN (0, the proto3 default), and the last occurrence wins (protobuf merge semantics).
 * @throws Error on malformed input
 */
export function decodeHealthCheckResponse(message: Buffer): number {
  const r = new Reader(message);
  let status: number = ServingStatus.UNKNOWN;
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (field === 0) throw new Error('invalid field number 0');
    switch (wire) {
      case 0: {
        const v = r.varint();
        if (field === 1) status = v;
        break;
      }
      case 1:
        r.skip(8);
        break;
      case 2:
        r.skip(r.varint());
        break;
      case 5:
        r.skip(4);
        break;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
  }
  return status;
}

/**
 * Splits a response body into its gRPC messages (length-prefixed). Compressed messages are refused: the
 * request advertises no `grpc-accept-encoding`, so a server must not compress.
 * @throws Error on a truncated or compressed frame
 */
export function unframeGrpcMessages(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (pos + 5 > body.length) throw new Error('truncated gRPC frame header');
    const compressed = body.readUInt8(pos);
    const len = body.readUInt32BE(pos + 1);
    if (compressed !== 0) throw new Error('compressed gRPC message');
    if (pos + 5 + len > body.length) throw new Error('truncated gRPC message');
    out.push(body.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return out;
}
