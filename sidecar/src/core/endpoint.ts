/**
 * One upstream instance as the hot path sees it: identity and sizing (set by the control path) plus live
 * counters (in-flight, latency EWMA) that the request path updates in O(1).
 */

/** Health sources; each owns exactly one bit of `Endpoint.flags`. */
export const HealthFlag = {
  /** Active health check says unhealthy. */
  ActiveCheck: 1,
  /** Passive outlier detection has ejected it. */
  Outlier: 2,
  /** Its per-endpoint circuit breaker is open. */
  Breaker: 4,
  /** The control plane deregistered it or it is draining. */
  ControlPlane: 8,
} as const;
export type HealthFlag = (typeof HealthFlag)[keyof typeof HealthFlag];

export const healthFlagNames: Readonly<Record<HealthFlag, string>> = {
  1: 'active-check',
  2: 'outlier',
  4: 'breaker',
  8: 'control-plane',
};

/** The names of the flags set in `flags` (for admin views and load reports; not for the hot path). */
export function healthFlagList(flags: number): string[] {
  const out: string[] = [];
  for (const bit of [1, 2, 4, 8] as const) if (flags & bit) out.push(healthFlagNames[bit]);
  return out;
}

export interface EndpointSpec {
  /** host:port */
  readonly address: string;
  /** Traffic share, integer 1..1000. */
  readonly weight: number;
  /** Concurrent requests the instance is sized for. */
  readonly capacity: number;
  /** Relative cost w_i of sending it work (> 0). */
  readonly cost: number;
  readonly zone?: string | undefined;
  /** A sidecar's inbound listener taking mutual TLS. */
  readonly mesh?: true | undefined;
}

/** Default decay of the latency EWMA (as Linkerd's peak-EWMA balancer). */
export const EWMA_DECAY_MS = 10_000;

export class Endpoint {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  weight: number;
  capacity: number;
  cost: number;
  zone: string | undefined;
  /** Reached over mutual TLS, proving the service's identity (a sidecar's inbound listener). */
  mesh: boolean;
  /** Requests currently forwarded to this endpoint and not finished. */
  inflight = 0;
  /** Bitmask of HealthFlag; 0 means no source marks it bad. */
  flags = 0;
  /** Peak-EWMA of response latency in ms (0 until the first sample). */
  ewmaMs = 0;
  private ewmaStamp = 0;
  /** Requests completed since creation (for admin and load reports). */
  completed = 0;
  /**
   * Slow-start factor in [0.1, 1]: a newly eligible endpoint's share ramps up over `slowStart`. Weighted
   * pickers multiply `weight` by it at build time; least-load multiplies `capacity` by it live.
   */
  rampFactor = 1;
  /** Monotonic ms when the current ramp began. */
  rampStart = 0;

  constructor(spec: EndpointSpec) {
    this.address = spec.address;
    const colon = spec.address.lastIndexOf(':');
    this.host = spec.address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    this.port = Number(spec.address.slice(colon + 1));
    this.weight = spec.weight;
    this.capacity = spec.capacity;
    this.cost = spec.cost;
    this.zone = spec.zone;
    this.mesh = spec.mesh === true;
  }

  /** Copies sizing from a new spec of the same address (control path). */
  update(spec: EndpointSpec): void {
    this.weight = spec.weight;
    this.capacity = spec.capacity;
    this.cost = spec.cost;
    this.zone = spec.zone;
    this.mesh = spec.mesh === true;
  }

  get eligible(): boolean {
    return this.flags === 0;
  }

  /**
   * Records one response latency. Peak-sensitive: a sample above the average replaces it at once; below it
   * the average decays towards it with time constant `decayMs` (Finagle/Linkerd peak EWMA).
   */
  observeLatency(ms: number, now: number, decayMs: number = EWMA_DECAY_MS): void {
    if (this.ewmaStamp === 0 || ms > this.ewmaMs) {
      this.ewmaMs = ms;
    } else {
      const elapsed = Math.max(now - this.ewmaStamp, 0);
      const w = Math.exp(-elapsed / decayMs);
      this.ewmaMs = this.ewmaMs * w + ms * (1 - w);
    }
    this.ewmaStamp = now || 1;
  }
}
