import { hostname } from 'node:os';
import { z } from 'zod';
import { checkHostPort, listenersCollide, parseHostPort } from './address.js';
import { DURATION_EXPECTED, durationProblem, formatDuration, parseDuration } from './duration.js';
import { formatPath, type IssueParams, UNKNOWN_KEY_PREFIX } from './issues.js';
import { formatSize, parseSize } from './size.js';
import {
  HASH_POLICIES,
  LB_POLICIES,
  type CircuitBreakerConfig,
  type EndpointConfig,
  type HashOnConfig,
  type HealthCheckConfig,
  type IdempotencyConfig,
  type LimitsConfig,
  type OutlierDetectionConfig,
  type RetryConfig,
  type RetryOn,
  type ServiceConfig,
  type ServiceProtocol,
  type SidecarConfig,
} from './types.js';

/**
 * zod schemas for sidecar.yaml (docs/configuration.md). They take the YAML key names (durations as strings with a
 * unit) and produce the shapes of types.ts (durations in ms, defaults filled in). Every message is phrased
 * "expected ..."; issues.ts adds the key path and the value that was got. Objects are strict: an unknown
 * key is an error, because a typo silently ignored is worse than a refusal.
 */

export { HASH_POLICIES, LB_POLICIES };

export const RETRY_ON = [
  'connect-failure',
  'reset',
  'gateway-error',
  '5xx',
  'timeout',
  'retriable-status',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
] as const satisfies readonly RetryOn[];
const _allRetryOn: readonly (typeof RETRY_ON)[number][] = [] as RetryOn[];

export const PROTOCOLS = ['http', 'http2', 'grpc', 'tcp'] as const satisfies readonly ServiceProtocol[];
const _allProtocols: readonly (typeof PROTOCOLS)[number][] = [] as ServiceProtocol[];

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const satisfies readonly SidecarConfig['log']['level'][];

export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:15000';
export const DEFAULT_INBOUND_LISTEN = '0.0.0.0:15006';
export const DEFAULT_OUTBOUND_LISTEN = '127.0.0.1:15001';

// ---------------------------------------------------------------------------------------------------------
// Building blocks

/** A strict object whose unknown-key message lists the allowed keys (read back by issues.ts). */
export function strict<T extends z.core.$ZodLooseShape>(shape: T, what = 'a mapping') {
  const keys = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `${UNKNOWN_KEY_PREFIX}${keys}` : `expected ${what}`),
  });
}

function int(min: number, max?: number) {
  const msg = max === undefined ? `expected integer >= ${min}` : `expected integer ${min}..${max}`;
  const s = z.number({ error: msg }).int({ error: msg }).min(min, { error: msg });
  return max === undefined ? s : s.max(max, { error: msg });
}

/** A finite number in [min, max], or (min, max] when `exclusiveMin`. */
function num(min: number, max: number | undefined, exclusiveMin = false) {
  const lower = exclusiveMin ? `> ${min}` : `>= ${min}`;
  const msg = max === undefined ? `expected number ${lower}` : exclusiveMin ? `expected number ${lower} and <= ${max}` : `expected number ${min}..${max}`;
  const s = z.number({ error: msg });
  const bounded = exclusiveMin ? s.gt(min, { error: msg }) : s.min(min, { error: msg });
  return max === undefined ? bounded : bounded.max(max, { error: msg });
}

const bool = () => z.boolean({ error: 'expected true or false' });

/** A duration string ("250ms", "2s", "1m", "1h") → ms. */
export function duration(allowZero = false) {
  return z
    .string({
      error: (iss) =>
        typeof iss.input === 'number'
          ? `${DURATION_EXPECTED}; a plain number has no unit (write e.g. "${iss.input}ms" or "${iss.input}s")`
          : DURATION_EXPECTED,
    })
    .transform((text, ctx): number => {
      const problem = durationProblem(text);
      if (problem !== undefined) {
        ctx.addIssue({ code: 'custom', message: problem, input: text });
        return z.NEVER;
      }
      const ms = parseDuration(text);
      if (!allowZero && ms === 0) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration greater than 0', input: text });
        return z.NEVER;
      }
      return ms;
    });
}

