/**
 * The `outrigger` command as a real process (needs `npm run build`): --help on every subcommand without
 * doing anything, usage errors as one line plus a hint (exit 2), version (with and without a control plane),
 * validate, schema, the bash and zsh completion scripts, and the control plane started without a config.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../cli/src/commands.js';
import { spawnControlPlane } from '../helpers/control-plane.js';
import { freePort, send, trustHttps, waitFor } from '../helpers/net.js';
import { runOutrigger, type CommandRun } from '../helpers/ctl.js';

const repoRoot = new URL('../../', import.meta.url).pathname;
const bin = join(repoRoot, 'bin/outrigger.js');
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const temp = mkdtempSync(join(tmpdir(), 'outrigger-cli-'));

/** `outrigger ARGS` to completion. */
const run = (args: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<CommandRun> => runOutrigger(args, options);

afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('outrigger --help and usage errors', () => {
  it('answers --help and -h of every subcommand with its own usage on stdout, exit 0, starting nothing', async () => {
    const names = COMMANDS.map((c) => c.name);
    const runs = await Promise.all(names.flatMap((n) => [run([n, '--help']), run([n, '-h', '--bogus'])]));
    runs.forEach((r, i) => {
      const name = names[Math.floor(i / 2)] ?? '';
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: outrigger ${name}[ \\n]`));
      expect(r.stdout).toContain('-h, --help');
      expect(r.stderr).toBe('');
      // The demo did not start: no URLs printed.
      expect(r.stdout).not.toMatch(/http:\/\/127\.0\.0\.1:\d+/);
    });
    const [top, help, helpSidecar] = await Promise.all([run(['--help']), run([]), run(['help', 'sidecar'])]);
    expect(top.status).toBe(0);
    expect(top.stdout).toMatch(/^usage: outrigger <command>/);
    for (const name of [...names, 'ctl']) expect(top.stdout).toMatch(new RegExp(`\\n  ${name} `));
    expect(help.stdout).toBe(top.stdout);
    expect(helpSidecar.stdout).toMatch(/^usage: outrigger sidecar --config FILE\n/);
  });

  it('prints one line and a hint on stderr for a usage error, and exits 2', async () => {
    const cases: [string[], string, string][] = [
      [['frob'], 'outrigger: unknown command "frob"', 'outrigger'],
      [['--frob'], 'outrigger: unknown flag --frob', 'outrigger'],
      [['sidecar'], 'outrigger sidecar: --config FILE is required', 'outrigger sidecar'],
      [['sidecar', '--config'], 'outrigger sidecar: flag --config needs a value', 'outrigger sidecar'],
      [['sidecar', '-c', 'x.yaml', '--bogus'], 'outrigger sidecar: unknown flag --bogus', 'outrigger sidecar'],
      [['demo', '--rps', 'lots'], 'outrigger demo: --rps must be a number 0..1000, got "lots"', 'outrigger demo'],
      [['demo-app', '--name', 'x'], 'outrigger demo-app: --listen HOST:PORT is required', 'outrigger demo-app'],
      [['demo-instance', '--service', 's', '--port', '70000'], 'outrigger demo-instance: --port must be an integer 1..65535, got "70000"', 'outrigger demo-instance'],
      [['control-plane', '--http', 'nowhere'], 'outrigger control-plane: --http: expected host:port (IPv4, hostname or [IPv6]); the port is missing, got "nowhere"', 'outrigger control-plane'],
      [['validate'], 'outrigger validate: FILE is required', 'outrigger validate'],
      [['validate', 'a.yaml', 'b.yaml'], 'outrigger validate: unexpected argument "b.yaml"', 'outrigger validate'],
      [['schema', 'nginx'], 'outrigger schema: KIND must be one of sidecar, control-plane, got "nginx"', 'outrigger schema'],
      [['completion', 'fish'], 'outrigger completion: SHELL must be one of bash, zsh, got "fish"', 'outrigger completion'],
      [['version', '--server'], 'outrigger version: flag --server needs a value', 'outrigger version'],
      [['help', 'frob'], 'outrigger: unknown command "frob"', 'outrigger'],
    ];
    const runs = await Promise.all(cases.map(([args]) => run(args)));
    runs.forEach((r, i) => {
      const [args, line, hint] = cases[i] ?? [[], '', ''];
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toBe(`${line}\nrun "${hint} --help" for usage\n`);
      expect(r.stdout).toBe('');
    });
  });

  it('passes ctl its arguments untouched', async () => {
    const r = await run(['ctl', 'help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: outrigger ctl /);
  });
});

describe('outrigger version', () => {
  it('prints the version with --version, and says in one line that no control plane answers (exit 0)', async () => {
    const port = await freePort();
    const [flag, client, unreachable] = await Promise.all([run(['--version']), run(['version', '--client']), run(['version', '--server', `127.0.0.1:${port}`])]);
    expect(flag.stdout).toBe(`outrigger ${version}\n`);
    expect(client.stdout).toBe(`outrigger ${version}\n`);
    expect(unreachable.status).toBe(0);
    expect(unreachable.stdout).toBe(`outrigger ${version}\ncontrol plane at 127.0.0.1:${port}: not reachable (connection refused)\n`);
  });

  it("shows the control plane's version, found by --server or $OUTRIGGER_CONTROL_PLANE", async () => {
    const cp = await spawnControlPlane();
    try {
      const [byFlag, byEnv] = await Promise.all([run(['version', '--server', cp.http]), run(['version'], { env: { OUTRIGGER_CONTROL_PLANE: cp.http } })]);
      for (const r of [byFlag, byEnv]) {
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^outrigger ${version}\\ncontrol plane at ${cp.http}: outrigger ${version} \\(state version \\d+\\)\\n$`));
      }
    } finally {
      await cp.stop();
    }
  });
});

