import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ControlPlaneMessage, Hello, Instance, LoadReport, SidecarMessage } from '../../../proto/gen/outrigger/v1/discovery.js';
import type { Timers } from '../../../common/src/timers.js';

/** What the push layer needs from the registry. */
export interface PushSource {
  /** Full state of the given services at the current version. */
  snapshot(services: readonly string[]): { readonly version: number; readonly services: readonly { readonly name: string; readonly policyJson: string }[] };
  /** Calls `listener` after every change with the services whose snapshot may differ; returns an unsubscribe function. */
  onChange(listener: (event: { readonly services: readonly string[] }) => void): () => void;
  register(instance: Instance): unknown;
  heartbeat(id: string): boolean;
  deregister(id: string): unknown;
  /** Never go below a version a sidecar already saw (state lost by a crash before its save). */
  advanceVersion(seen: number): void;
  readonly instanceTtlMs: number;
}

/** What the control plane knows about one connected sidecar (admin API). */
export interface SubscriberView {
  readonly instance: Instance | null;
  readonly subscriptions: readonly string[];
  readonly sentVersion: string | null;
  readonly ackedVersion: string | null;
  readonly lastNack: { readonly version: string; readonly reason: string } | null;
  readonly lastLoad: LoadReport | null;
  /** Monotonic ms (the control plane's clock) when the last load report arrived. */
  readonly lastLoadAt: number | null;
  readonly connectedAt: string;
}

type Stream = ServerDuplexStream<SidecarMessage, ControlPlaneMessage>;

class Subscriber {
  hello: Hello | undefined;
  sentVersion: string | undefined;
  sentNonce: string | undefined;
  ackedVersion: string | undefined;
  lastNack: { version: string; reason: string } | undefined;
  lastLoad: LoadReport | undefined;
  lastLoadAt: number | undefined;
  deregistered = false;
  /** The services this sidecar subscribed to: those of its Hello, plus and minus its Subscribe messages. */
  readonly subscriptions = new Set<string>();
  /** Whether this sidecar receives `service` (subscribed, or its own). */
  wants(service: string): boolean {
    return this.hello !== undefined && (this.subscriptions.has(service) || this.hello.instance?.service === service);
  }
  /** A change arrived that this subscriber has not been sent yet. */
  dirty = false;
  /** Waiting for 'drain': the stream's buffer is full, nothing more is queued. */
  blocked = false;
  constructor(
    readonly call: Stream,
    readonly connectedAt: number,
  ) {}
}

/** What a CertificateRequest is answered with. */
export interface IssuedForStream {
  readonly certPem: string;
  readonly caPem: string;
  readonly notAfter: number;
  readonly trustDomain: string;
}

export interface PushServerOptions {
  readonly timers: Timers;
  readonly wallNow: () => number;
  /** Monotonic clock for load-report timestamps. */
  readonly now: () => number;
  /** Changes within this window are sent as one snapshot (default 20 ms). */
  readonly coalesceMs?: number | undefined;
  /**
   * Signs a certificate for `service` from a PEM CSR (the mesh CA); absent: certificate requests are
   * answered with an error.
   */
  readonly issueCertificate?: ((csrPem: string, service: string) => Promise<IssuedForStream>) | undefined;
  readonly onEvent?:
    | ((event: { type: 'ack' | 'nack' | 'connected' | 'disconnected' | 'subscribed'; instance: string; version?: string; reason?: string; services?: readonly string[] }) => void)
    | undefined;
}

/** Subscriptions one stream may hold; names beyond it are answered as unknown (a sidecar gone wrong cannot grow the control plane's memory). */
export const MAX_SUBSCRIPTIONS = 10_000;

/**
 * The control plane's side of `Discovery.Stream`: one Subscriber per sidecar, full state first, then a new
 * snapshot after changes (coalesced); a stream whose buffer is full gets nothing more until it drains, and
 * then only the newest state, so a slow sidecar never delays the others or piles up messages.
 */
