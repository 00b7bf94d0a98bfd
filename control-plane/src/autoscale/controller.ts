import type { Clock } from '../../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { Logger } from '../../../common/src/logger.js';
import type { AutoscaleServiceConfig } from '../config/types.js';
import { DEFAULT_MAX_REPLICAS } from '../config/schema.js';
import type { Registry } from '../registry/registry.js';
import type { AutoscaleOverride, AutoscaleView, ScaleDecision, ScaleDriver } from './types.js';

/**
 * The autoscaler: every `interval`, per service, measures utilization (mean in-flight / capacity of the
 * serving registered instances, from their sidecars' load reports) and asks the service's driver for
 * desired = ceil(current × utilization / target), clamped to [min, max].
 *
 *  - Up: at once when desired > current (also to reach `min`, e.g. at start); never above max.
 *  - Down: only to the highest desired recorded over the stabilization window (as the Kubernetes HPA), and
 *    not within `cooldown` of the last action. The instances to remove (drivers that can choose: newest
 *    first) are drained first: an operator drain takes them out of every snapshot, the autoscaler waits the
 *    registry's drain time so requests in flight finish, then the driver stops them, then the drain is lifted
 *    (the instances have deregistered by then; the drain set does not grow).
 *  - One action at a time per service; evaluations while one runs are skipped.
 *
 * Every decision that acts is logged at info with its inputs; the last 20 per service are kept, with "none"
 * decisions only when they block something (at max, stabilizing, cooldown, no data, driver error), once per
 * change of reason.
 */

/** What the autoscaler reads of a connected sidecar (a SubscriberView fits). */
export interface LoadView {
  readonly instance: { readonly service: string; readonly address: string } | null;
  readonly lastLoad: { readonly inflight: number } | null;
}

/** The connected sidecars, e.g. `push.views()`. */
export type LoadSource = () => readonly LoadView[];

export interface AutoscalerOptions {
  readonly registry: Registry;
  readonly loads: LoadSource;
  readonly services: Readonly<Record<string, AutoscaleServiceConfig>>;
  /** One driver per service in `services`. */
  readonly drivers: ReadonlyMap<string, ScaleDriver>;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  /** Ceiling of `max`, also of run-time overrides (cp.yaml `limits.maxReplicas`); default 50. */
  readonly maxReplicas?: number | undefined;
}

/** A run-time override was refused; the message says which key and why. */
export class AutoscaleInputError extends Error {
  constructor(
    message: string,
    /** 404 for an unknown service, else 400. */
    readonly status: 400 | 404 = 400,
  ) {
    super(message);
    this.name = 'AutoscaleInputError';
  }
}

const MAX_DECISIONS = 20;
/** Keeps float noise out of ceil(): 3 × 0.1 / 0.3 is 1.0000000000000002, which is 1. */
const EPSILON = 1e-9;
/** "none" reasons worth a line in the decisions list (others only end such a run). */
const NOTABLE = new Set(['at-max', 'stabilizing', 'cooldown', 'no-data', 'driver-error']);

interface ServiceState {
  readonly name: string;
  readonly config: AutoscaleServiceConfig;
  readonly driver: ScaleDriver;
  override: AutoscaleOverride;
  timer: TimerHandle | undefined;
  evaluating: boolean;
  busy: 'scaling-up' | 'draining' | undefined;
  draining: readonly string[];
  action: Promise<void>;
  /** Monotonic ms the last successful action finished. */
  lastActionAt: number | undefined;
  /** Desired counts (clamped, before stabilization) with monotonic ms, oldest first. */
  history: { at: number; raw: number }[];
  decisions: ScaleDecision[];
  lastNoneKey: string | undefined;
  current: number;
  desired: number;
  utilization: number | null;
}

const round = (n: number): number => Math.round(n * 1000) / 1000;
const secs = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

export class Autoscaler {
  private readonly states = new Map<string, ServiceState>();
  private readonly waits = new Set<() => void>();
  private started = false;
  private closed = false;

