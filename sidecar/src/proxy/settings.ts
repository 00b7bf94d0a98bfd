import type { SidecarConfig } from '../../../common/src/config/types.js';
import type { ParseLimits } from './http1/parser.js';
import type { ListenerOptions } from './http1/server.js';
import type { UpstreamSettings } from './outbound.js';

/** The HTTP/1.1 engine's settings for the listeners and the upstream pools, from the `http` section (defaults in the config schema). */
export interface HttpSettings {
  readonly listener: ListenerOptions;
  readonly upstream: UpstreamSettings;
}

export function httpSettings(config: SidecarConfig): HttpSettings {
  const h = config.http;
  const limits: ParseLimits = { maxHeadBytes: h.maxHeaderBytes, maxTargetBytes: h.maxUrlBytes, maxHeaders: h.maxHeaders };
  return {
    listener: { headerTimeoutMs: h.headerTimeoutMs, idleTimeoutMs: h.idleTimeoutMs, bodyTimeoutMs: h.bodyTimeoutMs, maxConnections: h.maxConnections, limits },
    upstream: { idleTimeoutMs: h.upstreamIdleTimeoutMs, limits },
  };
}