function hostPort(allowPortZero: boolean) {
  return z.string({ error: 'expected host:port (IPv4, hostname or [IPv6])' }).superRefine((text, ctx) => {
    const r = checkHostPort(text, allowPortZero);
    if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem, input: text });
  });
}
/** Where an upstream instance or the control plane is reached: port 1..65535. */
const address = () => hostPort(false);
/** Where the sidecar listens: port 0 binds an ephemeral port (tests). */
const listenAddress = () => hostPort(true);

const SERVICE_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
const SERVICE_NAME_EXPECTED = 'expected a service name of lower-case letters, digits, "-" and "." that starts and ends with a letter or digit';
const serviceName = () =>
  z
    .string({ error: SERVICE_NAME_EXPECTED })
    .max(253, { error: `${SERVICE_NAME_EXPECTED} (at most 253 characters)` })
    .regex(SERVICE_NAME, { error: SERVICE_NAME_EXPECTED });

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerName = () =>
  z
    .string({ error: 'expected an HTTP header name' })
    .regex(TOKEN, { error: 'expected an HTTP header name' })
    .transform((h) => h.toLowerCase());
const cookieName = () => z.string({ error: 'expected a cookie name' }).regex(TOKEN, { error: 'expected a cookie name' });

const httpUrl = () =>
  z.string({ error: 'expected an http:// URL such as http://127.0.0.1:8080' }).superRefine((text, ctx) => {
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    if (url === undefined || url.protocol !== 'http:' || url.hostname === '') {
      ctx.addIssue({ code: 'custom', message: 'expected an http:// URL such as http://127.0.0.1:8080', input: text });
    } else if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
      ctx.addIssue({ code: 'custom', message: 'expected an http:// URL with only scheme, host and port (no path, query or credentials)', input: text });
    }
  });

// ---------------------------------------------------------------------------------------------------------
// One upstream service's policy

const endpointSchema = strict(
  {
    address: address(),
    weight: int(1, 1000).default(1),
    capacity: int(1).default(100),
    cost: num(0, undefined, true).default(1),
    zone: z.string({ error: 'expected a zone name' }).min(1, { error: 'expected a non-empty zone name' }).optional(),
    // A sidecar's inbound listener that takes mutual TLS: connect over TLS and expect the service's identity.
    mesh: z.boolean({ error: 'expected true or false' }).default(false),
  },
  'an endpoint mapping such as { address: 127.0.0.1:9001 }',
).transform((e): EndpointConfig => ({ address: e.address, weight: e.weight, capacity: e.capacity, cost: e.cost, zone: e.zone, ...(e.mesh ? { mesh: true } : {}) }));

const hashOnSchema = strict({ header: headerName().optional(), cookie: cookieName().optional() }, 'a mapping such as { header: x-user-id }')
  .superRefine((h, ctx) => {
    if ((h.header === undefined) === (h.cookie === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'expected exactly one of header or cookie', input: h });
    }
  })
  .transform((h): HashOnConfig => (h.header !== undefined ? { header: h.header } : { cookie: h.cookie }));

const healthCheckSchema = strict({
  http: strict({
    path: z.string({ error: 'expected a URL path starting with "/"' }).regex(/^\/\S*$/, { error: 'expected a URL path starting with "/"' }),
    expectedStatuses: z
      .array(int(100, 599), { error: 'expected a list of HTTP status codes' })
      .min(1, { error: 'expected a non-empty list of HTTP status codes' })
      .default([200]),
    host: z.string({ error: 'expected a Host header value' }).min(1, { error: 'expected a non-empty Host header value' }).optional(),
  }).optional(),
  tcp: strict({}, 'an empty mapping: tcp: {}')
    .nullable()
    .transform((): Record<string, never> => ({}))
    .optional(),
  grpc: strict({ service: z.string({ error: 'expected a gRPC service name' }).default('') })
    .nullable()
    .transform((g) => ({ service: g?.service ?? '' }))
    .optional(),
  interval: duration().default(2_000),
  timeout: duration().default(1_000),
  healthyThreshold: int(1, 100).default(2),
  unhealthyThreshold: int(1, 100).default(3),
})
  .superRefine((h, ctx) => {
    const kinds = [h.http, h.tcp, h.grpc].filter((k) => k !== undefined).length;
    if (kinds !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected exactly one of http: { path: /healthz }, tcp: {} or grpc: {}',
        input: { http: h.http, tcp: h.tcp, grpc: h.grpc },
        params: { got: kinds === 0 ? 'none' : 'several' } satisfies IssueParams,
      });
    }
  })
  .transform(
    (h): HealthCheckConfig => ({
      http: h.http,
      tcp: h.tcp,
      grpc: h.grpc,
      intervalMs: h.interval,
      timeoutMs: h.timeout,
      healthyThreshold: h.healthyThreshold,
      unhealthyThreshold: h.unhealthyThreshold,
    }),
  );

