import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Etcd3, IKeyValue, IWatchResponse, Lease, Watcher } from 'etcd3';
import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { LoadReport } from '../../../proto/gen/outrigger/v1/discovery.js';
import type { EtcdStoreConfig } from '../config/types.js';
import type { SubscriberView } from '../push/server.js';
import { changeOf, desiredEntries, isStateKey, LEADER_KEY, LOADS_PREFIX } from './etcd-layout.js';
import { EtcdMembers, type MemberView } from './etcd-members.js';
import { connectEtcd, MAX_TXN_OPS } from './etcd-store.js';
import { ConflictError, type Registry, type SharedChange } from './registry.js';

/** A key as this replica last saw it in etcd (or wrote it). */
interface MirrorEntry {
  readonly value: string;
  readonly lease: string;
  /** etcd's mod revision of the key (0: not known). */
  readonly mod: number;
}

/** Keys an operator changes through the API: written only over the revision the change was made on. */
function guarded(key: string): boolean {
  return key.startsWith('policies/') || key.startsWith('weights/') || key.startsWith('drained/');
}

/** Counts of one replica's etcd traffic (metrics; the scale bench reads them). */
export interface EtcdStats {
  txns: number;
  txnOps: number;
  watchResponses: number;
  watchEvents: number;
  /** Longest time between two successful keepalives of this replica's lease. */
  keepaliveGapMaxMs: number;
  contactLost: number;
}

/**
 * One control-plane replica's link to the shared state in etcd (docs/ha.md):
 *
 *  - Mirror: the replica lists the prefix, hands it to the registry whole (`applyShared(…, reset)`), then
 *    watches from the next revision; each watch response is applied as one change whose version is etcd's
 *    revision, so every replica labels the same state with the same version. A watch that errs or
 *    disconnects (etcd restarted, history compacted) is dropped and the prefix listed again.
 *  - Writes: a local change (API call, registration) is diffed against the mirror and written in one
 *    transaction; registrations of sidecars connected here go on this replica's lease, so they vanish with
 *    it unless their sidecars register again elsewhere. The registry versions and pushes the change when
 *    the watch hands it back.
 *  - Leader: the replica whose lease holds the `leader` key (create-if-absent transaction). Leadership ends
 *    with the lease, or locally as soon as keepalives stop succeeding for most of the TTL (fencing: a
 *    replica cut off from etcd stops acting before its key expires). Computed weights are written only by
 *    the leader, in a transaction that checks the leader key still carries its lease.
 */
export class EtcdReplica {
  readonly id: string;
  private readonly client: Etcd3;
  private readonly members: EtcdMembers;
  private readonly prefix: string;
  private readonly ttlSeconds: number;
  private registry: Registry | undefined;
  private lease: Lease | undefined;
  private extraKeepalivesInFlight = 0;
  private leaseId = '';
  private readonly myLeases = new Set<string>();
  private lastKeepaliveAt = Number.NEGATIVE_INFINITY;
  private readonly mirror = new Map<string, MirrorEntry>();
  /**
   * Keys changed by hand (policies, weights, drains) with a change here not written yet: the mod revision
   * of the key the change was made over. The write succeeds only if the key is still at that revision.
   */
  private readonly base = new Map<string, number>();
  /** Changes here that lost to a change through another replica (flush reports those made during it). */
  private conflictCount = 0;
  private readonly recentConflicts: { n: number; key: string }[] = [];
  /** Keys whose write lost, until the watch reaches the revision that showed it (the winner's value). */
  private readonly lostUntil = new Map<string, number>();
  private readonly loads = new Map<string, { views: SubscriberView[]; receivedAt: number }>();
  private watcher: Watcher | undefined;
  private generation = 0;
  private appliedRevision = 0;
  private lastWriteRevision = 0;
  private syncQueued = false;
  private syncRunning = false;
  private syncAgain = false;
  private lastSyncError: unknown;
  private retryDelay = 100;
  private retryTimer: TimerHandle | undefined;
  private checkTimer: TimerHandle | undefined;
  private campaigning = false;
  private leader = false;
  private contact = true;
  private readonly contactListeners = new Set<(inContact: boolean) => void>();
  private closed = false;
  private lastPublishedLoads = '';
  private readonly leadershipListeners = new Set<(leader: boolean) => void>();
  private readonly counts: EtcdStats = { txns: 0, txnOps: 0, watchResponses: 0, watchEvents: 0, keepaliveGapMaxMs: 0, contactLost: 0 };

