import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../../../common/src/atomic-file.js';
import { z } from 'zod';
import { fallbackMessage, formatIssues, UNKNOWN_KEY_PREFIX } from '../../../common/src/config/issues.js';
import { hostPortSchema, serviceNameSchema } from '../config/schema.js';

/**
 * Where the registry keeps what must survive a restart: the version counter, policies set at run time,
 * pinned weights, registrations and operator drains. Computed cost/weight is not kept (it is derived again
 * from fresh load reports), nor are instances already deregistering (they are on their way out).
 */

/** One instance registered by its sidecar (`Hello.instance` on the wire). */
export interface RegisteredInstance {
  readonly service: string;
  /** Unique per instance, e.g. "catalog-host1-15006". */
  readonly id: string;
  /** host:port other sidecars reach it at. */
  readonly address: string;
  readonly weight: number; // integer 1..1000
  readonly capacity: number; // integer >= 1
  readonly zone?: string | undefined;
  /** Its inbound listener takes mutual TLS (strict or permissive): callers reach it over TLS. */
  readonly mesh?: true | undefined;
}

export interface PersistedState {
  /** The registry's version when saved; a restored registry continues above it. */
  readonly version: number;
  /** Policies set at run time, in the YAML/JSON shape of `services.NAME`, by service. */
  readonly policies: Readonly<Record<string, unknown>>;
  /** Pinned weights: service → endpoint address → weight (1..1000). */
  readonly weights: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly instances: readonly RegisteredInstance[];
  /** Endpoint addresses an operator drained (kept out of every snapshot until undrained). */
  readonly drained?: readonly string[] | undefined;
}

export interface StateStore {
  /** The saved state, or undefined when nothing was saved yet. @throws StoreError when it cannot be read. */
  load(): Promise<PersistedState | undefined>;
  /** Replaces the saved state. */
  save(state: PersistedState): Promise<void>;
}

/** The state store cannot be read or is damaged; names the file (or store) and what is wrong. */
export class StoreError extends Error {
  constructor(
    readonly file: string,
    readonly issues: readonly string[],
  ) {
    super(issues.map((i) => `${file}: ${i}`).join('\n'));
    this.name = 'StoreError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Shapes

function strict<T extends z.core.$ZodLooseShape>(shape: T) {
  const keys = Object.keys(shape).join(', ');
  return z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? `${UNKNOWN_KEY_PREFIX}${keys}` : 'expected a mapping') });
}

/**
 * The highest state version a sidecar may report (`Hello.last_version`) or a state file may hold: 2^50, far
 * above what any control plane reaches, and far enough below 2^53 that counting on from it stays exact.
 */
export const MAX_VERSION = 2 ** 50;
/** Ceiling of a registered instance's capacity. */
export const MAX_INSTANCE_CAPACITY = 1_000_000;

const weightSchema = z.number({ error: 'expected integer 1..1000' }).int({ error: 'expected integer 1..1000' }).min(1, { error: 'expected integer 1..1000' }).max(1000, { error: 'expected integer 1..1000' });

const CAPACITY_EXPECTED = `expected integer 1..${MAX_INSTANCE_CAPACITY}`;

/** proto3 cannot tell 0 from unset: a 0 weight or capacity on the wire means "not given". */
const unsetIfZero = (v: unknown): unknown => (v === 0 ? undefined : v);

/**
 * A registration as the registry accepts it (a proto `Instance` fits). Weight and capacity default to 1 and
 * 100 as for endpoints; 0 and `zone: ""` (proto3's unset values) count as not given.
 */
