import { Endpoint, type EndpointSpec } from '../../../sidecar/src/core/endpoint.js';
import { seededRandom, type Random } from '../../../common/src/random.js';
import type { Picker, PickerOptions } from '../../../sidecar/src/lb/picker.js';
import { FakeClock } from '../../helpers/fake-clock.js';

/** n endpoints 10.0.0.<i+1>:8080, weight 1, capacity 100, cost 1, with per-index overrides. */
export function makeEndpoints(n: number, spec: (i: number) => Partial<EndpointSpec> = () => ({})): Endpoint[] {
  return Array.from(
    { length: n },
    (_, i) => new Endpoint({ address: `10.0.0.${i + 1}:8080`, weight: 1, capacity: 100, cost: 1, ...spec(i) }),
  );
}

export function opts(seed = 1): PickerOptions {
  return { random: seededRandom(seed), clock: new FakeClock() };
}

/** A Random that replays the given values (then repeats the last one). */
export function scriptedRandom(values: readonly number[]): Random {
  let i = 0;
  return { next: () => values[Math.min(i++, values.length - 1)]! };
}

/** Fraction of `picks` picks that went to each endpoint. */
export function shares(picker: Picker, endpoints: readonly Endpoint[], picks: number, key?: (i: number) => string): number[] {
  const counts = new Map<Endpoint, number>();
  for (let i = 0; i < picks; i++) {
    const ep = picker.pick(key?.(i), undefined);
    if (ep === undefined) throw new Error('picker returned undefined');
    counts.set(ep, (counts.get(ep) ?? 0) + 1);
  }
  return endpoints.map((ep) => (counts.get(ep) ?? 0) / picks);
}

/** Longest run of consecutive picks of the same endpoint in a sequence. */
export function maxRun<T>(seq: readonly T[]): Map<T, number> {
  const best = new Map<T, number>();
  let run = 0;
  for (let i = 0; i < seq.length; i++) {
    run = i > 0 && seq[i] === seq[i - 1] ? run + 1 : 1;
    const v = seq[i]!;
    best.set(v, Math.max(best.get(v) ?? 0, run));
  }
  return best;
}
