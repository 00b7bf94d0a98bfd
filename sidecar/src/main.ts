import type { Server } from 'node:http';
import { ClusterManager } from './cluster/cluster.js';
import type { AuthorizationConfig, ServiceConfig, SidecarConfig } from '../../common/src/config/types.js';
import { loadSidecarConfigApart } from '../../common/src/config/load-apart.js';
import { systemClock, type Clock } from '../../common/src/clock.js';
import { systemRandom, type Random } from '../../common/src/random.js';
import { systemTimers, type Timers } from '../../common/src/timers.js';
import { HealthFlag, healthFlagList, healthFlagNames } from './core/endpoint.js';
import type { Cluster } from './cluster/cluster.js';
import { BreakerFactory } from './resilience/breaker.js';
import { ServiceGuard } from './resilience/guard.js';
import { HealthSupervisor } from './health/supervisor.js';
import type { ControlPlaneClient } from './discovery/client.js';
import { defaultAdvertise } from './discovery/advertise.js';
import { OnDemandResolver } from './discovery/on-demand.js';
import type { Certificate, EndpointReport, LoadReport } from '../../proto/gen/outrigger/v1/discovery.js';
import { parseHostPort } from '../../common/src/listen.js';
import { type ConfigStatus, createAdminServer } from './admin/server.js';
import { InboundProxy } from './proxy/inbound.js';
import { closeServer, listen } from '../../common/src/listen.js';
import { Http1Listener, type ListenerOptions } from './proxy/http1/server.js';
import type { InboundTls, MeshCredentials, MtlsMode } from './proxy/tls/mesh-tls.js';
import type { MeshIdentity } from './identity/identity.js';
import { httpSettings, type HttpSettings } from './proxy/settings.js';
import { OutboundProxy, type MeshOutbound } from './proxy/outbound.js';
import { PoolRegistry } from './proxy/pools.js';
import { TcpProxy } from './proxy/tcp/tcp-proxy.js';
import { AccessLog, createAccessLogger, createLogger, flushLogger, type Logger } from '../../common/src/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { LATENCY_BUCKETS, latencyPercentile } from './telemetry/stats.js';

export interface SidecarOptions {
  /** Path of sidecar.yaml; required for SIGHUP reloads. */
  readonly configFile?: string | undefined;
  /** An already loaded configuration (tests); otherwise loaded from configFile. */
  readonly config?: SidecarConfig | undefined;
  readonly clock?: Clock | undefined;
  readonly random?: Random | undefined;
  readonly timers?: Timers | undefined;
  readonly logger?: Logger | undefined;
}

/** One service as the control plane pushes it: its policy JSON in the shape of `services.NAME`. */
export interface PushedService {
  readonly name: string;
  readonly policyJson: string;
}

export interface SidecarAddresses {
  readonly admin: string;
  readonly outbound: string;
  readonly inbound: string | undefined;
  /** Per-service local ports (Consul style), by service name. */
  readonly services: Readonly<Record<string, string>>;
}

/** How long in-flight requests may take to finish on shutdown. */
const DRAIN_GRACE_MS = 10_000;

