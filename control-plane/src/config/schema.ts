import { isIP } from 'node:net';
import { z } from 'zod';
import { checkHostPort, listenersCollide, parseHostPort } from '../../../common/src/config/address.js';
import type { IssueParams } from '../../../common/src/config/issues.js';
import { duration, serviceSchema, sidecarSchema, strict } from '../../../common/src/config/schema.js';
import { policyProblems } from './policy-rules.js';
import { MIN_SECRET_LENGTH, ROLES } from '../auth/tokens.js';

/**
 * zod schema of cp.yaml. Per-service policies are the sidecar's own `serviceSchema` (the same shape as
 * `services.NAME` in sidecar.yaml), service names the sidecar's own rule; only the few keys of the control
 * plane itself are defined here, in the sidecar schema's style: strict objects, "expected ..." messages
 * (issues.ts adds the key path and what was got), durations as strings with a unit.
 */

export const DEFAULT_GRPC_LISTEN = '127.0.0.1:15010';
export const DEFAULT_HTTP_LISTEN = '127.0.0.1:15080';
export const DEFAULT_STORE_FILE = './outrigger-state.json';
/** State of a control plane started without a cp.yaml (`outrigger control-plane` alone), under its working directory. */
export const NO_CONFIG_STORE_FILE = './outrigger-data/state.json';
/** Key prefix of the shared state in etcd. */
export const DEFAULT_ETCD_PREFIX = '/outrigger';
/** TTL of a replica's etcd lease: its registrations and its leadership end this long after it dies. */
export const DEFAULT_ETCD_LEASE_TTL_MS = 5_000;
const ETCD_ENDPOINT = /^(https?:\/\/)?[A-Za-z0-9.[\]:-]+:\d{1,5}$/;
const ETCD_ENDPOINT_EXPECTED = 'expected an etcd endpoint such as http://127.0.0.1:2379';
const ETCD_PREFIX_EXPECTED = 'expected a key prefix such as /outrigger (starts with "/", no trailing "/")';
export const DEFAULT_INSTANCE_TTL_MS = 10_000;
export const DEFAULT_DRAIN_TIME_MS = 5_000;
/** Default ceiling of `autoscale.NAME.max` (cp.yaml and `PUT /api/autoscale/NAME`). */
export const DEFAULT_MAX_REPLICAS = 50;
/** The highest `limits.maxReplicas` cp.yaml may set. */
export const MAX_REPLICAS_LIMIT = 10_000;

/** A service name, by the sidecar's rule (lower-case letters, digits, "-" and "."). */
export const serviceNameSchema = sidecarSchema.in.shape.service;

/** host:port; port 0 (an ephemeral port, for tests) only where `allowPortZero`. */
export function hostPortSchema(allowPortZero: boolean) {
  return z.string({ error: 'expected host:port (IPv4, hostname or [IPv6])' }).superRefine((text, ctx) => {
    const r = checkHostPort(text, allowPortZero);
    if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem, input: text });
  });
}


// ---------------------------------------------------------------------------------------------------------
// autoscale.NAME (docs/autoscaling.md)

const AUTOSCALE_INT = (min: number) => {
  const msg = `expected integer >= ${min}`;
  return z.number({ error: msg }).int({ error: msg }).min(min, { error: msg });
};
const nonEmpty = (what: string) => z.string({ error: `expected ${what}` }).min(1, { error: `expected a non-empty ${what}` });
const PORT_RANGE_EXPECTED = 'expected a port range FROM-TO such as 21000-21099 (ports 1..65535, FROM <= TO)';

/** "21000-21099" (or one port "21000") → { from, to }. */
const portRange = () =>
  z.union([z.string(), z.number()], { error: PORT_RANGE_EXPECTED }).transform((v, ctx): { from: number; to: number } => {
    const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(String(v));
    const from = Number(m?.[1]);
    const to = m?.[2] === undefined ? from : Number(m[2]);
    if (m === null || !(from >= 1 && to <= 65535 && from <= to)) {
      ctx.addIssue({ code: 'custom', message: PORT_RANGE_EXPECTED, input: v });
      return z.NEVER;
    }
    return { from, to };
  });

