import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Cluster } from '../../cluster/cluster.js';
import { parseHostPort } from '../../../../common/src/config/address.js';
import { HASH_POLICIES } from '../../../../common/src/config/types.js';
import type { Endpoint } from '../../core/endpoint.js';
import type { TimerHandle, Timers } from '../../../../common/src/timers.js';
import { Outcome } from '../../health/outlier/detector.js';
import type { BreakerTicket } from '../../resilience/breaker.js';
import { BREAKER_OPEN, type GuardSlot, type PickSlot, type ServiceGuard } from '../../resilience/guard.js';
import { isRetriableFailure } from '../../resilience/retry.js';
import type { Logger } from '../../../../common/src/logger.js';
import type { TcpStats } from '../../telemetry/stats.js';

/**
 * TCP pass-through for one service (`protocol: tcp`): a `net.Server` on the service's `listen` address
 * whose every accepted connection is joined to one endpoint of the service.
 *
 * - The endpoint is chosen by the cluster's picker (ring-hash and maglev hash the client's IP address),
 *   skipping endpoints whose breaker refuses, as the HTTP path does.
 * - A connect failure (refused, unreachable, no connection within `connectTimeout`) is reported to outlier
 *   detection as a gateway failure and to the endpoint's breaker, and the next try goes to an endpoint not
 *   tried yet, up to `retry.attempts` more tries when `retry.on` retries connect failures (the default).
 *   A connect counts as a success. When no try succeeds the client connection is reset.
 * - `limits.maxConcurrent` caps the connections open at once and the service breaker (if any) admits
 *   each connection; refused connections are reset.
 * - Bytes the client sends before the upstream is connected stay in the kernel (the socket is accepted
 *   paused). Once connected the sockets are piped both ways (back-pressure), a FIN from either side is
 *   passed on (half-close), an error or reset on either side resets the other, and a side that closes
 *   cleanly lets the other flush what it still holds before closing.
 * - The endpoint's `inflight` counts the connection from its connect attempt until both sockets closed.
 *
 * The cluster and guard are read through `source` when a connection arrives: a reload may replace them.
 */

export interface TcpProxySource {
  /** The service's cluster now, or undefined when the service is gone. */
  cluster(): Cluster | undefined;
  /** The limits, breakers and outlier detection of a cluster. */
  guard(cluster: Cluster): ServiceGuard | undefined;
}

export interface TcpProxyDeps {
  /** Drives the connect timeout and the close grace. */
  readonly timers: Timers;
  readonly stats: TcpStats;
  readonly logger?: Logger | undefined;
}

const connectTimeoutError = (ms: number): Error & { code: string } => Object.assign(new Error(`no connection within ${ms} ms`), { code: 'ETIMEDOUT' });

const ignore = (): void => {};

function describe(err: Error & { code?: string }): string {
  return err.code ?? err.message;
}

export class TcpProxy {
  private readonly server: Server;
  private readonly connections = new Set<TcpConnection>();
  private closing: Promise<void> | undefined;
  private serverClosed = false;
  private drained: (() => void) | undefined;
  private readonly graceTimers: TimerHandle[] = [];

  constructor(
    readonly service: string,
    private readonly source: TcpProxySource,
    readonly deps: TcpProxyDeps,
  ) {
    // allowHalfOpen: a client's FIN is passed on, not answered by closing; pauseOnConnect: nothing is read
    // from the client until its upstream is connected.
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (client) => this.accept(client));
  }

  /** Binds `address` (host:port, port 0 for any); resolves with the bound address. */
  listen(address: string): Promise<string> {
    const { host, port } = parseHostPort(address);
    const server = this.server;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`cannot listen on ${address}: ${err.message}`));
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        // Accept errors (e.g. EMFILE) after binding must not crash the process.
        server.on('error', (err) => this.deps.logger?.warn({ service: this.service, err: err.message }, 'tcp listener error'));
        const a = server.address() as AddressInfo;
        resolve(a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
      });
    });
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stops accepting at once, lets open connections run for up to `graceMs`, then destroys those left.
   * Resolves when every connection is closed. A second call may shorten the grace.
   */
  close(graceMs: number): Promise<void> {
    if (this.closing === undefined) {
      this.closing = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      if (this.server.listening) this.server.close(() => this.onServerClosed());
      else this.onServerClosed();
    }
    if (graceMs <= 0) this.destroyAll();
    else if (this.connections.size > 0) this.graceTimers.push(this.deps.timers.after(graceMs, () => this.destroyAll()));
    return this.closing;
  }

  private onServerClosed(): void {
    this.serverClosed = true;
    this.checkDrained();
  }

  private destroyAll(): void {
    for (const c of this.connections) c.destroy();
  }

  /** Called by a connection once both of its sockets are closed. */
  forget(c: TcpConnection): void {
    this.connections.delete(c);
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.closing === undefined || !this.serverClosed || this.connections.size > 0) return;
    for (const t of this.graceTimers.splice(0)) t.cancel();
    this.drained?.();
    this.drained = undefined;
  }

  private accept(client: Socket): void {
    const c = new TcpConnection(this, client);
    this.connections.add(c);
    if (this.closing !== undefined) {
      c.destroy();
      return;
    }
    c.start(this.source);
  }
}

