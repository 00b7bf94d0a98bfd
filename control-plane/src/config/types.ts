import type { ServiceConfig } from '../../../sidecar/src/config/types.js';

/**
 * A validated service policy, kept in both forms: `input` as written (the shape of `services.NAME` in
 * sidecar.yaml, durations as strings: what is persisted and what travels on the wire in `policy_json`) and
 * `config` as the sidecar's schema parses it (durations in ms, defaults filled in). Both are deep-frozen.
 */
export interface ServicePolicy {
  readonly input: Readonly<Record<string, unknown>>;
  readonly config: ServiceConfig;
}

/** The control plane's file (cp.yaml), validated and defaulted. Durations are milliseconds here. */
export interface ControlPlaneConfig {
  readonly listen: {
    readonly grpc: string; // host:port, default 127.0.0.1:15010
    readonly http: string; // host:port, default 127.0.0.1:15080
  };
  readonly store: {
    /** State file; a relative path in cp.yaml is resolved against the directory of cp.yaml. */
    readonly file: string; // default ./outrigger-state.json
  };
  readonly instanceTtlMs: number; // default 10s
  readonly drainTimeMs: number; // default 5s
  readonly weightIntervalMs: number; // default 5s
  /** Services declared in cp.yaml: policy and static endpoints, by service name. */
  readonly services: Readonly<Record<string, ServicePolicy>>;
}