  /** What the Registry's `shared` option takes. */
  readonly hooks = { onLocalChange: (): void => this.scheduleSync(), flush: (): Promise<void> => this.flush() };

  constructor(
    private readonly config: EtcdStoreConfig,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly logger: Logger,
  ) {
    this.id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.prefix = `${config.prefix}/`;
    // Probes of each member (a linearizable read of the leader key) steer this replica's calls and streams
    // to the members that serve (docs/ha.md, "Member failures").
    this.members = new EtcdMembers(
      config.endpoints,
      this.prefix + LEADER_KEY,
      (endpoint) => connectEtcd(config, clock, { hosts: [endpoint], once: true }).client,
      clock,
      timers,
      logger,
    );
    this.client = connectEtcd(config, clock, { hostPolicy: (endpoint) => this.members.hostPolicy(endpoint) }).client;
    this.ttlSeconds = Math.round(config.leaseTtlMs / 1000);
  }

  /** Grants the lease, loads the shared state into `registry` and watches it; then campaigns for leadership. */
  async start(registry: Registry): Promise<void> {
    this.registry = registry;
    this.members.start();
    try {
      await this.newLease();
      await this.resync(true);
    } catch (err) {
      throw new Error(`store.etcd: cannot reach etcd at ${this.config.endpoints.join(', ')}: ${message(err)}`, { cause: err });
    }
    this.checkTimer = this.timers.every(1_000, () => this.check());
    void this.campaign();
  }

  /** This replica leads: it runs the computed weights and the autoscaler. */
  isLeader(): boolean {
    return this.leader;
  }

  /** Calls `listener` whenever this replica gains or loses the leadership. */
  onLeadership(listener: (leader: boolean) => void): () => void {
    this.leadershipListeners.add(listener);
    return () => this.leadershipListeners.delete(listener);
  }

  /** Whether this replica's lease is alive in etcd as far as it knows (a keepalive within the lease TTL). */
  inContact(): boolean {
    return this.contact;
  }

  /** Calls `listener` when this replica loses its contact with etcd (false) and regains it (true). */
  onContact(listener: (inContact: boolean) => void): () => void {
    this.contactListeners.add(listener);
    return () => this.contactListeners.delete(listener);
  }

  /** This replica's etcd traffic so far. */
  stats(): EtcdStats {
    return { ...this.counts };
  }

  /** The etcd members and whether each serves, as this replica last probed them. */
  etcdMembers(): MemberView[] {
    return this.members.view();
  }

  /** The replica id the `leader` key holds, if any. */
  leaderId(): string | undefined {
    return this.mirror.get(LEADER_KEY)?.value;
  }

  /**
   * The value of `key` (relative to the prefix), created with `make()` by whichever replica gets there first
   * (a create-if-absent transaction): the CA and the generated tokens are made once for all replicas.
   */
  async getOrCreate(key: string, make: () => Promise<string>): Promise<string> {
    const full = this.prefix + key;
    const cur = await this.client.get(full).string();
    if (cur !== null) return cur;
    const value = await make();
    const res = await this.client.if(full, 'Create', '==', 0).then(this.client.put(full).value(value)).commit();
    if (res.succeeded) return value;
    const winner = await this.client.get(full).string();
    if (winner === null) throw new Error(`etcd key ${full} vanished while it was being created`);
    return winner;
  }

