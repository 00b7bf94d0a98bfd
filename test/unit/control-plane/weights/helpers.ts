import type { LoadSample, WeightInput } from '../../../../control-plane/src/weights/compute.js';

export interface EndpointCase {
  rps?: number;
  cpu?: number | undefined;
  inflight?: number;
  errorRate?: number;
  /** Age of the report at `now` in ms (default 0); `null` means no report at all. */
  age?: number | null;
  capacity?: number;
  configuredWeight?: number;
  configuredCost?: number;
  pinnedWeight?: number;
  reportingSince?: number;
}

/** One WeightInput at time `now`: a report of rps 100, cpu 0.5, inflight 0, no errors unless told. */
export function input(address: string, c: EndpointCase, now: number): WeightInput {
  const load: LoadSample = { rps: c.rps ?? 100, inflight: c.inflight ?? 0, errorRate: c.errorRate ?? 0, cpu: 'cpu' in c ? c.cpu : 0.5 };
  return {
    address,
    configuredWeight: c.configuredWeight ?? 1,
    capacity: c.capacity ?? 100,
    ...(c.age === null ? {} : { report: { load, receivedAt: now - (c.age ?? 0) } }),
    ...(c.configuredCost === undefined ? {} : { configuredCost: c.configuredCost }),
    ...(c.pinnedWeight === undefined ? {} : { pinnedWeight: c.pinnedWeight }),
    ...(c.reportingSince === undefined ? {} : { reportingSince: c.reportingSince }),
  };
}

/** Inputs for endpoints named a, b, c, … */
export function inputs(cases: readonly EndpointCase[], now: number): WeightInput[] {
  return cases.map((c, i) => input(String.fromCharCode(97 + i), c, now));
}

export function variance(xs: readonly number[]): number {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return xs.reduce((a, x) => a + (x - mean) ** 2, 0) / xs.length;
}
