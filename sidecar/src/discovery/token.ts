import { readFileSync } from 'node:fs';
import type { SidecarConfig } from '../../../common/src/config/types.js';

/**
 * The token a sidecar sends to the control plane: `controlPlane.token`, else the content of
 * `controlPlane.tokenFile` (whitespace trimmed), else $OUTRIGGER_TOKEN; undefined when there is none.
 * @throws Error naming the file and key when tokenFile cannot be read or is empty.
 */
export function controlPlaneToken(cp: NonNullable<SidecarConfig['controlPlane']>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (cp.token !== undefined) return cp.token;
  if (cp.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(cp.tokenFile, 'utf8');
    } catch (err) {
      throw new Error(`controlPlane.tokenFile: cannot read ${cp.tokenFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
    }
    const token = text.trim();
    if (token === '') throw new Error(`controlPlane.tokenFile: ${cp.tokenFile} is empty; expected the control plane's sidecar token`);
    return token;
  }
  const fromEnv = env.OUTRIGGER_TOKEN?.trim();
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}
