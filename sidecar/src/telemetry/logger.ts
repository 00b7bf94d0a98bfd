import { pino, type Logger } from 'pino';
import type { Random } from '../core/random.js';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** JSON logs to stdout, buffered (flushed on shutdown). */
export function createLogger(level: LogLevel, name = 'outrigger'): Logger {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

export function flushLogger(logger: Logger): void {
  try {
    logger.flush();
  } catch {
    // a closed destination cannot be flushed; nothing is lost that can be saved
  }
}

export interface AccessLogEntry {
  readonly direction: 'inbound' | 'outbound';
  readonly service: string;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly status: number;
  readonly endpoint: string | undefined;
  readonly durationMs: number;
  readonly requestId: string | undefined;
  readonly error: string | undefined;
}

/** One access-log line per request at info, optionally sampled, or nothing at all when disabled. */
export class AccessLog {
  private enabled: boolean;
  constructor(
    private readonly logger: Logger,
    private readonly random: Random,
    private sampleRate: number,
    enabled: boolean,
  ) {
    this.enabled = enabled && logger.isLevelEnabled('info');
  }

  configure(enabled: boolean, sampleRate: number): void {
    this.enabled = enabled && this.logger.isLevelEnabled('info');
    this.sampleRate = sampleRate;
  }

  get active(): boolean {
    return this.enabled;
  }

  write(entry: AccessLogEntry): void {
    if (!this.enabled) return;
    if (this.sampleRate < 1 && this.random.next() >= this.sampleRate) return;
    this.logger.info({ access: entry }, 'request');
  }
}