export const instanceSchema = strict({
  service: serviceNameSchema,
  id: z.string({ error: 'expected an instance id without spaces' }).regex(/^\S{1,253}$/, { error: 'expected an instance id without spaces (1..253 characters)' }),
  address: hostPortSchema(false),
  weight: z.preprocess(unsetIfZero, weightSchema.default(1)),
  capacity: z.preprocess(
    unsetIfZero,
    z
      .number({ error: CAPACITY_EXPECTED })
      .int({ error: CAPACITY_EXPECTED })
      .min(1, { error: CAPACITY_EXPECTED })
      .max(MAX_INSTANCE_CAPACITY, { error: CAPACITY_EXPECTED })
      .default(100),
  ),
  zone: z
    .string({ error: 'expected a zone name' })
    .optional()
    .transform((zone) => (zone === '' ? undefined : zone)),
  // On the wire: the inbound listener's mode ("" = off); in the state file: `mesh: true`.
  mtls: z.enum(['strict', 'permissive', 'off', ''], { error: 'expected strict, permissive or off' }).optional(),
  mesh: z.literal(true).optional(),
}).transform(
  (i): RegisteredInstance => ({
    service: i.service,
    id: i.id,
    address: i.address,
    weight: i.weight,
    capacity: i.capacity,
    ...(i.zone !== undefined ? { zone: i.zone } : {}),
    ...(i.mesh === true || i.mtls === 'strict' || i.mtls === 'permissive' ? { mesh: true as const } : {}),
  }),
);

/** What `Registry.register` takes; a proto `Instance` fits. */
export interface InstanceInput {
  readonly service: string;
  readonly id: string;
  readonly address: string;
  readonly weight?: number | undefined; // default 1; 0 = not given
  readonly capacity?: number | undefined; // default 100; 0 = not given
  readonly zone?: string | undefined; // "" = no zone
  readonly mtls?: string | undefined; // strict | permissive: reached over mutual TLS; "" or off: plaintext
}

const persistedSchema = strict({
  version: z.number({ error: 'expected integer >= 0' }).int({ error: 'expected integer >= 0' }).min(0, { error: 'expected integer >= 0' }),
  policies: z.record(serviceNameSchema, z.unknown(), { error: 'expected a mapping of service name to policy' }),
  weights: z.record(serviceNameSchema, z.record(z.string(), weightSchema, { error: 'expected a mapping of address to weight' }), {
    error: 'expected a mapping of service name to weights',
  }),
  instances: z.array(instanceSchema, { error: 'expected a list of instances' }),
  drained: z.array(z.string({ error: 'expected an address' }), { error: 'expected a list of addresses' }).optional(),
});

/**
 * Checks data read from a store against the PersistedState shape.
 * @param where  names the store in messages.
 * @throws StoreError with one line per problem (`instances[0].address: expected ..., got ...`).
 */
export function parsePersistedState(value: unknown, where: string): PersistedState {
  const r = persistedSchema.safeParse(value, { reportInput: true, error: fallbackMessage });
  if (!r.success) throw new StoreError(where, [...formatIssues(r.error.issues, value), 'the state file is damaged; fix it, or move it away to start with an empty state']);
  return r.data;
}

// ---------------------------------------------------------------------------------------------------------
// Stores

/** Keeps the state as one JSON file. Writes are atomic: temporary file in the same directory, fsync, rename. */
export class FileStore implements StateStore {
  constructor(readonly file: string) {}

  async load(): Promise<PersistedState | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      throw new StoreError(this.file, [`cannot read the state file${code !== undefined ? ` (${code})` : ''}: ${e instanceof Error ? e.message : String(e)}`]);
    }
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch (e) {
      throw new StoreError(this.file, [
        `the state file is not valid JSON (${e instanceof Error ? e.message : String(e)}); fix it, or move it away to start with an empty state`,
      ]);
    }
    return parsePersistedState(value, this.file);
  }

  save(state: PersistedState): Promise<void> {
    return writeFileAtomic(this.file, `${JSON.stringify(state, null, 2)}\n`, 0o600);
  }
}

/** Keeps the state in memory (tests, or a control plane that need not survive restarts). */
export class MemoryStore implements StateStore {
  private state: PersistedState | undefined;
  /** Number of saves so far. */
  saves = 0;

  constructor(initial?: PersistedState) {
    this.state = initial === undefined ? undefined : structuredClone(initial);
  }

  load(): Promise<PersistedState | undefined> {
    return Promise.resolve(this.state === undefined ? undefined : structuredClone(this.state));
  }

  save(state: PersistedState): Promise<void> {
    this.state = structuredClone(state);
    this.saves++;
    return Promise.resolve();
  }

  /** What was saved last. */
  get saved(): PersistedState | undefined {
    return this.state;
  }
}