/** One client connection and its upstream. */
class TcpConnection implements GuardSlot, PickSlot {
  private cluster: Cluster | undefined;
  private guard: ServiceGuard | undefined;
  private hashKey: string | undefined;
  tried: Endpoint[] | undefined;
  /** The breaker ticket of the last pick (PickSlot). */
  ticket: BreakerTicket | undefined = undefined;
  private readonly pickFn = (avoid: readonly Endpoint[] | undefined): Endpoint | undefined => this.cluster!.picker.pick(this.hashKey, avoid);
  private attempts = 0;
  /** The socket of the current try, or of the established connection. */
  private upstream: Socket | undefined;
  /** The endpoint whose `inflight` this connection holds. */
  private counted: Endpoint | undefined;
  // What the connection holds from its service's guard (GuardSlot); only the guard changes them.
  admitted = false;
  serviceTicket: BreakerTicket | undefined = undefined;
  retrying = false;
  waits = 0;
  private connected = false;
  private clientClosed = false;
  private upstreamClosed = true;
  private finished = false;

  constructor(
    private readonly proxy: TcpProxy,
    private readonly client: Socket,
  ) {
    proxy.deps.stats.active++;
    client.on('error', ignore); // the 'close' that follows (hadError) decides
    client.once('close', (hadError: boolean) => this.onClientClose(hadError));
  }

  start(source: TcpProxySource): void {
    const cluster = source.cluster();
    if (cluster === undefined) {
      this.fail(`service "${this.proxy.service}" is no longer configured`);
      return;
    }
    this.cluster = cluster;
    const guard = source.guard(cluster);
    this.guard = guard;
    if (guard !== undefined) {
      const refused = guard.admit(this);
      if (refused !== undefined) {
        this.fail(refused.message);
        return;
      }
    }
    if (HASH_POLICIES.includes(cluster.config.lb)) this.hashKey = this.client.remoteAddress;
    this.attempt();
  }