  /**
   * Writes the last load report of each sidecar connected here (`loads/REPLICA`, on this replica's lease)
   * for the leader, which computes weights and sizes services from every replica's sidecars.
   */
  publishLoads(views: readonly SubscriberView[]): void {
    if (this.leaseId === '' || this.closed) return;
    const now = this.clock.now();
    const list = views
      .filter((v) => v.instance !== null && v.lastLoad !== null && v.lastLoadAt !== null)
      .map((v) => {
        const l = v.lastLoad as LoadReport;
        // What computed weights and the autoscaler read; circuits and per-endpoint reports stay local.
        const load = { rps: l.rps, inflight: l.inflight, latencyEwmaMs: l.latencyEwmaMs, errorRate: l.errorRate, cpu: l.cpu, latencyP99Ms: l.latencyP99Ms, circuits: [], endpoints: [] };
        return { instance: v.instance, load, ageMs: Math.round(now - (v.lastLoadAt ?? now)) };
      });
    const value = JSON.stringify(list);
    if (value === this.lastPublishedLoads && list.length === 0) return;
    this.lastPublishedLoads = value;
    this.client
      .put(`${this.prefix}${LOADS_PREFIX}${this.id}`)
      .value(value)
      .lease(this.leaseId)
      .exec()
      .catch((err: unknown) => this.logger.debug({ err: message(err) }, 'etcd: could not publish load reports'));
  }

  /** Load reports of the sidecars connected to the other replicas, as views of this replica's clock. */
  remoteLoads(): SubscriberView[] {
    const out: SubscriberView[] = [];
    for (const [replica, l] of this.loads) if (replica !== this.id) out.push(...l.views);
    return out;
  }

  /**
   * Gives the leadership up (another replica takes over at once) and closes the client. The lease is left to
   * expire: the registrations of this replica's sidecars stay for its TTL, time for them to register again
   * through another replica, which takes their keys over.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    // What was changed here last is written first (bounded: 10 s).
    await this.flush().catch((err: unknown) => this.logger.warn({ err: message(err) }, 'etcd: closing with changes not written'));
    const wasLeader = this.leader;
    this.closed = true;
    this.checkTimer?.cancel();
    this.retryTimer?.cancel();
    this.dropWatcher();
    this.setLeader(false);
    if (wasLeader && this.leaseId !== '') {
      const full = this.prefix + LEADER_KEY;
      try {
        await this.client.if(full, 'Lease', '==', this.leaseId).then(this.client.delete().key(full)).commit();
        this.logger.info({ replica: this.id }, 'leadership given up');
      } catch (err) {
        this.logger.warn({ err: message(err) }, 'etcd: could not give the leadership up (it ends with the lease)');
      }
    }
    this.lease?.release();
    this.members.close();
    this.client.close();
  }

  // -------------------------------------------------------------------------------------------------------
  // Lease and leadership

  private async newLease(): Promise<void> {
    const lease = this.client.lease(this.ttlSeconds);
    lease.on('lost', (err) => {
      if (this.lease !== lease || this.closed) return;
      this.logger.warn({ err: message(err), lease: this.leaseId }, 'etcd: lease lost; taking a new one (registrations are written again)');
      this.leaseId = '';
      this.check();
      void this.renewLease();
    });
    lease.on('keepaliveSucceeded', () => {
      if (this.lease !== lease) return;
      this.keptAlive();
      this.check();
    });
    const id = await lease.grant();
    this.lease = lease;
    this.leaseId = id;
    this.myLeases.add(id);
    this.lastKeepaliveAt = this.clock.now();
  }

  private keptAlive(): void {
    const now = this.clock.now();
    if (Number.isFinite(this.lastKeepaliveAt)) this.counts.keepaliveGapMaxMs = Math.max(this.counts.keepaliveGapMaxMs, Math.round(now - this.lastKeepaliveAt));
    this.lastKeepaliveAt = now;
  }

  private async renewLease(): Promise<void> {
    for (let delay = 250; !this.closed; delay = Math.min(delay * 2, 4_000)) {
      try {
        await this.newLease();
        this.logger.info({ lease: this.leaseId }, 'etcd: new lease');
        this.scheduleSync();
        void this.campaign();
        return;
      } catch (err) {
        this.logger.warn({ err: message(err) }, 'etcd: cannot take a lease yet');
        await this.sleep(delay);
      }
    }
  }

  private async campaign(): Promise<void> {
    if (this.closed || this.campaigning || this.leaseId === '' || this.mirror.has(LEADER_KEY)) return;
    this.campaigning = true;
    const full = this.prefix + LEADER_KEY;
    try {
      await this.client.if(full, 'Create', '==', 0).then(this.client.put(full).value(this.id).lease(this.leaseId)).commit();
      // Won or lost, the watch brings the key and check() decides.
    } catch (err) {
      this.logger.debug({ err: message(err) }, 'etcd: campaign failed; trying again');
    } finally {
      this.campaigning = false;
    }
  }

  /** Re-evaluates leadership (every second, and on keepalives and leader-key changes). */
  private check(): void {
    if (this.closed) return;
    const key = this.mirror.get(LEADER_KEY);
    const age = this.clock.now() - this.lastKeepaliveAt;
    const contact = this.leaseId !== '' && age < this.config.leaseTtlMs;
    if (contact !== this.contact) {
      this.contact = contact;
      if (contact) this.logger.info({}, 'etcd: in contact again');
      else {
        this.counts.contactLost++;
        this.logger.warn({ lastKeepaliveMs: Math.round(age) }, 'etcd: lost (no keepalive within the lease TTL); sidecars are sent to the other replicas');
      }
      for (const l of [...this.contactListeners]) l(contact);
    }
    const fresh = age < this.config.leaseTtlMs - 1_000;
    this.setLeader(this.leaseId !== '' && key?.lease === this.leaseId && fresh);
    if (key === undefined) void this.campaign();
    if (this.leaseId !== '' && age >= this.config.leaseTtlMs / 2) this.extraKeepalives();
  }