/** The composition root: config → clusters → proxies → listeners, plus admin, metrics and logs. */
export class Sidecar {
  private config: SidecarConfig;
  /** What sidecar.yaml says; the control plane's services are laid over it. */
  private fileConfig: SidecarConfig;
  private pushed: { version: string; services: Record<string, ServiceConfig>; source: 'control-plane' | 'cache' } | undefined;
  private lastNack: { version: string; reason: string } | undefined;
  private version = 1;
  private loadedAt: number;
  private lastReloadError: string | undefined;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly random: Random;
  private readonly breakers: BreakerFactory;
  private readonly guards = new Map<Cluster, ServiceGuard>();
  private readonly health: HealthSupervisor;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clusters: ClusterManager;
  private readonly pools: PoolRegistry;
  private http: HttpSettings;
  private readonly accessLog: AccessLog;
  private readonly accessLogger: Logger;
  private readonly outbound: OutboundProxy;
  private inbound: InboundProxy | undefined;
  private readonly servers: { admin?: Server; outbound?: Http1Listener; inbound?: Http1Listener } = {};
  private readonly serviceServers = new Map<string, { server: Http1Listener; listen: string; address: string }>();
  /** TCP pass-through services (`protocol: tcp`) by name, and those closed by a reload that still drain. */
  private readonly tcpServices = new Map<string, { proxy: TcpProxy; listen: string; address: string }>();
  private readonly tcpDraining = new Set<TcpProxy>();
  private _addresses: { admin: string; outbound: string; inbound: string | undefined } = { admin: '', outbound: '', inbound: undefined };
  private isReady = false;
  private stopping = false;
  private controlPlane: ControlPlaneClient | undefined;
  /** Looks up services the app calls that this sidecar does not know (with a control plane). */
  private onDemand: OnDemandResolver | undefined;
  /** This sidecar's mesh certificate, kept and renewed through the control plane. */
  private identity: MeshIdentity | undefined;
  private meshCredentials: MeshCredentials | undefined;
  /** What outbound connections to mesh endpoints present (requests and health checks). */
  private meshOutbound: MeshOutbound | undefined;
  /** The control plane's mesh-wide mode (from its certificates), for an inbound listener in mode `mesh`. */
  private meshMode: MtlsMode | undefined;
  /** The inbound listener's mutual-TLS settings; one object while mode and credentials stay. */
  private inboundTls: InboundTls | undefined;
  private lastReport = { at: 0, inbound: 0, errors: 0, seconds: 0, cpu: process.cpuUsage(), buckets: new Float64Array(LATENCY_BUCKETS) };

  private constructor(
    config: SidecarConfig,
    private readonly options: SidecarOptions,
  ) {
    this.config = config;
    this.fileConfig = config;
    this.clock = options.clock ?? systemClock;
    const random = options.random ?? systemRandom;
    this.random = random;
    this.timers = options.timers ?? systemTimers;
    this.loadedAt = this.clock.wallNow();
    this.logger = options.logger ?? createLogger(config.log.level);
    this.metrics = new Metrics(config.metrics.enabled);
    this.accessLogger = options.logger ?? createAccessLogger(config.log.level);
    this.accessLog = new AccessLog(this.accessLogger, random, config.log.accessLog.sampleRate, config.log.accessLog.enabled, config.log.accessLog.query);
    this.pools = new PoolRegistry({ clock: this.clock, timers: this.timers });
    this.clusters = new ClusterManager({
      clock: this.clock,
      random,
      timers: this.timers,
      onEndpointsRemoved: (eps) => this.pools.release(eps),
      onHealthChange: (c) =>
        this.logger.info({ service: c.cluster.name, endpoint: c.endpoint.address, source: healthFlagNames[c.flag], on: c.on, eligible: c.eligible }, c.eligible ? 'endpoint eligible' : 'endpoint ineligible'),
      onPanicChange: (cluster, panic) =>
        this.logger.warn({ service: cluster.name, eligible: cluster.eligibleCount, total: cluster.endpoints.length }, panic ? 'panic mode entered' : 'panic mode left'),
    });
    this.breakers = new BreakerFactory(this.clock, this.timers, (breaker, state) => {
      this.logger.info({ service: breaker.service, endpoint: breaker.endpoint?.address ?? null, state }, `circuit ${state}`);
      if (breaker.endpoint) this.clusters.get(breaker.service)?.setFlag(breaker.endpoint, HealthFlag.Breaker, state === 'open');
    });
    this.health = new HealthSupervisor({
      clock: this.clock,
      timers: this.timers,
      random,
      onActiveCheckEvent: (e) => this.logger.warn(e, e.type === 'ejected' ? 'endpoint failed its health checks' : 'endpoint passed its health checks again'),
      onOutlierEvent: ({ cluster, ...rest }) => this.logger.warn({ service: cluster, ...rest }, rest.type === 'ejected' ? 'outlier ejected' : 'outlier re-admitted'),
      onEject: (cluster) => this.metrics.countEjection(cluster.name),
      mesh: () => this.meshOutbound,
    });
    this.clusters.apply(config.services);
    this.syncGuards();
    this.metrics.watchClusters(() => this.clusters.all());
    this.metrics.watchGuards(() => this.guards.values());
    this.metrics.watchIdempotency(() => this.inbound?.idempotencyView());
    this.metrics.watchAuthorization(() => this.inbound?.authzView());
    this.metrics.setConfigVersion(this.version);
    const deps = { clock: this.clock, random, timers: this.timers, accessLog: this.accessLog };
    this.http = httpSettings(config);
    this.outbound = new OutboundProxy(this.clusters, this.pools, this.metrics, (c) => this.guards.get(c), deps, this.http.upstream);
    if (config.inbound) {
      this.inbound = new InboundProxy(
        { service: config.service, target: config.inbound.target, maxConcurrent: config.inbound.maxConcurrent, timeoutMs: 60_000, idempotency: config.inbound.idempotency, authorization: config.services[config.service]?.authorization },
        this.metrics,
        deps,
        this.pools,
        this.http.upstream,
      );
    }
  }

