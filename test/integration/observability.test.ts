import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { Sidecar } from '../../sidecar/src/main.js';
import { echo, send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { sendApi } from '../helpers/control-plane.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

const root = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

interface Target {
  expr?: unknown;
}
interface Panel {
  title?: unknown;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; query?: unknown; definition?: unknown }[] };
}

/** Panels, including those nested in collapsed rows. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Metric names an expression references (outrigger_*, process_*, nodejs_*), histogram series reduced to the base name. */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:outrigger|process|nodejs)_[A-Za-z0-9_]+/g) ?? [];
  return names.map((n) => n.replace(/_(?:bucket|sum|count)$/, ''));
}

describe('observability: dashboard and scrape config match the sidecar', () => {
  let a: Upstream;
  let sidecar: Sidecar;
  let scraped: string;
  const dashboard = JSON.parse(read('deploy/grafana-dashboard.json')) as Dashboard;

  beforeAll(async () => {
    a = await startUpstream(echo('a'));
    const p = await ports();
    sidecar = await startSidecar(`
service: tester
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
log: { level: silent }
services:
  orders:
    endpoints: [ { address: ${a.address} } ]
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 2s }
    retry: { attempts: 2, on: [connect-failure, reset, 5xx], perTryTimeout: 1s, backoff: { base: 5ms, max: 20ms } }
`);
    for (let i = 0; i < 5; i++) expect((await send(sidecar.addresses.outbound, { path: `/r${i}`, headers: { host: 'orders' } })).status).toBe(200);
    const res = await send(sidecar.addresses.admin, { path: '/metrics' });
    expect(res.status).toBe(200);
    scraped = res.body;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await a.close();
  });

  it('the dashboard parses, and every panel has a title and at least one query', () => {
    const panels = allPanels(dashboard.panels).filter((p) => (p as { type?: string }).type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(10);
    for (const p of panels) {
      expect(typeof p.title === 'string' && p.title.length > 0, JSON.stringify(p).slice(0, 80)).toBe(true);
      expect(p.targets?.length ?? 0, String(p.title)).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(typeof t.expr === 'string' && t.expr.length > 0, String(p.title)).toBe(true);
    }
    const service = dashboard.templating.list.find((v) => v.name === 'service');
    expect(JSON.stringify(service?.query)).toContain('label_values(outrigger_requests_total, service)');
  });

  it('every metric a dashboard query references is exported by the sidecar', () => {
    const typed = new Set([...scraped.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const exprs = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => String(t.expr)));
    const referenced = new Set(exprs.flatMap(metricNames));
    expect(referenced.size).toBeGreaterThanOrEqual(10);
    // The control plane's own metrics (outrigger_cp_*) are checked against a real control plane below.
    const missing = [...referenced].filter((n) => !n.startsWith('outrigger_cp_') && !typed.has(n));
    expect(missing).toEqual([]);
    // The metrics the brief singles out are among those the dashboard shows.
    for (const n of ['outrigger_requests_total', 'outrigger_request_duration_seconds', 'outrigger_circuit_state', 'outrigger_retries_total', 'outrigger_endpoint_eligible', 'process_resident_memory_bytes'])
      expect(referenced.has(n), n).toBe(true);
    // The scrape really had traffic and breaker series for the configured service.
    expect(scraped).toMatch(/outrigger_requests_total\{direction="outbound",service="orders",code="200"\} 5/);
    expect(scraped).toMatch(/outrigger_circuit_state\{service="orders",endpoint=""\} 0/);
  });

  it('prometheus.yml parses and scrapes /metrics on :15000 of hosts that are docker-compose services', () => {
    const prom = parseYaml(read('deploy/prometheus.yml')) as {
      scrape_configs: { job_name: string; metrics_path?: string; scrape_interval?: string; static_configs?: { targets: string[] }[] }[];
    };
    const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, unknown> };
    const services = new Set(Object.keys(compose.services));
    const job = prom.scrape_configs.find((j) => j.job_name === 'outrigger-sidecar');
    expect(job).toBeDefined();
    expect(job!.metrics_path).toBe('/metrics');
    expect(job!.scrape_interval).toBe('10s');
    const targets = (job!.static_configs ?? []).flatMap((s) => s.targets);
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) {
      const [host, port] = t.split(':');
      expect(services.has(host!), `${t} is not a docker-compose service`).toBe(true);
      expect(port).toBe('15000');
    }
  });
});

describe('observability: the control plane metrics', () => {
  it('serves its state as Prometheus text, and prometheus.yml scrapes it on the compose network', async () => {
    const { spawnControlPlane } = await import('../helpers/control-plane.js');
    const cp = await spawnControlPlane('instanceTtl: 5s\n');
    const a = await startUpstream(echo('a'));
    const p = await ports();
    const sidecar = await startSidecar(`
service: inventory
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${a.address} }
controlPlane: { addresses: [${cp.grpc}] }
log: { level: silent }
`);
    try {
      let text = '';
      await waitFor(async () => {
        const r = await sendApi(cp.http, { path: '/metrics' });
        text = r.body;
        // The instance is published once the control plane issued its certificate, which may come after the first
        // ACK; the snapshot that publishes it is then ACKed in turn.
        return (
          r.status === 200 &&
          /outrigger_cp_config_responses_total\{result="ack"\} [1-9]/.test(text) &&
          /^outrigger_cp_instances\{service="inventory",state="serving"\} 1$/m.test(text) &&
          /^outrigger_cp_sidecars_behind 0$/m.test(text)
        );
      }, 10_000);
      expect(text).toMatch(/^outrigger_cp_sidecars_connected 1$/m);
      expect(text).toMatch(/^outrigger_cp_instances\{service="inventory",state="serving"\} 1$/m);
      expect(text).toMatch(/^outrigger_cp_state_changes_total\{reason="register"\} 1$/m);
      expect(text).toMatch(/^outrigger_cp_state_version [1-9]/m);
      expect(text).toMatch(/^outrigger_cp_sidecars_behind 0$/m);
      expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
      // Every control-plane metric the Grafana dashboard queries is one the control plane exports.
      const typed = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
      const dashboard = JSON.parse(read('deploy/grafana-dashboard.json')) as Dashboard;
      const cpNames = allPanels(dashboard.panels)
        .flatMap((p) => (p.targets ?? []).map((t) => String(t.expr)))
        .flatMap(metricNames)
        .filter((n) => n.startsWith('outrigger_cp_'));
      expect(new Set(cpNames).size).toBeGreaterThanOrEqual(4);
      expect(cpNames.filter((n) => !typed.has(n))).toEqual([]);
    } finally {
      await sidecar.stop(100);
      await cp.stop();
      await a.close();
    }
    const prom = parseYaml(read('deploy/prometheus.yml')) as { scrape_configs: { job_name: string; metrics_path?: string; static_configs?: { targets: string[] }[] }[] };
    const job = prom.scrape_configs.find((j) => j.job_name === 'outrigger-control-plane');
    expect(job?.metrics_path).toBe('/metrics');
    expect(job?.static_configs?.flatMap((s) => s.targets)).toEqual(['control-plane:15080']);
    const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, unknown> };
    expect(Object.keys(compose.services)).toContain('control-plane');
  });
});
