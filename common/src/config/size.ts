/**
 * Byte sizes in configuration files: a whole number of bytes (`1048576`) or a string with a binary unit
 * (`512B`, `64KiB`, `16MiB`, `1GiB`, `1.5MiB`). Decimal units (`MB`) are refused rather than guessed at:
 * "16MB" could mean 16,000,000 or 16,777,216 bytes.
 */

const UNIT_BYTES = { B: 1, KiB: 1_024, MiB: 1_048_576, GiB: 1_073_741_824 } as const;
type Unit = keyof typeof UNIT_BYTES;

/** What a size looks like; used in error messages. */
export const SIZE_EXPECTED = 'expected a size in bytes or with a unit (B, KiB, MiB, GiB) such as "64KiB", "16MiB"';

const SIZE = /^(\d+)(?:\.(\d+))?(B|KiB|MiB|GiB)$/;

/** Bytes, or the reason `value` is not a size (an "expected ..." phrase). */
export function parseSize(value: unknown): number | { readonly problem: string } {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : { problem: SIZE_EXPECTED };
  if (typeof value !== 'string') return { problem: SIZE_EXPECTED };
  const m = SIZE.exec(value);
  if (m === null) return { problem: SIZE_EXPECTED };
  const factor = UNIT_BYTES[m[3] as Unit];
  const frac = m[2] ?? '';
  const bytes = Number(m[1]) * factor + (frac === '' ? 0 : (Number(frac) * factor) / 10 ** frac.length);
  if (!Number.isSafeInteger(bytes)) return { problem: 'expected a size that is a whole number of bytes' };
  return bytes;
}

/** 16777216 → "16MiB", 1536 → "1.5KiB", 100 → "100B" (for messages and views). */
export function formatSize(bytes: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB'] as const) {
    const f = UNIT_BYTES[unit];
    if (bytes >= f && Number.isInteger((bytes / f) * 1000)) return `${bytes / f}${unit}`;
  }
  return `${bytes}B`;
}
