import { Server, ServerCredentials } from '@grpc/grpc-js';
import { DiscoveryService, type DiscoveryServer } from '../../proto/gen/outrigger/v1/discovery.js';
import { systemClock, type Clock } from '../../common/src/clock.js';
import { systemTimers, type TimerHandle, type Timers } from '../../common/src/timers.js';
import { closeServer, listen } from '../../common/src/listen.js';
import { createLogger, type Logger } from '../../common/src/logger.js';
import { closeDashboard, createAdminApi, type Server as HttpServer } from './api/http.js';
import { ControlPlaneMetrics } from './api/metrics.js';
import { Autoscaler, createDriver } from './autoscale/index.js';
import { loadControlPlaneConfig } from './config/load.js';
import type { ControlPlaneConfig } from './config/types.js';
import { PushServer, type SubscriberView } from './push/server.js';
import { Registry } from './registry/registry.js';
import { FileStore } from './registry/store.js';
import { EtcdReplica } from './registry/etcd-replica.js';
import { CA_KEY, TOKENS_KEY } from './registry/etcd-layout.js';
import type { CertificateAuthority } from './ca/authority.js';
import { openAuthority } from './ca/setup.js';
import { WeightDriver } from './weights/driver.js';
import { Authenticator, type TokenSpec } from './auth/tokens.js';
import { ServerTls } from './tls/server-tls.js';
import { signCa, type CaSignature } from '../../common/src/security/ca-signature.js';
import { openGeneratedTokens } from './auth/generated.js';

export interface ControlPlaneOptions {
  readonly configFile?: string | undefined;
  readonly config?: ControlPlaneConfig | undefined;
  readonly clock?: Clock | undefined;
  readonly timers?: Timers | undefined;
  readonly logger?: Logger | undefined;
}

/** Composition root of the control plane: config → registry (with its store) → push stream and admin API. */
export class ControlPlane {
  readonly registry: Registry;
  readonly push: PushServer;
  /** Sizes the services under `autoscale` in cp.yaml (none: views() is empty). */
  readonly autoscaler: Autoscaler;
  /** Prometheus metrics, served at `GET /metrics` on the HTTP port. */
  readonly metrics: ControlPlaneMetrics;
  private readonly grpc = new Server({
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    // Sidecars reconnect now and then, which spreads them over replicas behind one address.
    'grpc.max_connection_age_ms': 30 * 60_000,
    'grpc.max_connection_age_grace_ms': 60_000,
  });
  private http: HttpServer | undefined;
  /** The mesh CA; opened at start. */
  private ca: CertificateAuthority | undefined;
  /** The server certificate of both listeners; undefined with `tls: { enabled: false }`. */
  private tls: ServerTls | undefined;
  private readonly weights: WeightDriver;
  /** Publishes this replica's load reports for the leader (etcd store only). */
  private loadsTimer: TimerHandle | undefined;
  grpcAddress = '';
  httpAddress = '';