  /**
   * The lease's keepalive stream runs over one member's connection. When that member is cut off without a
   * reset (a network partition), the stream stays silent until the client gives up on it after a whole TTL,
   * which is when this replica would count itself cut off, although the other members answer. So once a
   * keepalive is overdue (half the TTL), two more go out on new streams, each to a member the client picks at
   * random, with a 1 s deadline; again at every check while the lease's own stream stays silent.
   */
  private extraKeepalives(): void {
    const lease = this.lease;
    if (lease === undefined || this.closed) return;
    while (this.extraKeepalivesInFlight < 2) {
      this.extraKeepalivesInFlight++;
      lease
        .keepaliveOnce({ deadline: new Date(this.clock.wallNow() + 1_000) })
        .then(() => {
          if (this.lease !== lease || this.closed) return;
          this.keptAlive();
          this.check();
        })
        .catch(() => undefined)
        .finally(() => this.extraKeepalivesInFlight--);
    }
  }

  private setLeader(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.logger.info({ replica: this.id }, leader ? 'this replica leads the control plane' : 'this replica no longer leads');
    for (const l of [...this.leadershipListeners]) {
      try {
        l(leader);
      } catch (err) {
        this.logger.error({ err: message(err) }, 'leadership listener failed');
      }
    }
    if (leader) this.scheduleSync(); // computed weights only the leader writes
  }

  // -------------------------------------------------------------------------------------------------------
  // Mirror and watch

  /** Lists the prefix, applies it whole, and watches from the next revision; retried until it works. */
  private async resync(first = false): Promise<void> {
    const gen = ++this.generation;
    this.dropWatcher();
    for (let delay = 250; !this.closed && gen === this.generation; delay = Math.min(delay * 2, 4_000)) {
      try {
        const res = await this.client.getAll().prefix(this.prefix).exec();
        if (gen !== this.generation || this.closed) return;
        const revision = Number(res.header.revision);
        // Changes made here and not written yet stay in force over the listing (and are written after it).
        const pending = this.pendingEntries();
        this.mirror.clear();
        this.loads.clear();
        const changes: SharedChange[] = [];
        for (const kv of res.kvs) {
          const c = this.take(kv, false);
          if (c !== undefined) changes.push(c);
        }
        for (const [key, value] of pending) {
          // A change made here over a revision the key has left (changed through another replica while this
          // one could not write) is dropped: the listed value stands.
          const b = this.base.get(key);
          if (b !== undefined && (this.mirror.get(key)?.mod ?? 0) !== b) {
            this.base.delete(key);
            this.conflicted(key);
            continue;
          }
          const c = changeOf(key, value, true, () => undefined);
          if (c !== undefined) changes.push(c);
        }
        this.registry?.applyShared(changes, revision, true);
        this.appliedRevision = Math.max(this.appliedRevision, revision);
        const watcher = this.client.watch().prefix(this.prefix).startRevision(String(revision + 1)).watcher();
        this.watcher = watcher;
        watcher.on('data', (r: IWatchResponse) => {
          if (gen === this.generation) this.onWatch(r);
        });
        const lost = (why: string) => (err: unknown) => {
          if (gen !== this.generation || this.closed) return;
          this.logger.warn({ err: message(err) }, `etcd: watch ${why}; listing the state again`);
          void this.resync();
        };
        watcher.on('disconnected', lost('disconnected'));
        watcher.on('error', lost('failed'));
        if (!first) this.logger.info({ revision }, 'etcd: state listed again and watched');
        this.check();
        this.scheduleSync(); // what this replica holds and etcd lost (an expired lease) is written again
        return;
      } catch (err) {
        if (first) throw err;
        this.logger.warn({ err: message(err) }, 'etcd: cannot list the state yet');
        await this.sleep(delay);
      }
    }
  }

