/**
 * Load-balancing policies: one PickerFactory per `lb:` value, and `buildPicker`, which the
 * cluster code calls on every endpoint-set or weight change (control path). The returned Picker is the
 * hot path: `pick()` allocates nothing and reads inflight / cost / capacity / ewmaMs live; weights are read
 * at build time, so a weight change needs a rebuild.
 */
import type { Endpoint } from '../core/endpoint.js';
import { leastLoadFactory } from './least-load.js';
import { leastRequestFactory } from './least-request.js';
import { maglevFactory } from './maglev.js';
import { peakEwmaFactory } from './peak-ewma.js';
import type { LbPolicy, Picker, PickerFactory, PickerOptions } from './picker.js';
import { randomFactory } from './random.js';
import { ringHashFactory } from './ring-hash.js';
import { roundRobinFactory } from './round-robin.js';
import { weightedRandomFactory } from './weighted-random.js';
import { weightedRoundRobinFactory } from './weighted-round-robin.js';

export type { LbPolicy, Picker, PickerFactory, PickerOptions } from './picker.js';
export { DEFAULT_RTT_MS } from './peak-ewma.js';
export { SCAN_LIMIT, endpointLoad } from './least-load.js';
export { DEFAULT_VNODES, MAX_RING_SIZE, createRingHashFactory } from './ring-hash.js';
export { DEFAULT_TABLE_SIZE, createMaglevFactory } from './maglev.js';
export { hash32 } from './hash.js';

/** The factory behind each `lb:` policy. */
export const pickerFactories: Readonly<Record<LbPolicy, PickerFactory>> = {
  random: randomFactory,
  'weighted-random': weightedRandomFactory,
  'round-robin': roundRobinFactory,
  'weighted-round-robin': weightedRoundRobinFactory,
  'least-request': leastRequestFactory,
  'least-load': leastLoadFactory,
  'peak-ewma': peakEwmaFactory,
  'ring-hash': ringHashFactory,
  maglev: maglevFactory,
};

/** Every policy name, in the documented order. */
export const lbPolicies: readonly LbPolicy[] = Object.keys(pickerFactories) as LbPolicy[];

/** Where the stickiness key of a hashing policy comes from (structurally the config's `hashOn`). */
export interface HashOn {
  /** Lower-cased request header name. */
  readonly header?: string | undefined;
  readonly cookie?: string | undefined;
}

/** True for the policies that use the request's hash key. */
export function isHashPolicy(policy: LbPolicy): boolean {
  return policy === 'ring-hash' || policy === 'maglev';
}

/**
 * Builds the picker for `policy` over `endpoints` (already filtered to the eligible set, or all in panic).
 * The request path takes the hash key with `hashKeyFromHeaders` (ring-hash / maglev only); a hashing picker
 * given no key picks at random, weighted.
 */
export function buildPicker(policy: LbPolicy, endpoints: readonly Endpoint[], options: PickerOptions): Picker {
  return pickerFactories[policy](endpoints, options);
}

/** Request headers as node:http presents them (lower-cased names). */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * The hash key of a request for `hashOn`: the header's value (several values joined with ","), else the
 * named cookie's value; undefined when absent (the picker then picks at random). Header takes precedence
 * when both are configured and present.
 */
export function hashKeyFromHeaders(hashOn: HashOn | undefined, headers: HeaderBag): string | undefined {
  if (hashOn === undefined) return undefined;
  if (hashOn.header !== undefined) {
    const v = headers[hashOn.header];
    if (typeof v === 'string') return v;
    if (v !== undefined && v.length > 0) return v.join(',');
  }
  if (hashOn.cookie !== undefined) {
    const raw = headers['cookie'];
    if (raw === undefined) return undefined;
    const cookies = typeof raw === 'string' ? raw : raw.join('; ');
    return cookieValue(cookies, hashOn.cookie);
  }
  return undefined;
}

function cookieValue(cookies: string, name: string): string | undefined {
  let start = 0;
  while (start < cookies.length) {
    let end = cookies.indexOf(';', start);
    if (end < 0) end = cookies.length;
    const eq = cookies.indexOf('=', start);
    if (eq > start && eq < end && cookies.slice(start, eq).trim() === name) {
      let value = cookies.slice(eq + 1, end).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      return value;
    }
    start = end + 1;
  }
  return undefined;
}
