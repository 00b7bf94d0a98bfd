/**
 * WeightCalculator: the damped, stateful side of ./compute.ts. It keeps, per service and endpoint, the
 * smoothed values and the last published ones, so weights follow load without oscillating and without a
 * new snapshot for every small wobble. Call `update` on a steady period (e.g. once per report interval):
 * each call is one smoothing step.
 *
 * Per endpoint, with T = the undamped target from computeTargets, S = the smoothed value, P = the published
 * value (each kept separately for weight and for cost):
 *
 *   S' = S + α · (T − S)               exponential smoothing (α = `smoothing`, default 0.3)
 *   P' = P            if |S' − P| < deadBand · P     (dead band, default 5 %: not published)
 *   P' = round(S')    otherwise       (weight: integer clamped 1..1000; cost: 2 decimals)
 *
 * The smoothed value keeps moving while P is held, so a lasting change is published once it has built up
 * past the band, and a published value rests within the band of its target.
 *
 * Not damped (published at once, S and P reset to it): a pinned weight, a fallback weight (no usable
 * report), a cost without a fresh report, and any value for an endpoint seen for the first time. When
 * reports resume after a fallback, smoothing starts from the fallback value, so the weight ramps.
 *
 * The calculator also tracks each endpoint's run of fresh reports (`reportingSince`, for `blackoutMs`):
 * a run starts with a report that follows no fresh report and is broken by a gap longer than
 * `expirationMs` between reports, or by an update at which the latest report has expired.
 */
import {
  computeTargets,
  resolveWeightOptions,
  smooth,
  toCost,
  toWeight,
  withinDeadBand,
  type EndpointWeight,
  type WeightInput,
  type WeightOptions,
} from './compute.js';

interface EndpointState {
  weight: number;
  cost: number;
  smoothedWeight: number;
  smoothedCost: number;
  lastReceivedAt: number | undefined;
  reportingSince: number | undefined;
}

export class WeightCalculator {
  readonly options: WeightOptions;
  private readonly services = new Map<string, Map<string, EndpointState>>();
  private lastChanged = false;

  constructor(options: Partial<WeightOptions> = {}) {
    this.options = resolveWeightOptions(options);
  }

  /** Whether the last `update` published anything different (a value, or an endpoint added or removed). */
  get changed(): boolean {
    return this.lastChanged;
  }

  /**
   * One step for one service: `inputs` is its full endpoint list (an endpoint left out is forgotten),
   * `now` is Clock.now() in ms. Returns what to publish for every endpoint, by address.
   */
  update(service: string, inputs: readonly WeightInput[], now: number): Map<string, EndpointWeight> {
    const o = this.options;
    const previous = this.services.get(service) ?? new Map<string, EndpointState>();
    const withSince = inputs.map((input) => this.withRun(input, previous.get(input.address), now));
    const targets = computeTargets(withSince, now, o);

    const next = new Map<string, EndpointState>();
    const out = new Map<string, EndpointWeight>();
    let changed = previous.size !== inputs.length;
    inputs.forEach((input, i) => {
      const t = targets.get(input.address)!;
      const prev = previous.get(input.address);

      let smoothedWeight: number;
      let weight: number;
      if (t.source === 'computed' && prev !== undefined) {
        smoothedWeight = smooth(prev.smoothedWeight, t.weight, o.smoothing);
        weight = withinDeadBand(prev.weight, smoothedWeight, o.deadBand) ? prev.weight : toWeight(smoothedWeight);
      } else {
        smoothedWeight = t.weight;
        weight = toWeight(t.weight);
      }

      let smoothedCost: number;
      let cost: number;
      if (t.costFromReport && prev !== undefined) {
        smoothedCost = smooth(prev.smoothedCost, t.cost, o.smoothing);
        cost = withinDeadBand(prev.cost, smoothedCost, o.deadBand) ? prev.cost : toCost(smoothedCost);
      } else {
        smoothedCost = t.cost;
        cost = toCost(t.cost);
      }

      if (prev === undefined || prev.weight !== weight || prev.cost !== cost) changed = true;
      const run = withSince[i]!;
      next.set(input.address, {
        weight,
        cost,
        smoothedWeight,
        smoothedCost,
        lastReceivedAt: input.report?.receivedAt,
        reportingSince: run.reportingSince,
      });
      out.set(input.address, { weight, cost });
    });

    if (inputs.length === 0) this.services.delete(service);
    else this.services.set(service, next);
    this.lastChanged = changed;
    return out;
  }

  /** The values last published for a service (undefined when unknown). */
  current(service: string): Map<string, EndpointWeight> | undefined {
    const state = this.services.get(service);
    if (state === undefined) return undefined;
    return new Map([...state].map(([address, s]) => [address, { weight: s.weight, cost: s.cost }]));
  }

  /** Drops a service's state (e.g. when it is deleted); its next update starts undamped. */
  forget(service: string): void {
    this.services.delete(service);
  }

  private withRun(input: WeightInput, prev: EndpointState | undefined, now: number): WeightInput {
    if (input.reportingSince !== undefined) return input;
    const report = input.report;
    const expiry = this.options.expirationMs;
    let since: number | undefined;
    if (report === undefined || !(now - report.receivedAt <= expiry)) since = undefined;
    else if (prev?.reportingSince !== undefined && prev.lastReceivedAt !== undefined && report.receivedAt - prev.lastReceivedAt <= expiry) {
      since = prev.reportingSince;
    } else since = report.receivedAt;
    return { ...input, reportingSince: since };
  }
}
