/**
 * A plain-text table for `outrigger ctl`: a header row, then one row per item, columns separated by two
 * spaces and padded to the widest cell; nothing after the last column. Line breaks inside a cell (a NACK
 * reason with several issues) become "; " so every item stays on one line for grep and awk.
 */

export type Align = 'left' | 'right';

function cell(text: string): string {
  return text.replace(/\s*\r?\n\s*/g, '; ');
}

/**
 * @param header  column titles (printed as given).
 * @param rows    cells; a short row is padded with empty cells.
 * @param align   per column; default left. Right suits numbers.
 * @returns the table, ending with a newline.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string {
  const all = [header, ...rows].map((r) => header.map((_, i) => cell(r[i] ?? '')));
  const widths = header.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  const lines = all.map((r) =>
    r
      .map((c, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - [...c].length);
        return align[i] === 'right' ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}