const outlierDetectionSchema = strict({
  consecutive5xx: int(1).default(5),
  consecutiveGatewayFailure: int(1).default(3),
  interval: duration().default(5_000),
  baseEjectionTime: duration().default(30_000),
  maxEjectionTime: duration().default(300_000),
  maxEjectionPercent: num(0, 100).default(50),
  successRateMinimumHosts: int(1).default(3),
  successRateRequestVolume: int(1).default(100),
  successRateStdevFactor: num(0, undefined, true).default(1.9),
  failurePercentageThreshold: num(0, 100).default(85),
  failurePercentageMinimumHosts: int(1).default(3),
  failurePercentageRequestVolume: int(1).default(50),
})
  .superRefine((o, ctx) => {
    if (o.maxEjectionTime < o.baseEjectionTime) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxEjectionTime'],
        message: `expected maxEjectionTime >= baseEjectionTime (${formatDuration(o.baseEjectionTime)})`,
        params: { fromRoot: true, whenMissing: `"${formatDuration(o.maxEjectionTime)}" (the default)` } satisfies IssueParams,
      });
    }
  })
  .transform(
    (o): OutlierDetectionConfig => ({
      consecutive5xx: o.consecutive5xx,
      consecutiveGatewayFailure: o.consecutiveGatewayFailure,
      intervalMs: o.interval,
      baseEjectionTimeMs: o.baseEjectionTime,
      maxEjectionTimeMs: o.maxEjectionTime,
      maxEjectionPercent: o.maxEjectionPercent,
      successRateMinimumHosts: o.successRateMinimumHosts,
      successRateRequestVolume: o.successRateRequestVolume,
      successRateStdevFactor: o.successRateStdevFactor,
      failurePercentageThreshold: o.failurePercentageThreshold,
      failurePercentageMinimumHosts: o.failurePercentageMinimumHosts,
      failurePercentageRequestVolume: o.failurePercentageRequestVolume,
    }),
  );

const circuitBreakerSchema = strict(
  {
    errorThresholdPercentage: num(0, 100, true).default(50),
    volumeThreshold: int(0).default(20),
    rollingWindow: duration().default(10_000),
    resetTimeout: duration().default(5_000),
  },
  'a mapping, or false to turn the breakers off',
).transform(
  (c): CircuitBreakerConfig => ({
    errorThresholdPercentage: c.errorThresholdPercentage,
    volumeThreshold: c.volumeThreshold,
    rollingWindowMs: c.rollingWindow,
    resetTimeoutMs: c.resetTimeout,
  }),
);

/**
 * Breakers are on by default (the settings above); `false` turns them off for the service. (Not a zod
 * union: its error would hide which key of the mapping is wrong.)
 */
const circuitBreakerOption = z
  .unknown()
  .transform((v, ctx): CircuitBreakerConfig | undefined => {
    if (v === false) return undefined;
    const r = circuitBreakerSchema.safeParse(v);
    if (r.success) return r.data;
    for (const issue of r.error.issues) {
      let input: unknown = v;
      for (const key of issue.path) input = input !== null && typeof input === 'object' ? (input as Record<PropertyKey, unknown>)[key] : undefined;
      ctx.addIssue({ ...issue, input } as unknown as Parameters<typeof ctx.addIssue>[0]);
    }
    return z.NEVER;
  })
  .prefault({}) as unknown as z.ZodType<CircuitBreakerConfig | undefined, false | z.input<typeof circuitBreakerSchema> | undefined>;

