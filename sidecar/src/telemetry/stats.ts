/**
 * Plain-number counters the request path updates in O(1) without touching prom-client. The metrics module
 * reads them at scrape time. One TrafficStats per (direction, service).
 */
export type Direction = 'inbound' | 'outbound';

/** Upper bounds (seconds) of the buckets of `outrigger_request_duration_seconds`; one more bucket takes the rest. */
export const DURATION_BOUNDS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export const LATENCY_BUCKETS = 160;
const BUCKET_BASE_MS = 0.05;
const BUCKETS_PER_DOUBLING = 8;

/** The bucket of a response time: 0 up to 50 µs, then 8 per doubling; the last bucket takes the rest. */
export function latencyBucket(ms: number): number {
  if (!(ms > BUCKET_BASE_MS)) return 0;
  const i = Math.floor(BUCKETS_PER_DOUBLING * Math.log2(ms / BUCKET_BASE_MS)) + 1;
  return i < LATENCY_BUCKETS ? i : LATENCY_BUCKETS - 1;
}

/** Upper bound (ms) of bucket `i`. */
export function latencyBucketUpperMs(i: number): number {
  return i === 0 ? BUCKET_BASE_MS : BUCKET_BASE_MS * 2 ** (i / BUCKETS_PER_DOUBLING);
}

/**
 * The `q`-quantile (0..1) of the response times counted in `now` minus `before` (two copies of
 * `latencyBuckets`), as the upper bound of the bucket it falls in (at most 9 % high); 0 without samples.
 */
export function latencyPercentile(now: Float64Array, before: Float64Array | undefined, q: number): number {
  let total = 0;
  for (let i = 0; i < now.length; i++) total += now[i]! - (before?.[i] ?? 0);
  if (total <= 0) return 0;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < now.length; i++) {
    seen += now[i]! - (before?.[i] ?? 0);
    if (seen >= rank) return latencyBucketUpperMs(i);
  }
  return latencyBucketUpperMs(now.length - 1);
}

export class TrafficStats {
  /** Responses by HTTP status code (index = code). */
  readonly codes = new Float64Array(600);
  requests = 0;
  /** Connections upgraded (101, e.g. WebSocket) and joined to their upstream, open now and in all. */
  upgradesActive = 0;
  upgradesTotal = 0;
  /** Sum of request durations in seconds (mean latency and, by Little's law, average in-flight). */
  durationSum = 0;
  constructor(
    readonly direction: Direction,
    readonly service: string,
    /** Whether to count `durationBuckets` (the Prometheus histogram, `metrics.enabled`). */
    private readonly histogram: boolean,
  ) {}

  /** Responses per `DURATION_BOUNDS` bucket (not cumulative; the last one is above the largest bound). */
  readonly durationBuckets = new Float64Array(DURATION_BOUNDS.length + 1);

  /**
   * Response times in log-spaced buckets (8 per doubling, from 50 µs to about 48 s), for percentiles over
   * any interval: diff two copies and call `latencyPercentile`.
   */
  readonly latencyBuckets = new Float64Array(LATENCY_BUCKETS);

  /** gRPC calls by grpc-status (index = code 0..16). */
  readonly grpcCodes = new Float64Array(17);
  grpcCalls = 0;

  recordGrpc(code: number): void {
    this.grpcCalls++;
    if (code >= 0 && code <= 16) this.grpcCodes[code]!++;
  }

  record(code: number, seconds: number): void {
    this.requests++;
    this.durationSum += seconds;
    this.latencyBuckets[latencyBucket(seconds * 1000)]!++;
    if (code >= 100 && code < 600) this.codes[code]!++;
    if (this.histogram) {
      let i = 0;
      while (i < DURATION_BOUNDS.length && seconds > DURATION_BOUNDS[i]!) i++;
      this.durationBuckets[i]!++;
    }
  }
}

/**
 * Plain-number counters of one TCP pass-through service (`protocol: tcp`), updated by the TCP proxy and
 * read by the metrics module at scrape time.
 */
export class TcpStats {
  /** Client connections open now (connecting to an endpoint or passing bytes). */
  active = 0;
  /** Client connections that reached an endpoint. */
  connected = 0;
  /** Client connections reset because no endpoint could be reached (or none was allowed). */
  failed = 0;
  constructor(readonly service: string) {}
}