  /**
   * Keys whose value here differs from the mirror: local changes not written yet (undefined: a deletion).
   * Registrations are left out: a fresh listing keeps the instances this replica holds (they are written
   * again), and one it dropped meanwhile may have been taken over by another replica since.
   */
  private pendingEntries(): Map<string, string | undefined> {
    const out = new Map<string, string | undefined>();
    const registry = this.registry;
    if (registry === undefined) return out;
    const state = registry.sharedState();
    const all = desiredEntries(state, true);
    const skip = (key: string): boolean => key.startsWith('instances/') || (key.startsWith('computed/') && !this.leader);
    for (const [key, e] of desiredEntries(state)) if (!skip(key) && this.mirror.get(key)?.value !== e.value) out.set(key, e.value);
    for (const key of this.mirror.keys()) if (isStateKey(key) && !skip(key) && !all.has(key)) out.set(key, undefined);
    return out;
  }

  private dropWatcher(): void {
    const w = this.watcher;
    this.watcher = undefined;
    if (w === undefined) return;
    w.removeAllListeners();
    w.on('error', () => undefined);
    w.cancel().catch(() => undefined);
  }

  private onWatch(res: IWatchResponse): void {
    if (res.events.length === 0) return;
    this.counts.watchResponses++;
    this.counts.watchEvents += res.events.length;
    const revision = Number(res.header.revision);
    const changes: SharedChange[] = [];
    let leaderChanged = false;
    for (const ev of res.events) {
      const deleted = String(ev.type).toLowerCase() === 'delete';
      const c = this.take(ev.kv, deleted);
      if (c !== undefined) changes.push(c);
      if (ev.kv.key.toString() === this.prefix + LEADER_KEY) leaderChanged = true;
    }
    // Also without state changes (load reports, the leader key): the version is the revision seen.
    this.registry?.applyShared(changes, revision);
    this.appliedRevision = Math.max(this.appliedRevision, revision);
    if (leaderChanged) this.check();
  }

  /** Records a key in the mirror; returns what it means to the registry. */
  private take(kv: IKeyValue, deleted: boolean): SharedChange | undefined {
    const key = kv.key.toString().slice(this.prefix.length);
    const value = deleted ? undefined : kv.value.toString();
    if (value === undefined) this.mirror.delete(key);
    else this.mirror.set(key, { value, lease: String(kv.lease), mod: Number(kv.mod_revision) });
    if (key.startsWith(LOADS_PREFIX)) {
      this.takeLoads(key.slice(LOADS_PREFIX.length), value);
      return undefined;
    }
    if (!isStateKey(key)) return undefined;
    return changeOf(key, value, this.myLeases.has(String(kv.lease)), (k, problem) => this.logger.warn({ key: k, problem }, 'etcd: skipped a damaged key'));
  }

