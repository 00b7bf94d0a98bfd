import { isIPv4 } from 'node:net';
import { parseHostPort } from '../../../common/src/config/address.js';
import type { ServiceConfig } from '../../../common/src/config/types.js';

/**
 * What the control plane refuses in a policy beyond the sidecar's own schema, because it pushes the policy to
 * every sidecar at once: numbers past documented ceilings (capacities, costs, concurrency limits) and a
 * per-service `listen` port on an address other than loopback (every sidecar of the service would open it),
 * unless cp.yaml's `policies.allowNonLoopbackListen` says so. Weights are bounded by the schema (1..1000).
 */

/** Ceiling of an endpoint's `capacity` and of `limits.maxConcurrent`, `maxPending` and `maxRetries`. */
export const MAX_POLICY_COUNT = 1_000_000;
/** Ceiling of an endpoint's `cost`. */
export const MAX_ENDPOINT_COST = 1_000;

export interface PolicyRules {
  /** Allow a policy's `listen` on a non-loopback address (default false). */
  readonly allowNonLoopbackListen: boolean;
}

export const DEFAULT_POLICY_RULES: PolicyRules = Object.freeze({ allowNonLoopbackListen: false });

export const NON_LOOPBACK_LISTEN = 'expected a loopback address such as 127.0.0.1:18080 (every sidecar of the service opens it; policies.allowNonLoopbackListen: true in cp.yaml allows others)';

/** One problem: the key path inside the policy and an "expected ..." phrase. */
export interface PolicyProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackListen(address: string): boolean {
  let host: string;
  try {
    host = parseHostPort(address).host.toLowerCase().replace(/\.$/, '');
  } catch {
    return false;
  }
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIPv4(host)) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

/** The problems of a policy the sidecar's schema accepted; empty when the control plane accepts it too. */
export function policyProblems(config: ServiceConfig, rules: PolicyRules): PolicyProblem[] {
  const out: PolicyProblem[] = [];
  const count = (path: (string | number)[], value: number, min: number): void => {
    if (value > MAX_POLICY_COUNT) out.push({ path, message: `expected integer ${min}..${MAX_POLICY_COUNT}` });
  };
  config.endpoints.forEach((e, i) => {
    count(['endpoints', i, 'capacity'], e.capacity, 1);
    if (e.cost > MAX_ENDPOINT_COST) out.push({ path: ['endpoints', i, 'cost'], message: `expected a number > 0 and <= ${MAX_ENDPOINT_COST}` });
  });
  count(['limits', 'maxConcurrent'], config.limits.maxConcurrent, 1);
  count(['limits', 'maxPending'], config.limits.maxPending, 0);
  count(['limits', 'maxRetries'], config.limits.maxRetries, 0);
  if (config.listen !== undefined && !rules.allowNonLoopbackListen && !isLoopbackListen(config.listen)) out.push({ path: ['listen'], message: NON_LOOPBACK_LISTEN });
  return out;
}
