import type { z } from 'zod';

/**
 * Turns zod issues into the config loader's lines: `<dotted.key[path]>: expected <what>, got <JSON value>`.
 * The schemas (schema.ts) phrase their messages as "expected ..."; this adds the path and what was got.
 */

/** How strict objects phrase an unknown key; the formatter reads the allowed keys back from it. */
export const UNKNOWN_KEY_PREFIX = 'expected one of the keys ';

/**
 * Extra fields a schema's custom issue may carry in `params`: `suffix` is appended after "got ...";
 * `got` replaces the JSON of the input.
 */
export interface IssueParams {
  readonly suffix?: string;
  readonly got?: string;
  /** Show the raw value found at the issue's path in the parsed document (what the user wrote, e.g. "1s"). */
  readonly fromRoot?: boolean;
  /** With `fromRoot`: what to show when the document has no value there (the key was left to its default). */
  readonly whenMissing?: string;
}

const MAX_GOT = 80;

/** A key path as written in messages: `services.orders.endpoints[2].weight`, `services["a b"]`, `(root)`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z0-9_$-]+$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out === '' ? '(root)' : out;
}

/** JSON of a value, truncated; "nothing" for a missing value. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value); // JSON would say null
  let json: string;
  try {
    json = JSON.stringify(value) ?? String(value);
  } catch {
    json = String(value);
  }
  return json.length > MAX_GOT ? `${json.slice(0, MAX_GOT - 1)}…` : json;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j] ?? 0;
      prev[j] = Math.min(up + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length] ?? 0;
}

/** A hint for an unknown key: the allowed key it most likely meant, if any. */
export function suggestKey(unknown: string, allowed: readonly string[]): string {
  const squash = (s: string): string => s.toLowerCase().replace(/[-_]/g, '');
  if (unknown.endsWith('Ms') && allowed.includes(unknown.slice(0, -2))) {
    return ` (did you mean "${unknown.slice(0, -2)}"? durations are written with a unit, e.g. "2s")`;
  }
  const same = allowed.find((k) => squash(k) === squash(unknown));
  if (same !== undefined) return ` (did you mean "${same}"?)`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of allowed) {
    const d = editDistance(unknown.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  const limit = unknown.length <= 3 ? 1 : 2;
  return best !== undefined && bestDistance <= limit ? ` (did you mean "${best}"?)` : '';
}

/**
 * Formats zod issues as config-error lines (deduplicated, in order).
 * @param root  the raw input that was parsed, to show what was got when an issue does not carry it.
 */
export function formatIssues(issues: readonly z.core.$ZodIssue[], root: unknown): string[] {
  const lines: string[] = [];
  const push = (line: string): void => {
    if (!lines.includes(line)) lines.push(line);
  };
  for (const issue of issues) {
    const path = issue.path;
    if (issue.code === 'unrecognized_keys') {
      const allowed = issue.message.startsWith(UNKNOWN_KEY_PREFIX) ? issue.message.slice(UNKNOWN_KEY_PREFIX.length).split(', ') : [];
      for (const key of issue.keys) {
        push(`${formatPath([...path, key])}: ${issue.message}, got unknown key ${JSON.stringify(key)}${suggestKey(key, allowed)}`);
      }
      continue;
    }
    if (issue.code === 'invalid_key') {
      const inner = issue.issues[0]?.message ?? issue.message;
      push(`${formatPath(path)}: ${inner}, got ${describeValue(path[path.length - 1])}`);
      continue;
    }
    const params: IssueParams = issue.code === 'custom' ? ((issue.params ?? {}) as IssueParams) : {};
    const value = 'input' in issue && params.fromRoot !== true ? issue.input : valueAt(root, path);
    const got = params.got ?? (value === undefined && params.whenMissing !== undefined ? params.whenMissing : describeValue(value));
    push(`${formatPath(path)}: ${issue.message}, got ${got}${params.suffix ?? ''}`);
  }
  return lines;
}

/**
 * Fallback messages for any zod check a schema did not phrase itself, in the same "expected ..." style.
 * Passed as the per-parse `error` option, so schema-level messages take precedence.
 */
export function fallbackMessage(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected === 'object' || issue.expected === 'record' ? 'a mapping' : issue.expected === 'array' ? 'a list' : issue.expected}`;
    case 'too_small':
      return issue.origin === 'array' ? `expected at least ${issue.minimum} item(s)` : `expected at least ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'array' ? `expected at most ${issue.maximum} item(s)` : `expected at most ${issue.maximum}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'unrecognized_keys':
      return 'expected no other keys';
    default:
      return `expected a valid value (${issue.code ?? 'invalid'})`;
  }
}
