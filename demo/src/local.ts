import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The `outrigger` command of this checkout, which the demo starts its processes with. */
export const BIN = fileURLToPath(new URL('../../../bin/outrigger.js', import.meta.url));

/**
 * Binds 127.0.0.1:`port` and closes at once: the port bound (the OS's pick for 0), or undefined when
 * something already listens there.
 */
export function probePort(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      const bound = typeof a === 'object' && a !== null ? a.port : undefined;
      s.close(() => resolve(bound));
    });
  });
}

/** A port nobody listens on now (the OS picks it). */
export async function freePort(): Promise<number> {
  const port = await probePort(0);
  if (port === undefined) throw new Error('no free port on 127.0.0.1');
  return port;
}