  constructor(private readonly o: AutoscalerOptions) {
    for (const [name, config] of Object.entries(o.services)) {
      const driver = o.drivers.get(name);
      if (driver === undefined) throw new Error(`autoscale.${name}: no driver`);
      this.states.set(name, {
        name,
        config,
        driver,
        override: {},
        timer: undefined,
        evaluating: false,
        busy: undefined,
        draining: [],
        action: Promise.resolve(),
        lastActionAt: undefined,
        history: [],
        decisions: [],
        lastNoneKey: undefined,
        current: 0,
        desired: config.min,
        utilization: null,
      });
    }
  }

  /** Services it sizes, sorted. */
  get services(): string[] {
    return [...this.states.keys()].sort();
  }

  /** Evaluates every service now, then every `interval`. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (const s of this.states.values()) {
      if (s.driver.kind === 'process') this.liftStaleDrains(s);
      s.timer = this.o.timers.every(s.config.intervalMs, () => void this.evaluate(s.name));
      void this.evaluate(s.name);
    }
  }

  /**
   * Stops evaluating until start() (another control-plane replica leads, docs/ha.md); an action in flight
   * finishes, the drivers stay open.
   */
  pause(): void {
    if (!this.started) return;
    this.started = false;
    for (const s of this.states.values()) {
      s.timer?.cancel();
      s.timer = undefined;
    }
  }

