import type { Clock } from '../../../common/src/clock.js';
import type { TimerHandle, Timers } from '../../../common/src/timers.js';
import type { SubscriberView } from '../push/server.js';
import type { Registry } from '../registry/registry.js';
import { WeightCalculator } from './calculator.js';
import type { WeightInput } from './compute.js';

/**
 * Every `intervalMs`, turns the latest load report of each registered instance into its endpoint's computed
 * cost and weight (damped by the WeightCalculator) and hands changes to the registry, which pushes them.
 */
export class WeightDriver {
  private readonly calculator = new WeightCalculator({ fallbackWeight: 'mean' });
  private timer: TimerHandle | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly sidecars: () => readonly SubscriberView[],
    private readonly clock: Clock,
    private readonly timers: Timers,
    readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer ??= this.timers.every(this.intervalMs, () => this.tick());
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  tick(): void {
    const now = this.clock.now();
    const reports = new Map<string, SubscriberView>();
    for (const s of this.sidecars()) if (s.instance !== null && s.lastLoad !== null) reports.set(`${s.instance.service}\u0000${s.instance.address}`, s);
    for (const svc of this.registry.services()) {
      const serving = svc.endpoints.filter((e) => e.state === 'serving');
      if (!serving.some((e) => reports.has(`${svc.name}\u0000${e.address}`))) continue;
      const inputs: WeightInput[] = serving.map((e) => {
        const s = reports.get(`${svc.name}\u0000${e.address}`);
        return {
          address: e.address,
          configuredWeight: e.weight,
          capacity: e.capacity,
          ...(e.pinnedWeight === undefined ? {} : { pinnedWeight: e.pinnedWeight }),
          ...(s?.lastLoad && s.lastLoadAt !== null ? { report: { load: s.lastLoad, receivedAt: s.lastLoadAt } } : {}),
        };
      });
      const out = this.calculator.update(svc.name, inputs, now);
      for (const [address, w] of out) {
        const cur = serving.find((e) => e.address === address)?.computed;
        if (cur?.weight !== w.weight || cur.cost !== w.cost) this.registry.setComputed(svc.name, address, { weight: w.weight, cost: w.cost });
      }
    }
  }
}
