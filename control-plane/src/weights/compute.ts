/**
 * Endpoint `weight` and `cost` from load reports: pure functions, no I/O, no clock.
 * Time comes in as `now` (the injected Clock's monotonic ms, the same clock that stamped `receivedAt`).
 *
 * Per endpoint with a fresh report (L = the LoadReport, capacity from the endpoint):
 *
 *   u      = max(cpu, inflight / capacity)          utilization; a missing, negative or non-finite cpu counts
 *                                                   as 0 (so u = inflight/capacity), and so does the in-flight
 *                                                   term when capacity ≤ 0; u is not capped at 1
 *   e      = min(max(errorRate, 0), 1)
 *   raw    = rps / (u + errorUtilizationPenalty · e) gRPC weighted_round_robin's rule (penalty default 1.0)
 *   cost   = clamp(1 + costGain · max(0, u − 0.5) · 2, 1, 10)                              (costGain default 4)
 *            i.e. 1.0 up to u = 0.5, then rising linearly: u 0.75 → 3, u 1.0 → 5, u ≥ 1.625 → 10
 *
 * The raw weights of the service's "computed" endpoints (below) are scaled so that their mean is
 * `meanWeight` (100):
 *
 *   target_i = clamp(meanWeight · raw_i / mean_j(raw_j), 1, 1000),  weight_i = round(target_i)
 *
 * An endpoint's weight is computed only if its report is fresh (now − receivedAt ≤ expirationMs, default
 * 15 s = three 5 s report intervals), it has been reporting for at least `blackoutMs` (default 0 = off),
 * rps ≥ minQps (default 1) and rps > 0, and u + penalty·e > 0. Otherwise it falls back (as gRPC's weight
 * expiration / blackout period) to its configured weight (or, with `fallbackWeight: 'mean'`, to
 * `meanWeight`, which is gRPC's choice, as long as some endpoint of the service is computed). Its cost is
 * still computed from any fresh report; without one it is the configured cost (default 1.0).
 *
 * A pinned weight always wins (rounded and clamped to 1..1000); the endpoint's report still sets its cost
 * and still takes part in the mean, so pinning one endpoint does not rescale the others.
 *
 * `latency_ewma_ms` is accepted but not used: the rule above is gRPC's, which has no latency term.
 * Damping (exponential smoothing and a dead band) is stateful and lives in WeightCalculator
 * (./calculator.ts); `smooth` and `withinDeadBand` below are its pure steps.
 */

export const MIN_WEIGHT = 1;
export const MAX_WEIGHT = 1000;
export const MIN_COST = 1;
export const MAX_COST = 10;
/** Utilization above which the cost starts to rise. */
export const COST_KNEE = 0.5;

/** The fields of a LoadReport (proto/outrigger/v1/discovery.proto) this module reads; a LoadReport fits. */
export interface LoadSample {
  readonly rps: number;
  readonly inflight: number;
  readonly latencyEwmaMs?: number | undefined;
  /** 0..1 */
  readonly errorRate: number;
  /** 0..1 of one core; missing (or 0, as proto3 sends "not set") means: use inflight/capacity alone. */
  readonly cpu?: number | undefined;
}

export interface ReceivedReport {
  readonly load: LoadSample;
  /** When the control plane received it: Clock.now() (monotonic ms). */
  readonly receivedAt: number;
}

export interface WeightInput {
  /** host:port, unique within the service. */
  readonly address: string;
  /** The endpoint's latest report, if any. */
  readonly report?: ReceivedReport | undefined;
  /** Weight from config or registration (integer 1..1000; rounded and clamped). */
  readonly configuredWeight: number;
  /** Concurrent requests the instance is sized for. */
  readonly capacity: number;
  /** Cost used when there is no fresh report (> 0; default 1.0). */
  readonly configuredCost?: number | undefined;
  /** Operator override: always published as the weight. */
  readonly pinnedWeight?: number | undefined;
  /**
   * Start (Clock.now() ms) of the endpoint's current unbroken run of fresh reports, for the blackout
   * period. WeightCalculator fills it in; when undefined the blackout check is skipped.
   */
  readonly reportingSince?: number | undefined;
}

/** Why an endpoint's weight was not computed from its report. */
export type FallbackReason = 'no-report' | 'expired' | 'blackout' | 'low-qps' | 'no-utilization';

/** Undamped result for one endpoint, before rounding. */
export interface WeightTarget {
  /** In [1, 1000], not rounded. */
  readonly weight: number;
  /** Computed cost in [1, 10] (fresh report) or the configured cost, not rounded. */
  readonly cost: number;
  readonly source: 'computed' | 'pinned' | 'fallback';
  /** Set when the report could not give a weight (also for pinned endpoints, for information). */
  readonly reason: FallbackReason | undefined;
  /** Whether `cost` comes from a fresh report (and so is subject to damping). */
  readonly costFromReport: boolean;
}

/** What is published for an endpoint. */
export interface EndpointWeight {
  /** Integer 1..1000. */
  readonly weight: number;
  /** > 0; rounded to 2 decimals. */
  readonly cost: number;
}

