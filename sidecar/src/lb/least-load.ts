/**
 * `least-load`: choose argmin_i cost_i · (inflight_i + 1) / capacity_i, ties broken uniformly
 * at random. cost, capacity and inflight are read live on every pick.
 *
 * Up to SCAN_LIMIT (16) endpoints the picker scans them all (exact argmin; ties by reservoir sampling:
 * the k-th tied endpoint replaces the current choice with probability 1/k, no allocation). Above that it
 * samples two distinct endpoints and takes the lower load (power of two choices): O(1), never the worse
 * of the two, and within a small factor of the argmin in practice.
 *
 * Loads are compared cross-multiplied (cost_a·(in_a+1)·cap_b vs cost_b·(in_b+1)·cap_a), so equal loads
 * compare exactly equal and tie. A cost or capacity that is not a positive number counts as 1.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import { emptyPicker, hasAvoid, isAvoided } from './common.js';
import type { PickerFactory } from './picker.js';
import { TwoChoicePicker } from './two-choices.js';

/** Largest endpoint count that is scanned in full; above it the picker uses two random choices. */
export const SCAN_LIMIT = 16;

function work(ep: Endpoint): number {
  const cost = ep.cost > 0 ? ep.cost : 1;
  return cost * (ep.inflight + 1);
}

function room(ep: Endpoint): number {
  return (ep.capacity > 0 ? ep.capacity : 1) * ep.rampFactor;
}

/** The load the policy minimizes, for tests and the admin view. */
export function endpointLoad(ep: Endpoint): number {
  return work(ep) / room(ep);
}

export class LeastLoadPicker extends TwoChoicePicker {
  constructor(endpoints: readonly Endpoint[], random: Random) {
    super(endpoints, random);
  }

  protected compare(a: number, b: number): number {
    const ea = this.endpoints[a]!;
    const eb = this.endpoints[b]!;
    return work(ea) * room(eb) - work(eb) * room(ea);
  }

  override pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    if (this.endpoints.length > SCAN_LIMIT) return super.pick(hashKey, avoid);
    if (hasAvoid(avoid)) {
      const i = this.scan(avoid);
      if (i >= 0) return this.endpoints[i];
    }
    return this.endpoints[this.scan(undefined)];
  }

  /** Exact argmin over the endpoints not in `avoid`, random among ties; -1 when all are avoided. */
  private scan(avoid: readonly Endpoint[] | undefined): number {
    const eps = this.endpoints;
    let best = -1;
    let bestWork = 0;
    let bestRoom = 1;
    let ties = 0;
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i]!;
      if (avoid !== undefined && isAvoided(ep, avoid)) continue;
      const w = work(ep);
      const r = room(ep);
      const d = best < 0 ? -1 : w * bestRoom - bestWork * r;
      if (d < 0) {
        best = i;
        bestWork = w;
        bestRoom = r;
        ties = 1;
      } else if (d === 0) {
        ties++;
        if (randomInt(this.random, ties) === 0) best = i;
      }
    }
    return best;
  }
}

export const leastLoadFactory: PickerFactory = (endpoints, { random }) =>
  endpoints.length === 0 ? emptyPicker : new LeastLoadPicker([...endpoints], random);
