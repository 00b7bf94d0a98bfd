import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../common/src/logger.js';

/** A debug-level logger whose JSON lines are kept in `lines`, for tests that check what was logged. */
export function captureLogger(): { lines: Record<string, unknown>[]; logger: Logger } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    }),
  );
  return { lines, logger };
}
