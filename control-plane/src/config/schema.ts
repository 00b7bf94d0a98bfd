import { z } from 'zod';
import { checkHostPort, listenersCollide, parseHostPort } from '../../../sidecar/src/config/address.js';
import { DURATION_EXPECTED, durationProblem, parseDuration } from '../../../sidecar/src/config/duration.js';
import { type IssueParams, UNKNOWN_KEY_PREFIX } from '../../../sidecar/src/config/issues.js';
import { serviceSchema, sidecarSchema } from '../../../sidecar/src/config/schema.js';

/**
 * zod schema of cp.yaml. Per-service policies are the sidecar's own `serviceSchema` (the same shape as
 * `services.NAME` in sidecar.yaml), service names the sidecar's own rule; only the few keys of the control
 * plane itself are defined here, in the sidecar schema's style: strict objects, "expected ..." messages
 * (issues.ts adds the key path and what was got), durations as strings with a unit.
 */

export const DEFAULT_GRPC_LISTEN = '127.0.0.1:15010';
export const DEFAULT_HTTP_LISTEN = '127.0.0.1:15080';
export const DEFAULT_STORE_FILE = './outrigger-state.json';
export const DEFAULT_INSTANCE_TTL_MS = 10_000;
export const DEFAULT_DRAIN_TIME_MS = 5_000;

/** A service name, by the sidecar's rule (lower-case letters, digits, "-" and "."). */
export const serviceNameSchema = sidecarSchema.in.shape.service;

/** A strict object whose unknown-key message lists the allowed keys (read back by issues.ts). */
function strict<T extends z.core.$ZodLooseShape>(shape: T, what = 'a mapping') {
  const keys = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `${UNKNOWN_KEY_PREFIX}${keys}` : `expected ${what}`),
  });
}

/** host:port; port 0 (an ephemeral port, for tests) only where `allowPortZero`. */
export function hostPortSchema(allowPortZero: boolean) {
  return z.string({ error: 'expected host:port (IPv4, hostname or [IPv6])' }).superRefine((text, ctx) => {
    const r = checkHostPort(text, allowPortZero);
    if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem, input: text });
  });
}

/** A duration string ("250ms", "2s", "1m") → ms. */
function duration(allowZero: boolean) {
  return z
    .string({
      error: (iss) =>
        typeof iss.input === 'number' ? `${DURATION_EXPECTED}; a plain number has no unit (write e.g. "${iss.input}ms" or "${iss.input}s")` : DURATION_EXPECTED,
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

export const controlPlaneSchema = strict({
  listen: strict({
    grpc: hostPortSchema(true).default(DEFAULT_GRPC_LISTEN),
    http: hostPortSchema(true).default(DEFAULT_HTTP_LISTEN),
  }).prefault({}),
  store: strict({
    file: z.string({ error: 'expected a file path' }).min(1, { error: 'expected a non-empty file path' }).default(DEFAULT_STORE_FILE),
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
}).superRefine((c, ctx) => {
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
