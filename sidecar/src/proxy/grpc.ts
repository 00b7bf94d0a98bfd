import { Outcome } from '../health/outlier/detector.js';

/**
 * gRPC semantics over HTTP/2 (docs/protocols.md): a call's outcome is its `grpc-status`, its deadline is
 * `grpc-timeout`, and answers the sidecar makes itself are gRPC answers (HTTP 200 with `grpc-status`).
 */

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A request is a gRPC call when its content-type is application/grpc or application/grpc+FORMAT. */
export function isGrpcContentType(value: string | undefined): boolean {
  return value !== undefined && value.length >= 16 && value.slice(0, 16).toLowerCase() === 'application/grpc';
}

/** The numeric `grpc-status` of a field value, or undefined when absent or not a number 0..16. */
export function parseGrpcStatus(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 16 ? n : undefined;
}

/**
 * How a gRPC status counts for outlier detection and breakers: UNAVAILABLE, DEADLINE_EXCEEDED and
 * RESOURCE_EXHAUSTED are the endpoint's failure (as a 503/504); INTERNAL, UNKNOWN and DATA_LOSS are its
 * errors (as a 500); every other code, application errors such as NOT_FOUND included, is a success.
 */
export function outcomeOfGrpcStatus(code: number): Outcome {
  switch (code) {
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.DEADLINE_EXCEEDED:
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return Outcome.GatewayFailure;
    case GrpcStatus.INTERNAL:
    case GrpcStatus.UNKNOWN:
    case GrpcStatus.DATA_LOSS:
      return Outcome.Error5xx;
    default:
      return Outcome.Success;
  }
}

/** The gRPC status of an answer the sidecar makes itself for `reason`. */
export function grpcStatusOfReason(reason: string): number {
  switch (reason) {
    case 'timeout':
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 'forbidden':
      return GrpcStatus.PERMISSION_DENIED;
    case 'bad-request':
      return GrpcStatus.INTERNAL;
    default:
      return GrpcStatus.UNAVAILABLE;
  }
}

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 };

/** `grpc-timeout` (1 to 8 digits and a unit H M S m u n) in milliseconds; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined || value.length < 2 || value.length > 9) return undefined;
  const unit = UNIT_MS[value[value.length - 1]!];
  if (unit === undefined) return undefined;
  const digits = value.slice(0, -1);
  if (!/^[0-9]+$/.test(digits)) return undefined;
  const ms = Number(digits) * unit;
  return ms > 0 ? ms : undefined;
}

/** Milliseconds as a `grpc-timeout` value (`250m`; at most 8 digits, so long ones in seconds or more). */
export function formatGrpcTimeout(ms: number): string {
  const m = Math.max(1, Math.ceil(ms));
  if (m < 100_000_000) return `${m}m`;
  const s = Math.ceil(m / 1000);
  if (s < 100_000_000) return `${s}S`;
  return `${Math.min(99_999_999, Math.ceil(s / 3600))}H`;
}

/** Percent-encodes a `grpc-message` (the spec's encoding: bytes outside 0x20..0x7E and `%`). */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