const limitsSchema = strict({
  maxConcurrent: int(1).default(1024),
  maxPending: int(0).default(1024),
  maxRetries: int(0).default(64),
}).transform((l): LimitsConfig => ({ maxConcurrent: l.maxConcurrent, maxPending: l.maxPending, maxRetries: l.maxRetries }));

const RETRY_ON_EXPECTED = `expected one of ${RETRY_ON.join(', ')}`;

const retrySchema = strict({
  attempts: int(0, 10).default(2),
  on: z
    .array(z.enum(RETRY_ON, { error: RETRY_ON_EXPECTED }), { error: `expected a list of retry conditions (${RETRY_ON.join(', ')})` })
    .default(['connect-failure', 'reset', 'gateway-error']),
  statuses: z.array(int(100, 599), { error: 'expected a list of HTTP status codes' }).default([]),
  perTryTimeout: duration().default(1_000),
  backoff: strict({ base: duration().default(25), max: duration().default(250) }).prefault({}),
  budget: strict({ ratio: num(0, 1).default(0.2), minPerSecond: num(0, undefined).default(10) }).prefault({}),
})
  .superRefine((r, ctx) => {
    if (r.backoff.max < r.backoff.base) {
      ctx.addIssue({
        code: 'custom',
        path: ['backoff', 'max'],
        message: `expected backoff.max >= backoff.base (${formatDuration(r.backoff.base)})`,
        params: { fromRoot: true, whenMissing: `"${formatDuration(r.backoff.max)}" (the default)` } satisfies IssueParams,
      });
    }
    const wantsStatuses = r.on.includes('retriable-status');
    if (wantsStatuses && r.statuses.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['statuses'], message: 'expected a non-empty list of HTTP status codes when on includes retriable-status', input: r.statuses });
    } else if (!wantsStatuses && r.statuses.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['statuses'], message: 'expected statuses only together with on: [retriable-status, ...]', input: r.statuses });
    }
  })
  .transform(
    (r): RetryConfig => ({
      attempts: r.attempts,
      on: r.on,
      statuses: r.statuses,
      perTryTimeoutMs: r.perTryTimeout,
      backoff: { baseMs: r.backoff.base, maxMs: r.backoff.max },
      budget: { ratio: r.budget.ratio, minPerSecond: r.budget.minPerSecond },
    }),
  );

/**
 * Policy of one upstream service, as written under `services.<name>` in sidecar.yaml and as the control plane
 * pushes it. Parses to ServiceConfig.
 */
// Who may call a service: checked by the service's own inbound sidecar on the caller's mesh identity.
const HTTP_METHOD = /^[A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}$/;
const authorizationRuleSchema = strict(
  {
    action: z.enum(['allow', 'deny'], { error: 'expected allow or deny' }).default('allow'),
    from: z
      .array(z.union([z.literal('*'), serviceName()]), { error: 'expected a list of service names (or "*": any mesh caller)' })
      .min(1, { error: 'expected at least one service name (leave "from" out to match every caller)' })
      .optional(),
    methods: z
      .array(z.string({ error: 'expected an HTTP method' }).regex(HTTP_METHOD, { error: 'expected an HTTP method in capitals, such as GET' }), { error: 'expected a list of HTTP methods' })
      .min(1)
      .optional(),
    paths: z
      .array(z.string({ error: 'expected a path prefix' }).regex(/^\/\S*$/, { error: 'expected a path prefix starting with "/"' }), { error: 'expected a list of path prefixes' })
      .min(1)
      .optional(),
  },
  'a rule such as { from: [web], methods: [GET], paths: [/items] }',
);
const authorizationSchema = strict({
  default: z.enum(['allow', 'deny'], { error: 'expected allow or deny' }).default('allow'),
  rules: z.array(authorizationRuleSchema, { error: 'expected a list of rules' }).default([]),
});

