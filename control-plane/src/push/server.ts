import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { ControlPlaneMessage, Hello, Instance, LoadReport, SidecarMessage } from '../../../proto/gen/outrigger/v1/discovery.js';
import type { Timers } from '../../../common/src/timers.js';
import { validate } from '../../../common/src/config/load.js';
import { instanceSchema, MAX_VERSION } from '../registry/store.js';
import { bearerSecret, mayActAs, mayStream, type Authenticator, type Principal } from '../auth/tokens.js';

/** What the push layer needs from the registry. */
export interface PushSource {
  /** Full state of the given services at the current version. */
  snapshot(services: readonly string[]): { readonly version: number; readonly services: readonly { readonly name: string; readonly policyJson: string }[] };
  /** Calls `listener` after every change with the services whose snapshot may differ; returns an unsubscribe function. */
  onChange(listener: (event: { readonly services: readonly string[] }) => void): () => void;
  register(instance: Instance): unknown;
  heartbeat(id: string): boolean;
  deregister(id: string): unknown;
  /** Never go below a version a sidecar already saw (state lost by a crash before its save); 0..MAX_VERSION. */
  advanceVersion(seen: number): void;
  /** The registered instance with this id (serving or draining), if any. */
  registered(id: string): { readonly service: string; readonly address: string } | undefined;
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
  /** This stream registered its instance and holds its id (see PushServer.owners). */
  owns = false;
  /** Its instance takes mutual TLS and is registered once the stream's first certificate is issued. */
  awaitingCertificate = false;
  /** Refused: the stream got its status, nothing it sends counts any more. */
  closed = false;
  /** The token the stream was opened with (undefined when authentication is off). */
  principal: Principal | undefined;
  /** The services this sidecar subscribed to: those of its Hello, plus and minus its Subscribe messages. */
  readonly subscriptions = new Set<string>();
  /** Whether this sidecar receives `service` (subscribed, or its own). */
  wants(service: string): boolean {
    return this.hello !== undefined && (this.subscriptions.has(service) || this.hello.instance?.service === service);
  }
  /** Whether this sidecar receives any of `services`. */
  wantsAny(services: ReadonlySet<string>): boolean {
    if (this.hello === undefined) return false;
    const own = this.hello.instance?.service;
    if (own !== undefined && services.has(own)) return true;
    for (const name of this.subscriptions) if (services.has(name)) return true;
    return false;
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
  /** The mesh-wide mode of inbound listeners that follow it (`Instance.mtls` "mesh"); default strict. */
  readonly meshMode?: 'strict' | 'permissive' | 'off' | undefined;
  /**
   * Tokens: a stream must carry `authorization: Bearer SECRET` metadata of a sidecar or admin token, and a
   * sidecar token scoped to services may only register or identify as one of them. Undefined: no checks.
   */
  readonly auth?: Authenticator | undefined;
  /**
   * Why this control plane cannot serve sidecars now (a replica that lost etcd, docs/ha.md): a Hello is then
   * refused UNAVAILABLE, so the sidecar tries the next control-plane address. Undefined answer: serving.
   */
  readonly unavailable?: (() => string | undefined) | undefined;
  readonly onEvent?:
    | ((event: { type: 'ack' | 'nack' | 'connected' | 'disconnected' | 'subscribed' | 'refused'; instance: string; version?: string; reason?: string; services?: readonly string[] }) => void)
    | undefined;
}

/** Subscriptions one stream may hold; names beyond it are answered as unknown (a sidecar gone wrong cannot grow the control plane's memory). */
export const MAX_SUBSCRIPTIONS = 10_000;

/** `Hello.last_version`: "" or a decimal integer 0..maxVersion (why not, or undefined). */
export function lastVersionProblem(text: string, maxVersion: number): string | undefined {
  if (text === '') return undefined;
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  return n <= maxVersion ? undefined : `last_version: expected "" or a decimal integer 0..${maxVersion}, got ${JSON.stringify(text.length > 40 ? `${text.slice(0, 39)}…` : text)}`;
}

/**
 * The control plane's side of `Discovery.Stream`: one Subscriber per sidecar, full state first, then a new
 * snapshot after changes (coalesced); a stream whose buffer is full gets nothing more until it drains, and
 * then only the newest state, so a slow sidecar never delays the others or piles up messages.
 */
export class PushServer {
  private readonly subscribers = new Set<Subscriber>();
  /**
   * Instance id → the live stream that registered it. Only that stream may register, heartbeat or
   * deregister the id; once it ends the registration lives out its TTL, during which only a Hello with the
   * same service and address (the same sidecar reconnecting) may take it over.
   */
  private readonly owners = new Map<string, Subscriber>();
  /** The same streams by the service and address they registered (one instance per address and service). */
  private readonly addressOwners = new Map<string, Subscriber>();
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
    const auth = this.o.auth;
    if (auth !== undefined) {
      const header = call.metadata.get('authorization')[0];
      const principal = auth.authenticate(bearerSecret(header === undefined ? undefined : String(header)));
      if (principal === undefined) {
        this.refuse(sub, GrpcStatus.UNAUTHENTICATED, header === undefined ? 'no token: expected the metadata authorization: Bearer TOKEN (controlPlane.token or tokenFile in sidecar.yaml)' : 'unknown token');
      } else if (!mayStream(principal)) {
        this.refuse(sub, GrpcStatus.PERMISSION_DENIED, `token "${principal.name}" (role ${principal.role}) may not open a discovery stream: expected a sidecar or admin token`);
      }
      sub.principal = principal;
    }
  };

