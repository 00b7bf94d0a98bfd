/**
 * A line diff for `outrigger ctl policy ... --dry-run`: every line of both texts, in order, prefixed with
 * " " (in both), "-" (only in the first) or "+" (only in the second), from a longest common subsequence.
 * Policies are a few dozen lines, so the quadratic table is small.
 */
export function diffLines(before: readonly string[], after: readonly string[]): string[] {
  const n = before.length;
  const m = after.length;
  // common[i * (m + 1) + j]: length of the longest common subsequence of before[i..] and after[j..].
  const common = new Uint32Array((n + 1) * (m + 1));
  const at = (i: number, j: number): number => common[i * (m + 1) + j] ?? 0;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) common[i * (m + 1) + j] = before[i] === after[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && before[i] === after[j]) {
      out.push(` ${before[i] ?? ''}`);
      i++;
      j++;
    } else if (j >= m || (i < n && at(i + 1, j) >= at(i, j + 1))) out.push(`-${before[i++] ?? ''}`);
    else out.push(`+${after[j++] ?? ''}`);
  }
  return out;
}

/** The lines of a text without the final newline's empty line ("" has none). */
export function lines(text: string): string[] {
  if (text === '') return [];
  return text.replace(/\n$/, '').split('\n');
}
