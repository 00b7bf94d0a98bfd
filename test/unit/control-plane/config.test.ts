import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadControlPlaneConfig, parseControlPlaneConfig, parsePolicy, validateControlPlaneConfig } from '../../../control-plane/src/config/load.js';
import { parseServiceConfig } from '../../../common/src/config/load.js';
import { ConfigError } from '../../../common/src/errors.js';

const CP_YAML = `
listen: { grpc: 127.0.0.1:25010, http: 127.0.0.1:25080 }
store: { file: state/cp.json }
instanceTtl: 15s
drainTime: 2s
services:
  inventory:
    lb: least-load
    endpoints:
      - { address: 10.0.0.1:9001, weight: 3, cost: 1.5, zone: a }
    retry: { attempts: 3, perTryTimeout: 500ms }
    timeout: 2s
  orders: {}
`;

/** The issues of the ConfigError that parsing `text` throws. */
function issuesOf(text: string, file = 'cp.yaml'): readonly string[] {
  try {
    parseControlPlaneConfig(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).file).toBe(file);
    return (e as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('parseControlPlaneConfig', () => {
  it('gives the defaults for an empty file', () => {
    for (const text of ['', '# nothing\n', '{}']) {
      expect(parseControlPlaneConfig(text, 'cp.yaml')).toEqual({
        listen: { grpc: '127.0.0.1:15010', http: '127.0.0.1:15080', allowedHosts: [] },
        policies: { allowNonLoopbackListen: false },
        limits: { maxReplicas: 50 },
        store: { file: 'outrigger-state.json' },
        mtls: { mode: 'strict', trustDomain: 'outrigger.local', certTtlMs: 86_400_000 },
        tls: { enabled: true, serverNames: [], certTtlMs: 86_400_000 },
        instanceTtlMs: 10_000,
        drainTimeMs: 5_000,
        weightIntervalMs: 5_000,
        services: {},
      });
    }
  });

  it('reads tls: off, extra server names, an operator certificate (paths against cp.yaml) that needs its key', () => {
    const c = parseControlPlaneConfig('tls: { enabled: false, serverNames: [control-plane, 10.0.0.7], certTtl: 12h, certFile: cp.crt, keyFile: /etc/cp.key }\n', 'cp.yaml', '/srv/cp');
    expect(c.tls).toEqual({ enabled: false, serverNames: ['control-plane', '10.0.0.7'], certTtlMs: 12 * 3_600_000, certFile: '/srv/cp/cp.crt', keyFile: '/etc/cp.key' });
    expect(issuesOf('tls: { certFile: cp.crt }\n')).toEqual(['tls.keyFile: expected certFile and keyFile together (certFile is set), got nothing']);
    expect(issuesOf('tls: { serverNames: ["cp:80"] }\n')).toEqual(['tls.serverNames[0]: expected a host name such as control-plane (no port), or an IP address, got "cp:80"']);
  });

  it('parses every key; services are validated by the sidecar schema and kept as written too', () => {
    const c = parseControlPlaneConfig(CP_YAML, '/etc/outrigger/cp.yaml');
    expect(c.listen).toEqual({ grpc: '127.0.0.1:25010', http: '127.0.0.1:25080', allowedHosts: [] });
    expect(c.store.file).toBe('/etc/outrigger/state/cp.json'); // relative to cp.yaml's directory
    expect(c.instanceTtlMs).toBe(15_000);
    expect(c.drainTimeMs).toBe(2_000);
    expect(Object.keys(c.services)).toEqual(['inventory', 'orders']);
    const inventory = c.services['inventory'];
    expect(inventory?.input).toEqual({
      lb: 'least-load',
      endpoints: [{ address: '10.0.0.1:9001', weight: 3, cost: 1.5, zone: 'a' }],
      retry: { attempts: 3, perTryTimeout: '500ms' },
      timeout: '2s',
    });
    // The parsed form is exactly what the sidecar makes of the same policy.
    expect(inventory?.config).toEqual(parseServiceConfig(inventory?.input, 'x'));
    expect(inventory?.config.retry.perTryTimeoutMs).toBe(500);
    expect(inventory?.config.endpoints).toEqual([{ address: '10.0.0.1:9001', weight: 3, capacity: 100, cost: 1.5, zone: 'a' }]);
    expect(c.services['orders']?.config.endpoints).toEqual([]);
    expect(Object.isFrozen(c.services['inventory']?.input)).toBe(true);
  });

  it('keeps an absolute store path and resolves a relative one against baseDir when given', () => {
    expect(parseControlPlaneConfig('store: { file: /var/lib/outrigger/state.json }', 'cp.yaml').store.file).toBe('/var/lib/outrigger/state.json');
    expect(validateControlPlaneConfig({ store: { file: 'x.json' } }, 'cp.yaml', '/srv').store.file).toBe('/srv/x.json');
  });

  it('takes store.etcd (endpoints with or without http://, prefix, lease TTL in whole seconds) and says what is wrong with it', () => {
    const c = parseControlPlaneConfig('store: { etcd: { endpoints: [127.0.0.1:2379, "http://etcd-2:2379"], leaseTtl: 3s } }', 'cp.yaml');
    expect(c.store.etcd).toEqual({ endpoints: ['http://127.0.0.1:2379', 'http://etcd-2:2379'], prefix: '/outrigger', leaseTtlMs: 3_000 });
    expect(parseControlPlaneConfig('', 'cp.yaml').store.etcd).toBeUndefined();
    expect(issuesOf('store: { etcd: { endpoints: [] } }')).toEqual(['store.etcd.endpoints: expected at least one etcd endpoint, got []']);
    expect(issuesOf('store: { etcd: { endpoints: [etcd], prefix: outrigger/, leaseTtl: 1500ms } }')).toEqual([
      'store.etcd.endpoints[0]: expected an etcd endpoint such as http://127.0.0.1:2379, got "etcd"',
      'store.etcd.prefix: expected a key prefix such as /outrigger (starts with "/", no trailing "/"), got "outrigger/"',
      'store.etcd.leaseTtl: expected whole seconds 2s..60s, got "1500ms"',
    ]);
  });

  it('names file, key path, expectation and what was got for a bad service policy', () => {
    expect(issuesOf('services:\n  orders:\n    retry: { attempts: three }\n')).toEqual(['services.orders.retry.attempts: expected integer 0..10, got "three"']);
    const err = (() => {
      try {
        parseControlPlaneConfig('services:\n  orders:\n    retry: { attempts: three }\n', 'cp.yaml');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message).toBe('cp.yaml: services.orders.retry.attempts: expected integer 0..10, got "three"');
  });

  it('reports every problem, with the sidecar messages for policies and endpoints', () => {
    const issues = issuesOf(`
instanceTtl: 10
drainTime: soon
listen: { grpc: 127.0.0.1:99999 }
services:
  Orders: {}
  inventory:
    lb: fastest
    endpoints: [{ address: 10.0.0.1 }]
`);
    expect(issues).toContain('instanceTtl: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m"; a plain number has no unit (write e.g. "10ms" or "10s"), got 10');
    expect(issues).toContain('drainTime: expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m", got "soon"');
    expect(issues).toContain('listen.grpc: expected host:port with port 0..65535, got "127.0.0.1:99999"');
    expect(issues.some((i) => i.startsWith('services.Orders: expected a service name of lower-case letters'))).toBe(true);
    expect(issues.some((i) => i.startsWith('services.inventory.lb: expected one of random | weighted-random'))).toBe(true);
    expect(issues).toContain('services.inventory.endpoints[0].address: expected host:port (IPv4, hostname or [IPv6]); the port is missing, got "10.0.0.1"');
  });

  it('refuses unknown keys with a suggestion, at the top and inside a policy', () => {
    expect(issuesOf('instanceTTL: 5s')).toEqual(['instanceTTL: expected one of the keys listen, policies, limits, store, instanceTtl, drainTime, weightInterval, services, mtls, tls, autoscale, auth, got unknown key "instanceTTL" (did you mean "instanceTtl"?)']);
    expect(issuesOf('store: { path: x.json }')).toEqual(['store.path: expected one of the keys file, etcd, got unknown key "path"']);
    expect(issuesOf('services: { orders: { timeoutMs: 2000 } }')[0]).toMatch(/^services\.orders\.timeoutMs: expected one of the keys lb, .*got unknown key "timeoutMs" \(did you mean "timeout"\? durations are written with a unit/);
  });

  it('refuses a zero TTL and listeners on the same socket', () => {
    expect(issuesOf('instanceTtl: 0s')).toEqual(['instanceTtl: expected a duration greater than 0, got "0s"']);
    expect(parseControlPlaneConfig('drainTime: 0s', 'cp.yaml').drainTimeMs).toBe(0);
    expect(issuesOf('listen: { grpc: 0.0.0.0:15080 }')).toEqual(['listen.http: expected a listen address no other listener uses, got "127.0.0.1:15080" (the default) (listen.grpc is "0.0.0.0:15080")']);
    expect(parseControlPlaneConfig('listen: { grpc: 127.0.0.1:0, http: 127.0.0.1:0 }', 'cp.yaml').listen.grpc).toBe('127.0.0.1:0');
  });

  it('takes extra allowed hosts, and refuses a host with a port or a path', () => {
    expect(parseControlPlaneConfig('listen: { allowedHosts: [control-plane, "*"] }', 'cp.yaml').listen.allowedHosts).toEqual(['control-plane', '*']);
    expect(issuesOf('listen: { allowedHosts: [control-plane:15080] }')).toEqual(['listen.allowedHosts[0]: expected a host name such as control-plane (no port), or "*", got "control-plane:15080"']);
    expect(issuesOf('listen: { allowedHosts: control-plane }')).toEqual(['listen.allowedHosts: expected a list of host names, got "control-plane"']);
  });

  it('caps autoscale max at limits.maxReplicas (default 50)', () => {
    const scaled = (max: number): string => `autoscale: { inv: { min: 1, max: ${max}, targetUtilization: 0.5, driver: { kubernetes: { apiServer: "https://10.0.0.1:6443" } } } }\n`;
    expect(parseControlPlaneConfig(scaled(50), 'cp.yaml').autoscale?.['inv']?.max).toBe(50);
    expect(issuesOf(scaled(51))).toEqual(['autoscale.inv.max: expected integer <= limits.maxReplicas (50), got 51']);
    expect(parseControlPlaneConfig(`${scaled(200)}limits: { maxReplicas: 200 }\n`, 'cp.yaml').limits.maxReplicas).toBe(200);
    expect(issuesOf('limits: { maxReplicas: 100000 }')).toEqual(['limits.maxReplicas: expected integer 1..10000, got 100000']);
  });

  it('refuses a policy listen other than loopback unless policies.allowNonLoopbackListen, and numbers past their ceilings', () => {
    expect(parseControlPlaneConfig('services: { a: { listen: 127.0.0.2:18080 }, b: { listen: "[::1]:18081" }, c: { listen: localhost:18082 } }', 'cp.yaml').services['a']?.config.listen).toBe('127.0.0.2:18080');
    const issues = issuesOf('services: { a: { listen: 0.0.0.0:18080, limits: { maxConcurrent: 2000000 }, endpoints: [{ address: 10.0.0.1:80, capacity: 5000000 }] } }');
    expect(issues).toContain('services.a.listen: expected a loopback address such as 127.0.0.1:18080 (every sidecar of the service opens it; policies.allowNonLoopbackListen: true in cp.yaml allows others), got "0.0.0.0:18080"');
    expect(issues).toContain('services.a.limits.maxConcurrent: expected integer 1..1000000, got 2000000');
    expect(issues).toContain('services.a.endpoints[0].capacity: expected integer 1..1000000, got 5000000');
    expect(parseControlPlaneConfig('policies: { allowNonLoopbackListen: true }\nservices: { a: { listen: 0.0.0.0:18080 } }', 'cp.yaml').services['a']?.config.listen).toBe('0.0.0.0:18080');
  });

  it('names line and column of a YAML syntax error, and refuses a document that is not a mapping', () => {
    expect(issuesOf('services: {\n')[0]).toMatch(/^line \d+, column \d+: YAML syntax error/);
    expect(issuesOf('- a\n- b\n')).toEqual(['(root): expected a mapping, got ["a","b"]']);
  });
});

describe('parsePolicy', () => {
  it('keeps the policy as written (a JSON copy, frozen) next to the parsed one', () => {
    const input = { lb: 'ring-hash', hashOn: { header: 'X-User' }, timeout: '3s', extra: undefined };
    const p = parsePolicy(input, 'services.a');
    expect(p.input).toEqual({ lb: 'ring-hash', hashOn: { header: 'X-User' }, timeout: '3s' });
    expect(p.input).not.toBe(input);
    expect(Object.isFrozen(p.input)).toBe(true);
    expect(p.config.hashOn).toEqual({ header: 'x-user' });
    expect(p.config.timeoutMs).toBe(3_000);
  });

  it('throws a ConfigError with the key path relative to the policy', () => {
    expect(() => parsePolicy({ retry: { attempts: 'three' } }, 'services.orders')).toThrow(
      new ConfigError('services.orders', ['retry.attempts: expected integer 0..10, got "three"']),
    );
    expect(() => parsePolicy(undefined, 'services.orders')).toThrow(ConfigError);
    expect(() => parsePolicy({ lb: 1n }, 'services.orders')).toThrow(/expected a JSON-compatible mapping/);
  });

  it('applies the control plane rules: loopback listen unless allowed, ceilings on capacity, cost and limits', () => {
    expect(() => parsePolicy({ listen: '10.0.0.1:18080' }, 'services.orders')).toThrow(
      new ConfigError('services.orders', ['listen: expected a loopback address such as 127.0.0.1:18080 (every sidecar of the service opens it; policies.allowNonLoopbackListen: true in cp.yaml allows others), got "10.0.0.1:18080"']),
    );
    expect(parsePolicy({ listen: '10.0.0.1:18080' }, 'services.orders', { allowNonLoopbackListen: true }).config.listen).toBe('10.0.0.1:18080');
    expect(() => parsePolicy({ endpoints: [{ address: '127.0.0.1:1', cost: 5000 }], limits: { maxRetries: 1e7 } }, 'services.orders')).toThrow(
      new ConfigError('services.orders', ['endpoints[0].cost: expected a number > 0 and <= 1000, got 5000', 'limits.maxRetries: expected integer 0..1000000, got 10000000']),
    );
  });
});

describe('loadControlPlaneConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outrigger-cp-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file, resolving the store next to it, and names the file in errors', async () => {
    const ok = join(dir, 'cp.yaml');
    await writeFile(ok, CP_YAML);
    const c = await loadControlPlaneConfig(ok);
    expect(c.store.file).toBe(join(dir, 'state/cp.json'));

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'services:\n  orders:\n    retry: { attempts: three }\n');
    await expect(loadControlPlaneConfig(bad)).rejects.toThrow(`${bad}: services.orders.retry.attempts: expected integer 0..10, got "three"`);
  });

  it('says why a file cannot be read', async () => {
    const missing = join(dir, 'missing.yaml');
    const err = await loadControlPlaneConfig(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toMatch(new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read the file \\(ENOENT\\)`));
  });
});
