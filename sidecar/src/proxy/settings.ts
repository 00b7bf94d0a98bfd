import type { SidecarConfig } from '../../../common/src/config/types.js';
import type { ParseLimits } from './http1/parser.js';
import type { ListenerOptions } from './http1/server.js';
import type { UpstreamSettings } from './outbound.js';

/** The HTTP/1.1 engine's settings for the listeners and the upstream pools, from the `http` section. */
export interface HttpSettings {
  readonly listener: ListenerOptions;
  readonly upstream: UpstreamSettings;
}

/** Defaults of the `http` section (see docs/configuration.md). */
export const httpDefaults = {
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyTimeoutMs: 30_000,
  maxConnections: 10_000,
  maxHeaderBytes: 16_384,
  maxUrlBytes: 8_192,
  maxHeaders: 100,
  upstreamIdleTimeoutMs: 4_000,
} as const;

export function httpSettings(config: SidecarConfig): HttpSettings {
  const h = config.http ?? httpDefaults;
  const limits: ParseLimits = { maxHeadBytes: h.maxHeaderBytes, maxTargetBytes: h.maxUrlBytes, maxHeaders: h.maxHeaders };
  return {
    listener: { headerTimeoutMs: h.headerTimeoutMs, idleTimeoutMs: h.idleTimeoutMs, bodyTimeoutMs: h.bodyTimeoutMs, maxConnections: h.maxConnections, limits },
    upstream: { idleTimeoutMs: h.upstreamIdleTimeoutMs, limits },
  };
}
