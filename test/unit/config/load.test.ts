import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSidecarConfig, parseServiceConfig, parseSidecarConfig } from '../../../common/src/config/load.js';
import type { ServiceConfig } from '../../../common/src/config/types.js';
import { ConfigError } from '../../../common/src/errors.js';

/** The complete sidecar.yaml example of docs/configuration.md, verbatim. */
const DOCUMENTED_EXAMPLE = `
service: catalog                  # the service this sidecar sits beside
instance: catalog-1               # default: <service>-<hostname>-<inbound port>
admin:    { listen: 127.0.0.1:15000 }
inbound:  { listen: 0.0.0.0:15006, target: http://127.0.0.1:8080, maxConcurrent: 256 }
outbound: { listen: 127.0.0.1:15001 }
controlPlane: { addresses: [127.0.0.1:15010] }      # optional: without it, static config only
services:                         # upstreams; the control plane may add and update them
  inventory:
    lb: least-load                # random | weighted-random | round-robin | weighted-round-robin |
                                  # least-request | least-load | peak-ewma | ring-hash | maglev
    hashOn: { header: x-user-id } # ring-hash / maglev only
    endpoints:
      - { address: 127.0.0.1:9001, weight: 1, capacity: 100, cost: 1.0, zone: a }
    healthCheck: { http: { path: /healthz }, interval: 2s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3 }
    outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 3, interval: 5s,
                        baseEjectionTime: 30s, maxEjectionPercent: 50 }
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindow: 10s, resetTimeout: 5s }
    limits: { maxConcurrent: 1024, maxPending: 1024, maxRetries: 64 }
    retry: { attempts: 2, on: [connect-failure, reset, gateway-error], perTryTimeout: 1s,
             backoff: { base: 25ms, max: 250ms }, budget: { ratio: 0.2, minPerSecond: 10 } }
    timeout: 15s
    slowStart: 30s
    panicThreshold: 50
`;

const FULL = DOCUMENTED_EXAMPLE;

const MINIMAL = `
service: catalog
services:
  inventory:
    endpoints: [{ address: 127.0.0.1:9001 }]
`;

/** The HTTP/1.1 engine's defaults (the `http` section). */
const DEFAULT_HTTP = {
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyTimeoutMs: 30_000,
  maxConnections: 10_000,
  maxHeaderBytes: 16_384,
  maxUrlBytes: 8_192,
  maxHeaders: 100,
  upstreamIdleTimeoutMs: 4_000,
};

const DEFAULT_SERVICE: ServiceConfig = {
  lb: 'round-robin',
  hashOn: undefined,
  endpoints: [{ address: '127.0.0.1:9001', weight: 1, capacity: 100, cost: 1, zone: undefined }],
  listen: undefined,
  protocol: 'http',
  healthCheck: undefined,
  outlierDetection: undefined,
  // Breakers are on by default.
  circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10_000, resetTimeoutMs: 5_000 },
  limits: { maxConcurrent: 1024, maxPending: 1024, maxRetries: 64 },
  retry: {
    attempts: 2,
    on: ['connect-failure', 'reset', 'gateway-error'],
    statuses: [],
    perTryTimeoutMs: 1_000,
    backoff: { baseMs: 25, maxMs: 250 },
    budget: { ratio: 0.2, minPerSecond: 10 },
  },
  timeoutMs: 15_000,
  connectTimeoutMs: 2_000,
  slowStartMs: 30_000,
  panicThreshold: 50,
};

