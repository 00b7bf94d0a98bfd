import { pino, type Logger } from 'pino';
import type { Random } from './random.js';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

/**
 * JSON logs to stdout. State changes are rare and written at once (synchronously), so an operator sees
 * them immediately and a crash loses none.
 */
export function createLogger(level: LogLevel, name = 'outrigger'): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}

/**
 * The access log's own logger: buffered (4 KiB, written asynchronously) and flushed every second and on
 * shutdown, so one line per request costs no syscall per request.
 */
export function createAccessLogger(level: LogLevel, name = 'outrigger'): Logger {
  const dest = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  const logger = pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
  setInterval(() => void flushLogger(logger), 1_000).unref();
  return logger;
}

export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      // a destination that is not ready or already closed cannot be flushed; nothing more can be saved
      resolve();
    }
  });
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
  /** Upstream attempts made (1 without retries; 0 when the sidecar answered itself). */
  readonly attempts: number;
  /** A stored answer sent again for a repeated `Idempotency-Key` (inbound side). */
  readonly replayed?: boolean | undefined;
  /** The caller's service as mutual TLS proved it (inbound side). */
  readonly peer?: string | undefined;
  /** The authorization decision, when the service has a policy (inbound side). */
  readonly authz?: 'allow' | 'deny' | undefined;
}

/** The path without its query string: `/a?token=x` → `/a`. */
export function withoutQuery(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/**
 * One access-log line per request at info, optionally sampled, or nothing at all when disabled. The path
 * is logged without its query string (which often carries tokens) unless `query` is true.
 */
export class AccessLog {
  private enabled: boolean;
  constructor(
    private readonly logger: Logger,
    private readonly random: Random,
    private sampleRate: number,
    enabled: boolean,
    private query = false,
  ) {
    this.enabled = enabled && logger.isLevelEnabled('info');
  }

  configure(enabled: boolean, sampleRate: number, query = false): void {
    this.enabled = enabled && this.logger.isLevelEnabled('info');
    this.sampleRate = sampleRate;
    this.query = query;
  }

  get active(): boolean {
    return this.enabled;
  }

  write(entry: AccessLogEntry): void {
    if (!this.enabled) return;
    if (this.sampleRate < 1 && this.random.next() >= this.sampleRate) return;
    const path = entry.path;
    const access = this.query || path === undefined || !path.includes('?') ? entry : { ...entry, path: withoutQuery(path) };
    this.logger.info({ access }, 'request');
  }
}
