import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';

/** How long a name the control plane does not know is answered 404 without asking it again. */
export const UNKNOWN_SERVICE_TTL_MS = 5_000;
/** Names this sidecar subscribes to on demand, at most (known, being looked up, or remembered unknown). */
export const MAX_ON_DEMAND_SERVICES = 1_000;

/** A service name as sidecar.yaml spells it; anything else is not looked up. */
const SERVICE_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

export interface OnDemandOptions {
  /** How long a lookup waits for the control plane's answer before the name counts as unknown. */
  readonly timeoutMs: number;
  readonly unknownTtlMs?: number | undefined;
  readonly maxNames?: number | undefined;
  /** Adds the names to this sidecar's subscriptions (a Subscribe on the discovery stream). */
  readonly subscribe: (names: readonly string[]) => void;
  /** Removes the names from them. */
  readonly unsubscribe: (names: readonly string[]) => void;
  /** Whether the sidecar has a cluster for `name` now. */
  readonly known: (name: string) => boolean;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
}

interface Lookup {
  readonly waiters: ((found: boolean) => void)[];
  readonly timer: TimerHandle;
}

/**
 * On-demand discovery (as Linkerd resolves a destination when it is first used): a request for a service
 * the sidecar does not know subscribes to it on the live discovery stream and waits, at most `timeoutMs`,
 * for the control plane's answer. Concurrent requests for one name share one lookup; a name the control
 * plane does not know (or does not answer for in time) is remembered as unknown for `unknownTtlMs`, so a
 * flood of bad names costs the control plane one Subscribe per name and TTL; at most `maxNames` names are
 * subscribed this way (names remembered unknown whose time is up are dropped to make room). Requests for
 * known services never come here.
 */
export class OnDemandResolver {
  private readonly lookups = new Map<string, Lookup>();
  /** Names answered unknown, with the monotonic time their answer expires. */
  private readonly unknown = new Map<string, number>();
  /** Every name subscribed on demand. */
  private readonly subscribed = new Set<string>();
  private readonly unknownTtlMs: number;
  private readonly maxNames: number;
  private full = false;
  private closed = false;

  constructor(private readonly o: OnDemandOptions) {
    this.unknownTtlMs = o.unknownTtlMs ?? UNKNOWN_SERVICE_TTL_MS;
    this.maxNames = o.maxNames ?? MAX_ON_DEMAND_SERVICES;
  }

  /** The names subscribed on demand (the sidecar routes to them as to those it subscribes to in its file). */
  names(): ReadonlySet<string> {
    return this.subscribed;
  }

  /**
   * Starts a lookup of `name` unless it is known, being looked up, remembered unknown, not a service name,
   * or there is no room: true when the name is known or being looked up now (a CONNECT tunnel to it is
   * accepted; requests inside it wait for the answer).
   */
  prefetch(name: string): boolean {
    if (this.o.known(name)) return true;
    return this.start(name) !== undefined;
  }

  /** Calls `done(true)` once `name` is known, or `done(false)` when it is not (at most `timeoutMs` later). */
  resolve(name: string, done: (found: boolean) => void): void {
    if (this.o.known(name)) {
      done(true);
      return;
    }
    const lookup = this.start(name);
    if (lookup === undefined) done(false);
    else lookup.waiters.push(done);
  }

  /**
   * After a snapshot was applied: `answered` holds every name it spoke for (its services and the names the
   * control plane does not know). Lookups of names now known end with true, of other answered names with
   * false; the rest keep waiting.
   */
  answered(answered: ReadonlySet<string>): void {
    for (const name of [...this.lookups.keys()]) {
      if (this.o.known(name)) this.settle(name, true);
      else if (answered.has(name)) this.settle(name, false);
    }
  }

  private start(name: string): Lookup | undefined {
    if (this.closed) return undefined;
    const pending = this.lookups.get(name);
    if (pending !== undefined) return pending;
    const until = this.unknown.get(name);
    if (until !== undefined) {
      if (this.o.clock.now() < until) return undefined;
      this.unknown.delete(name);
    }
    if (!SERVICE_NAME.test(name) || name.length > 253) return undefined;
    if (!this.subscribed.has(name) && !this.makeRoom()) return undefined;
    const lookup: Lookup = { waiters: [], timer: this.o.timers.after(this.o.timeoutMs, () => this.settle(name, false)) };
    this.lookups.set(name, lookup);
    this.subscribed.add(name);
    this.o.logger.debug({ service: name }, 'looking up a service on demand');
    // Sent even when already subscribed (a name remembered unknown whose time is up): the answer says
    // whether it is known now.
    this.o.subscribe([name]);
    return lookup;
  }

  /** Room for one more name: drops names remembered unknown whose time is up; false when still full. */
  private makeRoom(): boolean {
    if (this.subscribed.size < this.maxNames) return true;
    const now = this.o.clock.now();
    const dropped: string[] = [];
    for (const [name, until] of this.unknown) {
      if (until > now) continue;
      this.unknown.delete(name);
      if (this.o.known(name)) continue; // pushed later: a subscription in use
      this.subscribed.delete(name);
      dropped.push(name);
    }
    if (dropped.length > 0) this.o.unsubscribe(dropped);
    const room = this.subscribed.size < this.maxNames;
    if (!room && !this.full) this.o.logger.warn({ limit: this.maxNames }, 'too many services looked up on demand; unknown names are answered 404 without asking the control plane');
    this.full = !room;
    return room;
  }

  private settle(name: string, found: boolean): void {
    const lookup = this.lookups.get(name);
    if (lookup === undefined) return;
    this.lookups.delete(name);
    lookup.timer.cancel();
    if (!found) {
      this.unknown.set(name, this.o.clock.now() + this.unknownTtlMs);
      this.o.logger.debug({ service: name }, 'service unknown to the control plane');
    }
    for (const done of lookup.waiters) done(found);
  }

  /** Ends every lookup (answered not found); no more lookups start. */
  close(): void {
    this.closed = true;
    for (const name of [...this.lookups.keys()]) this.settle(name, false);
  }
}
