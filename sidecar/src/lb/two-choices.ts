/**
 * Power of two random choices (Mitzenmacher; Envoy's least-request, Linkerd/Finagle's P2C): draw two
 * distinct endpoints uniformly at random and send to the better one by a policy-specific live score.
 * O(1) per pick, reads the live counters of just two endpoints, and never picks the worse of the two.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import { hasAvoid, otherIndex, sampleNotAvoided } from './common.js';
import type { Picker } from './picker.js';

export abstract class TwoChoicePicker implements Picker {
  protected readonly endpoints: readonly Endpoint[];
  protected readonly random: Random;

  protected constructor(endpoints: readonly Endpoint[], random: Random) {
    this.endpoints = endpoints;
    this.random = random;
  }

  /** Negative when endpoint a is the better choice, positive when b is, 0 for a tie (broken at random). */
  protected abstract compare(a: number, b: number): number;

  pick(_hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    const eps = this.endpoints;
    const n = eps.length;
    if (n <= 1) return eps[0];
    if (hasAvoid(avoid)) {
      const a = sampleNotAvoided(eps, avoid, this.random);
      if (a >= 0) {
        const b = sampleNotAvoided(eps, avoid, this.random, a);
        return eps[b < 0 ? a : this.better(a, b)];
      }
      // Every endpoint has been tried: make the normal choice.
    }
    const a = randomInt(this.random, n);
    return eps[this.better(a, otherIndex(this.random, n, a))];
  }

  /** The better of two indices; a tie goes either way with equal probability. */
  protected better(a: number, b: number): number {
    const c = this.compare(a, b);
    if (c < 0) return a;
    if (c > 0) return b;
    return this.random.next() < 0.5 ? a : b;
  }
}