  static async start(options: SidecarOptions): Promise<Sidecar> {
    let config = options.config;
    if (config === undefined) {
      if (options.configFile === undefined) throw new Error('a sidecar needs a configuration file');
      config = await loadSidecarConfigApart(options.configFile);
    }
    const sidecar = new Sidecar(config, options);
    try {
      await sidecar.listenAll();
    } catch (err) {
      await sidecar.stop();
      throw err;
    }
    return sidecar;
  }

  private async listenAll(): Promise<void> {
    const cfg = this.config;
    this.servers.admin = createAdminServer({
      clusters: () => this.clusters.all(),
      config: () => this.config,
      configStatus: () => this.configStatus(),
      // With a control plane, the sidecar is ready once it has its mesh certificate (from the control plane or
      // its cache): before that a strict inbound listener serves nobody, and mesh endpoints refuse its calls.
      ready: () => this.isReady && !this.stopping && (this.fileConfig.controlPlane === undefined || this.meshCredentials !== undefined),
      circuits: () => this.circuits(),
      metrics: this.metrics,
    });
    this._addresses.admin = await listen(this.servers.admin, cfg.admin.listen);
    this.servers.outbound = this.httpListener(this.outbound.handler);
    this._addresses.outbound = await listen(this.servers.outbound.server, cfg.outbound.listen);
    if (cfg.inbound && this.inbound) {
      this.servers.inbound = new Http1Listener(this.inbound.handler, this.inboundListenerOptions(), { clock: this.clock, timers: this.timers });
      this._addresses.inbound = await listen(this.servers.inbound.server, cfg.inbound.listen);
    }
    await this.reconcileServiceListeners();
    if (cfg.controlPlane) await this.startControlPlaneClient(cfg.controlPlane);
    this.isReady = true;
    this.logger.info({ addresses: this.addresses, services: Object.keys(cfg.services), version: this.version }, 'sidecar started');
  }

  /** The inbound listener's options: the shared HTTP settings, with mutual TLS when its mode asks for it. */
  private inboundListenerOptions(): ListenerOptions {
    const mode = this.inboundMode();
    if (mode === 'off') return this.http.listener;
    const t = this.inboundTls;
    if (t === undefined || t.mode !== mode || t.credentials !== this.meshCredentials) {
      this.inboundTls = { mode, credentials: this.meshCredentials, refused: (r) => this.metrics.countTlsRefused('inbound', r) };
    }
    return { ...this.http.listener, tls: this.inboundTls };
  }

  /**
   * The inbound listener's mode in force: its own, or for `mesh` the control plane's mesh-wide mode, strict
   * until the control plane has told it (with the first certificate).
   */
  private inboundMode(): MtlsMode {
    const mode = this.config.inbound?.mtls ?? 'off';
    return mode === 'mesh' ? (this.meshMode ?? 'strict') : mode;
  }

