import type { Clock } from '../../../../common/src/clock.js';
import type { IdempotencyConfig } from '../../../../common/src/config/types.js';
import type { ResponseFraming } from '../exchange.js';

/**
 * The responses kept for replay, by `Idempotency-Key`: a least-recently-used map under a total byte cap,
 * each entry valid for `ttlMs` from the moment it was stored (read from the injected clock). Keys of requests
 * still being answered are held apart (in flight): they take no bytes and are never evicted.
 */

/** A complete response as the client got it: the head's parts and the body bytes as framed. */
export interface StoredResponse {
  readonly status: number;
  readonly reason: string;
  /** `name: value\r\n` lines, hop-by-hop fields already removed. */
  readonly headerBlock: string;
  /** 'length', 'chunked' (the body keeps its chunks) or 'none'. */
  readonly framing: ResponseFraming;
  readonly body: Buffer;
}

/** What identifies the request a key was first used with. */
export interface RequestFingerprint {
  readonly method: string;
  /** The request target, query included. */
  readonly target: string;
  /** sha256 of the request body's payload (hex). */
  readonly bodyHash: string;
}

export interface StoredEntry extends RequestFingerprint {
  readonly key: string;
  readonly response: StoredResponse;
  readonly bytes: number;
  readonly expiresAt: number;
}

/** Bookkeeping counted per entry besides its strings and body (map slots, objects). */
export const ENTRY_OVERHEAD_BYTES = 256;

/** Returned by `lookup` for a key whose first request is still being answered. */
export const IN_FLIGHT = Symbol('in-flight');

/** The bytes an entry takes against the caps. */
export function entryBytes(key: string, f: RequestFingerprint, r: StoredResponse): number {
  return ENTRY_OVERHEAD_BYTES + key.length + f.method.length + f.target.length + f.bodyHash.length + r.reason.length + r.headerBlock.length + r.body.length;
}

export class IdempotencyStore {
  /** Oldest use first: a lookup that finds an entry moves it to the end. */
  private readonly entries = new Map<string, StoredEntry>();
  private readonly inflight = new Set<string>();
  private held = 0;
  /** Entries removed to make room (not counting expiry). */
  evictions = 0;

  constructor(
    private config: IdempotencyConfig,
    private readonly clock: Clock,
  ) {}

  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }

  get limits(): IdempotencyConfig {
    return this.config;
  }

  /** New caps apply at once (entries beyond them are evicted); a new TTL applies to entries stored from now on. */
  configure(config: IdempotencyConfig): void {
    this.config = config;
    this.evictOver(config.maxBytes);
  }

  /** The stored entry for `key`, IN_FLIGHT, or undefined (never seen, expired or evicted). */
  lookup(key: string): StoredEntry | typeof IN_FLIGHT | undefined {
    if (this.inflight.has(key)) return IN_FLIGHT;
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    if (e.expiresAt <= this.clock.now()) {
      this.held -= e.bytes;
      return undefined;
    }
    this.entries.set(key, e);
    return e;
  }

  /** Marks `key` as being answered; false when it already is. */
  reserve(key: string): boolean {
    if (this.inflight.has(key)) return false;
    this.inflight.add(key);
    return true;
  }

  /** The key's request ended without a response worth keeping: the next request with it goes to the app. */
  release(key: string): void {
    this.inflight.delete(key);
  }

  /**
   * Stores the response of a reserved key and releases the reservation; false (nothing stored) when the entry
   * would exceed `maxEntryBytes`. Older entries are evicted until everything fits under `maxBytes`.
   */
  commit(key: string, fingerprint: RequestFingerprint, response: StoredResponse): boolean {
    this.inflight.delete(key);
    const bytes = entryBytes(key, fingerprint, response);
    if (bytes > this.config.maxEntryBytes) return false;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.held -= old.bytes;
    }
    this.evictOver(this.config.maxBytes - bytes);
    const entry: StoredEntry = { key, method: fingerprint.method, target: fingerprint.target, bodyHash: fingerprint.bodyHash, response, bytes, expiresAt: this.clock.now() + this.config.ttlMs };
    this.entries.set(key, entry);
    this.held += bytes;
    return true;
  }

  /** Removes expired entries (so that the bytes held are true when they are read). */
  sweep(): void {
    const now = this.clock.now();
    for (const e of this.entries.values()) {
      if (e.expiresAt <= now) {
        this.entries.delete(e.key);
        this.held -= e.bytes;
      }
    }
  }

  /** Evicts least recently used entries until at most `budget` bytes are held. */
  private evictOver(budget: number): void {
    if (this.held <= budget) return;
    const now = this.clock.now();
    for (const e of this.entries.values()) {
      if (this.held <= budget) break;
      this.entries.delete(e.key);
      this.held -= e.bytes;
      if (e.expiresAt > now) this.evictions++;
    }
  }
}