describe('outrigger validate', () => {
  it('accepts the deploy/ files, detecting each kind, and binds nothing (a taken admin port does not matter)', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const file = join(temp, 'busy.yaml');
    writeFileSync(file, `service: orders\nadmin: { listen: 127.0.0.1:${port} }\n`);
    try {
      const [cp, sidecar, busy, forced] = await Promise.all([
        run(['validate', 'deploy/cp.yaml']),
        run(['validate', 'deploy/sidecar-catalog-1.yaml']),
        run(['validate', file]),
        run(['validate', '--kind', 'control-plane', join(temp, 'busy.yaml')]),
      ]);
      expect(cp).toMatchObject({ status: 0, stdout: 'deploy/cp.yaml: valid (control-plane configuration)\n', stderr: '' });
      expect(sidecar).toMatchObject({ status: 0, stdout: 'deploy/sidecar-catalog-1.yaml: valid (sidecar configuration)\n' });
      expect(busy).toMatchObject({ status: 0, stdout: `${file}: valid (sidecar configuration)\n` });
      // Forced to read it as a cp.yaml, the sidecar keys are unknown.
      expect(forced.status).toBe(1);
      expect(forced.stderr).toContain(`${file}: service: expected one of the keys listen, policies, limits, store, instanceTtl, drainTime, weightInterval, services, mtls, tls, autoscale, auth, got unknown key "service"`);
    } finally {
      taken.close();
    }
  });

  it("refuses an invalid file with the loader's message (file, key, expectation), exit 1", async () => {
    const bad = join(temp, 'bad-sidecar.yaml');
    writeFileSync(bad, 'service: orders\nservices:\n  inventory:\n    retry: { attempts: three }\n    endpoints: [ { address: 127.0.0.1:9001 } ]\n');
    const badCp = join(temp, 'bad-cp.yaml');
    writeFileSync(badCp, 'listen: { grpc: 127.0.0.1:15010 }\ninstanceTtl: 10\n');
    const unclear = join(temp, 'unclear.yaml');
    writeFileSync(unclear, 'services: {}\n');
    const [r, rc, missing, ambiguous] = await Promise.all([run(['validate', bad]), run(['validate', badCp]), run(['validate', join(temp, 'nope.yaml')]), run(['validate', unclear])]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`outrigger: ${bad}: services.inventory.retry.attempts: expected integer 0..10, got "three"\n`);
    expect(rc.status).toBe(1);
    expect(rc.stderr).toContain(`${badCp}: instanceTtl: expected a duration string with a unit`);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(new RegExp(`^outrigger: ${join(temp, 'nope.yaml')}: cannot read the file \\(ENOENT\\)`));
    expect(ambiguous.status).toBe(2);
    expect(ambiguous.stderr).toMatch(/cannot tell a sidecar configuration from a control-plane one by its keys; give --kind sidecar\|control-plane\nrun "outrigger validate --help" for usage\n$/);
  });
});

