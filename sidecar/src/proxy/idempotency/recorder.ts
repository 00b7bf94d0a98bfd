import type { BodyConsumer, DetachedSocket, Downstream, ExchangeObserver, ResponseFraming } from '../exchange.js';
import type { RequestHead } from '../http1/parser.js';
import { BodyHasher, EMPTY_BODY_HASH } from './body-hash.js';
import type { StoredResponse } from './store.js';

/**
 * The client side of a keyed request that goes to the app, as the forwarding Call sees it: everything is
 * passed through to the real client, and on the way the request body is hashed and the response copied
 * (up to a size limit). When the response is complete the copy is offered for storage; any other ending
 * (a sidecar-made error, a cut connection, an upgrade) gives the key back.
 *
 * A client that leaves after sending its whole request does not abort the exchange: the app's answer is
 * still read and stored, so the client's retry gets it instead of running the request a second time.
 */

/** What becomes of a recorded exchange. */
export interface RecordingSink {
  /** The response is complete: store it (`bodyHash` undefined when the request body was not read whole). */
  complete(key: string, head: RequestHead, bodyHash: string | undefined, response: StoredResponse | undefined): void;
  /** The exchange ended without a complete response. */
  abandon(key: string): void;
}

export class RecordingDownstream implements Downstream, BodyConsumer, ExchangeObserver {
  /** The forwarding side (the Call) sets this; the real client's events come through this object. */
  observer: ExchangeObserver | undefined;
  private consumer: BodyConsumer | undefined;
  private readonly hasher: BodyHasher | undefined;
  private bodyHash: string | undefined;
  private status = 0;
  private reason = '';
  private headerBlock = '';
  private framing: ResponseFraming = 'none';
  private parts: Buffer[] = [];
  private bodyBytes = 0;
  /** The response outgrew the limit: it is passed on but no longer copied. */
  private overflow = false;
  /** The client left after its whole request: the response is read for storage only. */
  private clientGone = false;
  private settled = false;

  constructor(
    private readonly ex: Downstream,
    private readonly key: string,
    private readonly sink: RecordingSink,
    /** Response body bytes copied at most. */
    private readonly maxBodyBytes: number,
  ) {
    if (ex.hasBody) this.hasher = new BodyHasher(ex.head.chunked);
    else this.bodyHash = EMPTY_BODY_HASH;
    ex.observer = this;
  }

  get head(): RequestHead {
    return this.ex.head;
  }

  get hasBody(): boolean {
    return this.ex.hasBody;
  }

  get version(): 2 | undefined {
    return this.ex.version;
  }

  get peer(): string | undefined {
    return this.ex.peer;
  }

  get remoteAddress(): string | undefined {
    return this.ex.remoteAddress;
  }

  // The request body: hashed on its way to the forwarding side's consumer.

  setBodyConsumer(consumer: BodyConsumer): void {
    this.consumer = consumer;
    this.ex.setBodyConsumer(this);
  }

  clearBodyConsumer(): void {
    this.consumer = undefined;
    this.ex.clearBodyConsumer();
  }

  resumeBody(): void {
    this.ex.resumeBody();
  }

  onBodyData(chunk: Buffer): boolean {
    this.hasher?.update(chunk);
    const c = this.consumer;
    return c === undefined ? true : c.onBodyData(chunk);
  }

  onBodyEnd(): void {
    if (this.hasher !== undefined && this.bodyHash === undefined) this.bodyHash = this.hasher.digest();
    this.consumer?.onBodyEnd();
  }

  // The response: copied, then passed on (unless the client has gone).

  writeHead(status: number, reason: string, headerBlock: string, framing: ResponseFraming): void {
    this.status = status;
    this.reason = reason;
    this.headerBlock = headerBlock;
    this.framing = framing;
    if (!this.clientGone) this.ex.writeHead(status, reason, headerBlock, framing);
  }

  write(chunk: Buffer): boolean {
    if (!this.overflow) {
      this.bodyBytes += chunk.length;
      if (this.bodyBytes > this.maxBodyBytes) {
        this.overflow = true;
        this.parts = [];
        if (this.clientGone) {
          // Nobody is waiting for this answer any more and it cannot be kept: abort it (once this write returns).
          this.abandon();
          process.nextTick(abortLater, this);
        }
      } else {
        // A copy: the chunk may be a view into a larger read buffer that should not be kept alive.
        this.parts.push(Buffer.from(chunk));
      }
    }
    return this.clientGone ? true : this.ex.write(chunk);
  }

  end(trailers?: readonly string[]): void {
    if (!this.settled) {
      this.settled = true;
      this.sink.complete(this.key, this.ex.head, this.bodyHash, this.response());
    }
    if (!this.clientGone) this.ex.end(trailers);
  }

  sendError(status: number, reason: string, message: string, extraHeaders?: Readonly<Record<string, string>>): void {
    this.abandon();
    if (!this.clientGone) this.ex.sendError(status, reason, message, extraHeaders);
  }

  destroy(code?: string): void {
    this.abandon();
    if (!this.clientGone) this.ex.destroy(code);
  }

  detach(): DetachedSocket {
    this.abandon();
    return this.ex.detach();
  }

  // The real client's events.

  onClientClose(): void {
    if (!this.settled && this.bodyHash !== undefined && !this.overflow) {
      // The request reached the sidecar whole: let the app's answer arrive and keep it for the retry.
      this.clientGone = true;
      // A response paused for a slow client would wait for a drain that never comes: let it flow.
      this.observer?.onClientDrain();
      return;
    }
    this.abandon();
    this.observer?.onClientClose();
  }

  onClientDrain(): void {
    this.observer?.onClientDrain();
  }

  /** Tells the forwarding side that the client has gone (after the client left and the answer outgrew the limit). */
  abortForwarding(): void {
    this.observer?.onClientClose();
  }

  private abandon(): void {
    if (this.settled) return;
    this.settled = true;
    this.parts = [];
    this.sink.abandon(this.key);
  }

  /** The copy of a complete response, or undefined when it cannot be replayed as it was sent. */
  private response(): StoredResponse | undefined {
    if (this.overflow || this.status < 200 || this.framing === 'upgrade') return undefined;
    const parts = this.parts;
    this.parts = [];
    const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (this.framing === 'close') {
      // Delimited by the end of the connection upstream: the replay says its length instead.
      return { status: this.status, reason: this.reason, headerBlock: `${this.headerBlock}content-length: ${body.length}\r\n`, framing: 'length', body };
    }
    return { status: this.status, reason: this.reason, headerBlock: this.headerBlock, framing: this.framing, body };
  }
}

function abortLater(r: RecordingDownstream): void {
  r.abortForwarding();
}
