import { Etcd3, type IOptions, type Namespace } from 'etcd3';
import { systemClock, type Clock } from '../../../common/src/clock.js';
import type { EtcdStoreConfig } from '../config/types.js';
import { changeOf, desiredEntries, isStateKey } from './etcd-layout.js';
import type { SharedChange } from './registry.js';
import { parsePersistedState, type PersistedState, type RegisteredInstance, type StateStore, StoreError } from './store.js';

/** etcd's default limit of operations in one transaction (`--max-txn-ops`): larger writes are split. */
export const MAX_TXN_OPS = 128;
/** Written by `EtcdStore.save` so that an empty saved state loads as saved (not as "nothing saved"). */
const META_KEY = 'meta';

export type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * Per etcd member, calls go straight through: the client's default circuit breaker keeps a member that was
 * down refused for 5 s and more after it is back (a single-member etcd restarted looked down for that long).
 * The client's retries (3 attempts, over the members) stay, and the replica retries what still fails.
 */
const passThrough = { execute: <T>(fn: (context: { signal: AbortSignal }) => T | Promise<T>) => Promise.resolve().then(() => fn({ signal: new AbortController().signal })) } as unknown as HostPolicy;

/** How a client built by `connectEtcd` treats its members. */
export interface ConnectOptions {
  /** Only these endpoints (default: every endpoint of the configuration). */
  readonly hosts?: readonly string[];
  /** The fault policy of each member (default: calls go straight through). */
  readonly hostPolicy?: (endpoint: string) => HostPolicy;
  /** No retry on another member (a probe of one member). */
  readonly once?: boolean;
}

/**
 * A client of `config`, namespaced to `PREFIX/`. The caller closes `client`. Every unary call has a 3 s
 * deadline (then the client tries another member) and connections are probed by gRPC keepalives, so a
 * member cut off without a reset (a network partition), or a proposal lost with etcd's leader, fails the
 * call instead of hanging it. The replicated control plane gives calls up much sooner on evidence from its
 * member probes (EtcdMembers, as `hostPolicy`).
 */
export function connectEtcd(config: EtcdStoreConfig, clock: Clock = systemClock, options: ConnectOptions = {}): { client: Etcd3; ns: Namespace } {
  const hostPolicy = options.hostPolicy ?? (() => passThrough);
  const client = new Etcd3({
    hosts: [...(options.hosts ?? config.endpoints)],
    dialTimeout: 3_000,
    faultHandling: { host: (h) => hostPolicy(h), ...(options.once === true ? { global: passThrough as unknown as GlobalPolicy } : {}) },
    // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time). Reconnection backoff is
    // capped at 2 s (gRPC's default grows to 2 minutes): a member back from a partition is used again soon.
    grpcOptions: {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: new Date(clock.wallNow() + 3_000) }),
  });
  return { client, ns: client.namespace(`${config.prefix}/`) };
}

/**
 * The state in etcd, read and written whole (the StateStore contract, as FileStore): `save` writes the keys
 * that differ and deletes those no longer in the state, in one transaction; `load` lists the prefix, its
 * version is etcd's revision. The replicated control plane does not save whole states: EtcdReplica writes
 * what changed and watches; this store is the same layout for tools and the store conformance suite.
 */
export class EtcdStore implements StateStore {
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  readonly where: string;

  constructor(config: EtcdStoreConfig) {
    ({ client: this.client, ns: this.ns } = connectEtcd(config));
    this.where = `etcd ${config.endpoints.join(',')} ${config.prefix}`;
  }

  async load(): Promise<PersistedState | undefined> {
    let res;
    try {
      res = await this.ns.getAll().exec();
    } catch (err) {
      throw new StoreError(this.where, [`cannot read the state: ${err instanceof Error ? err.message : String(err)}`]);
    }
    if (res.kvs.length === 0) return undefined;
    const problems: string[] = [];
    const policies: Record<string, unknown> = {};
    const weights: Record<string, Record<string, number>> = {};
    const drained: string[] = [];
    const instances: RegisteredInstance[] = [];
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (!isStateKey(key)) continue;
      const c: SharedChange | undefined = changeOf(key, kv.value.toString(), false, (k, p) => problems.push(`${k}: ${p}`));
      if (c?.kind === 'policy') policies[c.service] = c.input;
      else if (c?.kind === 'weights' && c.weights !== undefined) weights[c.service] = { ...c.weights };
      else if (c?.kind === 'drained') drained.push(c.address);
      else if (c?.kind === 'instance' && c.instance !== undefined) instances.push(c.instance);
    }
    if (problems.length > 0) throw new StoreError(this.where, problems);
    instances.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return parsePersistedState({ version: Number(res.header.revision), policies, weights, instances, drained: drained.sort() }, this.where);
  }

  async save(state: PersistedState): Promise<void> {
    const desired = desiredEntries(
      { policies: state.policies, weights: state.weights, drained: state.drained ?? [], instances: state.instances.map((i) => ({ ...i, owned: false })), computed: {} },
      true,
    );
    const current = await this.ns.getAll().strings();
    const ops = [];
    for (const [key, e] of desired) if (current[key] !== e.value) ops.push(this.ns.put(key).value(e.value));
    for (const key of Object.keys(current)) if (isStateKey(key) && !desired.has(key)) ops.push(this.ns.delete().key(key));
    ops.push(this.ns.put(META_KEY).value('{}'));
    // In transactions of at most MAX_TXN_OPS operations (etcd refuses larger ones); the meta key goes last.
    for (let from = 0; from < ops.length; from += MAX_TXN_OPS) {
      await this.ns
        .if(META_KEY, 'Version', '>', -1)
        .then(...ops.slice(from, from + MAX_TXN_OPS))
        .commit();
    }
  }

  close(): void {
    this.client.close();
  }
}