  private constructor(
    readonly config: ControlPlaneConfig,
    readonly logger: Logger,
    private readonly clock: Clock,
    private readonly timers: Timers,
    /** Tokens of the HTTP API and the discovery stream; undefined: authentication is off. */
    private readonly auth: Authenticator | undefined,
    /** The same tokens with their secrets (the CA signatures of `GetCA`); empty when authentication is off. */
    private readonly tokens: readonly TokenSpec[],
    /** The link to the shared state in etcd (`store.etcd`, docs/ha.md); undefined: the state file. */
    readonly replica: EtcdReplica | undefined,
  ) {
    this.metrics = new ControlPlaneMetrics({
      version: () => this.registry.version,
      instances: () => this.registry.instances(),
      sidecars: () => this.push.views(),
      autoscale: () => this.autoscaler.views(),
      leader: () => this.replica?.isLeader() ?? true,
      etcd: replica === undefined ? undefined : () => replica.stats(),
      etcdMembers: replica === undefined ? undefined : () => replica.etcdMembers(),
    });
    this.registry = new Registry({
      clock,
      timers,
      instanceTtlMs: config.instanceTtlMs,
      drainTimeMs: config.drainTimeMs,
      services: config.services,
      store: replica === undefined ? new FileStore(config.store.file) : undefined,
      shared: replica?.hooks,
      policyRules: config.policies,
      onError: (err, context) => logger.error({ err: err instanceof Error ? err.message : String(err), context }, 'control plane state problem'),
    });
    this.registry.onChange((e) => {
      this.metrics.stateChanged(e.reason);
      logger.info({ version: e.version, reason: e.reason, services: e.services }, 'state changed');
    });
    this.push = new PushServer(this.registry, {
      timers,
      issueCertificate: async (csrPem, service) => {
        const ca = this.ca;
        if (ca === undefined) throw new Error('the mesh CA is not open yet');
        const c = await ca.issue(csrPem, service, config.mtls.certTtlMs);
        logger.info({ service, serial: c.serial, notAfter: new Date(c.notAfter).toISOString() }, 'certificate issued');
        return { certPem: c.certPem, caPem: c.caPem, notAfter: c.notAfter, trustDomain: ca.trustDomain };
      },
      meshMode: config.mtls.mode,
      wallNow: () => clock.wallNow(),
      now: () => clock.now(),
      auth,
      unavailable: () => (replica === undefined || replica.inContact() ? undefined : 'this control-plane replica has lost etcd; try another'),
      // NACKs matter to operators; ACKs (one per sidecar per version) only when debugging.
      onEvent: (e) => {
        if (e.type === 'ack' || e.type === 'nack') this.metrics.configResponse(e.type);
        if (e.type === 'nack') logger.warn(e, 'sidecar rejected a configuration');
        else if (e.type === 'refused') logger.warn(e, 'discovery stream refused');
        else if (e.type === 'ack') logger.debug(e, 'sidecar ack');
        else logger.info(e, `sidecar ${e.type}`);
      },
    });
    this.weights = new WeightDriver(this.registry, () => this.loadViews(), clock, timers, config.weightIntervalMs);
    const autoscale = config.autoscale ?? {};
    const autoscaleLogger = logger.child({ component: 'autoscale' });
    this.autoscaler = new Autoscaler({
      registry: this.registry,
      loads: () => this.loadViews(),
      services: autoscale,
      drivers: new Map(Object.entries(autoscale).map(([name, c]) => [name, createDriver(name, c, autoscaleLogger, clock, timers)])),
      clock,
      timers,
      logger: autoscaleLogger,
      maxReplicas: config.limits.maxReplicas,
    });
  }

  static async start(options: ControlPlaneOptions): Promise<ControlPlane> {
    let config = options.config;
    if (config === undefined) {
      if (options.configFile === undefined) throw new Error('the control plane needs a configuration file');
      config = await loadControlPlaneConfig(options.configFile);
    }
    const logger = options.logger ?? createLogger('info', 'outrigger-control-plane');
    const clock = options.clock ?? systemClock;
    const timers = options.timers ?? systemTimers;
    const etcd = config.store.etcd;
    const replica = etcd === undefined ? undefined : new EtcdReplica(etcd, clock, timers, logger.child({ component: 'etcd' }));
    const shared = (key: string) => (make: () => Promise<string>) => (replica as EtcdReplica).getOrCreate(key, make);
    let auth: Authenticator | undefined;
    let tokens: readonly TokenSpec[] = [];
    let cp: ControlPlane | undefined;
    if (!config.tls.enabled) logger.warn({}, 'TLS is disabled (tls.enabled: false in cp.yaml): tokens and configuration cross the network in clear');
    try {
      if (config.auth?.disabled === true) logger.warn({}, 'authentication is disabled (auth.disabled in cp.yaml): whoever reaches the ports may change anything');
      else {
        tokens = config.auth?.tokens ?? (await openGeneratedTokens(config.store.file, logger, replica && shared(TOKENS_KEY)));
        auth = new Authenticator(tokens);
      }
      cp = new ControlPlane(config, logger, clock, timers, auth, tokens, replica);
      if (replica !== undefined) {
        await replica.start(cp.registry);
        logger.info({ replica: replica.id, endpoints: etcd?.endpoints, prefix: etcd?.prefix }, 'shared state in etcd');
      } else await cp.registry.restore();
      cp.ca = await openAuthority(config.mtls, config.store.file, clock, logger, replica && shared(CA_KEY));
      if (config.tls.enabled) cp.tls = await ServerTls.open(config, cp.ca, clock, timers, logger);
    } catch (err) {
      await cp?.registry.close();
      await replica?.close();
      throw err;
    }
    try {
      await cp.listen();
    } catch (err) {
      await cp.stop();
      throw err;
    }
    if (replica === undefined) {
      cp.weights.start();
      // After the registry and the listeners: new instances register through their sidecars at once.
      cp.autoscaler.start();
    } else cp.followLeadership(replica);
    cp.logger.info({ grpc: cp.grpcAddress, http: cp.httpAddress, tls: config.tls.enabled, version: cp.registry.version }, 'control plane started');
    return cp;
  }

