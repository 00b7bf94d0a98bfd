import type { ComputedOverride, SharedChange, SharedState } from './registry.js';
import { instanceSchema, type RegisteredInstance } from './store.js';

/**
 * Where the shared state lives in etcd, one key per object under the configured prefix (docs/ha.md):
 *
 *   policies/SERVICE            the run-time policy as written (JSON)
 *   weights/SERVICE             pinned weights: { "host:port": weight } (JSON)
 *   drained/HOST:PORT           an operator drain ("true")
 *   instances/SERVICE/ID        a registration (JSON), attached to the lease of the replica holding its stream
 *   computed/SERVICE            computed cost/weight by address (JSON), written by the leader
 *   leader                      the leader replica's id, attached to its lease
 *   loads/REPLICA               load reports of the sidecars connected to a replica (JSON), on its lease
 *   ca, tokens                  the generated mesh CA and API tokens, created once
 *
 * Keys here are relative to the prefix (the client is namespaced to `PREFIX/`).
 */

export const STATE_KINDS = ['policies/', 'weights/', 'drained/', 'instances/', 'computed/'] as const;

export const LEADER_KEY = 'leader';
export const LOADS_PREFIX = 'loads/';
export const CA_KEY = 'ca';
export const TOKENS_KEY = 'tokens';

/** One desired key: its value, and whether it belongs on this replica's lease. */
export interface DesiredEntry {
  readonly value: string;
  readonly leased: boolean;
}

/** Whether a key holds shared registry state (and not leadership, loads or secrets). */
export function isStateKey(key: string): boolean {
  return STATE_KINDS.some((k) => key.startsWith(k));
}

/** The keys and values the shared state is written as; remote instances are left to their replica. */
export function desiredEntries(state: SharedState, includeRemote = false): Map<string, DesiredEntry> {
  const out = new Map<string, DesiredEntry>();
  for (const [service, input] of Object.entries(state.policies)) out.set(`policies/${service}`, { value: JSON.stringify(input), leased: false });
  for (const [service, weights] of Object.entries(state.weights)) out.set(`weights/${service}`, { value: JSON.stringify(weights), leased: false });
  for (const address of state.drained) out.set(`drained/${address}`, { value: 'true', leased: false });
  for (const i of state.instances) {
    if (!i.owned && !includeRemote) continue;
    const { owned, ...data } = i;
    out.set(`instances/${i.service}/${i.id}`, { value: JSON.stringify(data), leased: owned });
  }
  for (const [service, computed] of Object.entries(state.computed)) out.set(`computed/${service}`, { value: JSON.stringify(computed), leased: false });
  return out;
}

/**
 * What a key/value read from etcd means to the registry (undefined for keys that are no registry state, or
 * values that do not parse: `onBad` hears of those). `value` undefined: the key was deleted.
 */
export function changeOf(key: string, value: string | undefined, mine: boolean, onBad: (key: string, problem: string) => void): SharedChange | undefined {
  const parse = (): unknown => {
    if (value === undefined) return undefined;
    try {
      return JSON.parse(value) as unknown;
    } catch (err) {
      onBad(key, `not JSON: ${err instanceof Error ? err.message : String(err)}`);
      return null;
    }
  };
  const rest = (kind: string): string => key.slice(kind.length);
  if (key.startsWith('policies/')) {
    const input = parse();
    return input === null ? undefined : { kind: 'policy', service: rest('policies/'), input };
  }
  if (key.startsWith('weights/')) {
    const w = parse();
    if (w === null || (w !== undefined && !isNumberRecord(w))) return bad(onBad, key, 'expected { "host:port": weight }');
    return { kind: 'weights', service: rest('weights/'), weights: w };
  }
  if (key.startsWith('drained/')) return { kind: 'drained', address: rest('drained/'), drained: value !== undefined };
  if (key.startsWith('computed/')) {
    const c = parse();
    if (c === null || (c !== undefined && (typeof c !== 'object' || Array.isArray(c)))) return bad(onBad, key, 'expected { "host:port": { cost, weight } }');
    return { kind: 'computed', service: rest('computed/'), computed: c as Record<string, ComputedOverride> | undefined };
  }
  if (key.startsWith('instances/')) {
    const path = rest('instances/');
    const slash = path.indexOf('/');
    if (slash <= 0) return bad(onBad, key, 'expected instances/SERVICE/ID');
    const id = path.slice(slash + 1);
    if (value === undefined) return { kind: 'instance', id, instance: undefined, mine };
    const raw = parse();
    if (raw === null) return undefined;
    const r = instanceSchema.safeParse(raw);
    if (!r.success) return bad(onBad, key, r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    return { kind: 'instance', id, instance: r.data satisfies RegisteredInstance, mine };
  }
  return undefined;
}

function bad(onBad: (key: string, problem: string) => void, key: string, problem: string): undefined {
  onBad(key, problem);
  return undefined;
}

function isNumberRecord(v: unknown): v is Record<string, number> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((n) => typeof n === 'number');
}
