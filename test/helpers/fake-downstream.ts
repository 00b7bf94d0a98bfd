import type { BodyConsumer, DetachedSocket, Downstream, ExchangeObserver, ResponseFraming } from '../../sidecar/src/proxy/exchange.js';
import { defaultParseLimits, parseRequestHead, type RequestHead } from '../../sidecar/src/proxy/http1/parser.js';

/** The client side of a request for unit tests: its head and body, and what the sidecar answered to it. */
export class FakeDownstream implements Downstream {
  observer: ExchangeObserver | undefined;
  readonly head: RequestHead;
  readonly hasBody: boolean;
  readonly remoteAddress = '10.1.1.1';
  readonly peer = undefined;
  status = 0;
  reason = '';
  headerBlock = '';
  framing: ResponseFraming | undefined;
  body = '';
  ended = false;
  destroyed = false;
  error: { status: number; reason: string; headers: Readonly<Record<string, string>> | undefined } | undefined;
  consumer: BodyConsumer | undefined;

  constructor(
    raw: string,
    private bodyParts: string[] = [],
  ) {
    const buf = Buffer.from(raw, 'latin1');
    this.head = parseRequestHead(buf, 0, buf.length, defaultParseLimits)!;
    this.hasBody = this.head.contentLength > 0 || this.head.chunked;
  }

  setBodyConsumer(consumer: BodyConsumer): void {
    this.consumer = consumer;
    for (const p of this.bodyParts) consumer.onBodyData(Buffer.from(p));
    this.bodyParts = [];
    consumer.onBodyEnd();
  }
  clearBodyConsumer(): void {
    this.consumer = undefined;
  }
  resumeBody(): void {}
  writeHead(status: number, reason: string, headerBlock: string, framing: ResponseFraming): void {
    this.status = status;
    this.reason = reason;
    this.headerBlock = headerBlock;
    this.framing = framing;
  }
  write(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  trailers: readonly string[] | undefined;
  end(trailers?: readonly string[]): void {
    this.ended = true;
    this.trailers = trailers;
  }
  sendError(status: number, reason: string, _message: string, headers?: Readonly<Record<string, string>>): void {
    this.status = status;
    this.error = { status, reason, headers };
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  detach(): DetachedSocket {
    throw new Error('no upgrade in these tests');
  }
}
