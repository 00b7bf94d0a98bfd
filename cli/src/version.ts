import type { Args } from './args.js';
import { packageVersion } from './package.js';

/** `outrigger version`: this build's version and, when one answers within a second, the control plane's. */

export const DEFAULT_SERVER = '127.0.0.1:15080';
const TIMEOUT_MS = 1_000;

/** The control plane's answer to GET /api/version (HTTPS pinned to `ca`, as ctl), or why there is none. */
async function serverVersion(server: string, caFile: string | undefined): Promise<{ software?: string; state?: number } | { problem: string }> {
  const { AdminClient, loadCa } = await import('../../control-plane/src/ctl/client.js');
  try {
    const client = new AdminClient(server, undefined, loadCa(caFile, process.env), TIMEOUT_MS);
    const res = await client.request('GET', '/api/version');
    if (res.status !== 200) return { problem: `HTTP ${res.status}` };
    const body = res.body as { software?: unknown; version?: unknown } | null;
    return {
      ...(typeof body?.software === 'string' ? { software: body.software } : {}),
      ...(typeof body?.version === 'number' ? { state: body.version } : {}),
    };
  } catch (err) {
    return { problem: (err instanceof Error ? err.message : String(err)).replace(/^cannot reach the control plane at \S+ \((.*)\)$/, '$1') };
  }
}

export async function runVersion(args: Args): Promise<void> {
  process.stdout.write(`outrigger ${packageVersion()}\n`);
  if (args.flag('client')) return;
  const server = args.string('server') ?? (process.env['OUTRIGGER_CONTROL_PLANE'] || DEFAULT_SERVER);
  const r = await serverVersion(server, args.string('ca-file'));
  if ('problem' in r) {
    process.stdout.write(`control plane at ${server}: not reachable (${r.problem})\n`);
    return;
  }
  const state = r.state === undefined ? '' : ` (state version ${r.state})`;
  process.stdout.write(`control plane at ${server}: outrigger ${r.software ?? 'version unknown (older than this client)'}${state}\n`);
}
