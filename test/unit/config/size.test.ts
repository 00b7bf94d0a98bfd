import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from '../../../common/src/config/size.js';

describe('parseSize', () => {
  it.each([
    [0, 0],
    [1_048_576, 1_048_576],
    ['100B', 100],
    ['64KiB', 65_536],
    ['1.5KiB', 1_536],
    ['16MiB', 16_777_216],
    ['1GiB', 1_073_741_824],
  ] as const)('%j → %d bytes', (value, bytes) => {
    expect(parseSize(value)).toBe(bytes);
  });

  it.each(['16MB', '16 MiB', '16mib', 'MiB', '-1KiB', '1', 1.5, -1, true])('refuses %j', (value) => {
    expect(parseSize(value)).toHaveProperty('problem');
  });

  it('refuses a fraction of a byte', () => {
    expect(parseSize('0.3B')).toEqual({ problem: 'expected a size that is a whole number of bytes' });
  });
});

describe('formatSize', () => {
  it('writes the largest binary unit that fits', () => {
    expect(formatSize(16_777_216)).toBe('16MiB');
    expect(formatSize(1_536)).toBe('1.5KiB');
    expect(formatSize(1_000)).toBe('1000B');
    expect(formatSize(1_073_741_824)).toBe('1GiB');
  });
});
