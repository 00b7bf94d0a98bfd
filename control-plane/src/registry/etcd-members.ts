import { GRPCDeadlineExceededError, type Etcd3, type IOptions } from 'etcd3';
import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;
type PolicyFn<T> = (context: { signal: AbortSignal }) => T | Promise<T>;

/** How often every member is probed, and how long a probe may take before the member counts as not serving. */
export const PROBE_EVERY_MS = 250;
export const PROBE_TIMEOUT_MS = 500;
/** A call is given up (and retried on another member) only once it is at least this old, on evidence. */
export const ABANDON_AFTER_MS = 200;

/** Thrown, without calling through, for a member that is not serving while another one is: the client tries the next. */
export class MemberAvoidedError extends Error {
  constructor(endpoint: string) {
    super(`etcd member ${endpoint} is not answering; another member is used`);
  }
}

interface Attempt {
  readonly startedAt: number;
  /** The highest raft term known when the call was sent (0: none known yet). */
  readonly term: number;
  readonly abandon: (why: string) => void;
}

interface Member {
  readonly endpoint: string;
  /** Start time of the last probe that succeeded. */
  servedAt: number;
  /** Consecutive failed probes (0: serving, or not probed yet). */
  failures: number;
  /** The last failure was a refused or reset connection (the member is down), not a timeout. */
  down: boolean;
  probing: boolean;
  readonly attempts: Set<Attempt>;
  readonly streams: Set<{ cancel(): void }>;
  client: Etcd3 | undefined;
}

export interface MemberView {
  readonly endpoint: string;
  readonly serving: boolean;
  readonly failures: number;
}

/**
 * What one replica knows of each etcd member, and the per-member fault policy of its etcd client
 * (docs/ha.md, "Member failures"):
 *
 *  - Every PROBE_EVERY_MS each member answers a linearizable read (which needs the member to be in a
 *    quorum with a leader) within PROBE_TIMEOUT_MS, or counts as not serving.
 *  - Calls are routed to serving members: a call that the client's shuffle sends to a member that is not
 *    serving is refused at once (MemberAvoidedError, not a gRPC error) and the client tries its next member;
 *    when no member serves (etcd is electing a leader), members known to be down (connection refused or
 *    reset, also on a stream) are still avoided, and the others are tried as before.
 *  - A call already on its way is given up (a recoverable error: the client retries it on another member)
 *    on evidence that it will not be answered: a member answered a probe sent after the call while the
 *    call's member did not, or a probe sent after the call saw a higher raft term (a new etcd leader: a
 *    proposal forwarded to the old one is lost, and would only fail at its 3 s deadline). Calls are
 *    idempotent writes of local state or conditional transactions, so a given-up call that still commits
 *    does no harm.
 *  - Streams (the watch, lease keepalives) on a member that failed two probes in a row while another member
 *    serves are cancelled: the client opens them again on a serving member (a member cut off without a
 *    reset would otherwise hold them silent until gRPC keepalives give up, 15 s).
 */
export class EtcdMembers {
  private readonly members = new Map<string, Member>();
  private term = 0;
  private timer: TimerHandle | undefined;
  private closed = false;

  constructor(
    endpoints: readonly string[],
    private readonly probeKey: string,
    private readonly connect: (endpoint: string) => Etcd3,
    private readonly clock: Clock,
    private readonly timers: Timers,
    private readonly logger: Logger,
  ) {
    for (const endpoint of endpoints) {
      this.members.set(endpoint, { endpoint, servedAt: Number.NEGATIVE_INFINITY, failures: 0, down: false, probing: false, attempts: new Set(), streams: new Set(), client: undefined });
    }
  }

