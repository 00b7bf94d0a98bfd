/** Reasons the sidecar answers a request itself; sent as `x-outrigger-error`. */
export type ProxyErrorReason =
  | 'no-healthy-upstream'
  | 'circuit-open'
  | 'overloaded'
  | 'timeout'
  | 'connect-failure'
  | 'reset'
  | 'retry-budget-exhausted'
  | 'unknown-service'
  | 'bad-request'
  | 'idempotency-conflict'
  | 'idempotency-mismatch'
  | 'forbidden';

export const errorStatus: Readonly<Record<ProxyErrorReason, number>> = {
  'no-healthy-upstream': 503,
  'circuit-open': 503,
  overloaded: 503,
  timeout: 504,
  'connect-failure': 502,
  reset: 502,
  'retry-budget-exhausted': 503,
  'unknown-service': 404,
  'bad-request': 400,
  'idempotency-conflict': 409,
  'idempotency-mismatch': 422,
  forbidden: 403,
};

/** An error the config loader raises: names the file, the key path and what was expected. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly issues: readonly string[],
  ) {
    super(issues.map((i) => `${file}: ${i}`).join('\n'));
    this.name = 'ConfigError';
  }
}