  /** Ends the stream with `code` (the sidecar sees the status and the message); nothing it sends counts after. */
  private refuse(sub: Subscriber, code: GrpcStatus, message: string, instance = sub.hello?.instance?.id ?? ''): void {
    if (sub.closed) return;
    sub.closed = true;
    this.drop(sub);
    this.o.onEvent?.({ type: 'refused', instance, reason: message });
    // grpc-js sends the status of an 'error' event and ends the call (destroy() would leave it open).
    sub.call.emit('error', Object.assign(new Error(message), { code, details: message }));
  }

  private onMessage(sub: Subscriber, msg: SidecarMessage): void {
    if (sub.closed) return;
    const m = msg.msg;
    if (m === undefined) return this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, 'unknown message: expected one of the messages of outrigger.v1.SidecarMessage');
    if (sub.hello === undefined) {
      if (m.$case !== 'hello') return this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, `the first message must be a Hello, got ${m.$case}`);
      this.onHello(sub, m.hello);
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
        if (sub.owns) this.source.deregister(id);
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
        this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, 'a second Hello on the same stream: open a new stream to say hello again');
        break;
    }
  }

  private get meshMode(): 'strict' | 'permissive' | 'off' {
    return this.o.meshMode ?? 'strict';
  }

  /** Signs a certificate for the service of the stream's Hello (never for a name the CSR asks for). */
  private issue(sub: Subscriber, csrPem: string): void {
    const service = sub.hello?.instance?.service || sub.hello?.service || '';
    const mode = this.meshMode;
    const answer = (certificate: { certPem: string; caPem: string; notAfterMs: number; trustDomain: string; error: string; mode: string }): void => {
      if (!this.subscribers.has(sub)) return;
      try {
        sub.call.write({ msg: { $case: 'certificate', certificate } });
      } catch {
        // the stream is going down
      }
    };
    const issue = this.o.issueCertificate;
    if (issue === undefined || service === '') {
      answer({ certPem: '', caPem: '', notAfterMs: 0, trustDomain: '', error: issue === undefined ? 'this control plane issues no certificates' : 'no service to issue a certificate for', mode });
      return;
    }
    issue(csrPem, service).then(
      (c) => {
        answer({ certPem: c.certPem, caPem: c.caPem, notAfterMs: c.notAfter, trustDomain: c.trustDomain, error: '', mode });
        this.registerAwaited(sub);
      },
      (err: unknown) => answer({ certPem: '', caPem: '', notAfterMs: 0, trustDomain: '', error: err instanceof Error ? err.message : String(err), mode }),
    );
  }

  /** The stream's sidecar got its first certificate: its instance, held back until now, is registered. */
  private registerAwaited(sub: Subscriber): void {
    const inst = sub.hello?.instance;
    if (!sub.awaitingCertificate || inst === undefined || !this.subscribers.has(sub) || sub.deregistered) return;
    sub.awaitingCertificate = false;
    try {
      this.source.register(inst);
    } catch {
      // validated at Hello; nothing else can make it fail
    }
  }

  /** Validates everything first: a refused Hello changes nothing (no registration, version or subscriber). */
  private onHello(sub: Subscriber, received: Hello): void {
    if (received.instance === undefined) return this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, 'the Hello must carry the instance');
    // An instance that follows the mesh-wide mode is registered with that mode.
    const hello = received.instance.mtls === 'mesh' ? { ...received, instance: { ...received.instance, mtls: this.meshMode } } : received;
    const inst = hello.instance!;
    const unavailable = this.o.unavailable?.();
    if (unavailable !== undefined) return this.refuse(sub, GrpcStatus.UNAVAILABLE, unavailable, inst.id);
    const p = sub.principal;
    if (p !== undefined) {
      for (const service of new Set([inst.service, hello.service])) {
        if (service !== '' && !mayActAs(p, service)) {
          return this.refuse(sub, GrpcStatus.PERMISSION_DENIED, `token "${p.name}" may not register or identify as service ${JSON.stringify(service)}: it is for ${[...(p.services ?? [])].join(', ')}`, inst.id);
        }
      }
    }
    const versionProblem = lastVersionProblem(hello.lastVersion, MAX_VERSION);
    if (versionProblem !== undefined) return this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, versionProblem, inst.id);
    if (inst.address !== '') {
      const owner = this.owners.get(inst.id);
      if (owner !== undefined && owner !== sub) {
        return this.refuse(sub, GrpcStatus.ALREADY_EXISTS, `instance ${inst.id} is registered by another connected sidecar; instance ids must be unique`, inst.id);
      }
      const held = this.source.registered(inst.id);
      if (held !== undefined && (held.service !== inst.service || held.address !== inst.address)) {
        return this.refuse(
          sub,
          GrpcStatus.ALREADY_EXISTS,
          `instance ${inst.id} is registered as ${held.service} at ${held.address}; another registration with this id is accepted once that one has expired (instance TTL ${this.source.instanceTtlMs} ms)`,
          inst.id,
        );
      }
      const other = this.addressOwners.get(addressKey(inst.service, inst.address));
      const o = other?.hello?.instance;
      if (other !== undefined && other !== sub && o !== undefined) {
        return this.refuse(sub, GrpcStatus.ALREADY_EXISTS, `${inst.address} is registered for ${inst.service} by another connected sidecar (instance ${o.id})`, inst.id);
      }
      // Callers reach a mesh instance over mutual TLS: it is published once its sidecar has a certificate
      // (the first one this stream is issued), not before, when its listener could only refuse them.
      const awaitCertificate = (inst.mtls === 'strict' || inst.mtls === 'permissive') && this.o.issueCertificate !== undefined;
      try {
        if (awaitCertificate) validate(instanceSchema, inst, `registration of ${inst.id}`);
        else this.source.register(inst);
      } catch (err) {
        return this.refuse(sub, GrpcStatus.INVALID_ARGUMENT, `invalid instance: ${err instanceof Error ? err.message : String(err)}`, inst.id);
      }
      sub.owns = true;
      sub.awaitingCertificate = awaitCertificate;
      this.owners.set(inst.id, sub);
      this.addressOwners.set(addressKey(inst.service, inst.address), sub);
    }
    if (hello.lastVersion !== '') this.source.advanceVersion(Number(hello.lastVersion));
    sub.hello = hello;
    for (const name of hello.subscriptions.slice(0, MAX_SUBSCRIPTIONS)) sub.subscriptions.add(name);
    this.subscribers.add(sub);
    this.o.onEvent?.({ type: 'connected', instance: inst.id });
    this.send(sub);
  }

  /**
   * A heartbeat keeps this stream's own registration alive; one the registry no longer knows (expired, or
   * state lost) is registered again. A stream that registered nothing touches nothing.
   */
  private heartbeat(sub: Subscriber, id: string): void {
    if (!sub.owns || sub.awaitingCertificate || this.source.heartbeat(id) || sub.deregistered) return;
    const inst = sub.hello?.instance;
    if (inst !== undefined) {
      try {
        this.source.register(inst);
      } catch {
        // validated at Hello; nothing else can make it fail
      }
    }
  }

  private drop(sub: Subscriber): void {
    const id = sub.hello?.instance?.id;
    if (sub.owns && id !== undefined && this.owners.get(id) === sub) this.owners.delete(id);
    const inst = sub.hello?.instance;
    if (sub.owns && inst !== undefined && this.addressOwners.get(addressKey(inst.service, inst.address)) === sub) this.addressOwners.delete(addressKey(inst.service, inst.address));
    if (!this.subscribers.delete(sub)) return;
    this.o.onEvent?.({ type: 'disconnected', instance: sub.hello?.instance?.id ?? '' });
  }

  /** Marks the sidecars that receive any of `services` (all of them when the list is empty) for a push. */
  private changed(services: readonly string[]): void {
    // Each sidecar's few services are looked up in the changed ones (not the other way round: a change
    // naming thousands of services, a fresh listing of a large fleet, made this quadratic).
    const changedSet = new Set(services);
    for (const sub of this.subscribers) {
      if (sub.dirty) continue;
      if (services.length === 0 || sub.wantsAny(changedSet)) sub.dirty = true;
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

  /** Ends every stream with UNAVAILABLE and `reason`: the sidecars move to another control-plane address. */
  disconnectAll(reason: string): void {
    for (const sub of [...this.subscribers]) this.refuse(sub, GrpcStatus.UNAVAILABLE, reason);
  }

  close(): void {
    this.unsubscribe();
    for (const s of this.subscribers) s.call.end();
    this.subscribers.clear();
    this.owners.clear();
    this.addressOwners.clear();
  }
}

function addressKey(service: string, address: string): string {
  return `${service}\u0000${address}`;
}