const processDriverSchema = strict({
  // argv; {port}, {service}, {index}, {host} and {node} (this Node.js binary) are substituted.
  command: z.array(z.string({ error: 'expected a string' }), { error: 'expected a command as a list of arguments, e.g. [node, app.js, --port, "{port}"]' }).min(1, { error: 'expected at least the program to run' }),
  ports: portRange(),
  host: nonEmpty('host name or IP the instances are registered at').default('127.0.0.1'),
  cwd: nonEmpty('directory').optional(),
  env: z.record(z.string(), z.string({ error: 'expected a string (quote numbers)' }), { error: 'expected a mapping of variable name to string' }).default({}),
  stopGrace: duration(true).default(10_000),
});

const composeDriverSchema = strict({
  // argv of the compose program and any global flags, e.g. [podman-compose] or [docker-compose, --ansi, never].
  command: z
    .array(nonEmpty('argument'), { error: 'expected a command as a list of arguments, e.g. [docker, compose] or [podman-compose]' })
    .min(1, { error: 'expected at least the program to run' })
    .default(['docker', 'compose']),
  file: nonEmpty('file path').optional(),
  project: nonEmpty('project name').optional(),
  service: nonEmpty('compose service name').optional(),
});

const kubernetesDriverSchema = strict({
  apiServer: z.string({ error: 'expected the API server URL, e.g. https://10.0.0.1:6443' }).superRefine((text, ctx) => {
    let ok: boolean;
    try {
      const u = new URL(text);
      ok = (u.protocol === 'https:' || u.protocol === 'http:') && u.hostname !== '';
    } catch {
      ok = false;
    }
    if (!ok) ctx.addIssue({ code: 'custom', message: 'expected the API server URL, e.g. https://10.0.0.1:6443', input: text });
  }),
  namespace: nonEmpty('namespace').default('default'),
  deployment: nonEmpty('Deployment name').optional(),
  tokenFile: nonEmpty('file path').optional(),
  caFile: nonEmpty('file path').optional(),
  insecureSkipTlsVerify: z.boolean({ error: 'expected true or false' }).default(false),
});

const DRIVERS = ['process', 'compose', 'kubernetes'] as const;

export const autoscaleServiceSchema = strict({
  min: AUTOSCALE_INT(0),
  max: AUTOSCALE_INT(1),
  targetUtilization: z.number({ error: 'expected number > 0 and <= 1' }).gt(0, { error: 'expected number > 0 and <= 1' }).max(1, { error: 'expected number > 0 and <= 1' }),
  interval: duration(false).default(5_000),
  stabilizationWindow: duration(true).default(60_000),
  cooldown: duration(true).default(10_000),
  driver: strict({ process: processDriverSchema.optional(), compose: composeDriverSchema.optional(), kubernetes: kubernetesDriverSchema.optional() }),
}).superRefine((c, ctx) => {
  if (c.max < c.min) {
    ctx.addIssue({ code: 'custom', path: ['max'], message: `expected integer >= min (${c.min})`, params: { fromRoot: true } satisfies IssueParams });
  }
  const given = DRIVERS.filter((d) => c.driver[d] !== undefined);
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      path: ['driver'],
      message: `expected exactly one of ${DRIVERS.join(', ')}`,
      params: { got: given.length === 0 ? 'none' : given.join(' and ') } satisfies IssueParams,
    });
  }
  const p = c.driver.process;
  if (p !== undefined && p.ports.to - p.ports.from + 1 < c.max) {
    ctx.addIssue({
      code: 'custom',
      path: ['driver', 'process', 'ports'],
      message: `expected a range of at least ${c.max} ports (max is ${c.max}, one port per instance)`,
      params: { fromRoot: true } satisfies IssueParams,
    });
  }
});

/** An extra name the HTTP API answers to (`Host`), or "*" for any. */
const allowedHostSchema = z.string({ error: 'expected a host name such as control-plane, or "*"' }).superRefine((text, ctx) => {
  if (text !== '*' && 'problem' in checkHostPort(`${text}:1`, false)) ctx.addIssue({ code: 'custom', message: 'expected a host name such as control-plane (no port), or "*"', input: text });
});

/** A name or IP address for the control plane's server certificate. */
const serverNameSchema = z.string({ error: 'expected a host name such as control-plane, or an IP address' }).superRefine((text, ctx) => {
  if (isIP(text) === 0 && 'problem' in checkHostPort(`${text}:1`, false)) ctx.addIssue({ code: 'custom', message: 'expected a host name such as control-plane (no port), or an IP address', input: text });
});

// ---------------------------------------------------------------------------------------------------------
// auth (docs/security.md "Tokens and roles")

const SECRET_SOURCES = ['secret', 'secretFile', 'secretEnv'] as const;