export interface WeightOptions {
  /** gRPC's error_utilization_penalty: how much an error rate counts as utilization. ≥ 0, default 1.0. */
  readonly errorUtilizationPenalty: number;
  /** Below this rps a report is too thin to weigh on (fallback). ≥ 0, default 1. */
  readonly minQps: number;
  /** A report older than this is expired (fallback). > 0, default 15 000 ms (3 × the 5 s report interval). */
  readonly expirationMs: number;
  /** A fresh run of reports is trusted only after this long. ≥ 0, default 0 (off). */
  readonly blackoutMs: number;
  /** Mean weight of the computed endpoints after scaling. 1..1000, default 100. */
  readonly meanWeight: number;
  /** k in the cost rule. ≥ 0, default 4. */
  readonly costGain: number;
  /** Weight of an endpoint whose report gives none: its configured weight (default) or `meanWeight`. */
  readonly fallbackWeight: 'configured' | 'mean';
  /** α of the exponential smoothing in WeightCalculator. In (0, 1]; 1 = no smoothing. Default 0.3. */
  readonly smoothing: number;
  /** Relative change below which WeightCalculator does not publish. In [0, 1); default 0.05. */
  readonly deadBand: number;
}

export const DEFAULT_WEIGHT_OPTIONS: WeightOptions = Object.freeze({
  errorUtilizationPenalty: 1.0,
  minQps: 1,
  expirationMs: 15_000,
  blackoutMs: 0,
  meanWeight: 100,
  costGain: 4,
  fallbackWeight: 'configured',
  smoothing: 0.3,
  deadBand: 0.05,
});

/** Defaults filled in and every value checked; throws RangeError naming the bad option. */
export function resolveWeightOptions(options: Partial<WeightOptions> = {}): WeightOptions {
  const o: WeightOptions = { ...DEFAULT_WEIGHT_OPTIONS, ...definedOnly(options) };
  const check = (name: keyof WeightOptions, ok: boolean, expected: string): void => {
    if (!ok) throw new RangeError(`weights: ${name}: expected ${expected}, got ${String(o[name])}`);
  };
  check('errorUtilizationPenalty', isFinite(o.errorUtilizationPenalty) && o.errorUtilizationPenalty >= 0, 'a number ≥ 0');
  check('minQps', isFinite(o.minQps) && o.minQps >= 0, 'a number ≥ 0');
  check('expirationMs', isFinite(o.expirationMs) && o.expirationMs > 0, 'a number > 0');
  check('blackoutMs', isFinite(o.blackoutMs) && o.blackoutMs >= 0, 'a number ≥ 0');
  check('meanWeight', isFinite(o.meanWeight) && o.meanWeight >= MIN_WEIGHT && o.meanWeight <= MAX_WEIGHT, 'a number 1..1000');
  check('costGain', isFinite(o.costGain) && o.costGain >= 0, 'a number ≥ 0');
  check('fallbackWeight', o.fallbackWeight === 'configured' || o.fallbackWeight === 'mean', '"configured" or "mean"');
  check('smoothing', isFinite(o.smoothing) && o.smoothing > 0 && o.smoothing <= 1, 'a number in (0, 1]');
  check('deadBand', isFinite(o.deadBand) && o.deadBand >= 0 && o.deadBand < 1, 'a number in [0, 1)');
  return Object.freeze(o);
}

function definedOnly(options: Partial<WeightOptions>): Partial<WeightOptions> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<WeightOptions>;
}

