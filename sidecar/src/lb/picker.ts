import type { Clock } from '../../../common/src/clock.js';
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';

/**
 * A Picker is built once per endpoint-set change (control path) and then only picks (hot path):
 * no allocation, no linear scan where the structure can be precomputed.
 */
export interface Picker {
  /**
   * Chooses an endpoint, or undefined when the set is empty.
   * @param hashKey  the request's stickiness key (ring-hash / maglev); ignored by other policies.
   * @param avoid    endpoints already tried by this request; the picker returns one outside it when the set
   *                 has one, and falls back to its normal choice when every endpoint has been tried.
   */
  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined;
}

export type { LbPolicy } from '../../../common/src/config/types.js';

export interface PickerOptions {
  readonly random: Random;
  readonly clock: Clock;
}

/** Builds a picker over a fixed endpoint list (already filtered to the eligible set, or all in panic). */
export type PickerFactory = (endpoints: readonly Endpoint[], options: PickerOptions) => Picker;