  /**
   * Replicated: computed weights and the autoscaler run on the leader only; every replica publishes the
   * load reports of its sidecars for the leader.
   */
  private followLeadership(replica: EtcdReplica): void {
    const lead = (leader: boolean): void => {
      if (leader) {
        this.weights.start();
        this.autoscaler.start();
      } else {
        this.weights.stop();
        this.autoscaler.pause();
      }
    };
    replica.onLeadership(lead);
    // Cut off from etcd, this replica's sidecars would go stale: they move to a replica that is not.
    replica.onContact((inContact) => {
      if (!inContact) this.push.disconnectAll('this control-plane replica has lost etcd; try another');
    });
    if (replica.isLeader()) lead(true);
    this.loadsTimer = this.timers.every(Math.min(1_000, this.config.weightIntervalMs), () => replica.publishLoads(this.push.views()));
  }

  /** Load reports of the sidecars connected here, and (replicated) those the other replicas published. */
  private loadViews(): SubscriberView[] {
    const local = this.push.views();
    return this.replica === undefined ? local : [...local, ...this.replica.remoteLoads()];
  }

  private async listen(): Promise<void> {
    const ca = this.ca;
    if (ca === undefined) throw new Error('the mesh CA is not open yet');
    // GetCA: the CA with one signature per token that may open a stream (join-token bootstrap).
    const caAnswer: { caPem: string; signatures: CaSignature[] } = {
      caPem: ca.certPem,
      signatures: this.tokens.filter((t) => t.role === 'sidecar' || t.role === 'admin').map((t) => ({ token: t.name, hmacSha256: signCa(ca.certPem, t.secret) })),
    };
    const service: DiscoveryServer = { stream: this.push.stream, getCa: (_call, callback) => callback(null, caAnswer) };
    this.grpc.addService(DiscoveryService, service);
    const credentials = this.tls?.grpcCredentials ?? ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => {
      this.grpc.bindAsync(this.config.listen.grpc, credentials, (err, p) => (err ? reject(new Error(`cannot listen on ${this.config.listen.grpc}: ${err.message}`)) : resolve(p)));
    });
    this.grpcAddress = `${this.config.listen.grpc.slice(0, this.config.listen.grpc.lastIndexOf(':'))}:${port}`;
    this.http = createAdminApi(this.registry, this.push, { clock: this.clock, timers: this.timers, autoscale: () => this.autoscaler.views() }, this.autoscaler, this.metrics, {
      listen: this.config.listen.http,
      // The names of the server certificate are names the API answers to.
      allowedHosts: [...this.config.listen.allowedHosts, ...this.config.tls.serverNames],
    }, this.auth, this.tls?.httpsOptions(), () => ({
      store: this.replica === undefined ? 'file' : 'etcd',
      leader: this.replica?.isLeader() ?? true,
      ...(this.replica !== undefined ? { replica: this.replica.id, leaderReplica: this.replica.leaderId() } : {}),
    }));
    if (this.tls !== undefined && 'setSecureContext' in this.http) this.tls.attach(this.http);
    this.httpAddress = await listen(this.http, this.config.listen.http);
  }

  async stop(): Promise<void> {
    // First, while the gRPC server still runs: stopped instances deregister through their sidecars.
    await this.autoscaler.stop();
    this.weights.stop();
    this.tls?.close();
    this.loadsTimer?.cancel();
    this.push.close();
    await new Promise<void>((resolve) => this.grpc.tryShutdown(() => resolve()));
    if (this.http) {
      closeDashboard(this.http);
      await closeServer(this.http, 1_000);
    }
    await this.registry.close();
    await this.replica?.close();
  }
}