  /** A Certificate message: the mesh-wide mode it carries may change what the inbound listener takes. */
  private onCertificate(c: Certificate): void {
    if (c.error === '') {
      const mode = meshModeOf(c.mode);
      const changed = this.meshMode !== undefined && this.meshMode !== mode;
      this.meshMode = mode;
      if (changed && this.meshCredentials !== undefined) this.servers.inbound?.configure(this.inboundListenerOptions());
    }
    this.identity?.onCertificate(c);
    if (this.identity !== undefined) this.metrics.setCertificateNotAfter(this.identity.notAfter);
  }

  /** The first certificate arrived: mesh endpoints are reached over TLS, the inbound listener requires it. */
  private installCredentials(credentials: MeshCredentials): void {
    this.meshCredentials = credentials;
    this.meshOutbound = { credentials, refused: (r) => this.metrics.countTlsRefused('outbound', r) };
    this.outbound.setMesh(this.meshOutbound);
    this.servers.inbound?.configure(this.inboundListenerOptions());
  }

  private httpListener(handler: ConstructorParameters<typeof Http1Listener>[0]): Http1Listener {
    return new Http1Listener(handler, this.http.listener, { clock: this.clock, timers: this.timers });
  }

  /** Registers this instance with the control plane and subscribes to its services' configuration. */
  private async startControlPlaneClient(cp: NonNullable<SidecarConfig['controlPlane']>): Promise<void> {
    const cfg = this.fileConfig;
    let advertise = cp.advertise;
    if (advertise === undefined && this._addresses.inbound !== undefined) advertise = defaultAdvertise(parseHostPort(this._addresses.inbound));
    this.lastReport = { at: this.clock.now(), inbound: 0, errors: 0, seconds: 0, cpu: process.cpuUsage(), buckets: new Float64Array(LATENCY_BUCKETS) };
    // Loaded only by a sidecar that has a control plane: gRPC is the largest thing a sidecar could load.
    const [{ ControlPlaneClient }, { ConfigCache }, { controlPlaneToken }, { ControlPlaneTrust }] = await Promise.all([
      import('./discovery/client.js'),
      import('./discovery/cache.js'),
      import('./discovery/token.js'),
      import('./discovery/trust.js'),
    ]);
    const token = (): string | undefined => controlPlaneToken(this.fileConfig.controlPlane ?? cp);
    // Throws (the sidecar does not start) when controlPlane.caFile cannot be read.
    const trust = new ControlPlaneTrust({ tls: cp.tls, caFile: cp.caFile, token, wallNow: () => this.clock.wallNow(), logger: this.logger });
    const onDemand =
      cp.resolveTimeoutMs > 0
        ? new OnDemandResolver({
            timeoutMs: cp.resolveTimeoutMs,
            subscribe: (names) => this.controlPlane?.subscribe(names),
            unsubscribe: (names) => this.controlPlane?.unsubscribe(names),
            known: (name) => this.clusters.get(name) !== undefined,
            clock: this.clock,
            timers: this.timers,
            logger: this.logger,
          })
        : undefined;
    this.onDemand = onDemand;
    this.controlPlane = new ControlPlaneClient({
      addresses: cp.addresses,
      service: cfg.service,
      instance: { service: cfg.service, id: cfg.instance, address: advertise ?? '', weight: cp.weight, capacity: cp.capacity, zone: cp.zone ?? '', mtls: cfg.inbound?.mtls ?? 'off' },
      // The file's token section in force (a reload may change it), read at each connection.
      token,
      credentials: (address) => trust.credentials(address),
      onUntrusted: () => trust.untrusted(),
      subscriptions: [...this.upstreamNames()],
      cache: cp.cacheFile === undefined ? undefined : new ConfigCache(cp.cacheFile),
      apply: (version, services, source) => this.applyPushed(version, services, source),
      currentVersion: () => this.pushed?.version ?? '',
      onConnected: (c) => {
        this.metrics.setControlPlaneConnected(c);
        // On every new stream the sidecar asks for a certificate, also when it holds one: a control plane
        // (or replica) publishes a mesh instance only once it issued its stream a certificate.
        if (c && this.identity?.current !== undefined) void this.identity.renew().catch((err: unknown) => this.logger.warn({ err: String(err) }, 'could not make a certificate request'));
      },
      onAnswered: onDemand === undefined ? undefined : (names) => onDemand.answered(names),
      onCertificate: (c) => this.onCertificate(c),
      loadReport: () => this.loadReport(),
      reportIntervalMs: cp.reportIntervalMs,
      random: this.random,
      timers: this.timers,
      logger: this.logger,
    });
    // Every sidecar with a control plane gets a mesh certificate: its outbound side presents it to mesh
    // endpoints, its inbound side (when `inbound.mtls` is on) requires one from callers.
    const [{ MeshIdentity }, { IdentityCache }] = await Promise.all([import('./identity/identity.js'), import('./identity/cache.js')]);
    this.identity = new MeshIdentity({
      service: cfg.service,
      // Beside the configuration cache: a restart while the control plane is down keeps mutual TLS.
      cache: cp.cacheFile === undefined ? undefined : new IdentityCache(`${cp.cacheFile}.identity`),
      request: (csr) => this.controlPlane?.requestCertificate(csr),
      onCredentials: (c) => this.installCredentials(c),
      clock: this.clock,
      timers: this.timers,
      logger: this.logger,
    });
    const restored = await this.identity.restore();
    if (restored !== undefined) {
      this.meshMode = meshModeOf(restored.mode);
      this.servers.inbound?.configure(this.inboundListenerOptions());
    } else await this.identity.renew(); // else at connect (above)
    await this.controlPlane.start();
    this.outbound.resolver = onDemand;
  }

