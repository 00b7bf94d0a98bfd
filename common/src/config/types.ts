/**
 * The load-balancing policy names (the `lb` key). The sidecar's lb/ folder has one picker per name
 * (lb/index.ts maps every name to its factory, so a name without a picker does not compile).
 */
export const LB_POLICIES = [
  'random',
  'weighted-random',
  'round-robin',
  'weighted-round-robin',
  'least-request',
  'least-load',
  'peak-ewma',
  'ring-hash',
  'maglev',
] as const;

export type LbPolicy = (typeof LB_POLICIES)[number];

/** The policies that pick by a hash of the request (`hashOn`); a TCP service hashes the client's address. */
export const HASH_POLICIES: readonly LbPolicy[] = ['ring-hash', 'maglev'];

/**
 * The validated, defaulted, frozen configuration. Durations are milliseconds here; in YAML they are strings
 * with a unit ("250ms", "2s", "1m"). The same policy shapes are used in static config, in the control
 * plane's config and on the wire.
 */

export interface EndpointConfig {
  readonly address: string; // host:port
  readonly weight: number; // integer 1..1000, default 1
  readonly capacity: number; // integer >= 1, default 100
  readonly cost: number; // > 0, default 1.0
  readonly zone?: string | undefined;
  /** A sidecar's inbound listener taking mutual TLS: reached over TLS, proving the service's identity. */
  readonly mesh?: true | undefined;
}

export interface HashOnConfig {
  readonly header?: string | undefined; // lower-cased header name
  readonly cookie?: string | undefined;
}

export interface HealthCheckConfig {
  readonly http?: { readonly path: string; readonly expectedStatuses: readonly number[]; readonly host?: string | undefined } | undefined;
  readonly tcp?: Record<string, never> | undefined;
  readonly grpc?: { readonly service: string } | undefined;
  readonly intervalMs: number; // default 2s
  readonly timeoutMs: number; // default 1s
  readonly healthyThreshold: number; // default 2
  readonly unhealthyThreshold: number; // default 3
}

export interface OutlierDetectionConfig {
  readonly consecutive5xx: number; // default 5
  readonly consecutiveGatewayFailure: number; // default 3
  readonly intervalMs: number; // default 5s
  readonly baseEjectionTimeMs: number; // default 30s
  readonly maxEjectionTimeMs: number; // default 300s
  readonly maxEjectionPercent: number; // default 50
  readonly successRateMinimumHosts: number; // default 3
  readonly successRateRequestVolume: number; // default 100
  readonly successRateStdevFactor: number; // default 1.9
  readonly failurePercentageThreshold: number; // default 85
  readonly failurePercentageMinimumHosts: number; // default 3
  readonly failurePercentageRequestVolume: number; // default 50
}

export interface CircuitBreakerConfig {
  readonly errorThresholdPercentage: number; // default 50
  readonly volumeThreshold: number; // default 20
  readonly rollingWindowMs: number; // default 10s
  readonly resetTimeoutMs: number; // default 5s
}

export interface LimitsConfig {
  readonly maxConcurrent: number; // default 1024
  readonly maxPending: number; // default 1024
  readonly maxRetries: number; // default 64
}

/** Retry conditions: HTTP ones, and gRPC status codes (lower case, dashes) for `grpc` services. */
export type RetryOn =
  | 'connect-failure'
  | 'reset'
  | 'gateway-error'
  | '5xx'
  | 'timeout'
  | 'retriable-status'
  | 'cancelled'
  | 'deadline-exceeded'
  | 'internal'
  | 'resource-exhausted'
  | 'unavailable';

export interface RetryConfig {
  readonly attempts: number; // retries after the first try, integer 0..10, default 2
  readonly on: readonly RetryOn[]; // default [connect-failure, reset, gateway-error]
  readonly statuses: readonly number[]; // for 'retriable-status', default []
  readonly perTryTimeoutMs: number; // default 1s
  readonly backoff: { readonly baseMs: number; readonly maxMs: number }; // default 25ms, 250ms
  readonly budget: { readonly ratio: number; readonly minPerSecond: number }; // default 0.2, 10
}

/** `http`: HTTP/1.1 upstream; `http2`: HTTP/2 (h2c, or h2 over mutual TLS); `grpc`: HTTP/2 with gRPC semantics; `tcp`: pass-through. */
export type ServiceProtocol = 'http' | 'http2' | 'grpc' | 'tcp';

/** Policy of one upstream service (what the control plane pushes per service). */
export interface ServiceConfig {
  readonly lb: LbPolicy; // default round-robin
  readonly hashOn?: HashOnConfig | undefined; // ring-hash / maglev only
  readonly endpoints: readonly EndpointConfig[];
  /** Optional local port that forwards to this service alone (Consul-style upstream listener). */
  readonly listen?: string | undefined; // host:port
  /** What the service speaks: `http`, `http2` or `grpc` (requests are proxied) or `tcp` (connections on `listen` are passed through). */
  readonly protocol: ServiceProtocol; // default http
  readonly healthCheck?: HealthCheckConfig | undefined;
  readonly outlierDetection?: OutlierDetectionConfig | undefined;
  /** On by default; undefined when the file or policy says `circuitBreaker: false`. */
  readonly circuitBreaker?: CircuitBreakerConfig | undefined;
  readonly limits: LimitsConfig;
  readonly retry: RetryConfig;
  readonly timeoutMs: number; // overall request deadline, default 15s
  readonly connectTimeoutMs: number; // default 2s
  readonly slowStartMs: number; // default 30s
  readonly panicThreshold: number; // percent, default 50
  /** Who may call this service; enforced by its own inbound sidecar. Absent: everyone. */
  readonly authorization?: AuthorizationConfig | undefined;
}

