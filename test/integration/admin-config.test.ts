/**
 * A sidecar's GET /config is its effective configuration as a sidecar.yaml: saved to a file, it loads (with
 * the sidecar's own loader) into the configuration the sidecar was started with, and starts another sidecar
 * that serves the same configuration.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSidecarConfig, parseSidecarConfig } from '../../common/src/config/load.js';
import { createLogger } from '../../common/src/logger.js';
import { Sidecar } from '../../sidecar/src/main.js';
import { send } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

const YAML = `
service: web
instance: web-7
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0, target: http://127.0.0.1:8080, maxConcurrent: 32 }
services:
  orders:
    lb: least-request
    endpoints: [ { address: 127.0.0.1:9001, weight: 3, zone: a }, { address: 127.0.0.1:9002 } ]
    healthCheck: { http: { path: /healthz }, interval: 1m30s, timeout: 1500ms }
    circuitBreaker: { volumeThreshold: 4, resetTimeout: 10s }
    retry: { attempts: 1, on: [5xx] }
    timeout: 2s
log: { level: silent, accessLog: { sampleRate: 0.5 } }
http: { idleTimeout: 2m }
`;

describe('sidecar GET /config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outrigger-config-'));
  let sidecar: Sidecar;
  let again: Sidecar | undefined;

  beforeAll(async () => {
    sidecar = await startSidecar(YAML);
  });

  afterAll(async () => {
    await again?.stop();
    await sidecar.stop();
  });

  it('is YAML by default, JSON with ?format=json or Accept: application/json, all the same configuration', async () => {
    const admin = sidecar.addresses.admin;
    const [yaml, query, accept, bad] = await Promise.all([
      send(admin, { path: '/config' }),
      send(admin, { path: '/config?format=json' }),
      send(admin, { path: '/config', headers: { accept: 'application/json' } }),
      send(admin, { path: '/config?format=toml' }),
    ]);
    expect(yaml.status).toBe(200);
    expect(yaml.body).toMatch(/^# effective configuration of web-7: /);
    const data = parse(yaml.body) as Record<string, unknown>;
    expect(JSON.parse(query.body)).toEqual(data);
    expect(JSON.parse(accept.body)).toEqual(data);
    expect(data).toMatchObject({ service: 'web', instance: 'web-7', services: { orders: { lb: 'least-request', timeout: '2s', healthCheck: { interval: '1m30s', timeout: '1.5s' } } } });
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('format: expected json or yaml, got \\"toml\\"');
  });

  it('saved to a file, loads into the configuration the sidecar was started with, and starts a sidecar that shows the same', async () => {
    const yaml = (await send(sidecar.addresses.admin, { path: '/config' })).body;
    const file = join(dir, 'sidecar.yaml');
    writeFileSync(file, yaml);
    expect(await loadSidecarConfig(file)).toEqual(parseSidecarConfig(YAML, 'sidecar.yaml'));
    again = await Sidecar.start({ configFile: file, logger: createLogger('silent') });
    const [first, second] = await Promise.all([send(sidecar.addresses.admin, { path: '/config?format=json' }), send(again.addresses.admin, { path: '/config?format=json' })]);
    expect(JSON.parse(second.body)).toEqual(JSON.parse(first.body));
    const status = JSON.parse((await send(again.addresses.admin, { path: '/config/status' })).body) as { source: string; file: string };
    expect(status).toMatchObject({ source: 'static', file });
  });
});
