import type { Args } from './args.js';
import { packageVersion } from './package.js';

/** `outrigger version`: this build's version and, when one answers within a second, the control plane's. */

export const DEFAULT_SERVER = '127.0.0.1:15080';
const TIMEOUT_MS = 1_000;

/** The control plane's answer to GET /api/version, or why there is none. */
async function serverVersion(server: string): Promise<{ software?: string; state?: number } | { problem: string }> {
  try {
    const res = await fetch(`http://${server}/api/version`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) return { problem: `HTTP ${res.status}` };
    const body = (await res.json()) as { software?: unknown; version?: unknown };
    return {
      ...(typeof body.software === 'string' ? { software: body.software } : {}),
      ...(typeof body.version === 'number' ? { state: body.version } : {}),
    };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    if (e.name === 'TimeoutError') return { problem: `no answer within ${TIMEOUT_MS / 1_000} s` };
    return { problem: e.cause?.code ?? e.message };
  }
}

export async function runVersion(args: Args): Promise<void> {
  process.stdout.write(`outrigger ${packageVersion()}\n`);
  if (args.flag('client')) return;
  const server = args.string('server') ?? (process.env['OUTRIGGER_CONTROL_PLANE'] || DEFAULT_SERVER);
  const r = await serverVersion(server);
  if ('problem' in r) {
    process.stdout.write(`control plane at ${server}: not reachable (${r.problem})\n`);
    return;
  }
  const state = r.state === undefined ? '' : ` (state version ${r.state})`;
  process.stdout.write(`control plane at ${server}: outrigger ${r.software ?? 'version unknown (older than this client)'}${state}\n`);
}
