import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseSidecarConfig } from '../../../common/src/config/load.js';
import { configAsFile } from '../../../sidecar/src/admin/config-view.js';

/** Every section, most keys away from their defaults. */
const FULL = `
service: web
instance: web-1
admin: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0, target: http://127.0.0.1:8080, maxConcurrent: 64 }
outbound: { listen: 127.0.0.1:0 }
controlPlane:
  addresses: [127.0.0.1:15010]
  subscribe: [billing]
  advertise: 10.0.0.5:15006
  weight: 3
  capacity: 40
  zone: eu-west-1a
  cacheFile: /tmp/web-cache.json
  reportInterval: 1500ms
services:
  orders:
    lb: ring-hash
    hashOn: { header: X-User }
    endpoints: [ { address: 127.0.0.1:9001, weight: 5, capacity: 10, cost: 2.5, zone: a }, { address: 127.0.0.1:9002 } ]
    listen: 127.0.0.1:0
    healthCheck: { http: { path: /healthz, expectedStatuses: [200, 204], host: orders.local }, interval: 1m30s, timeout: 250ms, healthyThreshold: 1, unhealthyThreshold: 4 }
    outlierDetection: { consecutive5xx: 3, interval: 2s, baseEjectionTime: 10s, maxEjectionTime: 1h, maxEjectionPercent: 20 }
    circuitBreaker: { errorThresholdPercentage: 25, volumeThreshold: 4, rollingWindow: 5s, resetTimeout: 1.5s }
    limits: { maxConcurrent: 10, maxPending: 0, maxRetries: 3 }
    retry: { attempts: 4, on: [retriable-status, reset], statuses: [503], perTryTimeout: 300ms, backoff: { base: 10ms, max: 1s }, budget: { ratio: 0.5, minPerSecond: 2 } }
    timeout: 5s
    connectTimeout: 500ms
    slowStart: 0s
    panicThreshold: 0
  cache:
    protocol: tcp
    listen: 127.0.0.1:0
    healthCheck: { tcp: {} }
    endpoints: [ { address: 127.0.0.1:6379 } ]
  grpcsvc:
    healthCheck: { grpc: { service: grpc.health.v1.Health } }
log: { level: warn, accessLog: { enabled: false, sampleRate: 0.25 } }
metrics: { enabled: false }
http: { headerTimeout: 5s, idleTimeout: 2m, bodyTimeout: 10s, maxConnections: 500, maxHeaderBytes: 8192, maxUrlBytes: 4096, maxHeaders: 50, upstreamIdleTimeout: 1s }
`;

describe('configAsFile (GET /config)', () => {
  it('loads back, as YAML and as JSON, into the very configuration it was made from', () => {
    const config = parseSidecarConfig(FULL, 'sidecar.yaml');
    const file = configAsFile(config);
    expect(parseSidecarConfig(stringify(file), 'config.yaml')).toEqual(config);
    expect(parseSidecarConfig(JSON.stringify(file), 'config.json')).toEqual(config);
  });

  it('uses the file key names, durations in their canonical form, defaults written out', () => {
    const file = configAsFile(parseSidecarConfig('service: web\nservices:\n  orders:\n    endpoints: [ { address: 127.0.0.1:9001 } ]\n    timeout: 90000ms\n', 'sidecar.yaml'));
    const orders = (file['services'] as Record<string, Record<string, unknown>>)['orders'];
    expect(orders?.['timeout']).toBe('1m30s');
    expect(orders?.['lb']).toBe('round-robin');
    expect(orders?.['retry']).toEqual({ attempts: 2, on: ['connect-failure', 'reset', 'gateway-error'], statuses: [], perTryTimeout: '1s', backoff: { base: '25ms', max: '250ms' }, budget: { ratio: 0.2, minPerSecond: 10 } });
    expect(orders?.['endpoints']).toEqual([{ address: '127.0.0.1:9001', weight: 1, capacity: 100, cost: 1 }]);
    expect(file['http']).toMatchObject({ headerTimeout: '10s', idleTimeout: '1m' });
    expect(JSON.stringify(file)).not.toMatch(/Ms"/);
    expect(parse(stringify(file))).toEqual(file);
  });
});
