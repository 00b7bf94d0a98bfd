/**
 * `outrigger ctl` as a real process against a real control plane (needs `npm run build`): tables, --json,
 * policy get/set with the control plane's validation message, pinned weights, drains, and the errors for an
 * unknown service, a bad policy file and an unreachable control plane.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runCtl, type CtlRun as Run } from '../helpers/ctl.js';
import { freePort } from '../helpers/net.js';

const run = runCtl;

/** The table row whose first column is `first`, split into columns. */
function row(table: string, first: string): string[] | undefined {
  return table
    .split('\n')
    .map((l) => l.split(/ {2,}/))
    .find((cols) => cols[0] === first);
}

describe('outrigger ctl', () => {
  let cp: ControlPlaneProcess;
  const ctl = (...args: string[]): Promise<Run> => run(['--server', cp.http, ...args]);
  const file = (name: string, text: string): string => {
    const path = join(cp.dir, name);
    writeFileSync(path, text);
    return path;
  };

  beforeAll(async () => {
    cp = await spawnControlPlane('services:\n  orders:\n    lb: round-robin\n    endpoints: [ { address: 127.0.0.1:9001 }, { address: 127.0.0.1:9002 } ]\n');
  }, 20_000);

  afterAll(async () => {
    await cp.stop();
  });

  it('services: a table with the policy, serving/total endpoints and the state version; the server also from the environment', async () => {
    const [r, viaEnv] = await Promise.all([ctl('services'), run(['services'], { env: { OUTRIGGER_CONTROL_PLANE: cp.http } })]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^SERVICE {2}LB {11}ENDPOINTS {2}POLICY\n/);
    expect(row(r.stdout, 'orders')).toEqual(['orders', 'round-robin', '2/2', 'config']);
    expect(r.stdout).toMatch(/state version \d+/);
    expect(viaEnv.status).toBe(0);
    expect(viaEnv.stdout).toBe(r.stdout);
  });

  it('endpoints: a table with address, weight, cost, capacity, zone, state and instance; --json prints the admin API answer', async () => {
    const [r, services, one] = await Promise.all([ctl('endpoints', 'orders'), ctl('services', '--json'), ctl('--json', 'endpoints', 'orders')]);
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^ADDRESS\s+WEIGHT\s+COST\s+CAPACITY\s+ZONE\s+STATE\s+INSTANCE$/);
    expect(row(r.stdout, '127.0.0.1:9001')).toEqual(['127.0.0.1:9001', '1', '1', '100', '-', 'static', '-']);
    expect(row(r.stdout, '127.0.0.1:9002')).toEqual(['127.0.0.1:9002', '1', '1', '100', '-', 'static', '-']);
    expect(services.status).toBe(0);
    const body = JSON.parse(services.stdout) as { services: { name: string; policySource: string }[] };
    expect(body.services).toEqual([expect.objectContaining({ name: 'orders', policySource: 'config' })]);
    const svc = JSON.parse(one.stdout) as { name: string; endpoints: { address: string; state: string }[] };
    expect(svc.endpoints.map((e) => [e.address, e.state])).toEqual([
      ['127.0.0.1:9001', 'serving'],
      ['127.0.0.1:9002', 'serving'],
    ]);
  });

  it('policy set from a YAML file, then policy get prints it as YAML', async () => {
    const set = await ctl('policy', 'set', 'orders', '-f', file('orders.yaml', '# faster failover\nlb: least-load\nretry: { attempts: 2 }\n'));
    expect(set.stderr).toBe('');
    expect(set.status).toBe(0);
    expect(set.stdout).toMatch(/^policy of orders set \(state version \d+\)\n$/);
    const [get, services] = await Promise.all([ctl('policy', 'get', 'orders'), ctl('services')]);
    expect(get.status).toBe(0);
    expect(get.stdout).toBe('lb: least-load\nretry:\n  attempts: 2\n');
    expect(row(services.stdout, 'orders')).toEqual(['orders', 'least-load', '2/2', 'runtime']);
    // JSON is accepted too, here from stdin.
    const json = await run(['--server', cp.http, 'policy', 'set', 'orders', '-f', '-'], { input: '{"lb": "least-load", "retry": {"attempts": 3}}' });
    expect(json.status).toBe(0);
    expect(parse((await ctl('policy', 'get', 'orders')).stdout)).toEqual({ lb: 'least-load', retry: { attempts: 3 } });
  });

  it('an invalid policy is refused with the key path and expectation (exit 1); a YAML syntax error names the file and line', async () => {
    const bad = file('bad.yaml', 'lb: least-load\nretry: { attempts: three }\n');
    const broken = file('broken.yaml', 'lb: least-load\nretry: { attempts: 2\n');
    const missing = join(cp.dir, 'missing.yaml');
    const [r, syntax, absent] = await Promise.all([ctl('policy', 'set', 'orders', '-f', bad), ctl('policy', 'set', 'orders', '-f', broken), ctl('policy', 'set', 'orders', '-f', missing)]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`outrigger ctl: the control plane refused the policy in ${bad} for orders:\n  retry.attempts: expected integer 0..10, got "three"\n`);
    expect(syntax.status).toBe(1);
    expect(syntax.stderr).toMatch(/^outrigger ctl: \S+broken\.yaml: line \d+, column \d+: YAML syntax error: /);
    expect(syntax.stderr).toContain(broken);
    expect(absent.status).toBe(1);
    expect(absent.stderr).toBe(`outrigger ctl: ${missing}: cannot read the file (ENOENT)\n`);
    // The policy in force did not change.
    expect(parse((await ctl('policy', 'get', 'orders')).stdout)).toEqual({ lb: 'least-load', retry: { attempts: 3 } });
  });

  it('weight set pins a weight the endpoints table shows as pinned; weight clear unpins it', async () => {
    const set = await ctl('weight', 'set', 'orders', '127.0.0.1:9001', '50');
    expect(set.stderr).toBe('');
    expect(set.status).toBe(0);
    expect(set.stdout).toMatch(/^weight of orders 127\.0\.0\.1:9001 pinned to 50 \(state version \d+\)\n$/);
    const [table, invalid] = await Promise.all([ctl('endpoints', 'orders'), ctl('weight', 'set', 'orders', '127.0.0.1:9001', '0')]);
    expect(row(table.stdout, '127.0.0.1:9001')?.[1]).toBe('50 (pinned)');
    expect(row(table.stdout, '127.0.0.1:9002')?.[1]).toBe('1');
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toBe('outrigger ctl: weight of orders 127.0.0.1:9001: expected integer 1..1000, got 0\n');
    const clear = await ctl('weight', 'clear', 'orders', '127.0.0.1:9001');
    expect(clear.status).toBe(0);
    expect(clear.stdout).toMatch(/^weight of orders 127\.0\.0\.1:9001 unpinned/);
    expect(row((await ctl('endpoints', 'orders')).stdout, '127.0.0.1:9001')?.[1]).toBe('1');
  });

  it('drain takes the endpoint out: shown drained, not counted as serving', async () => {
    const r = await ctl('drain', '127.0.0.1:9002');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^drained 127\.0\.0\.1:9002 in orders \(state version \d+\)\n$/);
    const [endpoints, services] = await Promise.all([ctl('endpoints', 'orders'), ctl('services')]);
    expect(row(endpoints.stdout, '127.0.0.1:9002')?.[5]).toBe('drained');
    expect(row(endpoints.stdout, '127.0.0.1:9001')?.[5]).toBe('static');
    expect(row(services.stdout, 'orders')?.[2]).toBe('1/2');
    const back = await ctl('undrain', '127.0.0.1:9002');
    expect(back.status).toBe(0);
    expect(back.stdout).toMatch(/^undrained 127\.0\.0\.1:9002 \(state version \d+\)\n$/);
    expect(row((await ctl('services')).stdout, 'orders')?.[2]).toBe('2/2');
    const again = await ctl('undrain', '127.0.0.1:9002');
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('is not drained');
  });

  it('an unknown service or endpoint is an error with exit 1; empty circuits and sidecars say so', async () => {
    const unknownService = [['endpoints', 'nope'], ['policy', 'get', 'nope'], ['circuits', 'nope'], ['weight', 'set', 'nope', '127.0.0.1:9001', '5']];
    const [endpoint, drain, circuits, sidecars, ...runs] = await Promise.all([
      ctl('weight', 'set', 'orders', '127.0.0.1:9999', '5'),
      ctl('drain', '127.0.0.1:9999'),
      ctl('circuits'),
      ctl('sidecars'),
      ...unknownService.map((args) => ctl(...args)),
    ]);
    runs.forEach((r, i) => {
      expect(r.status, unknownService[i]?.join(' ')).toBe(1);
      expect(r.stderr).toBe('outrigger ctl: no service "nope"\n');
    });
    expect(endpoint.status).toBe(1);
    expect(endpoint.stderr).toBe('outrigger ctl: no endpoint "127.0.0.1:9999" in service "orders"\n');
    expect(drain.status).toBe(1);
    expect(drain.stderr).toBe('outrigger ctl: no endpoint "127.0.0.1:9999"\n');
    expect(circuits.stdout).toBe('no circuits reported (sidecars report them with their load)\n');
    expect(sidecars.stdout).toBe('no sidecars connected\n');
  });

  it('an unreachable control plane is exit 2 with the address and the reason; usage errors are exit 2 with one line and a hint', async () => {
    const port = await freePort();
    const usageErrors = [
      [['frob'], 'unknown command "frob"'],
      [['policy', 'set', 'orders'], 'policy set: -f FILE is required'],
      [['policy', 'frob', 'orders'], 'policy: unknown subcommand "frob" (expected get, set, patch or delete)'],
      [['weight', 'set', 'orders', '127.0.0.1:9001'], 'weight set: missing N'],
      [['weight', 'set', 'orders', '127.0.0.1:9001', 'heavy'], 'weight set: N must be a number, got "heavy"'],
      [['services', '--bogus'], 'unknown option "--bogus"'],
      [['services', '-x'], 'unknown option "-x"'],
      [['services', '--json=yes'], '--json takes no value'],
      [['services', '-o', 'xml'], '-o: expected json, yaml or table, got "xml"'],
      [['services', '--dry-run'], '--dry-run is only for policy set, policy patch and policy delete'],
      [['endpoints', '-f', 'x.yaml', 'orders'], '-f FILE is only for policy set and policy patch'],
      [['services', '--server'], '--server needs a value'],
    ] as const;
    const [unreachable, ...runs] = await Promise.all([run(['--server', `127.0.0.1:${port}`, 'services']), ...usageErrors.map(([args]) => ctl(...args))]);
    expect(unreachable.status).toBe(2);
    expect(unreachable.stdout).toBe('');
    expect(unreachable.stderr).toBe(`outrigger ctl: cannot reach the control plane at 127.0.0.1:${port} (connection refused)\n`);
    runs.forEach((r, i) => {
      const [args, message] = usageErrors[i] ?? [[], ''];
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr, args.join(' ')).toBe(`outrigger ctl: ${message}\nrun "outrigger ctl --help" for usage\n`);
    });
  });

  it('--help, -h and help print the usage and exit 0; after a command, that command\'s usage; nothing is sent', async () => {
    // An unreachable server: help never talks to it.
    const server = `127.0.0.1:${await freePort()}`;
    const [help, short, word, policy, set, helpPolicy, weight] = await Promise.all([
      run(['--help']),
      run(['-h', '--server', server]),
      run(['help']),
      run(['policy', '--help', '--server', server]),
      run(['--server', server, 'policy', 'set', 'orders', '-f', 'missing.yaml', '--help']),
      run(['help', 'policy']),
      run(['weight', '-h']),
    ]);
    for (const r of [help, short, word, policy, set, helpPolicy, weight]) {
      expect(r.status).toBe(0);
      expect(r.stderr).toBe('');
    }
    expect(help.stdout).toMatch(/^usage: outrigger ctl /);
    expect(help.stdout).toContain('policy patch SERVICE -f FILE [--dry-run]');
    expect(help.stdout).toContain('-o, --output FORMAT');
    expect(short.stdout).toBe(help.stdout);
    expect(word.stdout).toBe(help.stdout);
    expect(policy.stdout).toMatch(/^usage:\n {2}outrigger ctl policy get SERVICE\n/);
    expect(policy.stdout).toContain('outrigger ctl policy delete SERVICE [--dry-run]');
    expect(policy.stdout).not.toContain('weight set');
    expect(helpPolicy.stdout).toBe(policy.stdout);
    expect(set.stdout).toMatch(/^usage:\n {2}outrigger ctl policy set SERVICE -f FILE \[--dry-run\]\n/);
    expect(set.stdout).not.toContain('policy patch');
    expect(weight.stdout).toContain('outrigger ctl weight clear SERVICE ENDPOINT');
  });

  it('-o json and -o yaml print the same admin API answer, parseable; --json is -o json; -o table is the default', async () => {
    const [json, yaml, alias, table, byDefault, policyTable, policyJson] = await Promise.all([
      ctl('services', '-o', 'json'),
      ctl('-o', 'yaml', 'services'),
      ctl('services', '--json'),
      ctl('services', '--output=table'),
      ctl('services'),
      ctl('policy', 'get', 'orders', '-o', 'table'),
      ctl('policy', 'get', 'orders', '-ojson'),
    ]);
    for (const r of [json, yaml, alias, table, policyTable, policyJson]) expect(r.status, r.stderr).toBe(0);
    const data = JSON.parse(json.stdout) as { services: { name: string; policySource: string; endpoints: unknown[] }[] };
    expect(data.services.map((s) => [s.name, s.policySource, s.endpoints.length])).toEqual([['orders', 'runtime', 2]]);
    expect(parse(yaml.stdout)).toEqual(data);
    expect(alias.stdout).toBe(json.stdout);
    expect(table.stdout).toBe(byDefault.stdout);
    expect(row(table.stdout, 'orders')?.[0]).toBe('orders');
    expect(policyTable.stdout.split('\n')[0]).toMatch(/^KEY\s+VALUE$/);
    expect(row(policyTable.stdout, 'lb')).toEqual(['lb', 'least-load']);
    expect(row(policyTable.stdout, 'retry.attempts')).toEqual(['retry.attempts', '3']);
    expect(JSON.parse(policyJson.stdout)).toEqual({ service: 'orders', policySource: 'runtime', policy: { lb: 'least-load', retry: { attempts: 3 } } });
  });
});