export const serviceSchema = strict({
  lb: z.enum(LB_POLICIES, { error: `expected one of ${LB_POLICIES.join(' | ')}` }).default('round-robin'),
  hashOn: hashOnSchema.optional(),
  endpoints: z.array(endpointSchema, { error: 'expected a list of endpoints such as [{ address: 127.0.0.1:9001 }]' }).default([]),
  listen: listenAddress().optional(),
  protocol: z.enum(PROTOCOLS, { error: `expected one of ${PROTOCOLS.join(' | ')}` }).default('http'),
  healthCheck: healthCheckSchema.optional(),
  outlierDetection: outlierDetectionSchema.optional(),
  circuitBreaker: circuitBreakerOption,
  limits: limitsSchema.prefault({}),
  retry: retrySchema.prefault({}),
  timeout: duration().default(15_000),
  connectTimeout: duration().default(2_000),
  slowStart: duration(true).default(30_000),
  panicThreshold: num(0, 100).default(50),
  authorization: authorizationSchema.optional(),
})
  .superRefine((s, ctx) => {
    // hashOn is required for ring-hash / maglev; other policies ignore it (the complete example in docs/configuration.md keeps one
    // beside least-load, and the control plane may switch lb without dropping it). A tcp service has no
    // headers: it hashes the client's IP address.
    if (HASH_POLICIES.includes(s.lb) && s.hashOn === undefined && s.protocol !== 'tcp') {
      ctx.addIssue({
        code: 'custom',
        path: ['hashOn'],
        message: `expected hashOn: { header: <name> } or { cookie: <name> } because lb is ${s.lb}`,
        params: { fromRoot: true } satisfies IssueParams,
      });
    }
    const seen = new Map<string, number>();
    s.endpoints.forEach((e, i) => {
      const first = seen.get(e.address);
      if (first === undefined) seen.set(e.address, i);
      else {
        ctx.addIssue({
          code: 'custom',
          path: ['endpoints', i, 'address'],
          message: 'expected each endpoint address once',
          input: e.address,
          params: { suffix: ` (also endpoints[${first}])` } satisfies IssueParams,
        });
      }
    });
  })
  .transform(
    (s): ServiceConfig => ({
      lb: s.lb,
      hashOn: s.hashOn,
      endpoints: s.endpoints,
      listen: s.listen,
      protocol: s.protocol,
      healthCheck: s.healthCheck,
      outlierDetection: s.outlierDetection,
      circuitBreaker: s.circuitBreaker,
      limits: s.limits,
      retry: s.retry,
      timeoutMs: s.timeout,
      connectTimeoutMs: s.connectTimeout,
      slowStartMs: s.slowStart,
      panicThreshold: s.panicThreshold,
      ...(s.authorization !== undefined ? { authorization: s.authorization } : {}),
    }),
  );

// ---------------------------------------------------------------------------------------------------------
// The inbound side's replay store (`inbound.idempotency`)

/** A byte size (a whole number, or a string with a binary unit) in [min, max]. */
function size(min: number, max: number) {
  return z.unknown().transform((value, ctx): number => {
    const r = parseSize(value);
    if (typeof r !== 'number') {
      ctx.addIssue({ code: 'custom', message: r.problem, input: value });
      return z.NEVER;
    }
    if (r < min || r > max) {
      ctx.addIssue({ code: 'custom', message: `expected a size from ${formatSize(min)} to ${formatSize(max)}`, input: value });
      return z.NEVER;
    }
    return r;
  });
}

export const DEFAULT_IDEMPOTENCY: IdempotencyConfig = { ttlMs: 600_000, maxBytes: 16 * 1_048_576, maxEntryBytes: 1_048_576 };

const idempotencySchema = strict({
  ttl: duration().default(DEFAULT_IDEMPOTENCY.ttlMs),
  maxBytes: size(1_024, 1_073_741_824).default(DEFAULT_IDEMPOTENCY.maxBytes),
  maxEntryBytes: size(1, 1_073_741_824).default(DEFAULT_IDEMPOTENCY.maxEntryBytes),
})
  .superRefine((i, ctx) => {
    if (i.maxEntryBytes > i.maxBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxEntryBytes'],
        message: `expected maxEntryBytes <= maxBytes (${formatSize(i.maxBytes)})`,
        params: { fromRoot: true, whenMissing: `"${formatSize(i.maxEntryBytes)}" (the default)` } satisfies IssueParams,
      });
    }
  })
  // `idempotency:` with nothing after it turns the store on with every default.
  .nullable()
  .transform((i): IdempotencyConfig => (i === null ? DEFAULT_IDEMPOTENCY : { ttlMs: i.ttl, maxBytes: i.maxBytes, maxEntryBytes: i.maxEntryBytes }));

