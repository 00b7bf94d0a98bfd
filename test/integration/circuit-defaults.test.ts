/**
 * Circuit breakers with their defaults (no `circuitBreaker` key): every service has them, a service with
 * one bad endpoint among healthy ones keeps its service circuit closed and keeps serving from the healthy
 * one, and `circuitBreaker: false` turns them off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { send, startUpstream, type Upstream } from '../helpers/net.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

interface Circuit {
  service: string;
  endpoint: string | null;
  state: string;
  counts: { fires: number; successes: number; failures: number; rejects: number };
}

describe('circuit breakers by default', () => {
  let good: Upstream;
  let bad: Upstream;
  let sidecar: Sidecar;
  let out: string;
  let admin: string;

  beforeAll(async () => {
    good = await startUpstream((_req, res) => res.end('good'));
    bad = await startUpstream((_req, res) => {
      res.statusCode = 500;
      res.end('bad');
    });
    const p = await ports();
    sidecar = await startSidecar(`
service: web
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
log: { level: silent }
services:
  orders:
    lb: round-robin
    slowStart: 0s
    endpoints: [ { address: ${good.address} }, { address: ${bad.address} } ]
  plain:
    endpoints: [ { address: ${good.address} } ]
  unguarded:
    circuitBreaker: false
    endpoints: [ { address: ${bad.address} } ]
`);
    out = sidecar.addresses.outbound;
    admin = sidecar.addresses.admin;
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await Promise.all([good.close(), bad.close()]);
  });

  const circuits = async (): Promise<Circuit[]> => (JSON.parse((await send(admin, { path: '/circuits' })).body) as { circuits: Circuit[] }).circuits;

  it('/circuits shows a service breaker and endpoint breakers for every service, except with circuitBreaker: false', async () => {
    const all = await circuits();
    expect(all.filter((c) => c.endpoint === null).map((c) => c.service).sort()).toEqual(['orders', 'plain']);
    expect(all.filter((c) => c.service === 'orders' && c.endpoint !== null).map((c) => c.endpoint).sort()).toEqual([good.address, bad.address].sort());
    expect(all.some((c) => c.service === 'unguarded')).toBe(false);
  });

  it('one of two endpoints answering 500: the healthy one keeps serving and the service circuit stays closed', async () => {
    const statuses = new Map<number, number>();
    for (let i = 0; i < 120; i++) {
      const r = await send(out, { headers: { host: 'orders' } });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    // No 503: the service breaker never refused. The bad endpoint answered 500 until its own breaker took it
    // out (20 requests, the volume threshold); every other request reached the healthy one.
    expect(statuses.get(503)).toBeUndefined();
    expect(statuses.get(500)).toBe(20);
    expect(statuses.get(200)).toBe(100);
    const all = await circuits();
    const service = all.find((c) => c.service === 'orders' && c.endpoint === null)!;
    expect(service.state).toBe('closed');
    expect(service.counts.failures).toBe(0);
    expect(service.counts.rejects).toBe(0);
    expect(all.find((c) => c.endpoint === bad.address)!.state).toBe('open');
    expect(all.find((c) => c.service === 'orders' && c.endpoint === good.address)!.state).toBe('closed');
  });

  it('with circuitBreaker: false every request reaches the failing endpoint', async () => {
    const before = bad.count;
    for (let i = 0; i < 30; i++) expect((await send(out, { headers: { host: 'unguarded' } })).status).toBe(500);
    expect(bad.count - before).toBe(30);
  });
});