  /** Starts probing the members. */
  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.probeAll();
    this.timer = this.timers.every(PROBE_EVERY_MS, () => this.probeAll());
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    for (const m of this.members.values()) {
      m.client?.close();
      m.client = undefined;
    }
  }

  /** Each member and whether it serves, as last probed. */
  view(): MemberView[] {
    return [...this.members.values()].map((m) => ({ endpoint: m.endpoint, serving: m.failures === 0, failures: m.failures }));
  }

  /** The client's fault policy for the member at `endpoint` (its `faultHandling.host`). */
  hostPolicy(endpoint: string): HostPolicy {
    const policy = { execute: <T>(fn: PolicyFn<T>): Promise<T> => this.execute(endpoint, fn) };
    return policy as unknown as HostPolicy;
  }

  private execute<T>(endpoint: string, fn: PolicyFn<T>): Promise<T> {
    const m = this.members.get(endpoint);
    if (m === undefined || this.closed) return Promise.resolve().then(() => fn({ signal: new AbortController().signal }));
    if (m.failures > 0 && (this.anyServing() || (m.down && this.anyUp()))) return Promise.reject(new MemberAvoidedError(endpoint));
    let result: T | Promise<T>;
    try {
      result = fn({ signal: new AbortController().signal });
    } catch (err) {
      return Promise.reject(err);
    }
    if (!isPromise(result)) {
      if (isStream(result)) this.trackStream(m, result);
      return Promise.resolve(result);
    }
    return new Promise<T>((resolve, reject) => {
      const attempt: Attempt = {
        startedAt: this.clock.now(),
        term: this.term,
        abandon: (why) => {
          m.attempts.delete(attempt);
          const err = new GRPCDeadlineExceededError(`etcd member ${endpoint}: call given up (${why}); trying another member`);
          reject(err);
        },
      };
      m.attempts.add(attempt);
      result.then(
        (v) => {
          m.attempts.delete(attempt);
          resolve(v);
        },
        (err: unknown) => {
          m.attempts.delete(attempt);
          reject(err as Error);
        },
      );
    });
  }

  private trackStream(m: Member, stream: { cancel(): void; once(event: string, fn: (arg?: unknown) => void): unknown }): void {
    m.streams.add(stream);
    const done = (): void => {
      m.streams.delete(stream);
    };
    stream.once('status', done);
    stream.once('close', done);
    stream.once('error', (err: unknown) => {
      done();
      // The member refused or reset the connection: the client opens the stream again at once, elsewhere.
      if (isDown(err) && !this.closed) {
        m.failures = Math.max(m.failures, 1);
        m.down = true;
      }
    });
  }

  /** Some member is not known to be down (it may only lack a leader, during an election). */
  private anyUp(): boolean {
    for (const m of this.members.values()) if (!m.down) return true;
    return false;
  }

  private anyServing(): boolean {
    for (const m of this.members.values()) if (m.failures === 0) return true;
    return false;
  }

  private probeAll(): void {
    if (this.closed) return;
    for (const m of this.members.values()) if (!m.probing) void this.probe(m);
  }

  private async probe(m: Member): Promise<void> {
    m.probing = true;
    const startedAt = this.clock.now();
    try {
      m.client ??= this.connect(m.endpoint);
      const res = await m.client
        .get(this.probeKey)
        .options({ deadline: new Date(this.clock.wallNow() + PROBE_TIMEOUT_MS) })
        .exec();
      if (this.closed) return;
      const term = Number(res.header.raft_term);
      if (m.failures > 0) this.logger.info({ member: m.endpoint }, 'etcd: member serves again');
      m.failures = 0;
      m.down = false;
      m.servedAt = Math.max(m.servedAt, startedAt);
      this.onServed(m, startedAt, Number.isFinite(term) ? term : 0);
    } catch (err) {
      if (this.closed) return;
      m.failures++;
      m.down = isDown(err);
      if (m.failures === 1) this.logger.warn({ member: m.endpoint, err: err instanceof Error ? err.message : String(err) }, 'etcd: member does not answer; using the others');
      this.onFailed(m, startedAt);
    } finally {
      m.probing = false;
    }
  }

  /** `served` answered a probe sent at `probeAt`: calls that will not be answered are given up. */
  private onServed(served: Member, probeAt: number, term: number): void {
    const now = this.clock.now();
    for (const m of this.members.values()) {
      for (const a of [...m.attempts]) {
        if (now - a.startedAt < ABANDON_AFTER_MS || probeAt <= a.startedAt) continue;
        if (a.term > 0 && term > a.term) a.abandon(`etcd elected a new leader (raft term ${a.term} → ${term})`);
        else if (m !== served && m.servedAt <= a.startedAt && m.failures > 0) a.abandon(`${served.endpoint} answers and this member did not`);
      }
    }
    if (term > this.term) this.term = term;
  }

  /** `failed` did not answer a probe sent at `probeAt`. */
  private onFailed(failed: Member, probeAt: number): void {
    const others = [...this.members.values()].filter((m) => m !== failed && m.failures === 0 && m.servedAt >= probeAt - PROBE_EVERY_MS);
    if (others.length === 0) return;
    const now = this.clock.now();
    for (const a of [...failed.attempts]) if (now - a.startedAt >= ABANDON_AFTER_MS && failed.servedAt <= a.startedAt) a.abandon(`${others[0]?.endpoint ?? ''} answers and this member did not`);
    if (failed.failures >= 2 && failed.streams.size > 0) {
      this.logger.warn({ member: failed.endpoint, streams: failed.streams.size }, 'etcd: moving the watch and keepalive streams off a member that does not answer');
      for (const s of [...failed.streams]) {
        failed.streams.delete(s);
        s.cancel();
      }
    }
  }
}

/** gRPC UNAVAILABLE: connection refused or reset (a deadline that passed is DEADLINE_EXCEEDED, code 4). */
function isDown(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return e?.code === 14 || (typeof e?.message === 'string' && e.message.startsWith('14 UNAVAILABLE'));
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

function isStream(v: unknown): v is { cancel(): void; once(event: string, fn: (arg?: unknown) => void): unknown } {
  const s = v as { cancel?: unknown; once?: unknown } | null;
  return typeof s?.cancel === 'function' && typeof s.once === 'function';
}
