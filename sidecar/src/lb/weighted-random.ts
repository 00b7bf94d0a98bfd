/**
 * `weighted-random`: endpoint i with probability weight_i / Σ weight. Cumulative weights are computed at
 * build time; a pick is one random number and a binary search (O(log n)).
 */
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import { DrawPicker, weightedSet } from './common.js';
import type { PickerFactory } from './picker.js';

class WeightedRandomPicker extends DrawPicker {
  /** cumulative[i] = weight_0 + … + weight_i. */
  private readonly cumulative: Float64Array;
  private readonly total: number;

  constructor(endpoints: readonly Endpoint[], weights: Float64Array, random: Random) {
    super(endpoints, random);
    this.cumulative = new Float64Array(weights.length);
    let sum = 0;
    for (let i = 0; i < weights.length; i++) {
      sum += weights[i]!;
      this.cumulative[i] = sum;
    }
    this.total = sum;
  }

  protected next(): Endpoint {
    const cum = this.cumulative;
    const x = this.random.next() * this.total;
    // First index whose cumulative weight exceeds x.
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cum[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return this.endpoints[lo]!;
  }
}

export const weightedRandomFactory: PickerFactory = (endpoints, { random }) => {
  const set = weightedSet(endpoints);
  return new WeightedRandomPicker(set.endpoints, set.weights, random);
};
