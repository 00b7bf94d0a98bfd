import { createHash, type Hash } from 'node:crypto';
import { ChunkedScanner } from '../http1/chunked.js';
import type { ParseLimits } from '../http1/parser.js';

/**
 * sha256 of a request body's payload as it flows past. A chunked body is hashed without its framing, so the
 * same payload sent with other chunk sizes, or with Content-Length, hashes the same. The listener has
 * already checked the framing against its own limits; these only have to be as wide as any it may have.
 */

const WIDEST: ParseLimits = { maxHeadBytes: 1_048_576, maxTargetBytes: 1_048_576, maxHeaders: 10_000 };

/** The hash of an empty body. */
export const EMPTY_BODY_HASH = createHash('sha256').digest('hex');

export class BodyHasher {
  private readonly hash: Hash = createHash('sha256');
  private readonly scanner: ChunkedScanner | undefined;
  private failed = false;

  constructor(chunked: boolean) {
    if (chunked) {
      const sc = new ChunkedScanner(WIDEST);
      sc.onData = (buf, start, end) => {
        this.hash.update(buf.subarray(start, end));
      };
      this.scanner = sc;
    }
  }

  /** Bytes of the body as received (framing included). */
  update(chunk: Buffer): void {
    if (this.failed) return;
    const sc = this.scanner;
    if (sc === undefined) {
      this.hash.update(chunk);
      return;
    }
    try {
      sc.push(chunk, 0, chunk.length);
    } catch {
      this.failed = true;
    }
  }

  /** The hex digest once the body is complete; undefined when its framing could not be read. */
  digest(): string | undefined {
    return this.failed ? undefined : this.hash.digest('hex');
  }
}