const tokenSchema = strict({
  name: nonEmpty('token name'),
  secret: z.string({ error: `expected a secret of at least ${MIN_SECRET_LENGTH} characters` }).min(MIN_SECRET_LENGTH, { error: `expected a secret of at least ${MIN_SECRET_LENGTH} characters` }).optional(),
  secretFile: nonEmpty('file path holding the secret').optional(),
  secretEnv: z.string({ error: 'expected an environment variable name' }).regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }).optional(),
  role: z.enum(ROLES, { error: `expected one of ${ROLES.join(', ')}` }),
  // Role sidecar only: the services the token may register or identify as ("*" or absent: any).
  services: z.array(z.union([z.literal('*'), serviceNameSchema]), { error: 'expected a list of service names (or "*")' }).min(1, { error: 'expected at least one service name (or "*")' }).optional(),
}).superRefine((t, ctx) => {
  const given = SECRET_SOURCES.filter((k) => t[k] !== undefined);
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      path: given.length === 0 ? ['secret'] : [],
      message: `expected exactly one of ${SECRET_SOURCES.join(', ')}`,
      params: { got: given.length === 0 ? 'none' : given.join(' and ') } satisfies IssueParams,
    });
  }
  if (t.services !== undefined && t.role !== 'sidecar') {
    ctx.addIssue({ code: 'custom', path: ['services'], message: `expected no services for role ${t.role} (only a sidecar token is scoped to services)`, params: { fromRoot: true } satisfies IssueParams });
  }
});

const authSchema = strict({
  // Unsafe: anyone who reaches the ports may do everything.
  disabled: z.boolean({ error: 'expected true or false' }).default(false),
  tokens: z.array(tokenSchema, { error: 'expected a list of tokens' }).default([]),
}).superRefine((a, ctx) => {
  if (!a.disabled && a.tokens.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'expected at least one token (or disabled: true)', params: { fromRoot: true, whenMissing: 'nothing' } satisfies IssueParams });
  }
  const seen = new Set<string>();
  a.tokens.forEach((t, i) => {
    if (seen.has(t.name)) ctx.addIssue({ code: 'custom', path: ['tokens', i, 'name'], message: 'expected a name no other token has', params: { fromRoot: true } satisfies IssueParams });
    seen.add(t.name);
  });
});

