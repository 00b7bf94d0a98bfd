import type { ServiceConfig } from '../../../common/src/config/types.js';
import type { TokenSpec } from '../auth/tokens.js';

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
  /**
   * `auth` of cp.yaml with every secret read (secretFile, secretEnv); undefined when cp.yaml has none: the
   * control plane then uses the tokens it generated beside its state.
   */
  readonly auth?: { readonly disabled: boolean; readonly tokens: readonly TokenSpec[] } | undefined;
  readonly listen: {
    readonly grpc: string; // host:port, default 127.0.0.1:15010
    readonly http: string; // host:port, default 127.0.0.1:15080
    /** Names the HTTP API answers to besides IP addresses, localhost and the listen host; "*": any. */
    readonly allowedHosts: readonly string[]; // default []
  };
  readonly policies: {
    /** Whether a policy's `listen` may be other than a loopback address (default false). */
    readonly allowNonLoopbackListen: boolean;
  };
  readonly limits: {
    /** Ceiling of every autoscaled service's `max` (cp.yaml and run-time overrides). */
    readonly maxReplicas: number; // default 50
  };
  readonly store: {
    /** State file; a relative path in cp.yaml is resolved against the directory of cp.yaml. */
    readonly file: string; // default ./outrigger-state.json
    /** Shared state in etcd instead of the file (replicated control plane, docs/ha.md). */
    readonly etcd?: EtcdStoreConfig | undefined;
  };
  readonly instanceTtlMs: number; // default 10s
  readonly drainTimeMs: number; // default 5s
  readonly weightIntervalMs: number; // default 5s
  /** The mesh CA: trust domain, lifetime of issued certificates, and the CA's files (absent: generated). */
  readonly mtls: {
    /** The mesh-wide mode of the inbound listeners that follow it (their default). */
    readonly mode: 'strict' | 'permissive' | 'off'; // default strict
    readonly trustDomain: string; // default outrigger.local
    readonly certTtlMs: number; // default 24h
    /** Resolved against the directory of cp.yaml. */
    readonly ca?: { readonly certFile: string; readonly keyFile: string } | undefined;
  };
  /** TLS of the control plane's listeners (gRPC and HTTP). */
  readonly tls: {
    readonly enabled: boolean; // default true
    /** Extra DNS names / IP addresses of the server certificate (and names the HTTP API answers to). */
    readonly serverNames: readonly string[]; // default []
    /** Lifetime of the server certificate issued from the mesh CA (renewed at half of it). */
    readonly certTtlMs: number; // default 24h
    /** An operator's certificate and key (resolved against the directory of cp.yaml); absent: from the mesh CA. */
    readonly certFile?: string | undefined;
    readonly keyFile?: string | undefined;
  };
  /** Services declared in cp.yaml: policy and static endpoints, by service name. */
  readonly services: Readonly<Record<string, ServicePolicy>>;
  /** Services the autoscaler sizes, by service name; absent when cp.yaml has none. */
  readonly autoscale?: Readonly<Record<string, AutoscaleServiceConfig>> | undefined;
}

/** How the autoscaler runs instances of one service (exactly one driver per service). */
export type AutoscaleDriverConfig =
  | {
      readonly kind: 'process';
      /** argv template; {port}, {service}, {index}, {host} and {node} are substituted. */
      readonly command: readonly string[];
      /** One port per instance, lowest free first; the instance registers as host:port. */
      readonly ports: { readonly from: number; readonly to: number };
      readonly host: string; // default 127.0.0.1
      /** Working directory of the instances; default (and relative paths against) cp.yaml's directory. */
      readonly cwd: string;
      /** Added to the control plane's environment; values are templates like `command`. */
      readonly env: Readonly<Record<string, string>>;
      /** SIGTERM, then SIGKILL after this. */
      readonly stopGraceMs: number; // default 10s
    }
  | {
      readonly kind: 'compose';
      /** The compose program and its global flags; default `[docker, compose]` (e.g. `[podman-compose]`). */
      readonly command: readonly string[];
      /** -f FILE (relative to cp.yaml's directory); default: docker compose's own lookup. */
      readonly file?: string | undefined;
      /** -p PROJECT. */
      readonly project?: string | undefined;
      /** The compose service; default: the autoscaled service's name. */
      readonly service: string;
    }
  | {
      readonly kind: 'kubernetes';
      readonly apiServer: string;
      readonly namespace: string; // default "default"
      /** default: the autoscaled service's name. */
      readonly deployment: string;
      readonly tokenFile?: string | undefined;
      readonly caFile?: string | undefined;
      readonly insecureSkipTlsVerify: boolean;
    };

/** `autoscale.NAME` in cp.yaml, validated and defaulted; durations in ms. */
export interface AutoscaleServiceConfig {
  readonly min: number;
  readonly max: number;
  /** 0 < x <= 1: mean in-flight / capacity per instance the autoscaler aims at. */
  readonly targetUtilization: number;
  readonly intervalMs: number; // default 5s
  readonly stabilizationWindowMs: number; // default 60s
  readonly cooldownMs: number; // default 10s
  readonly driver: AutoscaleDriverConfig;
}

/** `store.etcd` of cp.yaml. */
export interface EtcdStoreConfig {
  /** http://host:port of etcd members. */
  readonly endpoints: readonly string[];
  /** Key prefix, default /outrigger. */
  readonly prefix: string;
  /** TTL of this replica's lease (whole seconds), default 5s. */
  readonly leaseTtlMs: number;
}
