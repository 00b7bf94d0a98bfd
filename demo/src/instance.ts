import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BIN, freePort } from './local.js';
import { SIDECAR_TOKEN_FILE } from '../../control-plane/src/auth/generated.js';
import { CA_CERT_FILE } from '../../control-plane/src/ca/setup.js';

/**
 * `outrigger demo-instance`: one instance of a demo service as it would run in production, two processes
 * side by side: the app (`outrigger demo-app`) and its sidecar (`outrigger sidecar`), whose inbound
 * listener on `port` is the address the instance registers with the control plane. This process only
 * supervises them:
 *
 * - the app is restarted `restartDelayMs` (5 s) after it dies (a container's `restart: always`), so killing it
 *   shows callers ejecting it, opening its circuit, and taking it back once it answers again;
 * - if the sidecar dies, the instance is gone: the app is stopped and this process exits 1;
 * - SIGTERM/SIGINT, or the loss of the IPC channel to whoever started it (the autoscaler's process
 *   driver), stop the sidecar first (it deregisters and finishes its requests), then the app.
 *
 * Pid files `<service>-<port>.app.pid` and `.sidecar.pid` in `runDir` name the processes to kill by hand.
 */

export interface InstanceOptions {
  readonly service: string;
  /** The sidecar's inbound port: where other sidecars reach this instance. */
  readonly port: number;
  /** The inbound listener's host (default 127.0.0.1; 0.0.0.0 in a container, which then registers its own address). */
  readonly host?: string | undefined;
  /** The control plane's gRPC address, host:port. */
  readonly controlPlane: string;
  /** A service the app calls for each request (through its sidecar). */
  readonly calls?: string | undefined;
  readonly delayMs?: number | undefined;
  readonly capacity?: number | undefined;
  /** The app serves and makes its calls over gRPC (`demo-app --grpc`). */
  readonly grpc?: boolean | undefined;
  /**
   * Where the sidecar config and pid files go. When it holds the control plane's sidecar.token (the demo
   * mesh runs its control plane with its state here), the sidecar sends that token; else $OUTRIGGER_TOKEN.
   * Its mesh-ca.crt, when there, is the CA the sidecar pins; else it fetches the CA with its token.
   */
  readonly runDir: string;
  /** The sidecar's join token file (`controlPlane.tokenFile`), e.g. the control plane's volume mounted read-only in a container; overrides runDir's. */
  readonly tokenFile?: string | undefined;
  /** The mesh CA the sidecar pins (`controlPlane.caFile`); overrides runDir's. */
  readonly caFile?: string | undefined;
  /** The sidecar's admin port on 127.0.0.1 (a container's healthcheck asks its /ready); default a free one. */
  readonly adminPort?: number | undefined;
  readonly restartDelayMs?: number | undefined;
  readonly log?: ((line: string) => void) | undefined;
}

export interface RunningInstance {
  readonly id: string;
  /** host:port of the app and of the sidecar's admin endpoint. */
  readonly app: string;
  readonly admin: string;
  appPid(): number | undefined;
  /** Resolves when the instance has stopped, with the exit code this process should use. */
  readonly done: Promise<number>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL after `graceMs`. */
async function terminate(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

export async function runInstance(o: InstanceOptions): Promise<RunningInstance> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // On a wildcard host (a container) replicas share the port: the host name (the container's id) tells them apart.
  const wildcard = o.host === '0.0.0.0' || o.host === '::';
  const id = wildcard ? `${o.service}-${hostname()}-${o.port}` : `${o.service}-${o.port}`;
  const [appPort, outboundPort, adminPort] = [await freePort(), await freePort(), o.adminPort ?? (await freePort())];
  await mkdir(o.runDir, { recursive: true });
  const configFile = join(o.runDir, `${id}.sidecar.yaml`);
  const appPidFile = join(o.runDir, `${id}.app.pid`);
  const sidecarPidFile = join(o.runDir, `${id}.sidecar.pid`);
  const tokenFile = o.tokenFile ?? join(o.runDir, SIDECAR_TOKEN_FILE);
  // Without it (a control plane elsewhere) the sidecar fetches the CA with its token (join-token bootstrap).
  const caFile = o.caFile ?? join(o.runDir, CA_CERT_FILE);
  await writeFile(
    configFile,
    [
      `service: ${o.service}`,
      `instance: ${id}`,
      `admin: { listen: 127.0.0.1:${adminPort} }`,
      `outbound: { listen: 127.0.0.1:${outboundPort} }`,
      // Other sidecars reach this instance over mutual TLS (certificates from the control plane): its inbound
      // listener follows the mesh-wide mode, strict by default, so only mesh sidecars are served.
      `inbound: { listen: ${o.host ?? '127.0.0.1'}:${o.port}, target: http://127.0.0.1:${appPort} }`,
      `controlPlane: { addresses: [${o.controlPlane}], subscribe: [${o.calls ?? ''}], capacity: ${o.capacity ?? 20}, reportInterval: 1s${o.tokenFile !== undefined || existsSync(tokenFile) ? `, tokenFile: ${JSON.stringify(tokenFile)}` : ''}${o.caFile !== undefined || existsSync(caFile) ? `, caFile: ${JSON.stringify(caFile)}` : ''} }`,
      'log: { level: warn, accessLog: { enabled: false } }',
      'services: {}',
      '',
    ].join('\n'),
  );

  let stopping = false;
  let app: ChildProcess | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (resolveDone = r));

  const appArgs = [BIN, 'demo-app', '--name', o.service, '--instance', id, '--listen', `127.0.0.1:${appPort}`, '--delay-ms', String(o.delayMs ?? 0)];
  if (o.calls !== undefined) appArgs.push('--calls', o.calls, '--via', `127.0.0.1:${outboundPort}`);
  if (o.grpc === true) appArgs.push('--grpc');

  const startApp = (): void => {
    const child = spawn(process.execPath, ['--max-semi-space-size=4', ...appArgs], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    app = child;
    if (child.pid !== undefined) void writeFile(appPidFile, `${child.pid}\n`).catch(() => {});
    child.once('exit', (code, signal) => {
      if (stopping || app !== child) return;
      const delay = o.restartDelayMs ?? 5_000;
      log(`${id}: app exited (${signal ?? `code ${code ?? '?'}`}); restarting it in ${delay} ms`);
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        if (!stopping) startApp();
      }, delay);
    });
  };
  startApp();

  const sidecar = spawn(process.execPath, ['--max-semi-space-size=4', BIN, 'sidecar', '--config', configFile], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  if (sidecar.pid !== undefined) await writeFile(sidecarPidFile, `${sidecar.pid}\n`);

  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (restartTimer !== undefined) clearTimeout(restartTimer);
    // The sidecar first: it deregisters (callers stop sending) and finishes what is in flight.
    await terminate(sidecar, 10_000);
    await terminate(app, 5_000);
    await Promise.all([rm(appPidFile, { force: true }), rm(sidecarPidFile, { force: true }), rm(configFile, { force: true })]);
    resolveDone(code);
  };

  sidecar.once('exit', (c, signal) => {
    if (stopping) return;
    log(`${id}: sidecar exited (${signal ?? `code ${c ?? '?'}`}); stopping the instance`);
    void stop(1);
  });

  return {
    id,
    app: `127.0.0.1:${appPort}`,
    admin: `127.0.0.1:${adminPort}`,
    appPid: () => app?.pid,
    done,
    stop: () => stop(0),
  };
}
