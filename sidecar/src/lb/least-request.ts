/**
 * `least-request`: power of two random choices; the candidate with fewer in-flight requests wins.
 *
 * With unequal weights the comparison is biased by weight as in Envoy's least-request balancer (effective
 * weight = weight / (in-flight + 1), active_request_bias 1): the lower (in-flight + 1) / weight wins, so an
 * idle heavy endpoint beats an idle light one and a weight-4 endpoint is preferred until it has about four
 * times the light one's load. (The "+1" is what lets weight matter between idle endpoints.) With all weights
 * equal this is the plain in-flight comparison. Weights are read at build time, in-flight counts live.
 */
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import { emptyPicker, weightedSet } from './common.js';
import type { PickerFactory } from './picker.js';
import { TwoChoicePicker } from './two-choices.js';

export class LeastRequestPicker extends TwoChoicePicker {
  private readonly weights: Float64Array;
  private readonly equalWeights: boolean;

  constructor(endpoints: readonly Endpoint[], weights: Float64Array, random: Random) {
    super(endpoints, random);
    this.weights = weights;
    this.equalWeights = weights.every((w) => w === weights[0]);
  }

  protected compare(a: number, b: number): number {
    const ea = this.endpoints[a]!;
    const eb = this.endpoints[b]!;
    if (this.equalWeights) return ea.inflight - eb.inflight;
    // (in_a + 1) / w_a  vs  (in_b + 1) / w_b, cross-multiplied so exact ties stay exact.
    return (ea.inflight + 1) * this.weights[b]! - (eb.inflight + 1) * this.weights[a]!;
  }
}

export const leastRequestFactory: PickerFactory = (endpoints, { random }) => {
  if (endpoints.length === 0) return emptyPicker;
  const set = weightedSet(endpoints);
  return new LeastRequestPicker(set.endpoints, set.weights, random);
};
