import type { Args } from './args.js';
import { CommandError } from './errors.js';
import { exitOnSignals } from './signals.js';

/** `outrigger demo`, `demo-instance` and `demo-app`: the local mesh and its parts. */

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export async function runDemo(args: Args): Promise<void> {
  const rps = args.number('rps', 20, { min: 0, max: 1_000 });
  const { runMesh } = await import('../../demo/src/mesh.js');
  let mesh: Awaited<ReturnType<typeof runMesh>>;
  try {
    mesh = await runMesh({ loadRps: rps, grpc: args.flag('grpc') });
  } catch (err) {
    throw new CommandError(`demo: ${message(err)}`);
  }
  exitOnSignals(() => mesh.stop());
}

export async function runDemoInstance(args: Args): Promise<void> {
  const service = args.required('service', 'NAME');
  args.required('port', 'N');
  const port = args.number('port', 0, { min: 1, max: 65_535, integer: true });
  const controlPlane = args.required('control-plane', 'HOST:PORT');
  const runDir = args.required('run-dir', 'DIR');
  const delayMs = args.number('delay-ms', 0, { min: 0 });
  const capacity = args.number('capacity', 20, { min: 1, integer: true });
  const { runInstance } = await import('../../demo/src/instance.js');
  const adminPort = args.string('admin-port') === undefined ? undefined : args.number('admin-port', 0, { min: 1, max: 65_535, integer: true });
  const inst = await runInstance({
    service,
    port,
    host: args.string('host'),
    controlPlane,
    runDir,
    delayMs,
    capacity,
    calls: args.string('calls'),
    grpc: args.flag('grpc'),
    tokenFile: args.string('token-file'),
    caFile: args.string('ca-file'),
    adminPort,
  });
  exitOnSignals(() => inst.stop());
  void inst.done.then((code) => process.exit(code));
}

export async function runDemoApp(args: Args): Promise<void> {
  const name = args.required('name', 'NAME');
  const listen = args.required('listen', 'HOST:PORT');
  const delayMs = args.number('delay-ms', 0, { min: 0 });
  const failPercent = args.number('fail-percent', 0, { min: 0, max: 100 });
  const calls = args.string('calls');
  const via = args.string('via') ?? '127.0.0.1:15001';
  const { startDemoApp } = await import('../../demo/src/app.js');
  let app: Awaited<ReturnType<typeof startDemoApp>>;
  try {
    app = await startDemoApp({ name, instance: args.string('instance'), listen, delayMs, failPercent, grpc: args.flag('grpc'), calls: calls === undefined ? undefined : { service: calls, via } });
  } catch (err) {
    throw new CommandError(`demo-app: ${message(err)}`);
  }
  process.stdout.write(`outrigger demo-app ${name} listening on http://${app.address}\n`);
  exitOnSignals(() => app.stop());
}
