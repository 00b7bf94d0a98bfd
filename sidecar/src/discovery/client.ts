import { ChannelCredentials, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { TrustError } from './trust.js';
import {
  DiscoveryClient,
  type Certificate,
  type ControlPlaneMessage,
  type Instance,
  type LoadReport,
  type SidecarMessage,
  type Snapshot,
} from '../../../proto/gen/outrigger/v1/discovery.js';
import type { Random } from '../../../common/src/random.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { PushedService } from '../main.js';
import { backoffMs } from '../resilience/retry.js';
import type { Logger } from '../../../common/src/logger.js';
import type { ConfigCache } from './cache.js';

export interface ControlPlaneClientOptions {
  readonly addresses: readonly string[];
  /** The sidecar's own service (its certificate's identity). */
  readonly service: string;
  readonly instance: Instance;
  /**
   * The token sent as `authorization: Bearer TOKEN` metadata, asked for at every connection (a token file
   * is read again); undefined: none. A throw keeps the previous token (logged).
   */
  readonly token?: (() => string | undefined) | undefined;
  /**
   * The channel credentials for a connection to `address` (discovery/trust.ts: TLS pinned to the mesh CA,
   * bootstrapped on first use); absent: plaintext. A TrustError (a CA refused) is logged as an error and
   * tried again on the reconnect backoff; nothing is sent to that control plane meanwhile.
   */
  readonly credentials?: ((address: string) => Promise<ChannelCredentials>) | undefined;
  /** The control plane's certificate did not verify (trust.ts drops a bootstrapped CA to fetch it again). */
  readonly onUntrusted?: (() => void) | undefined;
  readonly subscriptions: readonly string[];
  readonly cache: ConfigCache | undefined;
  /** Applies a configuration; returns undefined when applied, else the NACK reason. */
  readonly apply: (version: string, services: readonly PushedService[], source: 'control-plane' | 'cache') => Promise<string | undefined>;
  readonly currentVersion: () => string;
  readonly onConnected: (connected: boolean) => void;
  /**
   * After each snapshot from the control plane was applied (or NACKed): every name it spoke for, its
   * services and the subscribed names the control plane does not know.
   */
  readonly onAnswered?: ((names: ReadonlySet<string>) => void) | undefined;
  /** A certificate (or the refusal of one) the control plane sent for a `requestCertificate`. */
  readonly onCertificate?: ((cert: Certificate) => void) | undefined;
  readonly loadReport: () => LoadReport;
  readonly random: Random;
  readonly timers: Timers;
  readonly logger: Logger;
  /** How often load reports are sent (default 5 s). */
  readonly reportIntervalMs?: number | undefined;
  /** Reconnect backoff: full jitter between base and max (defaults 250 ms, 10 s). */
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number } | undefined;
}

const DEFAULT_TTL_MS = 10_000;

/**
 * The sidecar's side of the discovery stream (proto/outrigger/v1/discovery.proto): registers its instance,
 * applies pushed snapshots through the config validation and ACKs or NACKs them, heartbeats, reports load,
 * reconnects with exponential backoff and full jitter, and keeps the last good configuration (on disk too).
 */
export class ControlPlaneClient {
  private client: DiscoveryClient | undefined;
  private call: ClientDuplexStream<SidecarMessage, ControlPlaneMessage> | undefined;
  private attempt = 0;
  private next = 0;
  private stopped = false;
  private reconnectTimer: TimerHandle | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  private reportTimer: TimerHandle | undefined;
  private ttlMs = DEFAULT_TTL_MS;
  private applying: Promise<void> = Promise.resolve();
  /** Subscriptions added on the live stream (on-demand discovery); sent again in every Hello. */
  private readonly added = new Set<string>();
  /** A CSR not answered yet: sent again after a reconnect. */
  private pendingCsr: string | undefined;
  connected = false;
  private token: string | undefined;

  constructor(private readonly o: ControlPlaneClientOptions) {}