export class PushServer {
  private readonly subscribers = new Set<Subscriber>();
  private nonce = 0;
  private flushScheduled = false;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly source: PushSource,
    private readonly o: PushServerOptions,
  ) {
    this.unsubscribe = source.onChange((e) => this.changed(e.services));
  }

  /** gRPC handler of `Discovery.Stream`. */
  readonly stream = (call: Stream): void => {
    const sub = new Subscriber(call, this.o.wallNow());
    call.on('data', (msg: SidecarMessage) => this.onMessage(sub, msg));
    call.on('error', () => this.drop(sub));
    call.on('end', () => {
      this.drop(sub);
      call.end();
    });
    call.on('cancelled', () => this.drop(sub));
    call.on('drain', () => {
      sub.blocked = false;
      if (sub.dirty) this.send(sub);
    });
  };

  private onMessage(sub: Subscriber, msg: SidecarMessage): void {
    const m = msg.msg;
    if (m === undefined) return;
    if (sub.hello === undefined) {
      if (m.$case !== 'hello' || m.hello.instance === undefined) {
        sub.call.destroy(Object.assign(new Error('the first message must be a Hello with the instance'), { code: GrpcStatus.INVALID_ARGUMENT }));
        return;
      }
      const seen = Number(m.hello.lastVersion);
      if (m.hello.lastVersion !== '' && Number.isFinite(seen)) this.source.advanceVersion(seen);
      if (m.hello.instance.address !== '') {
        try {
          this.source.register(m.hello.instance);
        } catch (err) {
          sub.call.destroy(Object.assign(new Error(`invalid instance: ${err instanceof Error ? err.message : String(err)}`), { code: GrpcStatus.INVALID_ARGUMENT }));
          return;
        }
      }
      sub.hello = m.hello;
      for (const name of m.hello.subscriptions.slice(0, MAX_SUBSCRIPTIONS)) sub.subscriptions.add(name);
      this.subscribers.add(sub);
      this.o.onEvent?.({ type: 'connected', instance: m.hello.instance.id });
      this.send(sub);
      return;
    }
    const id = sub.hello.instance?.id ?? '';
    switch (m.$case) {
      case 'ack':
        if (m.ack.nonce === sub.sentNonce || sub.ackedVersion === undefined || Number(m.ack.version) > Number(sub.ackedVersion)) sub.ackedVersion = m.ack.version;
        this.o.onEvent?.({ type: 'ack', instance: id, version: m.ack.version });
        break;
      case 'nack':
        sub.lastNack = { version: m.nack.version, reason: m.nack.reason };
        this.o.onEvent?.({ type: 'nack', instance: id, version: m.nack.version, reason: m.nack.reason });
        break;
      case 'heartbeat':
        this.heartbeat(sub, id);
        break;
      case 'load':
        sub.lastLoad = m.load;
        sub.lastLoadAt = this.o.now();
        this.heartbeat(sub, id);
        break;
      case 'deregister':
        sub.deregistered = true;
        this.source.deregister(id);
        break;
      case 'subscribe': {
        for (const name of m.subscribe.remove) sub.subscriptions.delete(name);
        for (const name of m.subscribe.add) if (sub.subscriptions.size < MAX_SUBSCRIPTIONS) sub.subscriptions.add(name);
        if (m.subscribe.add.length > 0) this.o.onEvent?.({ type: 'subscribed', instance: id, services: m.subscribe.add });
        // Every Subscribe is answered with a snapshot, even at an unchanged version: it says which of the
        // added names are known.
        sub.sentVersion = undefined;
        this.send(sub);
        break;
      }
      case 'certificateRequest':
        this.issue(sub, m.certificateRequest.csrPem);
        break;
      case 'hello':
        break;
    }
  }

  /** Signs a certificate for the service of the stream's Hello (never for a name the CSR asks for). */
  private issue(sub: Subscriber, csrPem: string): void {
    const service = sub.hello?.instance?.service || sub.hello?.service || '';
    const answer = (certificate: { certPem: string; caPem: string; notAfterMs: number; trustDomain: string; error: string }): void => {
      if (!this.subscribers.has(sub)) return;
      try {
        sub.call.write({ msg: { $case: 'certificate', certificate } });
      } catch {
        // the stream is going down
      }
    };
    const issue = this.o.issueCertificate;
    if (issue === undefined || service === '') {
      answer({ certPem: '', caPem: '', notAfterMs: 0, trustDomain: '', error: issue === undefined ? 'this control plane issues no certificates' : 'no service to issue a certificate for' });
      return;
    }
    issue(csrPem, service).then(
      (c) => answer({ certPem: c.certPem, caPem: c.caPem, notAfterMs: c.notAfter, trustDomain: c.trustDomain, error: '' }),
      (err: unknown) => answer({ certPem: '', caPem: '', notAfterMs: 0, trustDomain: '', error: err instanceof Error ? err.message : String(err) }),
    );
  }

  /** A heartbeat for an instance the registry no longer knows (expired, or state lost) registers it again. */
  private heartbeat(sub: Subscriber, id: string): void {
    if (this.source.heartbeat(id) || sub.deregistered) return;
    const inst = sub.hello?.instance;
    if (inst !== undefined && inst.address !== '') {
      try {
        this.source.register(inst);
      } catch {
        // validated at Hello; nothing else can make it fail
      }
    }
  }

  private drop(sub: Subscriber): void {
    if (!this.subscribers.delete(sub)) return;
    this.o.onEvent?.({ type: 'disconnected', instance: sub.hello?.instance?.id ?? '' });
  }

  /** Marks the sidecars that receive any of `services` (all of them when the list is empty) for a push. */
  private changed(services: readonly string[]): void {
    for (const sub of this.subscribers) {
      if (services.length === 0 || services.some((name) => sub.wants(name))) sub.dirty = true;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.o.timers.after(this.o.coalesceMs ?? 20, () => {
      this.flushScheduled = false;
      for (const sub of this.subscribers) if (sub.dirty) this.send(sub);
    });
  }

  /** Sends the subscriber the current state of its services, unless its stream is backed up. */
  private send(sub: Subscriber): void {
    const hello = sub.hello;
    if (hello === undefined) return;
    if (sub.blocked) {
      sub.dirty = true;
      return;
    }
    sub.dirty = false;
    const names = [...new Set([...sub.subscriptions, hello.instance?.service ?? ''])].filter((n) => n !== '');
    const snap = this.source.snapshot(names);
    const version = String(snap.version);
    if (version === sub.sentVersion) return;
    const nonce = String(++this.nonce);
    sub.sentVersion = version;
    sub.sentNonce = nonce;
    const sent = new Set(snap.services.map((s) => s.name));
    const unknownServices = [...sub.subscriptions].filter((n) => !sent.has(n)).sort();
    const ok = sub.call.write({
      msg: {
        $case: 'snapshot',
        snapshot: { version, nonce, services: snap.services.map((s) => ({ name: s.name, policyJson: s.policyJson })), instanceTtlMs: this.source.instanceTtlMs, unknownServices },
      },
    });
    if (!ok) sub.blocked = true;
  }

  views(): SubscriberView[] {
    return [...this.subscribers].map((s) => ({
      instance: s.hello?.instance ?? null,
      subscriptions: [...s.subscriptions],
      sentVersion: s.sentVersion ?? null,
      ackedVersion: s.ackedVersion ?? null,
      lastNack: s.lastNack ?? null,
      lastLoad: s.lastLoad ?? null,
      lastLoadAt: s.lastLoadAt ?? null,
      connectedAt: new Date(s.connectedAt).toISOString(),
    }));
  }

  close(): void {
    this.unsubscribe();
    for (const s of this.subscribers) s.call.end();
    this.subscribers.clear();
  }
}