  private takeLoads(replica: string, value: string | undefined): void {
    if (value === undefined) {
      this.loads.delete(replica);
      return;
    }
    try {
      const now = this.clock.now();
      const list = JSON.parse(value) as { instance: SubscriberView['instance']; load: LoadReport; ageMs: number }[];
      this.loads.set(replica, {
        receivedAt: now,
        views: list.map((l) => ({
          instance: l.instance,
          subscriptions: [],
          sentVersion: null,
          ackedVersion: null,
          lastNack: null,
          lastLoad: l.load,
          lastLoadAt: now - l.ageMs,
          connectedAt: '',
        })),
      });
    } catch {
      this.loads.delete(replica);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Writes

  private scheduleSync(): void {
    if (this.syncQueued || this.closed) return;
    this.syncQueued = true;
    queueMicrotask(() => {
      this.syncQueued = false;
      void this.runSync();
    });
  }

  private async runSync(): Promise<void> {
    if (this.syncRunning) {
      this.syncAgain = true;
      return;
    }
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.syncRunning = true;
    try {
      do {
        this.syncAgain = false;
        await this.writeDiff();
      } while (this.syncAgain && !this.closed);
      this.lastSyncError = undefined;
      this.retryDelay = 100;
    } catch (err) {
      this.lastSyncError = err;
      // Soon at first: the client has already tried other members, and the member probes steer the next try.
      const delay = this.retryDelay;
      this.retryDelay = Math.min(delay * 2, 1_000);
      this.logger.warn({ err: message(err) }, `etcd: could not write the state (retrying in ${delay} ms)`);
      if (!this.closed) this.retryTimer = this.timers.after(delay, () => this.scheduleSync());
    } finally {
      this.syncRunning = false;
    }
  }

  private async writeDiff(): Promise<void> {
    const registry = this.registry;
    if (registry === undefined) return;
    const leaseId = this.leaseId;
    if (leaseId === '') throw new Error('no etcd lease yet');
    const state = registry.sharedState();
    const all = desiredEntries(state, true);
    const leader = this.leader;
    const ops = [];
    const written: [string, { value: string; lease: string } | undefined][] = [];
    // Changes made by hand, each written in a transaction of its own over the revision it was made on.
    const byHand: { key: string; op: ReturnType<Etcd3['put']> | ReturnType<Etcd3['delete']>; value: { value: string; lease: string } | undefined }[] = [];
    let fenced = false;
    for (const [key, e] of desiredEntries(state)) {
      const cur = this.mirror.get(key);
      if (cur?.value === e.value && (!e.leased || cur.lease === leaseId)) continue;
      if (guarded(key)) {
        byHand.push({ key, op: this.client.put(this.prefix + key).value(e.value), value: { value: e.value, lease: '0' } });
        continue;
      }
      if (key.startsWith('computed/')) {
        if (!leader) continue;
        fenced = true;
      }
      const put = this.client.put(this.prefix + key).value(e.value);
      ops.push(e.leased ? put.lease(leaseId) : put);
      written.push([key, { value: e.value, lease: e.leased ? leaseId : '0' }]);
    }
    for (const [key, cur] of this.mirror) {
      if (!isStateKey(key) || all.has(key)) continue;
      // A registration on another replica's lease is that replica's to remove.
      if (key.startsWith('instances/') && cur.lease !== '0' && !this.myLeases.has(cur.lease)) continue;
      if (guarded(key)) {
        byHand.push({ key, op: this.client.delete().key(this.prefix + key), value: undefined });
        continue;
      }
      if (key.startsWith('computed/')) {
        if (!leader) continue;
        fenced = true;
      }
      ops.push(this.client.delete().key(this.prefix + key));
      written.push([key, undefined]);
    }
    await this.writeByHand(byHand);
    // etcd refuses a transaction of more than --max-txn-ops operations (128 by default): a burst of
    // registrations (a replica's sidecars moving to it at once) is written in several transactions.
    for (let from = 0; from < ops.length; from += MAX_TXN_OPS) {
      const chunk = ops.slice(from, from + MAX_TXN_OPS);
      const res = fenced
        ? await this.client
            .if(this.prefix + LEADER_KEY, 'Lease', '==', leaseId)
            .then(...chunk)
            .commit()
        : await this.client
            .if(this.prefix + LEADER_KEY, 'Version', '>', -1)
            .then(...chunk)
            .commit();
      this.counts.txns++;
      this.counts.txnOps += chunk.length;
      if (!res.succeeded) {
        // No longer the leader: write the rest without the computed weights.
        this.setLeader(false);
        this.syncAgain = true;
        return;
      }
      const revision = Number(res.header.revision);
      this.lastWriteRevision = Math.max(this.lastWriteRevision, revision);
      if (this.appliedRevision < revision) {
        // Not diffed again before the watch hands it back.
        for (const [key, v] of written.slice(from, from + MAX_TXN_OPS)) {
          if (v === undefined) this.mirror.delete(key);
          else this.mirror.set(key, { ...v, mod: revision });
        }
      }
    }
  }

  /**
   * Writes policies, weights and drains changed here, each only if its key is still at the mod revision the
   * change was made over (`base`, taken when the change is first seen here). A key changed through another
   * replica meanwhile (a concurrent change, or one made while this replica could not write) keeps that
   * change: this one is dropped and reported (flush throws ConflictError; the API answers 409), and the
   * registry takes the other value from the watch.
   */
  private async writeByHand(byHand: readonly { key: string; op: ReturnType<Etcd3['put']> | ReturnType<Etcd3['delete']>; value: { value: string; lease: string } | undefined }[]): Promise<void> {
    const pending = new Set(byHand.map((b) => b.key));
    for (const [key, rev] of [...this.base]) {
      if (pending.has(key)) continue;
      this.base.delete(key);
      // The change left the diff without being written: the watch brought another replica's newer value.
      if ((this.mirror.get(key)?.mod ?? 0) > rev) this.conflicted(key);
    }
    for (const [key, until] of [...this.lostUntil]) if (this.appliedRevision >= until || !pending.has(key)) this.lostUntil.delete(key);
    for (const b of byHand) {
      if (this.lostUntil.has(b.key)) continue; // lost; the watch has not brought the winner yet
      if (!this.base.has(b.key)) this.base.set(b.key, this.mirror.get(b.key)?.mod ?? 0);
      const rev = this.base.get(b.key) ?? 0;
      const res = await this.client
        .if(this.prefix + b.key, 'Mod', '==', rev)
        .then(b.op)
        .commit();
      this.counts.txns++;
      this.counts.txnOps++;
      const revision = Number(res.header.revision);
      this.base.delete(b.key);
      if (!res.succeeded) {
        this.conflicted(b.key);
        this.lostUntil.set(b.key, revision);
        continue;
      }
      this.lastWriteRevision = Math.max(this.lastWriteRevision, revision);
      if (this.appliedRevision < revision) {
        if (b.value === undefined) this.mirror.delete(b.key);
        else this.mirror.set(b.key, { ...b.value, mod: revision });
      }
    }
  }

  private conflicted(key: string): void {
    this.conflictCount++;
    this.recentConflicts.push({ n: this.conflictCount, key });
    if (this.recentConflicts.length > 64) this.recentConflicts.shift();
    this.logger.warn({ key }, 'etcd: a change made here was not written: the key was changed through another replica meanwhile, and that change stands');
  }

  /**
   * Resolves once local changes are written and handed back by the watch; failed writes are retried
   * meanwhile (etcd restarting, a new leader being elected). After 10 s: throws the last error (the change
   * stays pending and is written once etcd takes it).
   */
  private async flush(): Promise<void> {
    const deadline = this.clock.now() + 10_000;
    const conflictsBefore = this.conflictCount;
    for (;;) {
      const busy = this.syncQueued || this.syncRunning || this.retryTimer !== undefined;
      if (!busy && this.appliedRevision >= this.lastWriteRevision) {
        const lost = this.recentConflicts.filter((c) => c.n > conflictsBefore).map((c) => c.key);
        if (lost.length > 0) throw new ConflictError([...new Set(lost)]);
        return;
      }
      if (this.clock.now() > deadline) {
        const last = this.lastSyncError;
        const why =
          last !== undefined
            ? message(last)
            : this.syncRunning
              ? 'the write is still waiting for etcd'
              : `written at revision ${this.lastWriteRevision}, the watch is at ${this.appliedRevision}`;
        throw new Error(`etcd did not take the change within 10 s: ${why}`);
      }
      await this.sleep(10);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.timers.after(ms, resolve));
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
