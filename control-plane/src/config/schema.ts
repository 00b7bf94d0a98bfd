import { z } from 'zod';
import { checkHostPort, listenersCollide, parseHostPort } from '../../../sidecar/src/config/address.js';
import type { IssueParams } from '../../../sidecar/src/config/issues.js';
import { duration, serviceSchema, sidecarSchema, strict } from '../../../sidecar/src/config/schema.js';

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

/** host:port; port 0 (an ephemeral port, for tests) only where `allowPortZero`. */
export function hostPortSchema(allowPortZero: boolean) {
  return z.string({ error: 'expected host:port (IPv4, hostname or [IPv6])' }).superRefine((text, ctx) => {
    const r = checkHostPort(text, allowPortZero);
    if ('problem' in r) ctx.addIssue({ code: 'custom', message: r.problem, input: text });
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