  /** This instance's load since the previous report (inbound side), for the control plane's weights. */
  private loadReport(): LoadReport {
    const now = this.clock.now();
    const stats = this.metrics.trafficStats('inbound', this.fileConfig.service);
    let errors = 0;
    for (let c = 500; c < 600; c++) errors += stats.codes[c]!;
    const prev = this.lastReport;
    const seconds = Math.max((now - prev.at) / 1000, 0.001);
    const requests = stats.requests - prev.inbound;
    const cpu = process.cpuUsage(prev.cpu);
    const busy = stats.durationSum - prev.seconds;
    const p99 = latencyPercentile(stats.latencyBuckets, prev.buckets, 0.99);
    this.lastReport = { at: now, inbound: stats.requests, errors, seconds: stats.durationSum, cpu: process.cpuUsage(), buckets: stats.latencyBuckets.slice() };
    const circuits = [];
    for (const g of this.guards.values()) for (const b of g.breakerViews()) circuits.push({ service: b.service, endpoint: b.endpoint ?? '', state: b.state });
    const endpoints: EndpointReport[] = [];
    for (const c of this.clusters.all()) {
      for (const e of c.endpoints) {
        endpoints.push({ service: c.name, address: e.address, eligible: e.eligible, health: healthFlagList(e.flags), inflight: e.inflight, ewmaMs: e.ewmaMs });
      }
    }
    return {
      latencyP99Ms: p99,
      endpoints,
      rps: requests / seconds,
      // Average over the interval (Little's law: time spent in requests / elapsed), steadier than a sample.
      inflight: busy / seconds,
      latencyEwmaMs: requests > 0 ? (busy / requests) * 1000 : 0,
      errorRate: requests > 0 ? (errors - prev.errors) / requests : 0,
      cpu: (cpu.user + cpu.system) / 1000 / (seconds * 1000),
      circuits,
    };
  }

  /** Keeps one ServiceGuard (limits, budget, breakers) per cluster, in step with the cluster set. */
  private syncGuards(): void {
    const live = new Set(this.clusters.all());
    for (const [cluster, guard] of this.guards) {
      if (!live.has(cluster)) {
        guard.close();
        this.guards.delete(cluster);
      }
    }
    for (const cluster of live) {
      const g = this.guards.get(cluster);
      if (g) g.sync();
      else this.guards.set(cluster, new ServiceGuard(cluster, this.breakers, this.clock));
    }
    this.health.sync(live);
    for (const [cluster, g] of this.guards) g.outcomes = this.health.detector(cluster);
  }

