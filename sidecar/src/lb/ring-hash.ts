/**
 * `ring-hash`: Ketama-style consistent hashing. Each endpoint is placed on a 32-bit ring at
 * hash32(`${address}_${v}`) for v = 0 … vnodes_i − 1; a key goes to the first point clockwise of
 * hash32(key) (binary search over the sorted ring, O(log ring)). When an endpoint leaves, only the keys on
 * its arcs move.
 *
 * Virtual nodes: the lightest endpoint gets `vnodes` points (default 256), every other endpoint
 * vnodes × weight / min weight, rounded (at least 1). An endpoint's point count therefore depends only on
 * its own weight relative to the lightest, not on how many endpoints there are: with equal weights,
 * removing an endpoint leaves every other endpoint's points exactly where they were, so no key moves
 * between survivors. (A minimum ring size, as Envoy's min_ring_size 1024, would rescale every endpoint's
 * points whenever the count changes and move keys between survivors; 256 points per endpoint already keep
 * an endpoint's share within about ±6 % (one standard deviation) of its weight.) The total is capped at `maxRingSize` (default 8 Mi entries, Envoy's maximum),
 * scaling all counts down proportionally.
 *
 * Without a hash key the picker draws a random ring position (so, weighted random). With `avoid` it walks
 * the ring clockwise to the next endpoint not tried yet, which is what the next request with that key
 * would get if the avoided endpoints were gone.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import { emptyPicker, hasAvoid, isAvoided, scanNotAvoided, weightedSetByAddress } from './common.js';
import { hash32 } from './hash.js';
import type { Picker, PickerFactory } from './picker.js';

export const DEFAULT_VNODES = 256;
export const MAX_RING_SIZE = 8 * 1024 * 1024;

export interface RingHashOptions {
  /** Points of the lightest endpoint (default 256). */
  readonly vnodes?: number;
  /** Upper bound on the total number of points (default 8 Mi). */
  readonly maxRingSize?: number;
}

const TWO_POW_32 = 4294967296;
/** Ring points are sorted as hash · 2^21 + owner in a Float64Array (exact below 2^53). */
const OWNER_SPACE = 2097152;

/** Number of ring points per endpoint for the given weights (all > 0). */
export function ringPointCounts(weights: Float64Array, vnodes = DEFAULT_VNODES, maxRingSize = MAX_RING_SIZE): Uint32Array {
  const n = weights.length;
  const counts = new Uint32Array(n);
  if (n === 0) return counts;
  let minW = Infinity;
  for (const w of weights) minW = Math.min(minW, w);
  let total = 0;
  for (let i = 0; i < n; i++) {
    counts[i] = Math.max(1, Math.round((vnodes * weights[i]!) / minW));
    total += counts[i]!;
  }
  if (total > maxRingSize) {
    const scale = maxRingSize / total;
    for (let i = 0; i < n; i++) counts[i] = Math.max(1, Math.floor(counts[i]! * scale));
  }
  return counts;
}

export class RingHashPicker implements Picker {
  private readonly endpoints: readonly Endpoint[];
  private readonly random: Random;
  /** Sorted point hashes. */
  readonly ring: Uint32Array;
  /** owners[j]: index into endpoints of the point ring[j]. */
  private readonly owners: Int32Array;

  constructor(endpoints: readonly Endpoint[], weights: Float64Array, random: Random, options: RingHashOptions = {}) {
    if (endpoints.length > OWNER_SPACE) throw new RangeError(`ring-hash supports at most ${OWNER_SPACE} endpoints`);
    this.endpoints = endpoints;
    this.random = random;
    const counts = ringPointCounts(weights, options.vnodes ?? DEFAULT_VNODES, options.maxRingSize ?? MAX_RING_SIZE);
    let total = 0;
    for (const c of counts) total += c;
    const keys = new Float64Array(total);
    let j = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const address = endpoints[i]!.address;
      for (let v = 0; v < counts[i]!; v++) keys[j++] = hash32(`${address}_${v}`) * OWNER_SPACE + i;
    }
    keys.sort();
    this.ring = new Uint32Array(total);
    this.owners = new Int32Array(total);
    for (let k = 0; k < total; k++) {
      const h = Math.floor(keys[k]! / OWNER_SPACE);
      this.ring[k] = h;
      this.owners[k] = keys[k]! - h * OWNER_SPACE;
    }
  }

  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    const h = hashKey === undefined ? randomInt(this.random, TWO_POW_32) : hash32(hashKey);
    let j = this.locate(h);
    const eps = this.endpoints;
    const owners = this.owners;
    let owner = owners[j]!;
    const chosen = eps[owner]!;
    if (!hasAvoid(avoid) || !isAvoided(chosen, avoid)) return chosen;
    // Every endpoint tried already (only possible when avoid is at least as long as the set): normal choice.
    if (avoid.length >= eps.length && scanNotAvoided(eps, avoid, this.random) < 0) return chosen;
    const len = owners.length;
    for (let s = 1; s < len; s++) {
      j = j + 1 === len ? 0 : j + 1;
      const next = owners[j]!;
      if (next === owner) continue;
      owner = next;
      const ep = eps[owner]!;
      if (!isAvoided(ep, avoid)) return ep;
    }
    return chosen;
  }

  /** Index of the first ring point ≥ h, wrapping to 0. */
  private locate(h: number): number {
    const ring = this.ring;
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === ring.length ? 0 : lo;
  }
}

/** A ring-hash factory with non-default ring sizing. */
export function createRingHashFactory(options: RingHashOptions = {}): PickerFactory {
  return (endpoints, { random }) => {
    if (endpoints.length === 0) return emptyPicker;
    const set = weightedSetByAddress(endpoints);
    return new RingHashPicker(set.endpoints, set.weights, random, options);
  };
}

export const ringHashFactory: PickerFactory = createRingHashFactory();
