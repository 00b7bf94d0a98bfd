/**
 * `maglev`: Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016) with Envoy's weighted
 * population. A lookup table of prime size M (default 65537) is filled at build time; a pick is
 * table[hash32(key) mod M] — O(1), one hash and one array read.
 *
 * Each endpoint has a permutation of the table slots from two hashes of its address
 * (offset = h0 mod M, skip = h1 mod (M − 1) + 1). Population goes round the endpoints; on each round an
 * endpoint whose weight share is due (Envoy: round · weight/maxWeight ≥ slots taken so far) takes its next
 * still-free slot. Shares therefore follow the weights, and when an endpoint leaves, most other slots keep
 * their owner (slightly more movement than a ring: about 1/n plus a few percent).
 *
 * Endpoints are ordered by address before population so every sidecar builds the same table. The table is
 * grown to the next prime ≥ 100·n when there are more than M/100 endpoints (the paper's M ≫ N rule).
 * Without a hash key the picker uses a random slot. With `avoid` it probes the following slots, which
 * belong to other endpoints in table order, until one has not been tried.
 */
import type { Endpoint } from '../core/endpoint.js';
import { randomInt, type Random } from '../../../common/src/random.js';
import { emptyPicker, hasAvoid, isAvoided, scanNotAvoided, weightedSetByAddress } from './common.js';
import { hash32 } from './hash.js';
import type { Picker, PickerFactory } from './picker.js';

export const DEFAULT_TABLE_SIZE = 65537;

export interface MaglevOptions {
  /** Lookup table size; should be prime (default 65537). */
  readonly tableSize?: number;
}

function isPrime(m: number): boolean {
  if (m < 2) return false;
  if (m % 2 === 0) return m === 2;
  for (let d = 3; d * d <= m; d += 2) if (m % d === 0) return false;
  return true;
}

/** Smallest prime ≥ m. */
export function nextPrime(m: number): number {
  let p = Math.max(2, Math.ceil(m));
  while (!isPrime(p)) p++;
  return p;
}

/** Fills a Maglev table of size m for endpoints (ordered) with weights (all > 0): slot → endpoint index. */
export function buildMaglevTable(addresses: readonly string[], weights: Float64Array, m: number): Int32Array {
  const n = addresses.length;
  const table = new Int32Array(m).fill(-1);
  if (n === 0) return table;
  let maxW = 0;
  for (const w of weights) maxW = Math.max(maxW, w);
  const share = new Float64Array(n);
  const pos = new Int32Array(n);
  const skip = new Int32Array(n);
  const taken = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const address = addresses[i]!;
    share[i] = weights[i]! / maxW;
    pos[i] = hash32(address, 0) % m;
    skip[i] = (hash32(address, 1) % (m - 1)) + 1;
  }
  let filled = 0;
  for (let round = 1; filled < m; round++) {
    for (let i = 0; i < n && filled < m; i++) {
      if (round * share[i]! < taken[i]!) continue;
      taken[i] = taken[i]! + 1;
      let p = pos[i]!;
      const s = skip[i]!;
      while (table[p] !== -1) {
        p += s;
        if (p >= m) p -= m;
      }
      table[p] = i;
      p += s;
      pos[i] = p >= m ? p - m : p;
      filled++;
    }
  }
  return table;
}

export class MaglevPicker implements Picker {
  private readonly endpoints: readonly Endpoint[];
  private readonly random: Random;
  /** slot → index into endpoints. */
  readonly table: Int32Array;

  constructor(endpoints: readonly Endpoint[], weights: Float64Array, random: Random, options: MaglevOptions = {}) {
    this.endpoints = endpoints;
    this.random = random;
    let m = options.tableSize ?? DEFAULT_TABLE_SIZE;
    if (!isPrime(m)) m = nextPrime(m);
    if (m < 100 * endpoints.length) m = nextPrime(100 * endpoints.length);
    this.table = buildMaglevTable(
      endpoints.map((ep) => ep.address),
      weights,
      m,
    );
  }

  pick(hashKey: string | undefined, avoid: readonly Endpoint[] | undefined): Endpoint | undefined {
    const table = this.table;
    const m = table.length;
    let slot = hashKey === undefined ? randomInt(this.random, m) : hash32(hashKey) % m;
    const eps = this.endpoints;
    const chosen = eps[table[slot]!]!;
    if (!hasAvoid(avoid) || !isAvoided(chosen, avoid)) return chosen;
    if (avoid.length >= eps.length && scanNotAvoided(eps, avoid, this.random) < 0) return chosen;
    for (let s = 1; s < m; s++) {
      slot = slot + 1 === m ? 0 : slot + 1;
      const ep = eps[table[slot]!]!;
      if (!isAvoided(ep, avoid)) return ep;
    }
    // Only endpoints too light to own a slot are left.
    const i = scanNotAvoided(eps, avoid, this.random);
    return i < 0 ? chosen : eps[i];
  }
}

/** A maglev factory with a non-default table size. */
export function createMaglevFactory(options: MaglevOptions = {}): PickerFactory {
  return (endpoints, { random }) => {
    if (endpoints.length === 0) return emptyPicker;
    const set = weightedSetByAddress(endpoints);
    return new MaglevPicker(set.endpoints, set.weights, random, options);
  };
}

export const maglevFactory: PickerFactory = createMaglevFactory();
