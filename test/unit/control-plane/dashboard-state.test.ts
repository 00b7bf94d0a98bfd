import { describe, expect, it } from 'vitest';
import { buildDashboardState, type DashboardInputs } from '../../../control-plane/src/api/dashboard/state.js';
import type { AutoscaleView } from '../../../control-plane/src/autoscale/types.js';
import type { SubscriberView } from '../../../control-plane/src/push/server.js';
import type { EndpointView, InstanceView, ServiceView } from '../../../control-plane/src/registry/registry.js';
import type { CircuitReport, EndpointReport, LoadReport } from '../../../proto/gen/outrigger/v1/discovery.js';

const NOW = 100_000;
const WALL = 1_800_000_000_000;
const STALE = 1_500;

const A = '127.0.0.1:9001';
const B = '127.0.0.1:9002';
const C = '127.0.0.1:9003';

function endpoint(address: string, id: string, extra: Partial<EndpointView> = {}): EndpointView {
  return { address, weight: 1, capacity: 100, cost: 1, source: 'registered', instance: id, state: 'serving', ...extra };
}

function instance(address: string, id: string, service = 'inventory'): InstanceView {
  return { service, id, address, weight: 1, capacity: 100, state: 'serving', registeredAt: WALL, lastHeartbeatAt: WALL, removeAt: WALL + 10_000 };
}

function load(o: Partial<LoadReport> = {}): LoadReport {
  return { rps: 0, inflight: 0, latencyEwmaMs: 0, errorRate: 0, cpu: 0, circuits: [], latencyP99Ms: 0, endpoints: [], ...o };
}

function sidecar(service: string, id: string, address: string, report: LoadReport | null, at: number | null = NOW - 100): SubscriberView {
  return {
    instance: { service, id, address, weight: 1, capacity: 100, zone: '', mtls: '' },
    subscriptions: [],
    sentVersion: '1',
    ackedVersion: '1',
    lastNack: null,
    lastLoad: report,
    lastLoadAt: report === null ? null : at,
    connectedAt: new Date(WALL).toISOString(),
  };
}

const ep = (address: string, eligible: boolean, health: string[] = [], inflight = 0): EndpointReport => ({ service: 'inventory', address, eligible, health, inflight, ewmaMs: 5 });
const circuit = (endpoint: string, state: string, service = 'inventory'): CircuitReport => ({ service, endpoint, state });

const services: ServiceView[] = [
  {
    name: 'inventory',
    policySource: 'runtime',
    policy: { lb: 'least-load' },
    endpoints: [endpoint(A, 'inv-a'), endpoint(B, 'inv-b', { weight: 7, pinnedWeight: 7 }), endpoint(C, 'inv-c', { weight: 40, cost: 2.5, computed: { weight: 40, cost: 2.5 } })],
  },
  { name: 'web', policySource: 'default', policy: {}, endpoints: [endpoint('127.0.0.1:8000', 'web-1')] },
];
const instances = [instance(A, 'inv-a'), instance(B, 'inv-b'), instance(C, 'inv-c'), instance('127.0.0.1:8000', 'web-1', 'web')];

function build(sidecars: SubscriberView[], autoscale: AutoscaleView[] = []) {
  const input: DashboardInputs = { version: '0.1.0', stateVersion: 42, services, instances, sidecars, autoscale, now: NOW, wallNow: WALL, staleAfterMs: STALE };
  return buildDashboardState(input);
}

const inventory = (s: ReturnType<typeof build>) => s.services.find((x) => x.name === 'inventory')!;
const row = (s: ReturnType<typeof build>, address: string) => inventory(s).instances.find((i) => i.address === address)!;