  /** Health of every endpoint as each source sees it, for the admin endpoint. */
  healthView(cluster: Cluster): unknown {
    return {
      activeChecks: this.health.activeStatus(cluster),
      outliers: cluster.endpoints.map((e) => ({ address: e.address, ...this.health.outlierStatus(cluster, e) })),
    };
  }

  /** Every breaker's state, for `GET /circuits`. */
  circuits(): unknown[] {
    const out: unknown[] = [];
    for (const g of this.guards.values()) out.push(...g.breakerViews());
    return out;
  }

  /** Opens a listener for each service that declares `listen`, closes those no longer declared. */
  private async reconcileServiceListeners(): Promise<void> {
    // TCP pass-through (protocol: tcp): a TcpProxy on `listen` instead of an HTTP listener. Closed ones stop
    // accepting at once (the port is free for what replaces them) and drain in the background.
    const wantedTcp = new Map<string, string>();
    for (const [name, svc] of Object.entries(this.config.services)) {
      if (svc.protocol !== 'tcp') continue;
      if (svc.listen !== undefined) wantedTcp.set(name, svc.listen);
      else this.logger.warn({ service: name }, 'protocol tcp needs services.NAME.listen in sidecar.yaml; the service has no port');
    }
    for (const [name, entry] of this.tcpServices) {
      if (wantedTcp.get(name) === entry.listen) continue;
      this.tcpServices.delete(name);
      this.tcpDraining.add(entry.proxy);
      void entry.proxy.close(DRAIN_GRACE_MS).then(() => this.tcpDraining.delete(entry.proxy));
    }
    const wanted = new Map<string, string>();
    for (const [name, svc] of Object.entries(this.config.services)) if (svc.listen !== undefined && svc.protocol !== 'tcp') wanted.set(name, svc.listen);
    for (const [name, entry] of this.serviceServers) {
      if (wanted.get(name) !== entry.listen) {
        this.serviceServers.delete(name);
        await entry.server.close(DRAIN_GRACE_MS);
      }
    }
    for (const [name, addr] of wanted) {
      if (this.serviceServers.has(name)) continue;
      const server = this.httpListener(this.outbound.handlerFor(name));
      const address = await listen(server.server, addr);
      this.serviceServers.set(name, { server, listen: addr, address });
    }
    for (const [name, addr] of wantedTcp) {
      if (this.tcpServices.has(name)) continue;
      const proxy = new TcpProxy(
        name,
        { cluster: () => this.clusters.get(name), guard: (c) => this.guards.get(c) },
        { timers: this.timers, stats: this.metrics.tcpStats(name), logger: this.logger },
      );
      const address = await proxy.listen(addr);
      this.tcpServices.set(name, { proxy, listen: addr, address });
    }
  }

  /** Every HTTP listener: outbound, inbound and the per-service ones. */
  private httpListeners(): Http1Listener[] {
    const out: Http1Listener[] = [];
    if (this.servers.outbound) out.push(this.servers.outbound);
    if (this.servers.inbound) out.push(this.servers.inbound);
    for (const { server } of this.serviceServers.values()) out.push(server);
    return out;
  }

  get addresses(): SidecarAddresses {
    const services: Record<string, string> = {};
    for (const [name, entry] of this.serviceServers) services[name] = entry.address;
    for (const [name, entry] of this.tcpServices) services[name] = entry.address;
    return { ...this._addresses, services };
  }

  get configVersion(): number {
    return this.version;
  }

  /** For `GET /config/status`; `GET /config` shows the configuration itself. */
  configStatus(): ConfigStatus {
    return {
      version: this.pushed?.version ?? String(this.version),
      source: this.pushed?.source ?? 'static',
      file: this.options.configFile ?? null,
      fileVersion: this.version,
      loadedAt: new Date(this.loadedAt).toISOString(),
      lastReloadError: this.lastReloadError ?? null,
      lastNack: this.lastNack ?? null,
    };
  }