/** The issues of the ConfigError that parsing `text` throws. */
function issuesOf(text: string, file = 'sidecar.yaml'): readonly string[] {
  try {
    parseSidecarConfig(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

/** A config whose one upstream, services.inventory, has exactly `lines`. */
function inventory(lines: string): string {
  return `service: catalog\nservices:\n  inventory:\n${lines
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n')}\n`;
}

/** MINIMAL with extra lines under services.inventory. */
function withInventory(lines: string): string {
  return inventory(`endpoints: [{ address: 127.0.0.1:9001 }]\n${lines}`);
}

describe('parseSidecarConfig: the complete example', () => {
  it('parses it with durations in ms and defaults filled in', () => {
    const c = parseSidecarConfig(FULL, 'sidecar.yaml');
    expect(c).toEqual({
      service: 'catalog',
      instance: 'catalog-1',
      admin: { listen: '127.0.0.1:15000' },
      inbound: { listen: '0.0.0.0:15006', target: 'http://127.0.0.1:8080', maxConcurrent: 256, mtls: 'mesh' },
      outbound: { listen: '127.0.0.1:15001' },
      controlPlane: { addresses: ['127.0.0.1:15010'], subscribe: [], weight: 1, capacity: 100, reportIntervalMs: 5_000, resolveTimeoutMs: 1_000, tls: true },
      services: {
        inventory: {
          lb: 'least-load',
          hashOn: { header: 'x-user-id' }, // kept, though only ring-hash / maglev use it
          endpoints: [{ address: '127.0.0.1:9001', weight: 1, capacity: 100, cost: 1, zone: 'a' }],
          listen: undefined,
          protocol: 'http',
          healthCheck: {
            http: { path: '/healthz', expectedStatuses: [200], host: undefined },
            tcp: undefined,
            grpc: undefined,
            intervalMs: 2_000,
            timeoutMs: 1_000,
            healthyThreshold: 2,
            unhealthyThreshold: 3,
          },
          outlierDetection: {
            consecutive5xx: 5,
            consecutiveGatewayFailure: 3,
            intervalMs: 5_000,
            baseEjectionTimeMs: 30_000,
            maxEjectionTimeMs: 300_000,
            maxEjectionPercent: 50,
            successRateMinimumHosts: 3,
            successRateRequestVolume: 100,
            successRateStdevFactor: 1.9,
            failurePercentageThreshold: 85,
            failurePercentageMinimumHosts: 3,
            failurePercentageRequestVolume: 50,
          },
          circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10_000, resetTimeoutMs: 5_000 },
          limits: { maxConcurrent: 1024, maxPending: 1024, maxRetries: 64 },
          retry: {
            attempts: 2,
            on: ['connect-failure', 'reset', 'gateway-error'],
            statuses: [],
            perTryTimeoutMs: 1_000,
            backoff: { baseMs: 25, maxMs: 250 },
            budget: { ratio: 0.2, minPerSecond: 10 },
          },
          timeoutMs: 15_000,
          connectTimeoutMs: 2_000,
          slowStartMs: 30_000,
          panicThreshold: 50,
        },
      },
      log: { level: 'info', accessLog: { enabled: true, sampleRate: 1, query: false } },
      metrics: { enabled: true },
      http: DEFAULT_HTTP,
    });
  });

  it('takes non-default values where given', () => {
    const c = parseSidecarConfig(
      `
service: catalog
admin: { listen: 0.0.0.0:9900 }
log: { level: debug, accessLog: { enabled: false, sampleRate: 0.1, query: true } }
metrics: { enabled: false }
controlPlane: { addresses: [cp-1.mesh.local:15010, "[::1]:15010"] }
services:
  pay.v2:
    lb: maglev
    hashOn: { cookie: session }
    endpoints: [{ address: "[2001:db8::1]:8443", weight: 1000, capacity: 1, cost: 0.25 }, { address: pay-2.internal:8443 }]
    listen: 127.0.0.1:9100
    healthCheck: { grpc: { service: pay.v2.Pay }, interval: 500ms, timeout: 250ms }
    circuitBreaker: {}
    outlierDetection: { maxEjectionTime: 1h, successRateStdevFactor: 2.5 }
    retry: { attempts: 0, on: [5xx, retriable-status], statuses: [409, 429], backoff: { base: 1s, max: 1m30s } }
    timeout: 1m
    connectTimeout: 1.5s
    slowStart: 0s
    panicThreshold: 0
  tcp-only:
    endpoints: [{ address: 10.0.0.1:5432 }]
    healthCheck: { tcp: {} }
  tcp-null:
    endpoints: [{ address: 10.0.0.2:5432 }]
    healthCheck: { tcp: }
`,
      'sidecar.yaml',
    );
    expect(c.admin.listen).toBe('0.0.0.0:9900');
    expect(c.log).toEqual({ level: 'debug', accessLog: { enabled: false, sampleRate: 0.1, query: true } });
    expect(c.metrics.enabled).toBe(false);
    expect(c.controlPlane?.addresses).toEqual(['cp-1.mesh.local:15010', '[::1]:15010']);
    const pay = c.services['pay.v2'];
    expect(pay?.lb).toBe('maglev');
    expect(pay?.hashOn).toEqual({ cookie: 'session' });
    expect(pay?.endpoints).toEqual([
      { address: '[2001:db8::1]:8443', weight: 1000, capacity: 1, cost: 0.25, zone: undefined },
      { address: 'pay-2.internal:8443', weight: 1, capacity: 100, cost: 1, zone: undefined },
    ]);
    expect(pay?.listen).toBe('127.0.0.1:9100');
    expect(pay?.healthCheck).toMatchObject({ grpc: { service: 'pay.v2.Pay' }, intervalMs: 500, timeoutMs: 250 });
    expect(pay?.circuitBreaker).toEqual({ errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10_000, resetTimeoutMs: 5_000 });
    expect(pay?.outlierDetection).toMatchObject({ maxEjectionTimeMs: 3_600_000, baseEjectionTimeMs: 30_000, successRateStdevFactor: 2.5 });
    expect(pay?.retry).toEqual({
      attempts: 0,
      on: ['5xx', 'retriable-status'],
      statuses: [409, 429],
      perTryTimeoutMs: 1_000,
      backoff: { baseMs: 1_000, maxMs: 90_000 },
      budget: { ratio: 0.2, minPerSecond: 10 },
    });
    expect(pay?.timeoutMs).toBe(60_000);
    expect(pay?.connectTimeoutMs).toBe(1_500);
    expect(pay?.slowStartMs).toBe(0);
    expect(pay?.panicThreshold).toBe(0);
    expect(c.services['tcp-only']?.healthCheck?.tcp).toEqual({});
    expect(c.services['tcp-null']?.healthCheck?.tcp).toEqual({});
  });

  it('lower-cases hashOn header names', () => {
    const c = parseSidecarConfig(withInventory('lb: ring-hash\nhashOn: { header: X-User-ID }'), 'sidecar.yaml');
    expect(c.services['inventory']?.hashOn).toEqual({ header: 'x-user-id' });
  });
});

describe('parseSidecarConfig: minimal config', () => {
  it('fills every default', () => {
    const c = parseSidecarConfig(MINIMAL, 'sidecar.yaml');
    expect(c).toEqual({
      service: 'catalog',
      instance: `catalog-${hostname()}-15006`,
      admin: { listen: '127.0.0.1:15000' },
      inbound: undefined,
      outbound: { listen: '127.0.0.1:15001' },
      controlPlane: undefined,
      services: { inventory: DEFAULT_SERVICE },
      log: { level: 'info', accessLog: { enabled: true, sampleRate: 1, query: false } },
      metrics: { enabled: true },
      http: DEFAULT_HTTP,
    });
  });

  it('reads the http section: durations in ms, limits, and errors naming the key', () => {
    const c = parseSidecarConfig('service: a\nhttp: { headerTimeout: 2s, bodyTimeout: 500ms, maxConnections: 50, maxHeaderBytes: 8192 }\n', 'sidecar.yaml');
    expect(c.http).toEqual({ ...DEFAULT_HTTP, headerTimeoutMs: 2_000, bodyTimeoutMs: 500, maxConnections: 50, maxHeaderBytes: 8_192 });
    expect(issuesOf('service: a\nhttp: { maxHeaderBytes: 10 }\n')).toEqual(['http.maxHeaderBytes: expected integer 1024..1048576, got 10']);
    expect(issuesOf('service: a\nhttp: { idleTimeout: soon }\n')[0]).toMatch(/^http\.idleTimeout: expected a duration/);
    expect(issuesOf('service: a\nhttp: { keepAlive: 1s }\n')[0]).toMatch(/^http\.keepAlive: expected one of the keys headerTimeout/);
  });

  it('defaults the instance from the inbound port', () => {
    const c = parseSidecarConfig(`service: web\ninbound: { listen: 0.0.0.0:18080, target: http://localhost:3000 }\n`, 'sidecar.yaml');
    expect(c.instance).toBe(`web-${hostname()}-18080`);
    expect(c.inbound).toEqual({ listen: '0.0.0.0:18080', target: 'http://localhost:3000', maxConcurrent: 256, mtls: 'off' });
    expect(parseSidecarConfig(`service: web\ninbound: { target: http://127.0.0.1:8080 }\n`, 'x.yaml').inbound?.listen).toBe('0.0.0.0:15006');
  });

  it('inbound.mtls follows the mesh-wide mode with a control plane, is off without one, and mesh needs one', () => {
    const inbound = 'inbound: { target: http://127.0.0.1:8080 }\n';
    expect(parseSidecarConfig(`service: web\n${inbound}controlPlane: { addresses: [127.0.0.1:15010] }\n`, 'x.yaml').inbound?.mtls).toBe('mesh');
    expect(parseSidecarConfig(`service: web\n${inbound}`, 'x.yaml').inbound?.mtls).toBe('off');
    expect(parseSidecarConfig(`service: web\ninbound: { target: http://127.0.0.1:8080, mtls: permissive }\ncontrolPlane: { addresses: [127.0.0.1:15010] }\n`, 'x.yaml').inbound?.mtls).toBe('permissive');
    expect(issuesOf(`service: web\ninbound: { target: http://127.0.0.1:8080, mtls: mesh }\n`)).toEqual([
      'inbound.mtls: expected strict, permissive or off (mesh follows the control plane, and there is no controlPlane), got "mesh"',
    ]);
    expect(issuesOf(`service: web\ninbound: { target: http://127.0.0.1:8080, mtls: on }\n`)).toEqual(['inbound.mtls: expected one of strict | permissive | off | mesh, got "on"']);
  });

  it('reads inbound.idempotency: present means on, sizes with binary units, errors naming the key', () => {
    const base = 'service: web\ninbound: { target: http://127.0.0.1:8080';
    expect(parseSidecarConfig(`${base} }\n`, 'sidecar.yaml').inbound?.idempotency).toBeUndefined();
    const defaults = { ttlMs: 600_000, maxBytes: 16_777_216, maxEntryBytes: 1_048_576 };
    expect(parseSidecarConfig(`${base}, idempotency: {} }\n`, 'sidecar.yaml').inbound?.idempotency).toEqual(defaults);
    expect(parseSidecarConfig(`service: web\ninbound:\n  target: http://127.0.0.1:8080\n  idempotency:\n`, 'sidecar.yaml').inbound?.idempotency).toEqual(defaults);
    expect(parseSidecarConfig(`${base}, idempotency: { ttl: 1m, maxBytes: 64MiB, maxEntryBytes: 512KiB } }\n`, 'sidecar.yaml').inbound?.idempotency).toEqual({
      ttlMs: 60_000,
      maxBytes: 67_108_864,
      maxEntryBytes: 524_288,
    });
    expect(parseSidecarConfig(`${base}, idempotency: { maxBytes: 1048576, maxEntryBytes: 1.5KiB } }\n`, 'sidecar.yaml').inbound?.idempotency).toMatchObject({ maxBytes: 1_048_576, maxEntryBytes: 1_536 });
    expect(issuesOf(`${base}, idempotency: { maxBytes: 16MB } }\n`)).toEqual([
      'inbound.idempotency.maxBytes: expected a size in bytes or with a unit (B, KiB, MiB, GiB) such as "64KiB", "16MiB", got "16MB"',
    ]);
    expect(issuesOf(`${base}, idempotency: { maxBytes: 10 } }\n`)).toEqual(['inbound.idempotency.maxBytes: expected a size from 1KiB to 1GiB, got 10']);
    expect(issuesOf(`${base}, idempotency: { maxBytes: 1MiB, maxEntryBytes: 2MiB } }\n`)).toEqual(['inbound.idempotency.maxEntryBytes: expected maxEntryBytes <= maxBytes (1MiB), got "2MiB"']);
    expect(issuesOf(`${base}, idempotency: { maxBytes: 512KiB } }\n`)).toEqual(['inbound.idempotency.maxEntryBytes: expected maxEntryBytes <= maxBytes (512KiB), got "1MiB" (the default)']);
    expect(issuesOf(`${base}, idempotency: { ttl: 10 } }\n`)[0]).toMatch(/^inbound\.idempotency\.ttl: expected a duration/);
    expect(issuesOf(`${base}, idempotency: { tll: 1m } }\n`)[0]).toMatch(/^inbound\.idempotency\.tll: expected one of the keys ttl, maxBytes, maxEntryBytes/);
  });

  it('accepts a sidecar with no upstreams (services omitted or empty)', () => {
    expect(parseSidecarConfig('service: edge\n', 'sidecar.yaml').services).toEqual({});
    expect(parseSidecarConfig('service: edge\nservices:\n', 'sidecar.yaml').services).toEqual({});
  });

  it('accepts services without endpoints when a control plane supplies them', () => {
    const c = parseSidecarConfig('service: a\ncontrolPlane: { addresses: [127.0.0.1:15010] }\nservices:\n  b: { lb: least-load }\n', 'sidecar.yaml');
    expect(c.services['b']?.endpoints).toEqual([]);
    expect(c.services['b']?.lb).toBe('least-load');
  });
});

describe('parseSidecarConfig: the result is deep-frozen', () => {
  it('freezes every level', () => {
    const c = parseSidecarConfig(FULL, 'sidecar.yaml');
    const inv = c.services['inventory'];
    for (const o of [c, c.admin, c.inbound, c.services, inv, inv?.endpoints, inv?.endpoints[0], inv?.retry, inv?.retry.on, inv?.retry.backoff, inv?.healthCheck?.http, inv?.healthCheck?.http?.expectedStatuses, c.log.accessLog]) {
      expect(Object.isFrozen(o)).toBe(true);
    }
    expect(() => {
      (c as { service: string }).service = 'x';
    }).toThrow(TypeError);
    expect(() => (inv?.retry.on as string[]).push('5xx')).toThrow(TypeError);
  });

  it('does not share frozen defaults between results in a way that leaks', () => {
    const a = parseSidecarConfig(MINIMAL, 'sidecar.yaml');
    const b = parseSidecarConfig(MINIMAL, 'sidecar.yaml');
    expect(a).toEqual(b);
    expect(b.services['inventory']?.retry.on).toEqual(['connect-failure', 'reset', 'gateway-error']);
  });
});

describe('parseSidecarConfig: error messages', () => {
  it('produces exactly the documented message for a non-integer retry count', () => {
    const text = `
service: catalog
services:
  orders:
    endpoints: [{ address: 127.0.0.1:9001 }]
    retry: { attempts: three }
`;
    expect(() => parseSidecarConfig(text, 'sidecar.yaml')).toThrow(ConfigError);
    expect(issuesOf(text)).toEqual(['services.orders.retry.attempts: expected integer 0..10, got "three"']);
    try {
      parseSidecarConfig(text, 'sidecar.yaml');
    } catch (e) {
      expect((e as ConfigError).message).toBe('sidecar.yaml: services.orders.retry.attempts: expected integer 0..10, got "three"');
      expect((e as ConfigError).file).toBe('sidecar.yaml');
    }
  });

  it('names the file as given', () => {
    expect(() => parseSidecarConfig('service: 7\n', '/etc/outrigger/sidecar.yaml')).toThrow(
      /^\/etc\/outrigger\/sidecar\.yaml: service: expected a service name .*, got 7$/,
    );
  });

  it('rejects out-of-range integers with the same message', () => {
    expect(issuesOf(withInventory('retry: { attempts: 11 }'))).toEqual(['services.inventory.retry.attempts: expected integer 0..10, got 11']);
    expect(issuesOf(withInventory('retry: { attempts: 1.5 }'))).toEqual(['services.inventory.retry.attempts: expected integer 0..10, got 1.5']);
  });

  it('rejects unknown keys, suggesting the likely one', () => {
    expect(issuesOf(withInventory('retyr: { attempts: 1 }'))).toEqual([
      'services.inventory.retyr: expected one of the keys lb, hashOn, endpoints, listen, protocol, healthCheck, outlierDetection, circuitBreaker, limits, retry, timeout, connectTimeout, slowStart, panicThreshold, authorization, got unknown key "retyr" (did you mean "retry"?)',
    ]);
    expect(issuesOf(withInventory('timeoutMs: 100'))[0]).toMatch(/^services\.inventory\.timeoutMs: .*got unknown key "timeoutMs" \(did you mean "timeout"\? durations are written with a unit/);
    expect(issuesOf(withInventory('health_check: {}'))[0]).toMatch(/got unknown key "health_check" \(did you mean "healthCheck"\?\)$/);
    expect(issuesOf('service: a\nadmin: { listen: 127.0.0.1:1, port: 2 }\n')).toEqual(['admin.port: expected one of the keys listen, got unknown key "port"']);
    expect(issuesOf('service: a\nzzz: 1\n')).toEqual([
      'zzz: expected one of the keys service, instance, admin, inbound, outbound, controlPlane, services, log, metrics, http, got unknown key "zzz"',
    ]);
    expect(issuesOf(inventory('endpoints: [{ address: 127.0.0.1:1, wieght: 2 }]'))).toEqual([
      'services.inventory.endpoints[0].wieght: expected one of the keys address, weight, capacity, cost, zone, mesh, got unknown key "wieght" (did you mean "weight"?)',
    ]);
  });

  it('rejects bad durations, plain numbers included', () => {
    expect(issuesOf(withInventory('timeout: 15'))).toEqual([
      'services.inventory.timeout: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m"; a plain number has no unit (write e.g. "15ms" or "15s"), got 15',
    ]);
    expect(issuesOf(withInventory('connectTimeout: 2sec'))).toEqual([
      'services.inventory.connectTimeout: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m", got "2sec"',
    ]);
    expect(issuesOf(withInventory('retry: { perTryTimeout: 0s }'))).toEqual(['services.inventory.retry.perTryTimeout: expected a duration greater than 0, got "0s"']);
    expect(issuesOf(withInventory('healthCheck: { tcp: {}, interval: 2d }'))).toEqual([
      'services.inventory.healthCheck.interval: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m", got "2d"',
    ]);
    expect(issuesOf(withInventory('circuitBreaker: { resetTimeout: 48h }'))).toEqual(['services.inventory.circuitBreaker.resetTimeout: expected a duration of at most 24h, got "48h"']);
    expect(issuesOf(withInventory('circuitBreaker: true'))).toEqual(['services.inventory.circuitBreaker: expected a mapping, or false to turn the breakers off, got true']);
    expect(issuesOf(withInventory('circuitBreaker: { volumeThreshold: many }'))).toEqual(['services.inventory.circuitBreaker.volumeThreshold: expected integer >= 0, got "many"']);
    expect(issuesOf(withInventory('circuitBreaker: { resetTimeot: 1s }'))[0]).toContain('services.inventory.circuitBreaker.resetTimeot: expected one of the keys errorThresholdPercentage, volumeThreshold, rollingWindow, resetTimeout, got unknown key "resetTimeot" (did you mean "resetTimeout"?)');
  });

  it('rejects bad addresses', () => {
    const bad = (address: string): readonly string[] => issuesOf(inventory(`endpoints: [{ address: "${address}" }]`));
    expect(bad('localhost')).toEqual(['services.inventory.endpoints[0].address: expected host:port (IPv4, hostname or [IPv6]); the port is missing, got "localhost"']);
    expect(bad('127.0.0.1:0')).toEqual(['services.inventory.endpoints[0].address: expected host:port with port 1..65535, got "127.0.0.1:0"']);
    expect(bad('127.0.0.1:65536')).toEqual(['services.inventory.endpoints[0].address: expected host:port with port 1..65535, got "127.0.0.1:65536"']);
    expect(bad('300.1.1.1:80')).toEqual([
      'services.inventory.endpoints[0].address: expected host:port whose host is a valid IPv4 address, hostname or [IPv6], got "300.1.1.1:80"',
    ]);
    expect(bad('bad_host:80')[0]).toMatch(/whose host is a valid IPv4 address, hostname or \[IPv6\], got "bad_host:80"$/);
    expect(bad('::1:80')).toEqual(['services.inventory.endpoints[0].address: expected host:port with an IPv6 host in brackets, e.g. [::1]:8080, got "::1:80"']);
    expect(bad('[::g]:80')).toEqual(['services.inventory.endpoints[0].address: expected host:port with a valid IPv6 address inside the brackets, got "[::g]:80"']);
    expect(issuesOf('service: a\noutbound: { listen: 15001 }\n')).toEqual(['outbound.listen: expected host:port (IPv4, hostname or [IPv6]), got 15001']);
    expect(issuesOf('service: a\ncontrolPlane: { addresses: [cp] }\n')).toEqual(['controlPlane.addresses[0]: expected host:port (IPv4, hostname or [IPv6]); the port is missing, got "cp"']);
  });

  it('rejects weights, capacities and costs out of range, naming the array index', () => {
    const text = inventory('endpoints: [{ address: 127.0.0.1:1 }, { address: 127.0.0.1:2 }, { address: 127.0.0.1:3, weight: 1001, capacity: 0, cost: 0 }]');
    expect(issuesOf(text)).toEqual([
      'services.inventory.endpoints[2].weight: expected integer 1..1000, got 1001',
      'services.inventory.endpoints[2].capacity: expected integer >= 1, got 0',
      'services.inventory.endpoints[2].cost: expected number > 0, got 0',
    ]);
    expect(issuesOf(inventory('endpoints: [{ address: 127.0.0.1:1, weight: 0 }]'))).toEqual(['services.inventory.endpoints[0].weight: expected integer 1..1000, got 0']);
    expect(issuesOf(inventory('endpoints: [{ address: 127.0.0.1:1, weight: "5" }]'))).toEqual(['services.inventory.endpoints[0].weight: expected integer 1..1000, got "5"']);
  });

  it('requires hashOn for ring-hash and maglev', () => {
    expect(issuesOf(withInventory('lb: ring-hash'))).toEqual([
      'services.inventory.hashOn: expected hashOn: { header: <name> } or { cookie: <name> } because lb is ring-hash, got nothing',
    ]);
    expect(issuesOf(withInventory('lb: maglev'))[0]).toMatch(/^services\.inventory\.hashOn: .* because lb is maglev, got nothing$/);
    expect(issuesOf(withInventory('lb: maglev\nhashOn: {}'))).toEqual(['services.inventory.hashOn: expected exactly one of header or cookie, got {}']);
    expect(issuesOf(withInventory('lb: maglev\nhashOn: { header: "bad header" }'))).toEqual(['services.inventory.hashOn.header: expected an HTTP header name, got "bad header"']);
  });

  it('rejects an unknown lb policy', () => {
    expect(issuesOf(withInventory('lb: fastest'))).toEqual([
      'services.inventory.lb: expected one of random | weighted-random | round-robin | weighted-round-robin | least-request | least-load | peak-ewma | ring-hash | maglev, got "fastest"',
    ]);
  });

  it('reports YAML syntax errors with the file and line', () => {
    try {
      parseSidecarConfig('service: catalog\nservices:\n  orders: { endpoints: [\n', 'conf/sidecar.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).message).toMatch(/^conf\/sidecar\.yaml: line \d+, column \d+: YAML syntax error: /);
    }
    expect(issuesOf('service: a\n  bad: indentation\n')[0]).toMatch(/^line 1, column \d+: YAML syntax error: /);
    expect(issuesOf('service: a\nservice: b\n')).toEqual(['line 2, column 1: YAML syntax error: Map keys must be unique']);
  });

  it('rejects an empty document and a non-mapping one', () => {
    expect(issuesOf('')).toEqual(['(root): expected a mapping with at least `service: <name>`, got an empty document']);
    expect(issuesOf('# nothing\n')).toEqual(['(root): expected a mapping with at least `service: <name>`, got an empty document']);
    expect(issuesOf('- a\n- b\n')).toEqual(['(root): expected a mapping, got ["a","b"]']);
  });

  it('requires service', () => {
    expect(issuesOf('services: {}\n')).toEqual([
      'service: expected a service name of lower-case letters, digits, "-" and "." that starts and ends with a letter or digit, got nothing',
    ]);
  });

  it('rejects bad service names', () => {
    expect(issuesOf('service: Catalog\n')[0]).toMatch(/^service: expected a service name .*, got "Catalog"$/);
    expect(issuesOf(`${MINIMAL}  -bad-:\n    endpoints: [{ address: 127.0.0.1:1 }]\n`)).toEqual([
      'services.-bad-: expected a service name of lower-case letters, digits, "-" and "." that starts and ends with a letter or digit, got "-bad-"',
    ]);
    expect(issuesOf(`${MINIMAL}  "a b":\n    endpoints: [{ address: 127.0.0.1:1 }]\n`)[0]).toMatch(/^services\["a b"\]: expected a service name/);
  });

  it('rejects duplicate listen addresses, naming both keys', () => {
    const text = `
service: catalog
inbound: { target: http://127.0.0.1:8080 }
services:
  a: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:9100 }
  b: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:9100 }
  c: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:15001 }
  d: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:15006 }
  e: { endpoints: [{ address: 127.0.0.1:1 }], listen: "localhost:15000" }
  f: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.2:9100 }
  g: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:0 }
  h: { endpoints: [{ address: 127.0.0.1:1 }], listen: 127.0.0.1:0 }
`;
    expect(issuesOf(text)).toEqual([
      'services.b.listen: expected a listen address no other listener uses, got "127.0.0.1:9100" (services.a.listen is "127.0.0.1:9100")',
      'services.c.listen: expected a listen address no other listener uses, got "127.0.0.1:15001" (outbound.listen is "127.0.0.1:15001")',
      'services.d.listen: expected a listen address no other listener uses, got "127.0.0.1:15006" (inbound.listen is "0.0.0.0:15006")',
      'services.e.listen: expected a listen address no other listener uses, got "localhost:15000" (admin.listen is "127.0.0.1:15000")',
    ]);
    expect(issuesOf('service: a\nadmin: { listen: 127.0.0.1:7000 }\noutbound: { listen: 0.0.0.0:7000 }\n')).toEqual([
      'outbound.listen: expected a listen address no other listener uses, got "0.0.0.0:7000" (admin.listen is "127.0.0.1:7000")',
    ]);
  });

  it('requires endpoints when there is no control plane', () => {
    expect(issuesOf('service: a\nservices:\n  b: { lb: random }\n')).toEqual([
      'services.b.endpoints: expected at least one endpoint (there is no controlPlane to supply them), got nothing',
    ]);
  });

  it('rejects duplicate endpoints within a service', () => {
    expect(issuesOf(inventory('endpoints: [{ address: 127.0.0.1:1 }, { address: 127.0.0.1:2 }, { address: 127.0.0.1:1 }]'))).toEqual([
      'services.inventory.endpoints[2].address: expected each endpoint address once, got "127.0.0.1:1" (also endpoints[0])',
    ]);
  });

  it('checks related values against each other', () => {
    expect(issuesOf(withInventory('retry: { backoff: { base: 1s } }'))).toEqual([
      'services.inventory.retry.backoff.max: expected backoff.max >= backoff.base (1s), got "250ms" (the default)',
    ]);
    expect(issuesOf(withInventory('outlierDetection: { baseEjectionTime: 10m, maxEjectionTime: 1m }'))).toEqual([
      'services.inventory.outlierDetection.maxEjectionTime: expected maxEjectionTime >= baseEjectionTime (10m), got "1m"',
    ]);
    expect(issuesOf(withInventory('retry: { on: [retriable-status] }'))).toEqual([
      'services.inventory.retry.statuses: expected a non-empty list of HTTP status codes when on includes retriable-status, got []',
    ]);
    expect(issuesOf(withInventory('retry: { statuses: [429] }'))).toEqual([
      'services.inventory.retry.statuses: expected statuses only together with on: [retriable-status, ...], got [429]',
    ]);
    expect(issuesOf(withInventory('healthCheck: { interval: 1s }'))).toEqual([
      'services.inventory.healthCheck: expected exactly one of http: { path: /healthz }, tcp: {} or grpc: {}, got none',
    ]);
    expect(issuesOf(withInventory('healthCheck: { tcp: {}, grpc: {} }'))).toEqual([
      'services.inventory.healthCheck: expected exactly one of http: { path: /healthz }, tcp: {} or grpc: {}, got several',
    ]);
  });

  it('rejects other bad values', () => {
    const text = `
service: a
inbound: { target: https://127.0.0.1:8080, maxConcurrent: 0 }
log: { level: loud, accessLog: { enabled: "yes", sampleRate: 2 } }
controlPlane: { addresses: [] }
services:
  b:
    endpoints: [{ address: 127.0.0.1:1 }]
    retry: { on: [connect-failure, sometimes], budget: { ratio: 1.5 } }
    healthCheck: { http: { path: healthz, expectedStatuses: [200, 700] } }
    panicThreshold: 101
`;
    expect(issuesOf(text)).toEqual([
      'inbound.target: expected an http:// URL such as http://127.0.0.1:8080, got "https://127.0.0.1:8080"',
      'inbound.maxConcurrent: expected integer >= 1, got 0',
      'controlPlane.addresses: expected at least one control plane address, got []',
      'services.b.healthCheck.http.path: expected a URL path starting with "/", got "healthz"',
      'services.b.healthCheck.http.expectedStatuses[1]: expected integer 100..599, got 700',
      'services.b.retry.on[1]: expected one of connect-failure, reset, gateway-error, 5xx, timeout, retriable-status, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, got "sometimes"',
      'services.b.retry.budget.ratio: expected number 0..1, got 1.5',
      'services.b.panicThreshold: expected number 0..100, got 101',
      'log.level: expected one of trace, debug, info, warn, error, silent, got "loud"',
      'log.accessLog.enabled: expected true or false, got "yes"',
      'log.accessLog.sampleRate: expected number 0..1, got 2',
    ]);
    expect(issuesOf('service: a\ninbound: { target: http://127.0.0.1:8080/app }\n')).toEqual([
      'inbound.target: expected an http:// URL with only scheme, host and port (no path, query or credentials), got "http://127.0.0.1:8080/app"',
    ]);
    expect(issuesOf('service: a\ninbound: { listen: 0.0.0.0:1 }\n')).toEqual(['inbound.target: expected an http:// URL such as http://127.0.0.1:8080, got nothing']);
  });

  it('shows non-finite numbers as such', () => {
    expect(issuesOf(withInventory('panicThreshold: .inf'))).toEqual(['services.inventory.panicThreshold: expected number 0..100, got Infinity']);
    expect(issuesOf(inventory('endpoints: [{ address: 127.0.0.1:1, cost: .nan }]'))).toEqual(['services.inventory.endpoints[0].cost: expected number > 0, got NaN']);
  });

  it('truncates long values', () => {
    const long = 'x'.repeat(200);
    const [line] = issuesOf(withInventory(`lb: ${long}`));
    expect(line).toMatch(/got "x+…$/);
    expect(line?.length).toBeLessThan(300);
  });
});

describe('parseSidecarConfig: protocol', () => {
  it('defaults to http', () => {
    expect(parseSidecarConfig(MINIMAL, 'sidecar.yaml').services['inventory']?.protocol).toBe('http');
  });

  it('accepts protocol: tcp with a listen address', () => {
    const s = parseSidecarConfig(withInventory('protocol: tcp\nlisten: 127.0.0.1:15432\nhealthCheck: { tcp: {} }'), 'sidecar.yaml').services['inventory'];
    expect(s).toMatchObject({ protocol: 'tcp', listen: '127.0.0.1:15432', healthCheck: { tcp: {} } });
    expect(parseSidecarConfig(withInventory('protocol: http\nlisten: 127.0.0.1:15432'), 'sidecar.yaml').services['inventory']?.protocol).toBe('http');
  });

  it('refuses protocol: tcp without a listen address, naming the key', () => {
    expect(issuesOf(withInventory('protocol: tcp'))).toEqual([
      'services.inventory.listen: expected a local listen address (host:port) because protocol is tcp, got nothing',
    ]);
  });

  it('refuses an unknown protocol', () => {
    expect(issuesOf(withInventory('protocol: udp\nlisten: 127.0.0.1:15432'))).toEqual(['services.inventory.protocol: expected one of http | http2 | grpc | tcp, got "udp"']);
    expect(issuesOf(withInventory('protocol: TCP\nlisten: 127.0.0.1:15432'))).toEqual(['services.inventory.protocol: expected one of http | http2 | grpc | tcp, got "TCP"']);
  });

  it('does not ask a tcp service for hashOn (ring-hash and maglev hash the client address)', () => {
    expect(parseSidecarConfig(withInventory('protocol: tcp\nlisten: 127.0.0.1:15432\nlb: maglev'), 'sidecar.yaml').services['inventory']?.lb).toBe('maglev');
  });

  it('checks a tcp listen address against the other listeners', () => {
    expect(issuesOf(withInventory('protocol: tcp\nlisten: 127.0.0.1:15001'))).toEqual([
      'services.inventory.listen: expected a listen address no other listener uses, got "127.0.0.1:15001" (outbound.listen is "127.0.0.1:15001")',
    ]);
  });

  it('lets a pushed policy say tcp and leave the port to the file', () => {
    expect(parseServiceConfig({ protocol: 'tcp', endpoints: [{ address: '10.0.0.7:5432' }] }, 'update v3 of db')).toMatchObject({ protocol: 'tcp', listen: undefined });
    expect(() => parseServiceConfig({ protocol: 'udp' }, 'update v3 of db')).toThrow('update v3 of db: protocol: expected one of http | http2 | grpc | tcp, got "udp"');
  });
});

describe('loadSidecarConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outrigger-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and validates a file, naming it in errors', async () => {
    const ok = join(dir, 'sidecar.yaml');
    await writeFile(ok, FULL);
    const c = await loadSidecarConfig(ok);
    expect(c.services['inventory']?.retry.backoff).toEqual({ baseMs: 25, maxMs: 250 });
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'service: a\nmetrics: { enabled: 1 }\n');
    await expect(loadSidecarConfig(bad)).rejects.toThrow(`${bad}: metrics.enabled: expected true or false, got 1`);
  });

  it('reports a missing file as a ConfigError', async () => {
    const missing = join(dir, 'nope.yaml');
    await expect(loadSidecarConfig(missing)).rejects.toBeInstanceOf(ConfigError);
    await expect(loadSidecarConfig(missing)).rejects.toThrow(`${missing}: cannot read the file (ENOENT)`);
  });
});

describe('parseServiceConfig', () => {
  it('validates a pushed policy with the same schema, frozen', () => {
    const s = parseServiceConfig({ lb: 'least-request', endpoints: [{ address: '10.0.0.7:8080', weight: 3 }], timeout: '3s' }, 'update v12 of orders');
    expect(s).toEqual({
      ...DEFAULT_SERVICE,
      lb: 'least-request',
      endpoints: [{ address: '10.0.0.7:8080', weight: 3, capacity: 100, cost: 1, zone: undefined }],
      timeoutMs: 3_000,
    });
    expect(Object.isFrozen(s.endpoints[0])).toBe(true);
    expect(parseServiceConfig({}, 'x').endpoints).toEqual([]);
  });

  it('reports paths relative to the policy, prefixed by where', () => {
    expect(() => parseServiceConfig({ retry: { attempts: 'three' } }, 'update v12 of orders')).toThrow(
      'update v12 of orders: retry.attempts: expected integer 0..10, got "three"',
    );
    expect(() => parseServiceConfig(null, 'update v12 of orders')).toThrow('update v12 of orders: (root): expected a mapping, got null');
  });
});

describe('circuitBreaker and controlPlane.resolveTimeout', () => {
  it('breakers are on with the defaults unless the service says circuitBreaker: false', () => {
    const on = parseServiceConfig({ endpoints: [] }, 'services.x');
    expect(on.circuitBreaker).toEqual({ errorThresholdPercentage: 50, volumeThreshold: 20, rollingWindowMs: 10_000, resetTimeoutMs: 5_000 });
    expect(parseServiceConfig({ circuitBreaker: false }, 'services.x').circuitBreaker).toBeUndefined();
    expect(parseServiceConfig({ circuitBreaker: { volumeThreshold: 5 } }, 'services.x').circuitBreaker?.volumeThreshold).toBe(5);
  });

  it('resolveTimeout defaults to 1s and accepts 0 (no on-demand lookup)', () => {
    const cp = (extra: string) => parseSidecarConfig(`service: web\ncontrolPlane: { addresses: [127.0.0.1:15010]${extra} }\n`, 'sidecar.yaml').controlPlane;
    expect(cp('')?.resolveTimeoutMs).toBe(1_000);
    expect(cp(', resolveTimeout: 0s')?.resolveTimeoutMs).toBe(0);
    expect(cp(', resolveTimeout: 250ms')?.resolveTimeoutMs).toBe(250);
    expect(issuesOf(`service: web\ncontrolPlane: { addresses: [127.0.0.1:15010], resolveTimeout: 1 }\n`)[0]).toContain('controlPlane.resolveTimeout: expected a duration');
  });
});
