import { resolve } from 'node:path';
import { ConfigError } from '../../common/src/errors.js';
import type { ControlPlaneConfig } from '../../control-plane/src/config/types.js';
import { UsageError, type Args } from './args.js';
import { CommandError } from './errors.js';
import { exitOnSignals } from './signals.js';

/** `outrigger sidecar` and `outrigger control-plane`: start the process, stop it on SIGTERM/SIGINT. */

function startFailure(err: unknown): CommandError {
  if (err instanceof ConfigError) return new CommandError(`invalid configuration:\n${err.message}`);
  return new CommandError(err instanceof Error ? err.message : String(err));
}

export async function runSidecar(args: Args): Promise<void> {
  const configFile = args.required('config', 'FILE');
  // Each command loads only what it runs (ctl starts in a fraction of the time without the proxy).
  const { Sidecar } = await import('../../sidecar/src/main.js');
  let sidecar: Awaited<ReturnType<typeof Sidecar.start>>;
  try {
    sidecar = await Sidecar.start({ configFile });
  } catch (err) {
    throw startFailure(err);
  }
  process.on('SIGHUP', () => {
    void sidecar.reload();
  });
  exitOnSignals(() => sidecar.stop());
}

/** --grpc / --http, checked as cp.yaml's listen.* are. */
async function listenOverrides(args: Args): Promise<{ grpc?: string; http?: string }> {
  // The control plane's schema and the config loader are loaded here, not at the top: a sidecar process keeps
  // neither (it validates its own file in a child process, common/src/config/load-apart.ts).
  const { hostPortSchema } = await import('../../control-plane/src/config/schema.js');
  const out: { grpc?: string; http?: string } = {};
  for (const key of ['grpc', 'http'] as const) {
    const value = args.string(key);
    if (value === undefined) continue;
    const r = hostPortSchema(true).safeParse(value);
    if (!r.success) throw new UsageError(`--${key}: ${r.error.issues[0]?.message ?? 'expected host:port'}, got ${JSON.stringify(value)}`, 'control-plane');
    out[key] = value;
  }
  return out;
}

/**
 * cp.yaml (with --grpc / --http over its listen section), or, without --config, the defaults: loopback
 * listeners and the state under ./outrigger-data/.
 */
async function controlPlaneConfig(args: Args, listen: { grpc?: string; http?: string }): Promise<{ config: ControlPlaneConfig; file: string | undefined }> {
  const { parseYaml, readConfigFile } = await import('../../common/src/config/load.js');
  const { validateControlPlaneConfig } = await import('../../control-plane/src/config/load.js');
  const { NO_CONFIG_STORE_FILE } = await import('../../control-plane/src/config/schema.js');
  const file = args.string('config');
  if (file === undefined) {
    return { config: validateControlPlaneConfig({ listen, store: { file: NO_CONFIG_STORE_FILE } }, 'the defaults', process.cwd()), file };
  }
  const raw = parseYaml(await readConfigFile(file), file);
  if (Object.keys(listen).length > 0 && (raw === null || raw === undefined || (typeof raw === 'object' && !Array.isArray(raw)))) {
    const doc = (raw ?? {}) as Record<string, unknown>;
    const fileListen = doc['listen'];
    const merged = fileListen !== null && typeof fileListen === 'object' && !Array.isArray(fileListen) ? { ...(fileListen as object), ...listen } : listen;
    return { config: validateControlPlaneConfig({ ...doc, listen: merged }, file), file };
  }
  return { config: validateControlPlaneConfig(raw, file), file };
}

export async function runControlPlane(args: Args): Promise<void> {
  const listen = await listenOverrides(args);
  let loaded: Awaited<ReturnType<typeof controlPlaneConfig>>;
  try {
    loaded = await controlPlaneConfig(args, listen);
  } catch (err) {
    throw startFailure(err);
  }
  const { ControlPlane } = await import('../../control-plane/src/main.js');
  let cp: Awaited<ReturnType<typeof ControlPlane.start>>;
  try {
    cp = await ControlPlane.start({ config: loaded.config });
  } catch (err) {
    throw startFailure(err);
  }
  if (loaded.file === undefined) {
    process.stderr.write(
      `outrigger: no --config given: running on defaults (gRPC ${cp.grpcAddress}, admin API and dashboard ${cp.config.tls.enabled ? 'https' : 'http'}://${cp.httpAddress}/), ` +
        `state in ${resolve(loaded.config.store.file)}\n`,
    );
  }
  exitOnSignals(() => cp.stop());
}
