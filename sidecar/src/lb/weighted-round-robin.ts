/**
 * `weighted-round-robin`: a deterministic weighted rotation without bursts, as earliest-deadline-first
 * (EDF) scheduling on a virtual clock.
 *
 * Endpoint i is due for its k-th turn at virtual time (k + φ_i) / weight_i, so over any stretch of virtual
 * time T it gets weight_i · T turns, ±1: shares are exact, and its turns are evenly spaced rather than
 * bunched. A pick serves the endpoint with the earliest due time (binary heap: O(log n), no allocation).
 *
 * Phases φ_i ∈ (0, 1) spread endpoints of the same weight evenly over the period (rank r of g → (r + ½)/g);
 * without that, all weight-1 endpoints would fall due together and a heavy endpoint would get its turns in
 * one long run between them. Equal weights therefore reduce to plain round robin. Weights 5,1,1 give
 * A B A A A C A | A B A A A C A …: the heavy endpoint never runs more than 3 in a row.
 *
 * Each build starts at a random point t0 ∈ [0, 1) of the (unit, for integer weights) period, so sidecars
 * with the same endpoint list are out of phase with each other. Weights are read at build time.
 */
import type { Endpoint } from '../core/endpoint.js';
import type { Random } from '../../../common/src/random.js';
import { DrawPicker, weightedSet } from './common.js';
import type { PickerFactory } from './picker.js';

export class WeightedRoundRobinPicker extends DrawPicker {
  private readonly weights: Float64Array;
  private readonly phase: Float64Array;
  /** Index of the endpoint's next turn. */
  private readonly turn: Float64Array;
  /** Virtual time of the next turn: (turn + phase) / weight. */
  private readonly due: Float64Array;
  /** Min-heap of endpoint indices ordered by (due, index). */
  private readonly heap: Int32Array;

  constructor(endpoints: readonly Endpoint[], weights: Float64Array, random: Random) {
    super(endpoints, random);
    const n = endpoints.length;
    this.weights = weights;
    this.phase = new Float64Array(n);
    this.turn = new Float64Array(n);
    this.due = new Float64Array(n);
    this.heap = new Int32Array(n);

    const groups = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      const w = weights[i]!;
      const g = groups.get(w);
      if (g === undefined) groups.set(w, [i]);
      else g.push(i);
    }
    for (const members of groups.values()) {
      members.forEach((i, rank) => {
        this.phase[i] = (rank + 0.5) / members.length;
      });
    }

    const t0 = random.next();
    for (let i = 0; i < n; i++) {
      const w = weights[i]!;
      const k = Math.max(0, Math.ceil(t0 * w - this.phase[i]!));
      this.turn[i] = k;
      this.due[i] = (k + this.phase[i]!) / w;
      this.heap[i] = i;
    }
    for (let i = (n >>> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  protected next(): Endpoint {
    const i = this.heap[0]!;
    const k = this.turn[i]! + 1;
    this.turn[i] = k;
    this.due[i] = (k + this.phase[i]!) / this.weights[i]!;
    this.siftDown(0);
    return this.endpoints[i]!;
  }

  private before(a: number, b: number): boolean {
    const da = this.due[a]!;
    const db = this.due[b]!;
    return da < db || (da === db && a < b);
  }

  private siftDown(pos: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[pos]!;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && this.before(heap[child + 1]!, heap[child]!)) child++;
      if (!this.before(heap[child]!, item)) break;
      heap[pos] = heap[child]!;
      pos = child;
    }
    heap[pos] = item;
  }
}

export const weightedRoundRobinFactory: PickerFactory = (endpoints, { random }) => {
  const set = weightedSet(endpoints);
  return new WeightedRoundRobinPicker(set.endpoints, set.weights, random);
};
