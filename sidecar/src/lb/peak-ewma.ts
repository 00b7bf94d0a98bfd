/**
 * `peak-ewma`: power of two random choices over cost = latency EWMA × (in-flight + 1), as Linkerd's and
 * Finagle's peak-EWMA balancer. `Endpoint.ewmaMs` is the peak-sensitive average the request path maintains
 * (`Endpoint.observeLatency`); the picker reads it and `inflight` live.
 *
 * An endpoint with no latency sample yet (ewmaMs 0) must not count as zero latency — it would win every
 * comparison until its first response and take a flood of requests. It is scored with a default RTT of
 * DEFAULT_RTT_MS (30 ms, Linkerd's default), or with its rival's EWMA when that is lower, so a new endpoint
 * is at least as attractive as the measured one it is compared with (it is never starved in a fast
 * cluster), but its own in-flight count still limits how much it attracts before a sample arrives.
 */
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import { emptyPicker } from './common.js';
import type { PickerFactory } from './picker.js';
import { TwoChoicePicker } from './two-choices.js';

/** Latency assumed for an endpoint without samples, in ms (linkerd2-proxy's EWMA default RTT). */
export const DEFAULT_RTT_MS = 30;

export class PeakEwmaPicker extends TwoChoicePicker {
  constructor(endpoints: readonly Endpoint[], random: Random) {
    super(endpoints, random);
  }

  protected compare(a: number, b: number): number {
    const ea = this.endpoints[a]!;
    const eb = this.endpoints[b]!;
    let ra = ea.ewmaMs;
    let rb = eb.ewmaMs;
    if (!(ra > 0)) ra = rb > 0 && rb < DEFAULT_RTT_MS ? rb : DEFAULT_RTT_MS;
    if (!(rb > 0)) rb = ea.ewmaMs > 0 && ea.ewmaMs < DEFAULT_RTT_MS ? ea.ewmaMs : DEFAULT_RTT_MS;
    return ra * (ea.inflight + 1) - rb * (eb.inflight + 1);
  }
}

export const peakEwmaFactory: PickerFactory = (endpoints, { random }) =>
  endpoints.length === 0 ? emptyPicker : new PeakEwmaPicker([...endpoints], random);
