import { Pool } from 'undici';

export interface LoadSample {
  readonly status: number;
  /** Client-side latency in ms. */
  readonly ms: number;
  readonly error: string | undefined;
  /** `x-outrigger-error` of the answer, if any. */
  readonly reason: string | undefined;
  /** When the request was sent, ms since the load started. */
  readonly at: number;
}

export interface LoadResult {
  readonly samples: readonly LoadSample[];
  readonly sent: number;
  /** Requests that got no 2xx answer. */
  readonly failed: number;
}

export interface LoadOptions {
  /** host:port of the listener. */
  readonly target: string;
  readonly host: string;
  readonly rps: number;
  readonly durationMs: number;
  readonly method?: string;
  readonly path?: string;
  /** Gives up on a request after this long (counted as failed). */
  readonly requestTimeoutMs?: number;
}

/** Percentile (0..100) of a list of numbers (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * Open-loop load: sends `rps` requests per second for `durationMs` (in 10 ms ticks), whatever the answers
 * take, over keep-alive connections; then waits for the last answers (bounded). Loopback only.
 */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(`http://${o.target}`, { connections: 128, pipelining: 1 });
  const samples: LoadSample[] = [];
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  const timeout = o.requestTimeoutMs ?? 10_000;
  let sent = 0;
  const one = async (at: number): Promise<void> => {
    const start = performance.now();
    try {
      const res = await pool.request({
        path: o.path ?? '/',
        method: (o.method ?? 'GET') as 'GET',
        headers: { host: o.host },
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
      await res.body.dump();
      const reason = res.headers['x-outrigger-error'];
      samples.push({ status: res.statusCode, ms: performance.now() - start, error: undefined, reason: typeof reason === 'string' ? reason : undefined, at });
    } catch (err) {
      samples.push({ status: 0, ms: performance.now() - start, error: (err as Error).message, reason: undefined, at });
    }
  };
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      if (elapsed >= o.durationMs) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor((elapsed / 1000) * o.rps) + 1;
      while (sent < due) {
        sent++;
        pending.push(one(elapsed));
      }
    }, 10);
  });
  await Promise.all(pending);
  await pool.close();
  const failed = samples.filter((s) => s.status < 200 || s.status > 299).length;
  return { samples, sent, failed };
}