// ---------------------------------------------------------------------------------------------------------
// The sidecar's file

/** The sidecar's file (sidecar.yaml). Parses to SidecarConfig, `instance` defaulted from the host name. */
/** How an inbound listener takes traffic from other sidecars. */
export const MTLS_MODES = ['strict', 'permissive', 'off', 'mesh'] as const;

export const sidecarSchema = strict({
  service: serviceName(),
  instance: z
    .string({ error: 'expected an instance name without spaces' })
    .regex(/^\S{1,253}$/, { error: 'expected an instance name without spaces (at most 253 characters)' })
    .optional(),
  admin: strict({ listen: listenAddress().default(DEFAULT_ADMIN_LISTEN) }).prefault({}),
  inbound: strict({
    listen: listenAddress().default(DEFAULT_INBOUND_LISTEN),
    target: httpUrl(),
    maxConcurrent: int(1).default(256),
    idempotency: idempotencySchema.optional(),
    // Mutual TLS from other sidecars (needs a control plane, which issues the certificates). Absent: mesh
    // (the control plane's mesh-wide mode) with a control plane, off without one.
    mtls: z.enum(MTLS_MODES, { error: `expected one of ${MTLS_MODES.join(' | ')}` }).optional(),
  }).optional(),
  outbound: strict({ listen: listenAddress().default(DEFAULT_OUTBOUND_LISTEN) }).prefault({}),
  controlPlane: strict({
    addresses: z
      .array(address(), { error: 'expected a list of control plane addresses (host:port)' })
      .min(1, { error: 'expected at least one control plane address' }),
    // Services to receive from the control plane besides those declared under `services`.
    subscribe: z.array(serviceName(), { error: 'expected a list of service names' }).default([]),
    // Where other sidecars reach this instance; default: the inbound listen address (127.0.0.1 for 0.0.0.0).
    advertise: address().optional(),
    weight: int(1, 1000).default(1),
    capacity: int(1).default(100),
    zone: z.string().optional(),
    // Last applied control-plane configuration, used when the control plane is unreachable at start.
    cacheFile: z.string().min(1).optional(),
    // How often this instance's load is reported.
    reportInterval: duration().default(5_000),
    // How long a request for a service this sidecar does not know waits for the control plane to resolve it (0: no on-demand lookup).
    resolveTimeout: duration(true).default(1_000),
    // The token sent to the control plane (its sidecar join token); else the file holding it; else $OUTRIGGER_TOKEN.
    token: z.string({ error: 'expected the token as a string' }).regex(/^\S+$/, { error: 'expected a token without spaces' }).optional(),
    tokenFile: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).optional(),
    // The mesh CA certificate (PEM) the control plane's TLS certificate must chain to; else $OUTRIGGER_CA_FILE;
    // else fetched once with the token (join-token bootstrap, docs/security.md).
    caFile: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).optional(),
    // false: plaintext, for a control plane with `tls: { enabled: false }` (local experiments only).
    tls: z.boolean({ error: 'expected true or false' }).default(true),
  })
    .superRefine((cp, ctx) => {
      if (cp.token !== undefined && cp.tokenFile !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['tokenFile'], message: 'expected token or tokenFile, not both', params: { fromRoot: true } satisfies IssueParams });
      }
    })
    .optional(),
  services: z
    .record(serviceName(), serviceSchema, { error: 'expected a mapping of service name to policy' })
    .nullable()
    .optional()
    .transform((s): Record<string, ServiceConfig> => s ?? {}),
  log: strict({
    level: z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }).default('info'),
    accessLog: strict({ enabled: bool().default(true), sampleRate: num(0, 1).default(1), query: bool().default(false) }).prefault({}),
  }).prefault({}),
  metrics: strict({ enabled: bool().default(true) }).prefault({}),
  // The HTTP/1.1 engine's timeouts and limits, for every listener and upstream pool.
  http: strict({
    headerTimeout: duration().default(10_000),
    idleTimeout: duration().default(60_000),
    bodyTimeout: duration().default(30_000),
    maxConnections: int(1, 1_000_000).default(10_000),
    maxHeaderBytes: int(1_024, 1_048_576).default(16_384),
    maxUrlBytes: int(256, 1_048_576).default(8_192),
    maxHeaders: int(1, 10_000).default(100),
    upstreamIdleTimeout: duration().default(4_000),
  }).prefault({}),
})
  .superRefine((c, ctx) => {
    // Every listener needs its own socket.
    const listeners: { key: (string | number)[]; address: string }[] = [
      { key: ['admin', 'listen'], address: c.admin.listen },
      ...(c.inbound !== undefined ? [{ key: ['inbound', 'listen'], address: c.inbound.listen }] : []),
      { key: ['outbound', 'listen'], address: c.outbound.listen },
      ...Object.entries(c.services).flatMap(([name, s]) => (s.listen !== undefined ? [{ key: ['services', name, 'listen'], address: s.listen }] : [])),
    ];
    listeners.forEach((l, i) => {
      const hp = parseHostPort(l.address);
      const clash = listeners.slice(0, i).find((earlier) => listenersCollide(parseHostPort(earlier.address), hp));
      if (clash !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: l.key,
          message: 'expected a listen address no other listener uses',
          input: l.address,
          params: { suffix: ` (${formatPath(clash.key)} is ${JSON.stringify(clash.address)})` } satisfies IssueParams,
        });
      }
    });
    // A tcp service is reached only through its own port. (Checked on the file, not in serviceSchema: a
    // pushed policy may say tcp and leave the port to each sidecar's file.)
    for (const [name, s] of Object.entries(c.services)) {
      if (s.protocol === 'tcp' && s.listen === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['services', name, 'listen'],
          message: 'expected a local listen address (host:port) because protocol is tcp',
          params: { fromRoot: true } satisfies IssueParams,
        });
      }
    }
    if (c.controlPlane === undefined && c.inbound?.mtls === 'mesh') {
      ctx.addIssue({
        code: 'custom',
        path: ['inbound', 'mtls'],
        message: 'expected strict, permissive or off (mesh follows the control plane, and there is no controlPlane)',
        input: 'mesh',
        params: { fromRoot: true } satisfies IssueParams,
      });
    }
    // Without a control plane, nobody else can supply endpoints. The sidecar's own service may be listed
    // without any (for its inbound policy, such as `authorization`).
    if (c.controlPlane === undefined) {
      for (const [name, s] of Object.entries(c.services)) {
        if (s.endpoints.length === 0 && name !== c.service) {
          ctx.addIssue({
            code: 'custom',
            path: ['services', name, 'endpoints'],
            message: 'expected at least one endpoint (there is no controlPlane to supply them)',
            params: { fromRoot: true } satisfies IssueParams,
          });
        }
      }
    }
  })
  .transform(
    (c): SidecarConfig => ({
      service: c.service,
      instance: c.instance ?? `${c.service}-${hostname()}-${parseHostPort(c.inbound?.listen ?? DEFAULT_INBOUND_LISTEN).port}`,
      admin: c.admin,
      inbound: c.inbound === undefined ? undefined : { ...c.inbound, mtls: c.inbound.mtls ?? (c.controlPlane === undefined ? 'off' : 'mesh') },
      outbound: c.outbound,
      controlPlane:
        c.controlPlane === undefined
          ? undefined
          : (({ reportInterval, resolveTimeout, ...rest }) => ({ ...rest, reportIntervalMs: reportInterval, resolveTimeoutMs: resolveTimeout }))(c.controlPlane),
      services: c.services,
      http: (({ headerTimeout, idleTimeout, bodyTimeout, upstreamIdleTimeout, ...rest }) => ({
        ...rest,
        headerTimeoutMs: headerTimeout,
        idleTimeoutMs: idleTimeout,
        bodyTimeoutMs: bodyTimeout,
        upstreamIdleTimeoutMs: upstreamIdleTimeout,
      }))(c.http),
      log: c.log,
      metrics: c.metrics,
    }),
  );

export type ServiceInput = z.input<typeof serviceSchema>;
export type SidecarInput = z.input<typeof sidecarSchema>;
