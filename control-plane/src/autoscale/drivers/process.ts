import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Clock } from '../../../../common/src/clock.js';
import type { Timers } from '../../../../common/src/timers.js';
import type { Logger } from '../../../../common/src/logger.js';
import type { AutoscaleDriverConfig } from '../../config/types.js';
import type { ScaleDriver } from '../types.js';

export type ProcessDriverConfig = Extract<AutoscaleDriverConfig, { kind: 'process' }>;

/** How long a port whose instance died unexpectedly is passed over while other ports are free. */
const FAILED_PORT_QUARANTINE_MS = 30_000;
/** stderr lines kept per instance, shown when it dies unexpectedly. */
const STDERR_TAIL = 5;

interface Instance {
  readonly port: number;
  readonly address: string;
  readonly seq: number;
  readonly child: ChildProcess;
  /** Asked to stop (by scaleTo or close): its exit is expected. */
  stopping: boolean;
  exited: boolean;
  readonly exit: Promise<void>;
  readonly stderrTail: string[];
}

/** Replaces {port}, {service}, {index}, {host} and {node} in one argument. */
export function substitute(template: string, vars: Readonly<Record<string, string>>): string {
  return template.replace(/\{(port|service|index|host|node)\}/g, (whole, name: string) => vars[name] ?? whole);
}

/**
 * The `process` driver: runs each instance of a service as a child process of the control plane, from an
 * argv template, one port of a range per instance (lowest free first; a port is reused only after its
 * child has exited). Children get an IPC channel, so an instance notices the control plane dying (the
 * channel's 'disconnect') and can stop itself. A child that dies without being asked to is forgotten (the
 * autoscaler starts a replacement at its next evaluation) and logged at warn.
 */
export class ProcessDriver implements ScaleDriver {
  readonly kind = 'process';
  private readonly instances = new Map<number, Instance>();
  private readonly failedAt = new Map<number, number>();
  private seq = 0;
  private closed = false;

  constructor(
    readonly service: string,
    private readonly config: ProcessDriverConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly timers: Timers,
  ) {}

  /** Children running and not asked to stop. */
  current(): Promise<number> {
    return Promise.resolve(this.live().length);
  }

  addresses(): readonly string[] {
    return this.live()
      .sort((a, b) => b.seq - a.seq)
      .map((i) => i.address);
  }

  /** PIDs of every child not yet exited (also those stopping). */
  pids(): number[] {
    return [...this.instances.values()].flatMap((i) => (i.child.pid === undefined ? [] : [i.child.pid]));
  }

  async scaleTo(replicas: number, remove: readonly string[]): Promise<void> {
    if (this.closed) throw new Error('the process driver is closed');
    const stops: Promise<void>[] = [];
    for (const address of remove) {
      const inst = this.live().find((i) => i.address === address);
      if (inst !== undefined) stops.push(this.stop(inst));
    }
    // Fewer named than needed: the newest go, the oldest `replicas` stay.
    for (const inst of this.live().sort((a, b) => a.seq - b.seq).slice(replicas)) stops.push(this.stop(inst));
    const starts: Promise<void>[] = [];
    for (let n = this.live().length; n < replicas; n++) starts.push(this.start());
    const results = await Promise.allSettled([...starts, ...stops]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.instances.values()].map((i) => this.stop(i)));
  }

  private live(): Instance[] {
    return [...this.instances.values()].filter((i) => !i.stopping && !i.exited);
  }

  /** The lowest port of the range no child holds, passing over recently failed ports while others are free. */
  private pickPort(): number {
    const { from, to } = this.config.ports;
    const now = this.clock.now();
    let fallback: number | undefined;
    for (let port = from; port <= to; port++) {
      if (this.instances.has(port)) continue;
      const failed = this.failedAt.get(port);
      if (failed !== undefined && now - failed < FAILED_PORT_QUARANTINE_MS) {
        fallback ??= port;
        continue;
      }
      return port;
    }
    if (fallback !== undefined) return fallback;
    throw new Error(`no free port in ${from}-${to} for another instance of ${this.service}`);
  }

  private start(): Promise<void> {
    const port = this.pickPort();
    const host = this.config.host;
    const vars = { port: String(port), service: this.service, index: String(port - this.config.ports.from), host, node: process.execPath };
    const [program, ...args] = this.config.command.map((a) => substitute(a, vars));
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(this.config.env)) env[k] = substitute(v, vars);
    const child = spawn(program ?? '', args, { cwd: this.config.cwd, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let markExited: () => void = () => undefined;
    const inst: Instance = {
      port,
      address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
      seq: ++this.seq,
      child,
      stopping: false,
      exited: false,
      exit: new Promise<void>((resolve) => (markExited = resolve)),
      stderrTail: [],
    };
    this.instances.set(port, inst);
    const log = this.logger.child({ service: this.service, port, pid: child.pid });
    if (child.stdout) createInterface({ input: child.stdout }).on('line', (line) => log.debug({ stream: 'stdout' }, line));
    if (child.stderr) {
      createInterface({ input: child.stderr }).on('line', (line) => {
        inst.stderrTail.push(line);
        if (inst.stderrTail.length > STDERR_TAIL) inst.stderrTail.shift();
        log.debug({ stream: 'stderr' }, line);
      });
    }
    // The IPC channel exists only so the child sees the parent go; a write to a dying child must not throw.
    child.on('error', () => undefined);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (inst.exited) return;
      inst.exited = true;
      if (this.instances.get(port) === inst) this.instances.delete(port);
      if (!inst.stopping) {
        this.failedAt.set(port, this.clock.now());
        log.warn({ code, signal, stderr: inst.stderrTail }, `instance of ${this.service} at ${inst.address} exited unexpectedly; the autoscaler replaces it at its next evaluation`);
      } else {
        log.info({ code, signal }, `instance of ${this.service} at ${inst.address} stopped`);
      }
      markExited();
    };
    child.once('exit', finish);
    return new Promise<void>((resolve, reject) => {
      child.once('spawn', () => {
        this.failedAt.delete(port);
        log.info({ command: [program, ...args] }, `started an instance of ${this.service} at ${inst.address}`);
        resolve();
      });
      child.once('error', (err) => {
        finish(null, null);
        reject(new Error(`cannot start ${JSON.stringify(program)} for ${this.service}: ${err.message}`));
      });
    });
  }

  /** SIGTERM, then SIGKILL after stopGrace; resolves when the child has exited. */
  private stop(inst: Instance): Promise<void> {
    if (inst.exited) return Promise.resolve();
    if (!inst.stopping) {
      inst.stopping = true;
      inst.child.kill('SIGTERM');
      const kill = this.timers.after(this.config.stopGraceMs, () => {
        if (!inst.exited) {
          this.logger.warn({ service: this.service, port: inst.port, pid: inst.child.pid }, `instance of ${this.service} at ${inst.address} ignored SIGTERM for ${this.config.stopGraceMs} ms; SIGKILL`);
          inst.child.kill('SIGKILL');
        }
      });
      void inst.exit.then(() => kill.cancel());
    }
    return inst.exit;
  }
}