  /**
   * Stops evaluating, ends drain waits early (lifting their drains), waits for actions in flight, then
   * closes every driver (the process driver stops its children).
   */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.states.values()) {
      s.timer?.cancel();
      s.timer = undefined;
    }
    for (const w of [...this.waits]) w();
    await Promise.all([...this.states.values()].map((s) => s.action));
    await Promise.all(
      [...this.states.values()].map((s) =>
        s.driver.close().catch((err: unknown) => this.o.logger.error({ service: s.name, err: message(err) }, `autoscale ${s.name}: closing the ${s.driver.kind} driver failed`)),
      ),
    );
  }

  views(): AutoscaleView[] {
    const now = this.o.clock.now();
    return this.services.map((name) => {
      const s = this.states.get(name) as ServiceState;
      const b = this.bounds(s);
      const state: AutoscaleView['state'] =
        s.busy ?? (s.lastActionAt !== undefined && now - s.lastActionAt < s.config.cooldownMs ? 'cooldown' : 'idle');
      return {
        service: name,
        driver: s.driver.kind,
        min: b.min,
        max: b.max,
        targetUtilization: b.targetUtilization,
        current: s.current,
        desired: s.desired,
        utilization: s.utilization,
        state,
        decisions: [...s.decisions],
        draining: [...s.draining],
        overrides: { ...s.override },
      };
    });
  }

  /** Resolves once the action running for `service` (if any) has finished. */
  async settled(service: string): Promise<void> {
    await this.states.get(service)?.action;
  }

  /**
   * Changes min, max and/or targetUtilization of a service until the control plane restarts (`null` for a
   * key returns it to cp.yaml's value), then evaluates at once.
   * @throws AutoscaleInputError naming the key and what was expected.
   */
  override(service: string, input: unknown): AutoscaleView {
    const s = this.states.get(service);
    if (s === undefined) throw new AutoscaleInputError(`no autoscaled service ${JSON.stringify(service)} (autoscaled: ${this.services.join(', ') || 'none'})`, 404);
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new AutoscaleInputError('expected a JSON object such as { "min": 2, "max": 6, "targetUtilization": 0.6 }');
    }
    const body = input as Record<string, unknown>;
    const keys = ['min', 'max', 'targetUtilization'];
    for (const k of Object.keys(body)) if (!keys.includes(k)) throw new AutoscaleInputError(`unknown key ${JSON.stringify(k)}; expected min, max and/or targetUtilization`);
    const next: { min?: number | undefined; max?: number | undefined; targetUtilization?: number | undefined } = { ...s.override };
    const ceiling = this.o.maxReplicas ?? DEFAULT_MAX_REPLICAS;
    const got = (v: unknown): string => JSON.stringify(v) ?? String(v);
    if ('min' in body) {
      const v = body['min'];
      if (v !== null && !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= ceiling)) {
        throw new AutoscaleInputError(`min: expected integer 0..${ceiling} (limits.maxReplicas in cp.yaml), or null for cp.yaml's; got ${got(v)}`);
      }
      next.min = v ?? undefined;
    }
    if ('max' in body) {
      const v = body['max'];
      if (v !== null && !(typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= ceiling)) {
        throw new AutoscaleInputError(`max: expected integer 1..${ceiling} (limits.maxReplicas in cp.yaml), or null for cp.yaml's; got ${got(v)}`);
      }
      next.max = v ?? undefined;
    }
    if ('targetUtilization' in body) {
      const v = body['targetUtilization'];
      if (v !== null && !(typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 1)) {
        throw new AutoscaleInputError(`targetUtilization: expected number > 0 and <= 1 (or null for cp.yaml's), got ${got(v)}`);
      }
      next.targetUtilization = v ?? undefined;
    }
    const min = next.min ?? s.config.min;
    const max = next.max ?? s.config.max;
    if (max < min) throw new AutoscaleInputError(`max: expected integer >= min (${min}), got ${max}`);
    const d = s.config.driver;
    if (d.kind === 'process' && d.ports.to - d.ports.from + 1 < max) {
      throw new AutoscaleInputError(`max: expected at most ${d.ports.to - d.ports.from + 1} (the process driver's ports ${d.ports.from}-${d.ports.to}), got ${max}`);
    }
    const clean: AutoscaleOverride = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined));
    s.override = clean;
    this.o.logger.info({ service, overrides: clean, min, max, targetUtilization: next.targetUtilization ?? s.config.targetUtilization }, `autoscale ${service}: bounds changed at run time`);
    void this.evaluate(service);
    return this.views().find((v) => v.service === service) as AutoscaleView;
  }

  /**
   * One evaluation of `service` (the timer calls this). Returns the decision taken (also a "none" one), or
   * undefined when skipped (an action or evaluation in flight, stopped, or the driver could not be read).
   * An action it starts runs on; `settled()` waits for it.
   */
  async evaluate(service: string): Promise<ScaleDecision | undefined> {
    const s = this.states.get(service);
    if (s === undefined || this.closed || s.busy !== undefined || s.evaluating) return undefined;
    s.evaluating = true;
    let current: number;
    try {
      current = await s.driver.current();
    } catch (err) {
      const at = this.o.clock.wallNow();
      this.o.logger.warn({ service, err: message(err) }, `autoscale ${service}: cannot read the current size from the ${s.driver.kind} driver`);
      this.none(s, 'driver-error', { at, service, current: s.current, utilization: s.utilization ?? 0, raw: s.desired, desired: s.desired, action: 'none', reason: `cannot read the current size: ${message(err)}` });
      return undefined;
    } finally {
      s.evaluating = false;
    }
    if (this.closed || s.busy !== undefined) return undefined;
    try {
      return this.decide(s, current);
    } catch (err) {
      this.o.logger.error({ service, err: message(err) }, `autoscale ${service}: evaluation failed`);
      return undefined;
    }
  }

  // -------------------------------------------------------------------------------------------------------

  private bounds(s: ServiceState): { min: number; max: number; targetUtilization: number } {
    return {
      min: s.override.min ?? s.config.min,
      max: s.override.max ?? s.config.max,
      targetUtilization: s.override.targetUtilization ?? s.config.targetUtilization,
    };
  }

  /**
   * Mean in-flight / capacity over the service's serving registered instances. An instance without a load
   * report yet counts (as 0) only once it has been registered longer than one interval, so a booting
   * instance does not pull the mean down; null when no instance counts.
   */
  measure(service: string): number | null {
    const s = this.states.get(service);
    if (s === undefined) return null;
    const reports = new Map<string, number>();
    for (const v of this.o.loads()) {
      if (v.instance !== null && v.instance.service === service && v.lastLoad !== null) reports.set(v.instance.address, v.lastLoad.inflight);
    }
    const wall = this.o.clock.wallNow();
    let sum = 0;
    let n = 0;
    for (const inst of this.o.registry.instances(service)) {
      if (inst.state !== 'serving' || !(inst.capacity > 0)) continue;
      const inflight = reports.get(inst.address);
      if (inflight === undefined) {
        if (wall - inst.registeredAt < s.config.intervalMs) continue;
        n++;
        continue;
      }
      sum += Math.max(0, inflight) / inst.capacity;
      n++;
    }
    return n === 0 ? null : sum / n;
  }

  private decide(s: ServiceState, current: number): ScaleDecision {
    const { min, max, targetUtilization: target } = this.bounds(s);
    const now = this.o.clock.now();
    const at = this.o.clock.wallNow();
    const clamp = (n: number): number => Math.min(max, Math.max(min, n));
    const utilization = this.measure(s.name);
    s.current = current;
    s.utilization = utilization === null ? null : round(utilization);
    const u = s.utilization ?? 0;
    const unclamped = utilization === null ? current : Math.ceil((current * utilization) / target - EPSILON);
    const raw = clamp(unclamped);
    // A fresh autoscaler has seen no history: it treats the size it found as recommended, so a restart of the
    // control plane does not shrink a service before a whole window of measurements.
    if (s.history.length === 0 && s.lastActionAt === undefined) s.history.push({ at: now, raw: clamp(current) });
    s.history.push({ at: now, raw });
    const windowStart = now - s.config.stabilizationWindowMs;
    while (s.history.length > 1 && (s.history[0]?.at ?? now) < windowStart) s.history.shift();
    const base = { at, service: s.name, current, utilization: u, raw };
    const formula = utilization === null ? 'no load reports yet' : `utilization ${u} vs target ${target}: ceil(${current} × ${u} / ${target}) = ${unclamped}`;

    if (raw > current) {
      const why = current < min ? `below min ${min}` : `${formula}${unclamped > max ? `, capped at max ${max}` : ''}`;
      return this.scaleUp(s, { ...base, desired: raw, action: 'scale-up', reason: why });
    }
    if (raw < current) {
      const highest = clamp(Math.max(...s.history.filter((h) => h.at >= windowStart).map((h) => h.raw)));
      if (highest >= current) {
        s.desired = current;
        return this.none(s, 'stabilizing', {
          ...base,
          desired: current,
          action: 'none',
          reason: `${formula}; holding ${current}: the highest recommendation over the last ${secs(s.config.stabilizationWindowMs)} is ${highest}`,
        });
      }
      if (s.lastActionAt !== undefined && now - s.lastActionAt < s.config.cooldownMs) {
        s.desired = current;
        return this.none(s, 'cooldown', {
          ...base,
          desired: current,
          action: 'none',
          reason: `${formula}; in cooldown for another ${Math.ceil(s.lastActionAt + s.config.cooldownMs - now)} ms after the last action`,
        });
      }
      const why = current > max ? `above max ${max}` : `${formula}; the highest recommendation over the last ${secs(s.config.stabilizationWindowMs)} is ${highest}`;
      return this.scaleDown(s, { ...base, desired: highest, action: 'scale-down', reason: why });
    }
    s.desired = current;
    if (utilization === null && current > 0) return this.none(s, 'no-data', { ...base, desired: current, action: 'none', reason: 'no load reports yet; holding the current size' });
    if (current === max && utilization !== null && utilization > target) {
      return this.none(s, 'at-max', { ...base, desired: current, action: 'none', reason: `${formula}; at max ${max}` });
    }
    return this.none(s, 'steady', { ...base, desired: current, action: 'none', reason: formula });
  }

  /** Keeps a "none" decision only when its reason is notable and differs from the last one. */
  private none(s: ServiceState, key: string, d: ScaleDecision): ScaleDecision {
    if (key !== s.lastNoneKey && NOTABLE.has(key)) {
      this.record(s, d);
      this.o.logger.info({ ...d }, `autoscale ${s.name}: no change (${d.reason})`);
    }
    s.lastNoneKey = key;
    return d;
  }

  private record(s: ServiceState, d: ScaleDecision): void {
    s.decisions.unshift(d);
    if (s.decisions.length > MAX_DECISIONS) s.decisions.length = MAX_DECISIONS;
  }

  private failed(s: ServiceState, d: ScaleDecision, err: unknown): void {
    const failed: ScaleDecision = { ...d, error: message(err) };
    const i = s.decisions.indexOf(d);
    if (i >= 0) s.decisions[i] = failed;
    else this.record(s, failed);
    s.desired = s.current;
    this.o.logger.error({ ...failed }, `autoscale ${s.name}: ${d.action} to ${d.desired} failed: ${failed.error ?? ''}`);
  }

  private scaleUp(s: ServiceState, d: ScaleDecision): ScaleDecision {
    s.busy = 'scaling-up';
    s.desired = d.desired;
    s.lastNoneKey = undefined;
    this.record(s, d);
    this.o.logger.info({ ...d }, `autoscale ${s.name}: scale up ${d.current} → ${d.desired} (${d.reason})`);
    s.action = (async () => {
      try {
        await s.driver.scaleTo(d.desired, []);
        s.current = d.desired;
        s.lastActionAt = this.o.clock.now();
      } catch (err) {
        this.failed(s, d, err);
      } finally {
        s.busy = undefined;
      }
    })();
    return d;
  }

  private scaleDown(s: ServiceState, d: ScaleDecision): ScaleDecision {
    const remove = s.driver.addresses().slice(0, Math.max(0, d.current - d.desired));
    s.busy = 'draining';
    s.desired = d.desired;
    s.lastNoneKey = undefined;
    const drained: string[] = [];
    for (const address of remove) {
      try {
        // false: an operator drained it already; that drain is theirs to lift.
        if (this.o.registry.drain(address)) drained.push(address);
      } catch (err) {
        this.o.logger.warn({ service: s.name, address, err: message(err) }, `autoscale ${s.name}: cannot drain ${address}`);
      }
    }
    s.draining = remove;
    this.record(s, d);
    this.o.logger.info({ ...d, remove }, `autoscale ${s.name}: scale down ${d.current} → ${d.desired} (${d.reason}); draining ${remove.length > 0 ? remove.join(', ') : '(the driver picks the instances)'} for ${this.o.registry.drainTimeMs} ms first`);
    const wait = remove.length > 0 ? this.wait(this.o.registry.drainTimeMs) : Promise.resolve();
    s.action = (async () => {
      try {
        await wait;
        if (this.closed) return;
        await s.driver.scaleTo(d.desired, remove);
        s.current = d.desired;
        s.lastActionAt = this.o.clock.now();
      } catch (err) {
        this.failed(s, d, err);
      } finally {
        for (const address of drained) this.o.registry.undrain(address);
        s.draining = [];
        s.busy = undefined;
      }
    })();
    return d;
  }

  /** Resolves after `ms`, or at once when the autoscaler stops. */
  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.waits.delete(done);
        timer.cancel();
        resolve();
      };
      const timer = this.o.timers.after(ms, done);
      this.waits.add(done);
    });
  }

  /**
   * Lifts operator drains left on the process driver's addresses by a control plane that stopped in the
   * middle of a scale-down (drains are persisted): a new instance on that port would never get traffic.
   */
  private liftStaleDrains(s: ServiceState): void {
    const d = s.config.driver;
    if (d.kind !== 'process') return;
    const host = d.host.includes(':') ? `[${d.host}]` : d.host;
    for (let port = d.ports.from; port <= d.ports.to; port++) {
      if (this.o.registry.undrain(`${host}:${port}`)) this.o.logger.warn({ service: s.name, address: `${host}:${port}` }, `autoscale ${s.name}: lifted a drain left from an interrupted scale-down`);
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