  /** The services this sidecar's app calls: those its file declares and those it subscribes to. */
  private upstreamNames(): Set<string> {
    return new Set([...Object.keys(this.fileConfig.services), ...(this.fileConfig.controlPlane?.subscribe ?? []), ...(this.onDemand?.names() ?? [])]);
  }

  /** The file's configuration with the services the control plane pushed laid over it. */
  /**
   * The authorization policy of this sidecar's own service: the control plane's (it sends the own service
   * with every snapshot), else the file's `services.<service>`.
   */
  private ownAuthorization(cfg: SidecarConfig): AuthorizationConfig | undefined {
    const pushed = this.pushed?.services[cfg.service];
    return pushed !== undefined ? pushed.authorization : cfg.services[cfg.service]?.authorization;
  }

  private effective(): SidecarConfig {
    const pushed = this.pushed;
    if (pushed === undefined) return this.fileConfig;
    const services: Record<string, ServiceConfig> = { ...this.fileConfig.services };
    const own = this.fileConfig.service;
    const upstreams = this.upstreamNames();
    for (const [name, svc] of Object.entries(pushed.services)) {
      // The control plane also sends this instance's own service (validated and ACKed like the rest), but a
      // sidecar only needs it as an upstream when its app calls its own service: otherwise every instance
      // would health-check all its peers.
      if (name === own && !upstreams.has(name)) continue;
      // A local port for a service (`listen`) is this sidecar's own business: a pushed policy without one keeps it.
      const local = this.fileConfig.services[name]?.listen;
      services[name] = local !== undefined && svc.listen === undefined ? { ...svc, listen: local } : svc;
    }
    return { ...this.fileConfig, services };
  }

  /**
   * Applies services pushed by the control plane (or read back from the disk cache), all or nothing: every
   * policy goes through the same validation as sidecar.yaml. Returns undefined when applied, or the reason
   * to NACK with, in which case the previous configuration stays in force.
   */
  async applyPushed(version: string, services: readonly PushedService[], source: 'control-plane' | 'cache'): Promise<string | undefined> {
    // The validator (yaml, zod and the schema) is loaded on the first push, not at start: a sidecar without a
    // control plane validates its file in a child process and never keeps it (common/src/config/load-apart.ts).
    const { parseServiceConfig } = await import('../../common/src/config/load.js');
    const parsed: Record<string, ServiceConfig> = {};
    for (const svc of services) {
      try {
        const raw = JSON.parse(svc.policyJson) as unknown;
        let policy = parseServiceConfig(raw, `services.${svc.name}`);
        // A policy that does not say which protocol keeps the one sidecar.yaml gives the service (as its port).
        const fileProtocol = this.fileConfig.services[svc.name]?.protocol;
        if (fileProtocol !== undefined && fileProtocol !== policy.protocol && !(typeof raw === 'object' && raw !== null && 'protocol' in raw)) policy = { ...policy, protocol: fileProtocol };
        parsed[svc.name] = policy;
      } catch (err) {
        const reason = err instanceof SyntaxError ? `services.${svc.name}: policy is not valid JSON: ${err.message}` : err instanceof Error ? err.message : String(err);
        this.lastNack = { version, reason };
        this.logger.warn({ version, reason, source }, 'pushed configuration rejected; keeping the previous one');
        return reason;
      }
    }
    const previous = this.pushed;
    this.pushed = { version, services: parsed, source };
    try {
      await this.apply(this.effective());
    } catch (err) {
      // Could not apply (e.g. a service's listen port is taken): go back to the previous configuration whole.
      this.pushed = previous;
      const reason = err instanceof Error ? err.message : String(err);
      this.lastNack = { version, reason };
      this.logger.warn({ version, reason, source }, 'pushed configuration could not be applied; back to the previous one');
      await this.apply(this.effective()).catch(() => {});
      return reason;
    }
    const numeric = Number(version);
    this.metrics.setConfigVersion(Number.isFinite(numeric) ? numeric : this.version);
    this.logger.info({ version, source, services: Object.keys(parsed) }, 'pushed configuration applied');
    return undefined;
  }