function isFinite(x: number): boolean {
  return Number.isFinite(x);
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/** u = max(cpu, inflight / capacity); missing/invalid parts count as 0. */
export function utilization(load: LoadSample, capacity: number): number {
  const cpu = load.cpu !== undefined && isFinite(load.cpu) && load.cpu > 0 ? load.cpu : 0;
  const occupancy = capacity > 0 && isFinite(capacity) && isFinite(load.inflight) && load.inflight > 0 ? load.inflight / capacity : 0;
  return Math.max(cpu, occupancy);
}

/** Error rate clamped to [0, 1]; NaN counts as 0. */
export function errorShare(load: LoadSample): number {
  return isFinite(load.errorRate) ? clamp(load.errorRate, 0, 1) : 0;
}

/** rps / (u + penalty · errorRate): 0 when there is no traffic or no utilization signal. */
export function rawWeight(load: LoadSample, capacity: number, errorUtilizationPenalty = DEFAULT_WEIGHT_OPTIONS.errorUtilizationPenalty): number {
  const qps = isFinite(load.rps) && load.rps > 0 ? load.rps : 0;
  const denominator = utilization(load, capacity) + errorUtilizationPenalty * errorShare(load);
  if (qps === 0 || !(denominator > 0)) return 0;
  const w = qps / denominator;
  return isFinite(w) ? w : 0;
}

/** clamp(1 + k · max(0, u − 0.5) · 2, 1, 10). */
export function costFromUtilization(u: number, costGain = DEFAULT_WEIGHT_OPTIONS.costGain): number {
  const over = isFinite(u) ? Math.max(0, u - COST_KNEE) : 0;
  return clamp(1 + costGain * over * 2, MIN_COST, MAX_COST);
}

/** Scales positive raw weights so their mean is `mean`, clamped to [1, 1000] (not rounded). */
export function normalizeWeights(raws: readonly number[], mean = DEFAULT_WEIGHT_OPTIONS.meanWeight): number[] {
  if (raws.length === 0) return [];
  const avg = raws.reduce((a, b) => a + b, 0) / raws.length;
  if (!(avg > 0) || !isFinite(avg)) return raws.map(() => mean);
  return raws.map((r) => clamp((mean * r) / avg, MIN_WEIGHT, MAX_WEIGHT));
}

/** A published weight: an integer in 1..1000 (a non-finite value becomes 1). */
export function toWeight(x: number): number {
  return isFinite(x) ? clamp(Math.round(x), MIN_WEIGHT, MAX_WEIGHT) : MIN_WEIGHT;
}

/** A published cost: rounded to 2 decimals, at least 0.01; non-finite or ≤ 0 becomes 1. */
export function toCost(x: number): number {
  return isFinite(x) && x > 0 ? Math.max(0.01, Math.round(x * 100) / 100) : 1;
}

/** One step of exponential smoothing: prev + α · (target − prev). */
export function smooth(previous: number, target: number, alpha: number): number {
  return previous + alpha * (target - previous);
}

/** True when `candidate` differs from `published` by less than `band` of `published` (not worth publishing). */
export function withinDeadBand(published: number, candidate: number, band: number): boolean {
  return Math.abs(candidate - published) < band * Math.abs(published);
}

type Usable = { kind: 'usable'; raw: number } | { kind: 'fallback'; reason: FallbackReason };

/**
 * Undamped targets for every endpoint of one service. Throws RangeError on a duplicate address.
 */
export function computeTargets(inputs: readonly WeightInput[], now: number, options: Partial<WeightOptions> = {}): Map<string, WeightTarget> {
  const o = resolveWeightOptions(options);
  const seen = new Set<string>();
  const verdicts: Usable[] = [];
  const costs: { cost: number; fromReport: boolean }[] = [];

  for (const input of inputs) {
    if (seen.has(input.address)) throw new RangeError(`weights: duplicate endpoint address ${input.address}`);
    seen.add(input.address);
    const report = input.report;
    const fresh = report !== undefined && now - report.receivedAt <= o.expirationMs;
    if (fresh) {
      costs.push({ cost: costFromUtilization(utilization(report.load, input.capacity), o.costGain), fromReport: true });
    } else {
      const configured = input.configuredCost;
      costs.push({ cost: configured !== undefined && isFinite(configured) && configured > 0 ? configured : 1, fromReport: false });
    }
    verdicts.push(judge(input, now, o));
  }

  const raws: number[] = [];
  for (const v of verdicts) if (v.kind === 'usable') raws.push(v.raw);
  const scaled = normalizeWeights(raws, o.meanWeight);

  const out = new Map<string, WeightTarget>();
  let next = 0;
  inputs.forEach((input, i) => {
    const v = verdicts[i]!;
    const { cost, fromReport } = costs[i]!;
    const computed = v.kind === 'usable' ? scaled[next++]! : undefined;
    const reason = v.kind === 'fallback' ? v.reason : undefined;
    let weight: number;
    let source: WeightTarget['source'];
    if (input.pinnedWeight !== undefined) {
      weight = toWeight(input.pinnedWeight);
      source = 'pinned';
    } else if (computed !== undefined) {
      weight = computed;
      source = 'computed';
    } else {
      weight = o.fallbackWeight === 'mean' && raws.length > 0 ? o.meanWeight : toWeight(input.configuredWeight);
      source = 'fallback';
    }
    out.set(input.address, { weight, cost, source, reason, costFromReport: fromReport });
  });
  return out;
}

function judge(input: WeightInput, now: number, o: WeightOptions): Usable {
  const report = input.report;
  if (report === undefined) return { kind: 'fallback', reason: 'no-report' };
  if (!(now - report.receivedAt <= o.expirationMs)) return { kind: 'fallback', reason: 'expired' };
  if (o.blackoutMs > 0 && input.reportingSince !== undefined && now - input.reportingSince < o.blackoutMs) {
    return { kind: 'fallback', reason: 'blackout' };
  }
  const rps = report.load.rps;
  if (!(rps >= o.minQps) || !(rps > 0)) return { kind: 'fallback', reason: 'low-qps' };
  const raw = rawWeight(report.load, input.capacity, o.errorUtilizationPenalty);
  if (!(raw > 0)) return { kind: 'fallback', reason: 'no-utilization' };
  return { kind: 'usable', raw };
}

/** Undamped published values: computeTargets rounded (weight integer 1..1000, cost to 2 decimals). */
export function computeWeights(inputs: readonly WeightInput[], now: number, options: Partial<WeightOptions> = {}): Map<string, EndpointWeight> {
  const out = new Map<string, EndpointWeight>();
  for (const [address, t] of computeTargets(inputs, now, options)) out.set(address, { weight: toWeight(t.weight), cost: toCost(t.cost) });
  return out;
}
