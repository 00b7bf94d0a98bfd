import type { Endpoint } from '../../../sidecar/src/core/endpoint.js';
import type { Picker } from '../../../sidecar/src/lb/picker.js';

export const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

/** key → endpoint address for every key. */
export function assignment(picker: Picker, keys: readonly string[] = KEYS): string[] {
  return keys.map((k) => picker.pick(k, undefined)!.address);
}

/** Fraction of keys per endpoint. */
export function keyShares(picker: Picker, endpoints: readonly Endpoint[], keys: readonly string[] = KEYS): number[] {
  const counts = new Map<string, number>();
  for (const a of assignment(picker, keys)) counts.set(a, (counts.get(a) ?? 0) + 1);
  return endpoints.map((ep) => (counts.get(ep.address) ?? 0) / keys.length);
}

export interface Movement {
  /** Keys whose endpoint changed / all keys. */
  readonly moved: number;
  /** Keys that moved although their endpoint was not the removed one / all keys. */
  readonly movedFromSurvivors: number;
}

export function movement(before: readonly string[], after: readonly string[], removed: string): Movement {
  let moved = 0;
  let fromSurvivors = 0;
  for (let i = 0; i < before.length; i++) {
    if (before[i] !== after[i]) {
      moved++;
      if (before[i] !== removed) fromSurvivors++;
    }
  }
  return { moved: moved / before.length, movedFromSurvivors: fromSurvivors / before.length };
}
