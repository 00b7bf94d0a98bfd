/**
 * Durations in configuration files are strings with a unit: "250ms", "2s", "1.5s", "1m", "1h", and compounds
 * such as "1m30s" (as Go's time.ParseDuration). Plain numbers are not accepted: "250" could mean 250 ms or
 * 250 s, and a config that guesses is worse than one that refuses. Parsed values are whole milliseconds.
 */

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
type Unit = keyof typeof UNIT_MS;

/** The largest duration a config may hold (well below setTimeout's 2^31-1 ms limit). */
export const MAX_DURATION_MS = 24 * UNIT_MS.h;

/** What a duration looks like; used in error messages. */
export const DURATION_EXPECTED = 'expected a duration string with a unit (ms, s, m, h) such as "250ms", "2s", "1m"';

const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const PART = /(\d+)(?:\.(\d+))?(ms|s|m|h)/g;

/** Milliseconds, or the reason `text` is not a valid duration. */
function evaluate(text: string): number | { readonly problem: string } {
  if (!WHOLE.test(text)) return { problem: DURATION_EXPECTED };
  let total = 0;
  for (const m of text.matchAll(PART)) {
    const factor = UNIT_MS[m[3] as Unit];
    const frac = m[2] ?? '';
    // Integer arithmetic, then one correctly-rounded division: "1.1s" is exactly 1100, not 1100.0000000000002.
    total += Number(m[1]) * factor + (frac === '' ? 0 : (Number(frac) * factor) / 10 ** frac.length);
  }
  if (!Number.isInteger(total)) return { problem: 'expected a duration that is a whole number of milliseconds' };
  if (total > MAX_DURATION_MS) return { problem: 'expected a duration of at most 24h' };
  return total;
}

/** Why `text` is not a valid duration (an "expected ..." phrase), or undefined when it is one. */
export function durationProblem(text: string): string | undefined {
  const r = evaluate(text);
  return typeof r === 'number' ? undefined : r.problem;
}

/**
 * Parses "250ms", "2s", "1.5s", "1m", "1h" or a compound ("1m30s") into milliseconds.
 * @throws RangeError when the text is not a duration with a unit, is not a whole number of ms, or exceeds 24h.
 */
export function parseDuration(text: string): number {
  const r = evaluate(text);
  if (typeof r !== 'number') throw new RangeError(`${r.problem}, got ${JSON.stringify(text)}`);
  return r;
}

/**
 * Formats milliseconds the way a config would write them, so that parseDuration(formatDuration(ms)) === ms
 * for whole, non-negative ms: 250 → "250ms", 1500 → "1.5s", 90000 → "1m30s", 3600000 → "1h", 0 → "0ms".
 * Fractional milliseconds are written as such ("0.5ms"); negative values get a leading "-".
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`not a finite duration: ${ms}`);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < UNIT_MS.s || !Number.isInteger(ms)) return `${ms}ms`;
  const h = Math.floor(ms / UNIT_MS.h);
  const m = Math.floor((ms % UNIT_MS.h) / UNIT_MS.m);
  const rest = ms % UNIT_MS.m; // whole ms below one minute
  let out = '';
  if (h > 0) out += `${h}h`;
  if (m > 0) out += `${m}m`;
  if (rest > 0) {
    const s = Math.floor(rest / UNIT_MS.s);
    const frac = rest % UNIT_MS.s;
    out += frac === 0 ? `${s}s` : `${s}.${String(frac).padStart(3, '0').replace(/0+$/, '')}s`;
  }
  return out;
}
