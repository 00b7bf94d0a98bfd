import { readFileSync } from 'node:fs';
import { ConfigError } from '../../common/src/errors.js';
import type { Sidecar } from '../../sidecar/src/main.js';

const USAGE = `usage: outrigger <command> [options]

commands:
  sidecar --config FILE     run a sidecar proxy (SIGHUP reloads FILE, SIGTERM drains and stops)
  control-plane --config FILE
                            run the control plane (gRPC discovery, HTTP admin API)
  ctl [--server HOST:PORT] [--json] COMMAND
                            operate a running control plane: services, endpoints, circuits, policy get|set,
                            weight set|clear, drain, sidecars, autoscale, scale (\`outrigger ctl help\` lists them)
  demo [--rps N]            run a whole local mesh (control plane with dashboard, catalog and inventory with
                            several instances each, a sidecar beside each, a gentle load of N requests/s)
  demo-app --name NAME --listen HOST:PORT [--instance ID] [--delay-ms N] [--fail-percent P]
           [--calls SERVICE [--via HOST:PORT]]
                            run one demo service instance (JSON answers, GET /healthz, POST /knob?delayMs=N
                            &failPercent=P), calling SERVICE through the sidecar at --via (default 127.0.0.1:15001)
  demo-instance --service NAME --port N --control-plane HOST:PORT --run-dir DIR [--host H]
           [--calls SERVICE] [--delay-ms N] [--capacity N]
                            one demo instance: demo-app and its sidecar (inbound on N), supervised
  version                   print the version
  help                      this text
`;

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

function fail(message: string): never {
  process.stderr.write(`outrigger: ${message}\n`);
  process.exit(2);
}

/** Stops `stop` on SIGTERM/SIGINT exactly once, then exits. */
function exitOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`outrigger: ${signal}: draining and stopping\n`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`outrigger: error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Started by a supervisor with an IPC channel (the autoscaler's process driver, the demo): stop with it.
  if (process.channel !== undefined) process.once('disconnect', () => onSignal('SIGTERM'));
}

async function runSidecar(args: readonly string[]): Promise<void> {
  const configFile = flag(args, '--config') ?? flag(args, '-c');
  if (configFile === undefined) fail('sidecar: --config FILE is required');
  let sidecar: Sidecar;
  try {
    // Each command loads only what it runs (ctl starts in a fraction of the time without the proxy).
    const { Sidecar: SidecarClass } = await import('../../sidecar/src/main.js');
    sidecar = await SidecarClass.start({ configFile });
  } catch (err) {
    if (err instanceof ConfigError) fail(`invalid configuration:\n${err.message}`);
    fail(err instanceof Error ? err.message : String(err));
  }
  process.on('SIGHUP', () => {
    void sidecar.reload();
  });
  exitOnSignals(() => sidecar.stop());
}

export async function main(argv: readonly string[]): Promise<void> {
  const [command, ...args] = argv;
  switch (command) {
    case 'sidecar':
      await runSidecar(args);
      return;
    case 'control-plane': {
      const configFile = flag(args, '--config') ?? flag(args, '-c');
      if (configFile === undefined) fail('control-plane: --config FILE is required');
      const { ControlPlane } = await import('../../control-plane/src/main.js');
      let cp: Awaited<ReturnType<typeof ControlPlane.start>>;
      try {
        cp = await ControlPlane.start({ configFile });
      } catch (err) {
        if (err instanceof ConfigError) fail(`invalid configuration:\n${err.message}`);
        fail(err instanceof Error ? err.message : String(err));
      }
      exitOnSignals(() => cp.stop());
      return;
    }
    case 'ctl': {
      const { runCtl } = await import('../../control-plane/src/ctl/main.js');
      process.exitCode = await runCtl(args);
      return;
    }
    case 'demo': {
      const rps = Number(flag(args, '--rps') ?? '20');
      if (!Number.isFinite(rps) || rps < 0 || rps > 1_000) fail('demo: --rps must be a number 0..1000');
      const { runMesh } = await import('../../demo/src/mesh.js');
      let mesh: Awaited<ReturnType<typeof runMesh>>;
      try {
        mesh = await runMesh({ loadRps: rps });
      } catch (err) {
        fail(`demo: ${err instanceof Error ? err.message : String(err)}`);
      }
      exitOnSignals(() => mesh.stop());
      return;
    }
    case 'demo-instance': {
      const service = flag(args, '--service');
      const port = Number(flag(args, '--port'));
      const controlPlane = flag(args, '--control-plane');
      const runDir = flag(args, '--run-dir');
      if (service === undefined || service === '') fail('demo-instance: --service NAME is required');
      if (!Number.isInteger(port) || port < 1 || port > 65535) fail('demo-instance: --port must be an integer 1..65535');
      if (controlPlane === undefined) fail('demo-instance: --control-plane HOST:PORT is required');
      if (runDir === undefined) fail('demo-instance: --run-dir DIR is required');
      const delayMs = Number(flag(args, '--delay-ms') ?? '0');
      const capacity = Number(flag(args, '--capacity') ?? '20');
      if (!Number.isFinite(delayMs) || delayMs < 0) fail('demo-instance: --delay-ms must be a number >= 0');
      if (!Number.isInteger(capacity) || capacity < 1) fail('demo-instance: --capacity must be an integer >= 1');
      const { runInstance } = await import('../../demo/src/instance.js');
      const inst = await runInstance({ service, port, host: flag(args, '--host'), controlPlane, runDir, delayMs, capacity, calls: flag(args, '--calls') });
      exitOnSignals(() => inst.stop());
      void inst.done.then((code) => process.exit(code));
      return;
    }
    case 'demo-app': {
      const name = flag(args, '--name');
      const listen = flag(args, '--listen');
      if (name === undefined || name === '') fail('demo-app: --name NAME is required');
      if (listen === undefined) fail('demo-app: --listen HOST:PORT is required');
      const delayMs = Number(flag(args, '--delay-ms') ?? '0');
      if (!Number.isFinite(delayMs) || delayMs < 0) fail('demo-app: --delay-ms must be a number >= 0');
      const failPercent = Number(flag(args, '--fail-percent') ?? '0');
      if (!Number.isFinite(failPercent) || failPercent < 0 || failPercent > 100) fail('demo-app: --fail-percent must be a number 0..100');
      const calls = flag(args, '--calls');
      const via = flag(args, '--via') ?? '127.0.0.1:15001';
      const { startDemoApp } = await import('../../demo/src/app.js');
      let app: Awaited<ReturnType<typeof startDemoApp>>;
      try {
        app = await startDemoApp({ name, instance: flag(args, '--instance'), listen, delayMs, failPercent, calls: calls === undefined ? undefined : { service: calls, via } });
      } catch (err) {
        fail(`demo-app: ${err instanceof Error ? err.message : String(err)}`);
      }
      process.stdout.write(`outrigger demo-app ${name} listening on http://${app.address}\n`);
      exitOnSignals(() => app.stop());
      return;
    }
    case 'version':
    case '--version': {
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      process.stdout.write(`outrigger ${pkg.version}\n`);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(USAGE);
      fail(`unknown command "${command}"`);
  }
}