export const controlPlaneSchema = strict({
  listen: strict({
    grpc: hostPortSchema(true).default(DEFAULT_GRPC_LISTEN),
    http: hostPortSchema(true).default(DEFAULT_HTTP_LISTEN),
    // Names besides the listen host, IP addresses and localhost that the HTTP API answers to (DNS rebinding).
    allowedHosts: z.array(allowedHostSchema, { error: 'expected a list of host names' }).default([]),
  }).prefault({}),
  policies: strict({
    // Whether a policy's `listen` (a port every sidecar opens) may be other than a loopback address.
    allowNonLoopbackListen: z.boolean({ error: 'expected true or false' }).default(false),
  }).prefault({}),
  limits: strict({
    // Ceiling of every autoscaled service's `max`, in cp.yaml and at run time.
    maxReplicas: AUTOSCALE_INT(1).max(MAX_REPLICAS_LIMIT, { error: `expected integer 1..${MAX_REPLICAS_LIMIT}` }).default(DEFAULT_MAX_REPLICAS),
  }).prefault({}),
  store: strict({
    file: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).default(DEFAULT_STORE_FILE),
    // Shared state in etcd (docs/ha.md): any number of replicas with the same `etcd` serve the same mesh.
    etcd: strict({
      endpoints: z
        .array(z.string({ error: ETCD_ENDPOINT_EXPECTED }).regex(ETCD_ENDPOINT, { error: ETCD_ENDPOINT_EXPECTED }), { error: 'expected a list of etcd endpoints' })
        .min(1, { error: 'expected at least one etcd endpoint' }),
      prefix: z
        .string({ error: ETCD_PREFIX_EXPECTED })
        .regex(/^\/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$/, { error: ETCD_PREFIX_EXPECTED })
        .default(DEFAULT_ETCD_PREFIX),
      // etcd leases count whole seconds.
      leaseTtl: duration(false)
        .superRefine((ms, ctx) => {
          if (ms % 1000 !== 0 || ms < 2000 || ms > 60_000) ctx.addIssue({ code: 'custom', message: 'expected whole seconds 2s..60s', input: `${ms}ms` });
        })
        .default(DEFAULT_ETCD_LEASE_TTL_MS),
    }).optional(),
  }).prefault({}),
  instanceTtl: duration(false).default(DEFAULT_INSTANCE_TTL_MS),
  drainTime: duration(true).default(DEFAULT_DRAIN_TIME_MS),
  // How often load reports are turned into computed endpoint weights and costs.
  weightInterval: duration(false).default(5_000),
  services: z
    .record(serviceNameSchema, serviceSchema, { error: 'expected a mapping of service name to policy' })
    .nullable()
    .optional()
    .transform((s) => s ?? {}),
  // The mesh certificate authority: the trust domain of service identities, how long issued certificates
  // live, and the CA's own certificate and key (files; absent: generated on first start beside the state).
  mtls: strict({
    // The mesh-wide mode of the inbound listeners that set none (`inbound.mtls: mesh`, their default).
    mode: z.enum(['strict', 'permissive', 'off'], { error: 'expected one of strict | permissive | off' }).default('strict'),
    trustDomain: z
      .string({ error: 'expected a trust domain such as outrigger.local' })
      .regex(/^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$/, { error: 'expected a trust domain of lower-case letters, digits, ".", "-" and "_"' })
      .default('outrigger.local'),
    certTtl: duration(false).default(24 * 3600_000),
    ca: strict({
      certFile: z.string({ error: 'expected a file path' }).min(1),
      keyFile: z.string({ error: 'expected a file path' }).min(1),
    }).optional(),
  }).prefault({}),
  // TLS of the control plane's own listeners (gRPC and HTTP API), docs/security.md "The control plane's TLS".
  tls: strict({
    // false: both listeners speak plaintext (tokens cross the network in clear): local experiments only.
    enabled: z.boolean({ error: 'expected true or false' }).default(true),
    // Names and IP addresses put in the server certificate besides localhost, 127.0.0.1, ::1 and the
    // listen hosts, e.g. the compose service name `control-plane`; the HTTP API also answers to them.
    serverNames: z.array(serverNameSchema, { error: 'expected a list of host names or IP addresses' }).default([]),
    // Lifetime of the server certificate the control plane issues itself from the mesh CA; renewed at half of it.
    certTtl: duration(false).default(24 * 3600_000),
    // An operator's server certificate (PEM, the chain after it) and key instead of one from the mesh CA;
    // read again every minute, so a renewed pair takes over without a restart.
    certFile: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).optional(),
    keyFile: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).optional(),
  }).superRefine((t, ctx) => {
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [t.certFile === undefined ? 'certFile' : 'keyFile'],
        message: `expected certFile and keyFile together (${t.certFile === undefined ? 'keyFile' : 'certFile'} is set)`,
        params: { fromRoot: true } satisfies IssueParams,
      });
    }
  }).prefault({}),
  // Services the autoscaler sizes (they need not appear under `services`).
  autoscale: z
    .record(serviceNameSchema, autoscaleServiceSchema, { error: 'expected a mapping of service name to autoscaling settings' })
    .nullable()
    .optional()
    .transform((s) => s ?? {}),
  // Bearer tokens for the HTTP API and the discovery stream; absent: an admin and a sidecar token are
  // generated on first start beside the state.
  auth: authSchema.optional(),
}).superRefine((c, ctx) => {
  for (const [name, a] of Object.entries(c.autoscale)) {
    if (a.max > c.limits.maxReplicas) {
      ctx.addIssue({
        code: 'custom',
        path: ['autoscale', name, 'max'],
        message: `expected integer <= limits.maxReplicas (${c.limits.maxReplicas})`,
        params: { fromRoot: true } satisfies IssueParams,
      });
    }
  }
  for (const [name, s] of Object.entries(c.services)) {
    for (const p of policyProblems(s, c.policies)) {
      ctx.addIssue({ code: 'custom', path: ['services', name, ...p.path], message: p.message, params: { fromRoot: true } satisfies IssueParams });
    }
  }
  if (listenersCollide(parseHostPort(c.listen.grpc), parseHostPort(c.listen.http))) {
    ctx.addIssue({
      code: 'custom',
      path: ['listen', 'http'],
      message: 'expected a listen address no other listener uses',
      params: { fromRoot: true, whenMissing: `"${c.listen.http}" (the default)`, suffix: ` (listen.grpc is ${JSON.stringify(c.listen.grpc)})` } satisfies IssueParams,
    });
  }
});

export type ControlPlaneInput = z.input<typeof controlPlaneSchema>;