/** An ordered list of rules; the first that matches decides, else `default`. */
export interface AuthorizationConfig {
  readonly default: 'allow' | 'deny'; // default allow
  readonly rules: readonly AuthorizationRule[];
}

export interface AuthorizationRule {
  readonly action: 'allow' | 'deny'; // default allow
  /** Callers' services as mutual TLS proved them; "*": any mesh caller. Absent: every caller, plaintext too. */
  readonly from?: readonly string[] | undefined;
  /** Absent: every method. */
  readonly methods?: readonly string[] | undefined;
  /** Path prefixes (the path without its query). Absent: every path. */
  readonly paths?: readonly string[] | undefined;
}

export interface AccessLogConfig {
  readonly enabled: boolean; // default true
  readonly sampleRate: number; // 0..1, default 1
  readonly query: boolean; // default false: the logged path leaves out its query string
}

/** The inbound replay store for requests with an `Idempotency-Key` (present means on). */
export interface IdempotencyConfig {
  readonly ttlMs: number; // default 10m: how long a stored response is replayed
  readonly maxBytes: number; // default 16 MiB: all stored responses together (LRU beyond)
  readonly maxEntryBytes: number; // default 1 MiB: a larger response is not stored
}

export interface SidecarConfig {
  readonly service: string;
  readonly instance: string; // default <service>-<hostname>-<inbound port>
  readonly admin: { readonly listen: string }; // default 127.0.0.1:15000
  readonly inbound?: {
    readonly listen: string; // default 0.0.0.0:15006
    readonly target: string; // URL of the local app, e.g. http://127.0.0.1:8080
    readonly maxConcurrent: number; // default 256
    readonly idempotency?: IdempotencyConfig | undefined; // absent: off
    /**
     * Mutual TLS from other sidecars: strict (required), permissive (TLS or plaintext), off, or mesh (the
     * control plane's mesh-wide mode; the default with a control plane, else off).
     */
    readonly mtls: 'strict' | 'permissive' | 'off' | 'mesh';
  } | undefined;
  readonly outbound: { readonly listen: string }; // default 127.0.0.1:15001
  readonly controlPlane?: {
    readonly addresses: readonly string[];
    /** Services to receive besides those under `services`. */
    readonly subscribe: readonly string[];
    /** host:port other sidecars reach this instance at; default from inbound.listen. */
    readonly advertise?: string | undefined;
    readonly weight: number; // default 1
    readonly capacity: number; // default 100
    readonly zone?: string | undefined;
    /** Cache of the last applied control-plane configuration; default next to nothing (no cache). */
    readonly cacheFile?: string | undefined;
    readonly reportIntervalMs: number; // default 5s
    /** How long a request for an unknown service waits for the control plane to resolve it; 0: no on-demand lookup. */
    readonly resolveTimeoutMs: number; // default 1s
    /** Sent as `authorization: Bearer TOKEN` on the discovery stream; else tokenFile's content; else $OUTRIGGER_TOKEN. */
    readonly token?: string | undefined;
    /** File holding the token (whitespace trimmed), read at start and at every reconnection. */
    readonly tokenFile?: string | undefined;
    /** The mesh CA certificate (PEM) pinned for the control plane's TLS; absent: $OUTRIGGER_CA_FILE, else join-token bootstrap. */
    readonly caFile?: string | undefined;
    /** false: plaintext to a control plane with TLS disabled (default true). */
    readonly tls: boolean;
  } | undefined;
  readonly services: Readonly<Record<string, ServiceConfig>>;
  /** The HTTP/1.1 engine's timeouts and limits (every listener and upstream pool); the schema fills in defaults. */
  readonly http: HttpConfig;
  readonly log: { readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'; readonly accessLog: AccessLogConfig };
  readonly metrics: { readonly enabled: boolean };
}

export interface HttpConfig {
  readonly headerTimeoutMs: number; // default 10s: a request head must be complete within it (408)
  readonly idleTimeoutMs: number; // default 60s: a keep-alive client connection with no request
  readonly bodyTimeoutMs: number; // default 30s: longest wait for the next request-body byte (408)
  readonly maxConnections: number; // default 10000, per listener
  readonly maxHeaderBytes: number; // default 16384 (431)
  readonly maxUrlBytes: number; // default 8192 (414)
  readonly maxHeaders: number; // default 100 (431)
  readonly upstreamIdleTimeoutMs: number; // default 4s: an unused upstream keep-alive connection is closed
}