  /**
   * Starts from the disk cache (if any), then connects. Never throws for an unreachable control plane.
   * @throws Error when the token cannot be read (controlPlane.tokenFile).
   */
  async start(): Promise<void> {
    this.token = this.o.token?.();
    const cache = this.o.cache;
    if (cache !== undefined) {
      try {
        const cached = await cache.load();
        if (cached !== undefined) {
          const nack = await this.o.apply(cached.version, cached.services, 'cache');
          if (nack === undefined) this.o.logger.info({ version: cached.version, file: cache.file }, 'started from the cached control-plane configuration');
        }
      } catch (err) {
        this.o.logger.warn({ err: String(err) }, 'configuration cache not used');
      }
    }
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    const address = this.o.addresses[this.next % this.o.addresses.length]!;
    this.next++;
    const credentials = this.o.credentials;
    if (credentials === undefined) {
      this.open(address, ChannelCredentials.createInsecure());
      return;
    }
    credentials(address).then(
      (c) => {
        if (!this.stopped) this.open(address, c);
      },
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof TrustError) this.o.logger.error({ address }, message);
        else this.o.logger.warn({ address, err: message }, 'cannot fetch the control plane\'s CA certificate');
        this.scheduleReconnect();
      },
    );
  }

  private open(address: string, credentials: ChannelCredentials): void {
    this.client?.close();
    const client = new DiscoveryClient(address, credentials, {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 5_000,
    });
    this.client = client;
    try {
      this.token = this.o.token?.();
    } catch (err) {
      this.o.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot read the control-plane token; using the previous one');
    }
    const metadata = new Metadata();
    if (this.token !== undefined) metadata.set('authorization', `Bearer ${this.token}`);
    const call = client.stream(metadata);
    this.call = call;
    let gotData = false;
    call.on('data', (msg: ControlPlaneMessage) => {
      if (!gotData) {
        gotData = true;
        this.attempt = 0;
        this.setConnected(true, address);
      }
      if (msg.msg?.$case === 'snapshot') this.onSnapshot(msg.msg.snapshot);
      else if (msg.msg?.$case === 'certificate') {
        this.pendingCsr = undefined;
        this.o.onCertificate?.(msg.msg.certificate);
      }
    });
    const onDown = (err?: Error): void => {
      if (this.call !== call) return;
      this.call = undefined;
      // A certificate the pinned CA did not sign (or for another name): say so, it will not go away by itself.
      if (!gotData && err !== undefined && /certificate|self[- ]signed|unable to verify|altname/i.test(err.message)) {
        this.o.logger.error({ address, err: err.message }, 'control plane TLS: the control plane\'s certificate is not trusted (is controlPlane.caFile the CA of this control plane?)');
        this.o.onUntrusted?.();
      }
      this.stopTimers();
      this.setConnected(false, address, err);
      this.scheduleReconnect();
    };
    call.on('error', (err: Error) => onDown(err));
    call.on('end', () => onDown());
    const subscriptions = [...new Set([...this.o.subscriptions, ...this.added])];
    this.write({ msg: { $case: 'hello', hello: { instance: this.o.instance, subscriptions, lastVersion: this.o.currentVersion(), service: this.o.service } } });
    if (this.pendingCsr !== undefined) this.write({ msg: { $case: 'certificateRequest', certificateRequest: { csrPem: this.pendingCsr } } });
  }

  /** Asks the control plane to sign a certificate for this sidecar's service (answered through onCertificate). */
  requestCertificate(csrPem: string): void {
    this.pendingCsr = csrPem;
    if (this.call !== undefined) this.write({ msg: { $case: 'certificateRequest', certificateRequest: { csrPem } } });
  }

  /**
   * Adds services to this sidecar's subscriptions on the live stream; the control plane answers with a
   * snapshot that has each of them, or lists it as unknown. While disconnected, the next Hello carries them.
   */
  subscribe(names: readonly string[]): void {
    for (const n of names) this.added.add(n);
    this.write({ msg: { $case: 'subscribe', subscribe: { add: [...names], remove: [] } } });
  }

  /** Removes services added by `subscribe`. */
  unsubscribe(names: readonly string[]): void {
    // Subscriptions of the file (`controlPlane.subscribe`, `services`) stay.
    const remove = names.filter((n) => this.added.delete(n) && !this.o.subscriptions.includes(n));
    if (remove.length > 0) this.write({ msg: { $case: 'subscribe', subscribe: { add: [], remove } } });
  }

  private setConnected(connected: boolean, address: string, err?: Error): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.o.onConnected(connected);
    if (connected) this.o.logger.info({ address }, 'connected to the control plane');
    else this.o.logger.warn({ address, err: err?.message }, 'lost the control plane; serving with the last good configuration');
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer !== undefined) return;
    this.attempt++;
    const b = this.o.backoff ?? { baseMs: 250, maxMs: 10_000 };
    const wait = Math.max(b.baseMs / 2, backoffMs(this.attempt, b.baseMs, b.maxMs, this.o.random));
    this.reconnectTimer = this.o.timers.after(wait, () => {
      this.reconnectTimer = undefined;
      this.connect();
    });
  }

  private onSnapshot(s: Snapshot): void {
    if (s.instanceTtlMs > 0 && s.instanceTtlMs !== this.ttlMs) {
      this.ttlMs = s.instanceTtlMs;
      this.heartbeatTimer?.cancel();
      this.heartbeatTimer = undefined;
    }
    this.startTimers();
    // Snapshots are applied one at a time, in order.
    this.applying = this.applying.then(async () => {
      const services = s.services.map((x) => ({ name: x.name, policyJson: x.policyJson }));
      const reason = await this.o.apply(s.version, services, 'control-plane');
      if (reason === undefined) this.write({ msg: { $case: 'ack', ack: { version: s.version, nonce: s.nonce } } });
      else this.write({ msg: { $case: 'nack', nack: { version: s.version, nonce: s.nonce, reason } } });
      this.o.onAnswered?.(new Set([...services.map((x) => x.name), ...s.unknownServices]));
      if (reason === undefined && this.o.cache) {
        await this.o.cache.save({ version: s.version, services }).catch((err: unknown) => this.o.logger.warn({ err: String(err) }, 'could not write the configuration cache'));
      }
    });
  }

  private startTimers(): void {
    if (this.heartbeatTimer === undefined) {
      this.heartbeatTimer = this.o.timers.every(Math.max(100, Math.floor(this.ttlMs / 3)), () => this.write({ msg: { $case: 'heartbeat', heartbeat: {} } }));
    }
    if (this.reportTimer === undefined) {
      this.reportTimer = this.o.timers.every(this.o.reportIntervalMs ?? 5_000, () => this.write({ msg: { $case: 'load', load: this.o.loadReport() } }));
    }
  }

  private stopTimers(): void {
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = undefined;
    this.reportTimer?.cancel();
    this.reportTimer = undefined;
  }

  private write(msg: SidecarMessage): void {
    const call = this.call;
    if (call === undefined) return;
    try {
      call.write(msg);
    } catch {
      // the stream is going down; its error handler reconnects
    }
  }

  /** Deregisters (the control plane drains this instance) and closes the stream. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.reconnectTimer?.cancel();
    this.stopTimers();
    const call = this.call;
    if (call !== undefined) {
      this.write({ msg: { $case: 'deregister', deregister: {} } });
      await new Promise<void>((resolve) => {
        call.once('status', () => resolve());
        call.end();
        setTimeout(resolve, 500).unref();
      });
      this.call = undefined;
    }
    this.client?.close();
    this.client = undefined;
  }
}
