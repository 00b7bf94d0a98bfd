import { describe, expect, it } from 'vitest';
import { Autoscaler, AutoscaleInputError, type LoadView } from '../../../control-plane/src/autoscale/controller.js';
import type { ScaleDriver } from '../../../control-plane/src/autoscale/types.js';
import { parseControlPlaneConfig } from '../../../control-plane/src/config/load.js';
import type { AutoscaleServiceConfig } from '../../../control-plane/src/config/types.js';
import { Registry } from '../../../control-plane/src/registry/registry.js';
import { ConfigError } from '../../../common/src/errors.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { captureLogger } from '../../helpers/logger.js';

const INTERVAL = 1_000;
const WINDOW = 5_000;
const COOLDOWN = 2_000;
const DRAIN = 500;
const CAPACITY = 10;

/** A driver whose instances are addresses 10.0.0.N:9000; calls recorded; can be made to fail. */
class FakeDriver implements ScaleDriver {
  readonly kind = 'process';
  private next = 1;
  /** Oldest first. */
  live: string[] = [];
  calls: { replicas: number; remove: readonly string[] }[] = [];
  fail: Error | undefined;
  closed = false;

  current(): Promise<number> {
    return Promise.resolve(this.live.length);
  }

  scaleTo(replicas: number, remove: readonly string[]): Promise<void> {
    this.calls.push({ replicas, remove });
    if (this.fail) return Promise.reject(this.fail);
    this.live = this.live.filter((a) => !remove.includes(a));
    while (this.live.length > replicas) this.live.pop();
    while (this.live.length < replicas) this.live.push(`10.0.0.${this.next++}:9000`);
    return Promise.resolve();
  }