  /** Picks an endpoint (skipping open breakers, as the HTTP path) and connects to it. */
  private attempt(): void {
    const cluster = this.cluster!;
    const guard = this.guard;
    const endpoint = guard === undefined ? cluster.picker.pick(this.hashKey, this.tried) : guard.pick(this.pickFn, this);
    if (endpoint === BREAKER_OPEN) {
      this.fail(`the circuits of service "${this.proxy.service}"'s endpoints are open`);
      return;
    }
    if (endpoint === undefined) {
      this.fail(`service "${this.proxy.service}" has no eligible endpoint`);
      return;
    }
    const ticket = guard === undefined ? undefined : this.ticket;
    this.attempts++;
    const ep = endpoint;
    ep.inflight++;
    this.counted = ep;
    const timeoutMs = cluster.config.connectTimeoutMs;
    const socket = connect({ host: ep.host, port: ep.port, allowHalfOpen: true, noDelay: true });
    this.upstream = socket;
    this.upstreamClosed = false;
    let settled = false;
    const timer = this.proxy.deps.timers.after(timeoutMs, () => {
      if (!settled) socket.destroy(connectTimeoutError(timeoutMs));
    });
    socket.on('error', ignore); // the 'close' that follows (hadError) decides
    socket.once('connect', () => {
      settled = true;
      timer.cancel();
      this.report(ep, Outcome.Success, ticket);
      this.onConnected(socket);
    });
    socket.once('close', (hadError: boolean) => {
      timer.cancel();
      if (settled) {
        this.onUpstreamClose(hadError);
        return;
      }
      // Closed before 'connect': the try failed (refused, unreachable, timed out, or cut by destroy()).
      settled = true;
      this.upstreamClosed = true;
      this.upstream = undefined;
      this.release();
      const err = (socket.errored ?? new Error('closed before connecting')) as Error & { code?: string };
      this.report(ep, Outcome.GatewayFailure, ticket);
      this.proxy.deps.logger?.debug({ service: this.proxy.service, endpoint: ep.address, err: describe(err), attempt: this.attempts }, 'tcp connect failed');
      if (this.mayRetry()) {
        (this.tried ??= []).push(ep);
        if (this.guard !== undefined) this.guard.retries['connect-failure']++;
        this.attempt();
        return;
      }
      this.fail(`could not connect to service "${this.proxy.service}" (last: ${ep.address}: ${describe(err)})`);
    });
  }

  private mayRetry(): boolean {
    if (this.clientClosed || this.finished) return false;
    const retry = this.cluster!.config.retry;
    return this.attempts <= retry.attempts && isRetriableFailure(retry, { kind: 'error', reason: 'connect-failure' });
  }

  /** Passive health: outlier detection and the endpoint's breaker learn how the connect went. */
  private report(ep: Endpoint, outcome: Outcome, ticket: BreakerTicket | undefined): void {
    this.guard?.report(ep, ticket, outcome);
  }

  private onConnected(upstream: Socket): void {
    this.connected = true;
    this.proxy.deps.stats.connected++;
    this.guard?.settle(this, true);
    if (this.clientClosed) {
      // The client left while we were connecting.
      upstream.destroy();
      return;
    }
    const client = this.client;
    // pipe() ends the destination when the source ends (the FIN is passed on; allowHalfOpen keeps the
    // other direction open) and pauses the source while the destination's buffer is full.
    upstream.pipe(client);
    client.pipe(upstream);
  }

  private onClientClose(hadError: boolean): void {
    this.clientClosed = true;
    const up = this.upstream;
    if (up !== undefined && this.connected && !up.destroyed) {
      if (hadError) up.resetAndDestroy();
      // Closed cleanly: both FINs were exchanged, so the upstream only has to flush what it holds.
      else up.destroySoon();
    }
    // While connecting, the try finishes first (its outcome is still reported), then closes.
    this.maybeFinish();
  }

  private onUpstreamClose(hadError: boolean): void {
    this.upstreamClosed = true;
    const client = this.client;
    if (!client.destroyed) {
      if (hadError) client.resetAndDestroy();
      else client.destroySoon();
    }
    this.maybeFinish();
  }

  /** No endpoint could be reached (or none was allowed): the client connection is reset. */
  private fail(reason: string): void {
    if (this.finished) return;
    this.proxy.deps.stats.failed++;
    this.serviceTicket?.failure();
    this.serviceTicket = undefined;
    this.proxy.deps.logger?.debug({ service: this.proxy.service, reason }, 'tcp connection refused');
    if (!this.client.destroyed) this.client.resetAndDestroy();
    this.maybeFinish();
  }

  /** Cuts both sockets (close grace over). */
  destroy(): void {
    if (!this.client.destroyed) this.client.resetAndDestroy();
    const up = this.upstream;
    if (up !== undefined && !up.destroyed) up.destroy();
  }

  private release(): void {
    const ep = this.counted;
    if (ep === undefined) return;
    this.counted = undefined;
    ep.inflight--;
    ep.completed++;
  }

  private maybeFinish(): void {
    if (this.finished || !this.clientClosed || !this.upstreamClosed) return;
    this.finished = true;
    this.release();
    // The service breaker counts a connection that reached an endpoint as a success.
    this.guard?.leave(this, this.connected ? 200 : 502);
    this.proxy.deps.stats.active--;
    this.proxy.forget(this);
  }
}