  /** The current configuration in the form the control-plane client caches and reports. */
  get pushedState(): { readonly version: string; readonly source: string } | undefined {
    return this.pushed;
  }

  /**
   * Re-reads the config file (SIGHUP). A bad file keeps the old config and logs why; requests in flight
   * are not touched (endpoints that stay keep their pools; pools of removed endpoints drain).
   */
  async reload(): Promise<boolean> {
    const file = this.options.configFile;
    if (file === undefined) return false;
    let next: SidecarConfig;
    try {
      next = await loadSidecarConfigApart(file);
    } catch (err) {
      this.lastReloadError = err instanceof Error ? err.message : String(err);
      this.logger.error({ err: this.lastReloadError, file }, 'config reload rejected; keeping the previous configuration');
      return false;
    }
    try {
      this.fileConfig = next;
      this.version++;
      await this.apply(this.effective());
    } catch (err) {
      this.lastReloadError = err instanceof Error ? err.message : String(err);
      this.logger.error({ err: this.lastReloadError, file }, 'config reload could not be applied fully');
      return false;
    }
    this.lastReloadError = undefined;
    return true;
  }

  private async apply(next: SidecarConfig): Promise<void> {
    const prev = this.config;
    for (const key of ['admin', 'outbound'] as const) {
      if (prev[key].listen !== next[key].listen) this.logger.warn({ key: `${key}.listen` }, 'listen address changes need a restart; keeping the old one');
    }
    if (prev.inbound?.listen !== next.inbound?.listen) this.logger.warn({ key: 'inbound.listen' }, 'inbound listener changes need a restart');
    this.config = next;
    this.clusters.apply(next.services);
    this.syncGuards();
    this.http = httpSettings(next);
    for (const l of this.httpListeners()) l.configure(l === this.servers.inbound ? this.inboundListenerOptions() : this.http.listener);
    this.outbound.invalidate(this.http.upstream);
    if (next.inbound && this.inbound) {
      this.inbound.update(
        { service: next.service, target: next.inbound.target, maxConcurrent: next.inbound.maxConcurrent, timeoutMs: 60_000, idempotency: next.inbound.idempotency, authorization: this.ownAuthorization(next) },
        this.http.upstream,
      );
    }
    this.logger.level = next.log.level;
    this.accessLogger.level = next.log.level;
    this.accessLog.configure(next.log.accessLog.enabled, next.log.accessLog.sampleRate, next.log.accessLog.query);
    this.loadedAt = this.clock.wallNow();
    this.metrics.setConfigVersion(this.version);
    await this.reconcileServiceListeners();
    this.logger.info({ version: this.version, services: Object.keys(next.services) }, 'configuration applied');
  }

  /** Stops accepting, lets in-flight requests finish (bounded), closes pools, flushes logs. */
  async stop(graceMs: number = DRAIN_GRACE_MS): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Deregister first: the control plane drains this instance while requests in flight finish.
    await this.controlPlane?.stop();
    // Requests waiting for an on-demand lookup are answered now (404) instead of at the timeout.
    this.onDemand?.close();
    this.identity?.stop();
    const closing: Promise<void>[] = [];
    for (const l of this.httpListeners()) closing.push(l.close(graceMs));
    for (const proxy of [...this.tcpDraining, ...[...this.tcpServices.values()].map((e) => e.proxy)]) closing.push(proxy.close(graceMs));
    await Promise.all(closing);
    // Clusters first: health sources stopping afterwards then have no endpoint left to "re-admit" (no noise).
    this.clusters.close();
    this.health.stop();
    for (const g of this.guards.values()) g.close();
    this.guards.clear();
    this.breakers.close();
    // Every upstream connection, the inbound app's included.
    this.pools.close(true);
    if (this.servers.admin) await closeServer(this.servers.admin, 0);
    this.logger.info('sidecar stopped');
    await flushLogger(this.accessLogger);
  }
}

/** The mesh-wide mode a control plane sent ("" from one that predates it: strict). */
function meshModeOf(mode: string): MtlsMode {
  return mode === 'permissive' || mode === 'off' ? mode : 'strict';
}