  addresses(): readonly string[] {
    return [...this.live].reverse();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

function setup(overrides: Partial<AutoscaleServiceConfig> = {}) {
  const clock = new FakeClock();
  const registry = new Registry({ clock, timers: clock, instanceTtlMs: 60_000, drainTimeMs: DRAIN });
  const driver = new FakeDriver();
  const { lines, logger } = captureLogger();
  /** In-flight per address, as load reports. */
  const inflight = new Map<string, number>();
  const loads = (): LoadView[] => [...inflight].map(([address, n]) => ({ instance: { service: 'inv', address }, lastLoad: { inflight: n } }));
  const config: AutoscaleServiceConfig = {
    min: 1,
    max: 5,
    targetUtilization: 0.5,
    intervalMs: INTERVAL,
    stabilizationWindowMs: WINDOW,
    cooldownMs: COOLDOWN,
    driver: { kind: 'process', command: ['x'], ports: { from: 20000, to: 20009 }, host: '10.0.0.1', cwd: '/', env: {}, stopGraceMs: 1_000 },
    ...overrides,
  };
  const scaler = new Autoscaler({ registry, loads, services: { inv: config }, drivers: new Map([['inv', driver]]), clock, timers: clock, logger });
  /** Registers every instance the driver runs (as their sidecars would) and gives each `perInstance` in flight. */
  const sync = (perInstance: number): void => {
    for (const a of driver.live) {
      registry.register({ service: 'inv', id: `inv-${a}`, address: a, capacity: CAPACITY });
      inflight.set(a, perInstance);
    }
    for (const a of [...inflight.keys()]) if (!driver.live.includes(a)) inflight.delete(a);
    for (const i of registry.instances('inv')) if (!driver.live.includes(i.address)) registry.deregister(i.id);
  };
  const view = () => scaler.views()[0]!;
  const step = async (ms = INTERVAL) => {
    clock.advance(ms);
    return scaler.evaluate('inv');
  };
  return { clock, registry, driver, scaler, lines, inflight, sync, view, step };
}

describe('Autoscaler', () => {
  it('starts min instances at once and says why', async () => {
    const { scaler, driver, view } = setup({ min: 2 });
    const d = await scaler.evaluate('inv');
    await scaler.settled('inv');
    expect(d).toMatchObject({ service: 'inv', current: 0, raw: 2, desired: 2, action: 'scale-up', reason: 'below min 2' });
    expect(driver.calls).toEqual([{ replicas: 2, remove: [] }]);
    expect(view()).toMatchObject({ current: 2, desired: 2, min: 2, max: 5, targetUtilization: 0.5, state: 'cooldown', driver: 'process' });
    expect(view().decisions).toHaveLength(1);
  });

  it('scales up at once to ceil(current × utilization / target), never above max, and logs the inputs', async () => {
    const { scaler, driver, sync, step, view, lines } = setup({ min: 2 });
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    sync(7); // utilization 0.7 on 2 → ceil(2 × 0.7 / 0.5) = 3
    const d = await step();
    await scaler.settled('inv');
    expect(d).toMatchObject({ current: 2, utilization: 0.7, raw: 3, desired: 3, action: 'scale-up' });
    expect(d?.reason).toBe('utilization 0.7 vs target 0.5: ceil(2 × 0.7 / 0.5) = 3');
    sync(10); // 1.0 on 3 → 6, capped at 5: one evaluation later, whatever the cooldown
    const d2 = await step();
    await scaler.settled('inv');
    expect(d2).toMatchObject({ current: 3, raw: 5, desired: 5, action: 'scale-up' });
    expect(d2?.reason).toContain('capped at max 5');
    expect(driver.live).toHaveLength(5);
    sync(10);
    // At max: recorded once, not at every evaluation.
    for (let i = 0; i < 4; i++) expect(await step()).toMatchObject({ action: 'none', current: 5, desired: 5 });
    expect(view().decisions.map((x) => x.action)).toEqual(['none', 'scale-up', 'scale-up', 'scale-up']);
    expect(view().decisions[0]?.reason).toContain('at max 5');
    expect(driver.calls.map((c) => c.replicas)).toEqual([2, 3, 5]);
    const logged = lines.find((l) => l['action'] === 'scale-up' && l['desired'] === 3);
    expect(logged).toMatchObject({ level: 30, service: 'inv', current: 2, utilization: 0.7, raw: 3, desired: 3, reason: d?.reason });
    expect(typeof logged?.['at']).toBe('number');
  });

  it('scales down only to the highest recommendation over the stabilization window, draining the newest first', async () => {
    const { scaler, driver, registry, sync, step, view, clock } = setup();
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    sync(20); // 2.0 on 1 → 4
    expect(await step()).toMatchObject({ action: 'scale-up', desired: 4 });
    await scaler.settled('inv');
    sync(5); // 0.5 on 4 → 4: steady
    expect(await step()).toMatchObject({ action: 'none', desired: 4 });
    sync(2.5); // 0.25 → 2, but 4 was recommended within the window
    const held = await step();
    expect(held).toMatchObject({ action: 'none', raw: 2, desired: 4 });
    expect(held?.reason).toContain('holding 4: the highest recommendation over the last 5s is 4');
    sync(1.25); // 0.125 → 1
    // 4 was last recommended at t = 3 s (clock starts at 1 s): held while that is within the 5 s window.
    while (clock.now() < 3_000 + WINDOW) expect(await step()).toMatchObject({ action: 'none', desired: 4 });
    // One 'stabilizing' entry for the whole run.
    expect(view().decisions.filter((d) => d.reason.includes('holding'))).toHaveLength(1);
    // Out of the window now; the highest left is the 2 of t = 4 s.
    const down = await step();
    expect(down).toMatchObject({ action: 'scale-down', current: 4, raw: 1, desired: 2 });
    expect(view().state).toBe('draining');
    const newest = ['10.0.0.4:9000', '10.0.0.3:9000'];
    expect(view().draining).toEqual(newest);
    // Drained first: out of snapshots, still registered, nothing stopped yet.
    expect(registry.instances('inv').filter((i) => i.state === 'drained').map((i) => i.address).sort()).toEqual([...newest].sort());
    expect(driver.calls).toHaveLength(2);
    // No other action while draining.
    clock.advance(DRAIN - 1);
    expect(await scaler.evaluate('inv')).toBeUndefined();
    clock.advance(1);
    await scaler.settled('inv');
    expect(driver.calls.at(-1)).toEqual({ replicas: 2, remove: newest });
    expect(view()).toMatchObject({ current: 2, state: 'cooldown', draining: [] });
    // The drains are lifted once the instances are gone.
    expect(registry.undrain(newest[0]!)).toBe(false);
    expect(registry.undrain(newest[1]!)).toBe(false);
  });

  it('does not scale down within the cooldown of the last action (scale-up is not delayed)', async () => {
    const { scaler, sync, step, view } = setup({ stabilizationWindowMs: 0 });
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    sync(20);
    await step();
    await scaler.settled('inv');
    sync(1); // 0.1 on 4 → 1
    const d = await step();
    expect(d).toMatchObject({ action: 'none', raw: 1, desired: 4 });
    expect(d?.reason).toMatch(/in cooldown for another 1000 ms/);
    sync(20);
    expect(await step(1)).toMatchObject({ action: 'scale-up' }); // up within cooldown
    await scaler.settled('inv');
    sync(1);
    await step(COOLDOWN - 1);
    expect(view().current).toBe(5);
    expect(await step(1)).toMatchObject({ action: 'scale-down', desired: 1 });
  });

  it('counts an instance without a load report as 0 only once it has been registered for an interval', async () => {
    const { scaler, registry, inflight, step, clock } = setup({ min: 2 });
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    registry.register({ service: 'inv', id: 'a', address: '10.0.0.1:9000', capacity: CAPACITY });
    inflight.set('10.0.0.1:9000', 6);
    clock.advance(500);
    registry.register({ service: 'inv', id: 'b', address: '10.0.0.2:9000', capacity: CAPACITY });
    expect(scaler.measure('inv')).toBe(0.6); // b is booting
    clock.advance(INTERVAL);
    expect(scaler.measure('inv')).toBe(0.3);
    // Drained and deregistered instances do not count.
    registry.drain('10.0.0.2:9000');
    expect(scaler.measure('inv')).toBe(0.6);
    expect(await step()).toMatchObject({ utilization: 0.6, raw: 3, action: 'scale-up' });
  });

  it('holds the size without load reports, and after a restart does not shrink before a whole window', async () => {
    const { scaler, driver, step, view, sync, clock } = setup();
    driver.live = ['10.0.0.8:9000', '10.0.0.9:9000', '10.0.0.10:9000']; // found running
    const d = await scaler.evaluate('inv');
    expect(d).toMatchObject({ action: 'none', current: 3, desired: 3, reason: 'no load reports yet; holding the current size' });
    expect(view().utilization).toBeNull();
    sync(0);
    // The size found counts as recommended at t = 1 s: no scale-down while that is within the window.
    while (clock.now() < 1_000 + WINDOW) expect(await step()).toMatchObject({ action: 'none' });
    expect(await step()).toMatchObject({ action: 'scale-down', desired: 1 });
  });

  it('records a failed action with its error, logs it, and tries again at the next evaluation', async () => {
    const { scaler, driver, step, view, lines } = setup({ min: 2 });
    driver.fail = new Error('kubernetes: PATCH /x answered 403 Forbidden: nope');
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    expect(view().decisions[0]).toMatchObject({ action: 'scale-up', desired: 2, error: 'kubernetes: PATCH /x answered 403 Forbidden: nope' });
    expect(view()).toMatchObject({ current: 0, desired: 0 });
    expect(lines.find((l) => l['level'] === 50)).toMatchObject({ action: 'scale-up', error: 'kubernetes: PATCH /x answered 403 Forbidden: nope' });
    driver.fail = undefined;
    expect(await step()).toMatchObject({ action: 'scale-up', desired: 2 });
    await scaler.settled('inv');
    expect(view().current).toBe(2);
  });

  it('keeps at most 20 decisions, newest first', async () => {
    const { scaler, sync, step, view } = setup({ max: 10, stabilizationWindowMs: 0, cooldownMs: 0, driver: { kind: 'process', command: ['x'], ports: { from: 1, to: 10 }, host: 'h', cwd: '/', env: {}, stopGraceMs: 1 } });
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    for (let i = 0; i < 15; i++) {
      sync(20);
      await step();
      await scaler.settled('inv');
      sync(0.1);
      await step();
      await step(DRAIN);
      await scaler.settled('inv');
    }
    const ds = view().decisions;
    expect(ds).toHaveLength(20);
    for (let i = 1; i < ds.length; i++) expect(ds[i - 1]!.at).toBeGreaterThanOrEqual(ds[i]!.at);
  });

  it('takes run-time overrides of min, max and target, validated', async () => {
    const { scaler, driver, view, clock } = setup();
    await scaler.evaluate('inv');
    await scaler.settled('inv');
    const bad = (input: unknown): string => {
      try {
        scaler.override('inv', input);
      } catch (e) {
        expect(e).toBeInstanceOf(AutoscaleInputError);
        return (e as Error).message;
      }
      throw new Error('expected an error');
    };
    expect(bad({ min: -1 })).toBe("min: expected integer 0..50 (limits.maxReplicas in cp.yaml), or null for cp.yaml's; got -1");
    expect(bad({ max: 2.5 })).toBe("max: expected integer 1..50 (limits.maxReplicas in cp.yaml), or null for cp.yaml's; got 2.5");
    expect(bad({ targetUtilization: 0 })).toBe("targetUtilization: expected number > 0 and <= 1 (or null for cp.yaml's), got 0");
    expect(bad({ targetUtilization: '0.5' })).toBe('targetUtilization: expected number > 0 and <= 1 (or null for cp.yaml\'s), got "0.5"');
    expect(bad({ min: 4, max: 3 })).toBe('max: expected integer >= min (4), got 3');
    expect(bad({ max: 11 })).toBe("max: expected at most 10 (the process driver's ports 20000-20009), got 11");
    expect(bad({ mxa: 3 })).toBe('unknown key "mxa"; expected min, max and/or targetUtilization');
    expect(bad([1])).toMatch(/^expected a JSON object/);
    expect(() => scaler.override('nope', {})).toThrow(expect.objectContaining({ status: 404 }) as Error);
    expect(view().overrides).toEqual({});
    const v = scaler.override('inv', { min: 3, targetUtilization: 0.8 });
    expect(v).toMatchObject({ min: 3, max: 5, targetUtilization: 0.8, overrides: { min: 3, targetUtilization: 0.8 } });
    // It evaluates at once: up to the new min.
    await Promise.resolve();
    await scaler.settled('inv');
    expect(driver.live).toHaveLength(3);
    clock.advance(COOLDOWN);
    expect(scaler.override('inv', { min: null })).toMatchObject({ min: 1, overrides: { targetUtilization: 0.8 } });
  });

  it('stop() ends a drain early, lifts its drains and closes the driver', async () => {
    const { scaler, driver, registry, sync, clock, view } = setup({ stabilizationWindowMs: 0, cooldownMs: 0 });
    const ticks = async () => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    const flush = async () => {
      await ticks();
      await scaler.settled('inv');
    };
    // Driven by its own timer from here.
    scaler.start();
    await flush();
    expect(driver.live).toHaveLength(1);
    sync(20);
    clock.advance(INTERVAL);
    await flush();
    expect(driver.live).toHaveLength(4);
    sync(0);
    clock.advance(INTERVAL);
    await ticks();
    expect(view()).toMatchObject({ state: 'draining', decisions: [{ action: 'scale-down' }, {}, {}] });
    expect(registry.instances('inv').some((i) => i.state === 'drained')).toBe(true);
    await scaler.stop();
    expect(registry.instances('inv').some((i) => i.state === 'drained')).toBe(false);
    expect(driver.closed).toBe(true);
    expect(await scaler.evaluate('inv')).toBeUndefined();
  });
});

describe('autoscale in cp.yaml', () => {
  const issues = (text: string): readonly string[] => {
    try {
      parseControlPlaneConfig(text, 'cp.yaml');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).issues;
    }
    throw new Error('expected a ConfigError');
  };

  it('parses each driver with defaults; relative paths against cp.yaml', () => {
    const c = parseControlPlaneConfig(
      `
autoscale:
  inventory:
    min: 2
    max: 6
    targetUtilization: 0.6
    driver:
      process:
        command: ["{node}", bin/outrigger.js, demo-app, --listen, "{host}:{port}"]
        ports: 21000-21099
        env: { PORT: "{port}" }
  orders:
    min: 0
    max: 3
    targetUtilization: 1
    interval: 2s
    stabilizationWindow: 0s
    cooldown: 1m
    driver: { compose: { file: deploy/compose.yml, project: mesh } }
  pods:
    min: 1
    max: 2
    targetUtilization: 0.5
    driver: { compose: { command: [podman-compose, --podman-path, /usr/bin/podman] } }
  web:
    min: 1
    max: 4
    targetUtilization: 0.5
    driver: { kubernetes: { apiServer: "https://10.0.0.1:6443", tokenFile: /var/run/token, caFile: ca.crt } }
`,
      '/etc/outrigger/cp.yaml',
    );
    expect(c.autoscale?.['inventory']).toEqual({
      min: 2,
      max: 6,
      targetUtilization: 0.6,
      intervalMs: 5_000,
      stabilizationWindowMs: 60_000,
      cooldownMs: 10_000,
      driver: {
        kind: 'process',
        command: ['{node}', 'bin/outrigger.js', 'demo-app', '--listen', '{host}:{port}'],
        ports: { from: 21000, to: 21099 },
        host: '127.0.0.1',
        cwd: '/etc/outrigger',
        env: { PORT: '{port}' },
        stopGraceMs: 10_000,
      },
    });
    expect(c.autoscale?.['orders']).toMatchObject({ min: 0, intervalMs: 2_000, stabilizationWindowMs: 0, cooldownMs: 60_000, driver: { kind: 'compose', command: ['docker', 'compose'], file: '/etc/outrigger/deploy/compose.yml', project: 'mesh', service: 'orders' } });
    expect(c.autoscale?.['pods']?.driver).toEqual({ kind: 'compose', command: ['podman-compose', '--podman-path', '/usr/bin/podman'], file: undefined, project: undefined, service: 'pods' });
    expect(c.autoscale?.['web']?.driver).toEqual({
      kind: 'kubernetes',
      apiServer: 'https://10.0.0.1:6443',
      namespace: 'default',
      deployment: 'web',
      tokenFile: '/var/run/token',
      caFile: '/etc/outrigger/ca.crt',
      insecureSkipTlsVerify: false,
    });
    expect(parseControlPlaneConfig('{}', 'cp.yaml').autoscale).toBeUndefined();
  });

  it('names the key path and what was expected', () => {
    const base = (extra: string, driver = '{ compose: {} }') => `autoscale:\n  inv:\n    min: 1\n    max: 3\n    targetUtilization: 0.5\n    driver: ${driver}\n${extra}`;
    expect(issues(base('', '{}'))).toEqual(['autoscale.inv.driver: expected exactly one of process, compose, kubernetes, got none']);
    expect(issues(base('', '{ compose: {}, kubernetes: { apiServer: "https://k" } }'))).toEqual(['autoscale.inv.driver: expected exactly one of process, compose, kubernetes, got compose and kubernetes']);
    expect(issues(base('', '{ process: { command: [a], ports: 100-101 } }'))).toEqual(['autoscale.inv.driver.process.ports: expected a range of at least 3 ports (max is 3, one port per instance), got "100-101"']);
    expect(issues(base('', '{ process: { command: [a], ports: 200-100 } }'))).toEqual(['autoscale.inv.driver.process.ports: expected a port range FROM-TO such as 21000-21099 (ports 1..65535, FROM <= TO), got "200-100"']);
    expect(issues(base('', '{ compose: { command: [] } }'))).toEqual(['autoscale.inv.driver.compose.command: expected at least the program to run, got []']);
    expect(issues(base('', '{ compose: { command: podman-compose } }'))).toEqual([
      'autoscale.inv.driver.compose.command: expected a command as a list of arguments, e.g. [docker, compose] or [podman-compose], got "podman-compose"',
    ]);
    expect(issues(base('    interval: 5\n'))).toEqual(['autoscale.inv.interval: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m"; a plain number has no unit (write e.g. "5ms" or "5s"), got 5']);
    expect(issues('autoscale:\n  inv: { min: 3, max: 2, targetUtilization: 1.5, driver: { compose: {} } }\n')).toEqual([
      'autoscale.inv.targetUtilization: expected number > 0 and <= 1, got 1.5',
      'autoscale.inv.max: expected integer >= min (3), got 2',
    ]);
    expect(issues('autoscale:\n  inv: { min: 3, max: 2, targetUtilization: 0.5, driver: { compose: {} } }\n')).toEqual(['autoscale.inv.max: expected integer >= min (3), got 2']);
    expect(issues('autoscale:\n  inv: { min: -1, max: 0, targetUtilization: 0.5, driver: { compose: {} } }\n')).toEqual([
      'autoscale.inv.min: expected integer >= 0, got -1',
      'autoscale.inv.max: expected integer >= 1, got 0',
    ]);
    expect(issues('autoscale:\n  inv: { min: 1, max: 2, targetUtilization: 0.5, driver: { kubernetes: { apiServer: "ftp://x" } } }\n')).toEqual([
      'autoscale.inv.driver.kubernetes.apiServer: expected the API server URL, e.g. https://10.0.0.1:6443, got "ftp://x"',
    ]);
  });
});