describe('outrigger schema and completion', () => {
  it('prints the shipped JSON Schema of each file', async () => {
    const [sidecar, cp] = await Promise.all([run(['schema', 'sidecar']), run(['schema', 'control-plane'])]);
    expect(sidecar.stdout).toBe(readFileSync(join(repoRoot, 'schemas/sidecar.schema.json'), 'utf8'));
    expect(cp.stdout).toBe(readFileSync(join(repoRoot, 'schemas/control-plane.schema.json'), 'utf8'));
    expect(JSON.parse(sidecar.stdout)).toMatchObject({ $schema: 'http://json-schema.org/draft-07/schema#', required: ['service'] });
  });

  it('prints a bash script that bash accepts and that completes commands, flags, flag values and ctl commands', async () => {
    const script = (await run(['completion', 'bash'])).stdout;
    const file = join(temp, 'outrigger.bash');
    writeFileSync(file, script);
    expect(spawnSync('bash', ['-n', file]).status).toBe(0);
    const complete = (...words: string[]): string => {
      const program = `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _outrigger; echo "\${COMPREPLY[*]}"`;
      const r = spawnSync('bash', ['-c', program], { encoding: 'utf8', cwd: temp });
      expect(r.stderr).toBe('');
      return r.stdout.trim();
    };
    expect(complete('outrigger', 'de')).toBe('demo demo-instance demo-app');
    expect(complete('outrigger', 'va')).toBe('validate');
    expect(complete('outrigger', '--v')).toBe('--version');
    expect(complete('outrigger', 'control-plane', '--')).toBe('--config --grpc --http --help');
    expect(complete('outrigger', 'validate', '--kind', '')).toBe('sidecar control-plane');
    expect(complete('outrigger', 'schema', '')).toBe('sidecar control-plane');
    expect(complete('outrigger', 'sidecar', '-c', 'outrigger.b')).toBe('outrigger.bash');
    expect(complete('outrigger', 'ctl', '--server', '127.0.0.1:15080', 'po')).toBe('policy');
    expect(complete('outrigger', 'ctl', 'policy', '')).toBe('get set');
    expect(complete('outrigger', 'ctl', '--t')).toBe('--token --token-file');
    expect(complete('outrigger', 'ctl', '--ca-file', 'outrigger.b')).toBe('outrigger.bash');
    expect(complete('outrigger', 'ctl', '-o', 'y')).toBe('yaml');
    expect(complete('outrigger', 'ctl', '--ca-file', 'ca.crt', '--token-file', 't', 'dr')).toBe('drain');
    expect(complete('outrigger', 'demo-instance', '--ca-file', 'outrigger.b')).toBe('outrigger.bash');
    expect(complete('outrigger', 'help', 'comp')).toBe('completion');
  });

  it('prints a zsh script that defines the completion of every command', async () => {
    const r = await run(['completion', 'zsh']);
    expect(r.stdout.split('\n')[0]).toBe('#compdef outrigger');
    for (const c of [...COMMANDS.map((x) => x.name), 'ctl']) expect(r.stdout).toMatch(new RegExp(`\\n    ${c}\\) _arguments `));
    expect(r.stdout).toContain('compdef _outrigger outrigger');
  });
});

describe('outrigger control-plane without --config', () => {
  it('runs on defaults, says so, and keeps its state in ./outrigger-data/ of its working directory', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'outrigger-dev-cp-'));
    const [grpc, http] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, [bin, 'control-plane', '--grpc', `127.0.0.1:${grpc}`, '--http', `127.0.0.1:${http}`], {
      cwd,
      env: { ...process.env, OUTRIGGER_NO_REEXEC: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => stderr.includes('running on defaults'), 10_000);
      const stateFile = join(cwd, 'outrigger-data', 'state.json');
      expect(stderr).toContain(
        `outrigger: no --config given: running on defaults (gRPC 127.0.0.1:${grpc}, admin API and dashboard https://127.0.0.1:${http}/), state in ${stateFile}\n`,
      );
      // It generated an admin token and its mesh CA beside its state; its API is HTTPS with a certificate from that CA.
      const admin = readFileSync(join(cwd, 'outrigger-data', 'admin.token'), 'utf8').trim();
      const caFile = join(cwd, 'outrigger-data', 'mesh-ca.crt');
      trustHttps(`127.0.0.1:${http}`, caFile, readFileSync(caFile, 'utf8'));
      const put = await send(`127.0.0.1:${http}`, { method: 'PUT', path: '/api/services/orders/policy', headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` }, body: JSON.stringify({ lb: 'least-load', endpoints: [{ address: '127.0.0.1:9001' }] }) });
      expect(put.status).toBe(200);
      const v = JSON.parse((await send(`127.0.0.1:${http}`, { path: '/api/version' })).body) as { software?: string };
      expect(v.software).toBe(version);
      // ctl in the same directory finds ./outrigger-data/mesh-ca.crt by itself.
      const services = await runOutrigger(['ctl', '--server', `127.0.0.1:${http}`, '--token-file', 'outrigger-data/admin.token', 'services'], { cwd, env: { OUTRIGGER_CA_FILE: '' } });
      expect(services.stderr).toBe('');
      expect(services.stdout).toMatch(/^orders +least-load/m);
      await waitFor(() => existsSync(stateFile), 10_000);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(readFileSync(stateFile, 'utf8')).toContain('least-load');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
