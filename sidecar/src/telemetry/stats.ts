/**
 * Plain-number counters the request path updates in O(1) without touching prom-client. The metrics module
 * reads them at scrape time. One TrafficStats per (direction, service).
 */
export type Direction = 'inbound' | 'outbound';

/** Receives one duration observation (seconds); bound to a prom-client histogram child by telemetry. */
export type DurationSink = (seconds: number) => void;

export class TrafficStats {
  /** Responses by HTTP status code (index = code). */
  readonly codes = new Float64Array(600);
  requests = 0;
  /** Sum of request durations in seconds (mean latency and, by Little's law, average in-flight). */
  durationSum = 0;
  constructor(
    readonly direction: Direction,
    readonly service: string,
    private readonly sink: DurationSink,
  ) {}

  record(code: number, seconds: number): void {
    this.requests++;
    this.durationSum += seconds;
    if (code >= 100 && code < 600) this.codes[code]!++;
    this.sink(seconds);
  }
}
