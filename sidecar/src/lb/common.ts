/**
 * Helpers shared by the pickers: the `avoid` (already-tried endpoints) machinery, weight sanitizing and
 * power-of-two-choices sampling. Everything here that runs per pick works on indices and never allocates.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import type { Picker } from './picker.js';

/**
 * Extra picks a picker makes when its choice is in `avoid`, before falling back to a linear scan
 * (the role of Envoy's `host_selection_retry_max_attempts`).
 */
export const MAX_REPICKS = 4;

/** True when `avoid` names at least one endpoint. */
export function hasAvoid(avoid: readonly Endpoint[] | undefined): avoid is readonly Endpoint[] {
  return avoid !== undefined && avoid.length > 0;
}

/** Identity membership test; `avoid` is tiny (one entry per retry), so this is a short loop. */
export function isAvoided(endpoint: Endpoint, avoid: readonly Endpoint[]): boolean {
  for (let i = 0; i < avoid.length; i++) {
    if (avoid[i] === endpoint) return true;
  }
  return false;
}

/**
 * Index of the first endpoint that is not avoided (and not `exclude`), scanning circularly from a random
 * offset so the fallback does not always land on the same endpoint; -1 when there is none.
 */
export function scanNotAvoided(
  endpoints: readonly Endpoint[],
  avoid: readonly Endpoint[],
  random: Random,
  exclude = -1,
): number {
  const n = endpoints.length;
  if (n === 0) return -1;
  const start = randomInt(random, n);
  for (let k = 0; k < n; k++) {
    let i = start + k;
    if (i >= n) i -= n;
    if (i !== exclude && !isAvoided(endpoints[i]!, avoid)) return i;
  }
  return -1;
}

/**
 * A uniformly random index that is not avoided and not `exclude`: up to MAX_REPICKS + 1 random draws,
 * then the scan fallback. -1 when every endpoint (other than `exclude`) is avoided.
 */
export function sampleNotAvoided(
  endpoints: readonly Endpoint[],
  avoid: readonly Endpoint[],
  random: Random,
  exclude = -1,
): number {
  const n = endpoints.length;
  for (let t = 0; t <= MAX_REPICKS; t++) {
    const i = randomInt(random, n);
    if (i !== exclude && !isAvoided(endpoints[i]!, avoid)) return i;
  }
  return scanNotAvoided(endpoints, avoid, random, exclude);
}

/** A uniformly random index different from `a` (n ≥ 2), for power-of-two-choices. */
export function otherIndex(random: Random, n: number, a: number): number {
  const b = randomInt(random, n - 1);
  return b >= a ? b + 1 : b;
}

/** A weight usable for proportional shares: finite and > 0, else 0 (the endpoint takes no share). */
export function usableWeight(weight: number): number {
  return Number.isFinite(weight) && weight > 0 ? weight : 0;
}

export interface WeightedSet {
  /** The endpoints that take a share (the whole input, in order, if none has a usable weight). */
  readonly endpoints: readonly Endpoint[];
  /** Their weights as read at build time. */
  readonly weights: Float64Array;
}

/**
 * Snapshot of the weights for the weighted pickers (control path). Endpoints whose weight is not a
 * positive number take no share; when no endpoint has one, all count as weight 1 rather than the picker
 * going dark. Weights may be fractional (slow start ramps them).
 */
export function weightedSet(endpoints: readonly Endpoint[], slowStart = true): WeightedSet {
  const kept: Endpoint[] = [];
  const ws: number[] = [];
  for (const ep of endpoints) {
    const w = usableWeight(slowStart ? ep.weight * ep.rampFactor : ep.weight);
    if (w > 0) {
      kept.push(ep);
      ws.push(w);
    }
  }
  if (kept.length === 0) return { endpoints: [...endpoints], weights: new Float64Array(endpoints.length).fill(1) };
  return { endpoints: kept, weights: Float64Array.from(ws) };
}

/** The picker for an empty endpoint set. */
export const emptyPicker: Picker = { pick: () => undefined };

/**
 * Base for pickers whose choice is a stream of draws (random, weighted random, the round robins):
 * `next()` makes one draw; `pick` handles `avoid` by re-drawing up to MAX_REPICKS times, then scanning
 * from a random offset, and returns the first draw when every endpoint is avoided.
 */
export abstract class DrawPicker implements Picker {
  protected readonly endpoints: readonly Endpoint[];
  protected readonly random: Random;

  protected constructor(endpoints: readonly Endpoint[], random: Random) {
    this.endpoints = endpoints;
    this.random = random;
  }

  /** One draw; only called when the set is non-empty. */
  protected abstract next(): Endpoint;

  pick(_hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    if (this.endpoints.length === 0) return undefined;
    const first = this.next();
    if (!hasAvoid(avoid) || !isAvoided(first, avoid)) return first;
    for (let t = 0; t < MAX_REPICKS; t++) {
      const ep = this.next();
      if (!isAvoided(ep, avoid)) return ep;
    }
    const i = scanNotAvoided(this.endpoints, avoid, this.random);
    return i < 0 ? first : this.endpoints[i];
  }
}

/**
 * The weighted set ordered by address (control path). The consistent-hashing pickers build from this so
 * that every sidecar derives the same ring / table from the same endpoints whatever order it received
 * them in (Maglev's table depends on the population order; ring ties are broken by index).
 */
export function weightedSetByAddress(endpoints: readonly Endpoint[]): WeightedSet {
  // No slow start for consistent hashing: a ramping weight would move keys twice.
  const set = weightedSet(endpoints, false);
  const order = set.endpoints.map((_, i) => i);
  order.sort((a, b) => {
    const x = set.endpoints[a]!.address;
    const y = set.endpoints[b]!.address;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
  return {
    endpoints: order.map((i) => set.endpoints[i]!),
    weights: Float64Array.from(order, (i) => set.weights[i]!),
  };
}