describe('dashboard state', () => {
  it('an endpoint is ineligible when ANY caller holds it out; health flags are the union', () => {
    const s = build([
      sidecar('web', 'web-1', '127.0.0.1:8000', load({ endpoints: [ep(A, true), ep(B, false, ['outlier'], 2), ep(C, true)] })),
      sidecar('web', 'web-2', '127.0.0.1:8001', load({ endpoints: [ep(A, true), ep(B, false, ['breaker'], 1), ep(C, false, ['active-check'])] })),
      sidecar('web', 'web-3', '127.0.0.1:8002', load({ endpoints: [ep(A, true), ep(B, true), ep(C, true)] })),
    ]);
    expect(row(s, A)).toMatchObject({ eligible: true, health: [], callers: 3 });
    expect(row(s, B)).toMatchObject({ eligible: false, health: ['breaker', 'outlier'], callers: 3, callerInflight: 3 });
    expect(row(s, C)).toMatchObject({ eligible: false, health: ['active-check'], callers: 3 });
    expect(inventory(s).totals).toMatchObject({ instances: 3, serving: 3, eligible: 1 });
  });

  it('eligibility is unknown (null) when no caller reports the endpoint; the instance never counts as its own caller', () => {
    const s = build([sidecar('inventory', 'inv-a', A, load({ endpoints: [ep(A, false, ['outlier']), ep(B, true)] }))]);
    expect(row(s, A)).toMatchObject({ eligible: null, callers: 0, health: [] });
    expect(row(s, B)).toMatchObject({ eligible: true, callers: 1 });
    expect(row(s, C)).toMatchObject({ eligible: null, callers: 0, circuit: null });
  });

  it('shows the worst per-endpoint circuit any caller reports (open > half-open > closed) and lists service circuits', () => {
    const s = build([
      sidecar('web', 'web-1', '127.0.0.1:8000', load({ circuits: [circuit('', 'closed'), circuit(A, 'closed'), circuit(B, 'half-open'), circuit(C, 'closed')] })),
      sidecar('web', 'web-2', '127.0.0.1:8001', load({ circuits: [circuit('', 'open'), circuit(A, 'closed'), circuit(B, 'closed'), circuit(C, 'open')] })),
      sidecar('web', 'web-3', '127.0.0.1:8002', load({ circuits: [circuit(A, 'closed'), circuit(B, 'closed'), circuit(C, 'half-open'), circuit(A, 'open', 'other')] })),
    ]);
    expect(row(s, A).circuit).toBe('closed');
    expect(row(s, B).circuit).toBe('half-open');
    expect(row(s, C).circuit).toBe('open');
    expect(inventory(s).circuits).toEqual([
      { reporter: 'web-2', state: 'open' },
      { reporter: 'web-1', state: 'closed' },
    ]);
  });

  it("a service's own instances count as callers for circuits only when they subscribed to it", () => {
    const peer = sidecar('inventory', 'inv-a', A, load({ circuits: [circuit('', 'open'), circuit(B, 'open')], endpoints: [ep(B, true)] }));
    const s = build([peer]);
    expect(row(s, B)).toMatchObject({ circuit: null, eligible: true, callers: 1 });
    expect(inventory(s).circuits).toEqual([]);
    const selfCaller = build([{ ...peer, subscriptions: ['inventory'] }]);
    expect(row(selfCaller, B).circuit).toBe('open');
    expect(inventory(selfCaller).circuits).toEqual([{ reporter: 'inv-a', state: 'open' }]);
  });

  it('ignores load reports older than staleAfterMs, both the instance own and its callers', () => {
    const s = build([
      sidecar('inventory', 'inv-a', A, load({ rps: 50, errorRate: 0.5, latencyP99Ms: 900 }), NOW - STALE - 1),
      sidecar('inventory', 'inv-b', B, load({ rps: 10 }), NOW - STALE),
      sidecar('web', 'web-1', '127.0.0.1:8000', load({ endpoints: [ep(A, false, ['outlier'])], circuits: [circuit(A, 'open'), circuit('', 'open')] }), NOW - 5_000),
      sidecar('web', 'web-2', '127.0.0.1:8001', null),
    ]);
    expect(row(s, A)).toMatchObject({ reporting: false, rps: null, errorRate: null, p99Ms: null, eligible: null, circuit: null, connected: true });
    expect(row(s, B)).toMatchObject({ reporting: true, rps: 10 });
    expect(row(s, C)).toMatchObject({ reporting: false, connected: false });
    expect(inventory(s).circuits).toEqual([]);
    expect(inventory(s).totals).toMatchObject({ rps: 10, errorRate: 0, p99Ms: 0 });
    expect(s.sidecars).toEqual({ connected: 4, reporting: 1 });
  });

  it('totals: rps summed, error rate weighted by rps, p99 the highest instance p99', () => {
    const s = build([
      sidecar('inventory', 'inv-a', A, load({ rps: 30, errorRate: 0, latencyP99Ms: 12, latencyEwmaMs: 4, inflight: 1.5, cpu: 0.2 })),
      sidecar('inventory', 'inv-b', B, load({ rps: 10, errorRate: 0.4, latencyP99Ms: 80 })),
      sidecar('inventory', 'inv-c', C, load({ rps: 0, errorRate: 0, latencyP99Ms: 0 })),
    ]);
    const t = inventory(s).totals;
    expect(t.rps).toBe(40);
    expect(t.errorRate).toBeCloseTo(0.1);
    expect(t.p99Ms).toBe(80);
    expect(row(s, A)).toMatchObject({ rps: 30, latencyMs: 4, p99Ms: 12, inflight: 1.5, cpu: 0.2, errorRate: 0 });
  });

  it('carries identity, weights with their source, the lb policy, versions and the autoscaler view', () => {
    const auto: AutoscaleView = {
      service: 'web',
      driver: 'process',
      min: 1,
      max: 4,
      targetUtilization: 0.6,
      current: 1,
      desired: 2,
      utilization: 0.9,
      state: 'scaling-up',
      decisions: [{ at: WALL, service: 'web', current: 1, utilization: 0.9, raw: 2, desired: 2, action: 'scale-up', reason: 'utilization 0.90 > target 0.60' }],
    };
    const s = build([], [auto, { ...auto, service: 'batch', decisions: [] }]);
    expect(s).toMatchObject({ version: '0.1.0', stateVersion: 42, generatedAt: WALL, staleAfterMs: STALE });
    expect(s.services.map((x) => x.name)).toEqual(['batch', 'inventory', 'web']);
    expect(inventory(s)).toMatchObject({ lb: 'least-load', policySource: 'runtime', autoscale: null });
    expect(s.services.find((x) => x.name === 'web')).toMatchObject({ lb: 'round-robin', autoscale: auto });
    expect(s.services.find((x) => x.name === 'batch')).toMatchObject({ instances: [], totals: { rps: 0, instances: 0 } });
    expect(row(s, A)).toMatchObject({ id: 'inv-a', weight: 1, weightSource: 'configured', connected: false });
    expect(row(s, B)).toMatchObject({ weight: 7, weightSource: 'pinned' });
    expect(row(s, C)).toMatchObject({ weight: 40, cost: 2.5, weightSource: 'computed' });
  });
});
