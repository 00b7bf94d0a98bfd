import { describe, expect, it } from 'vitest';
import { durationProblem, formatDuration, parseDuration } from '../../../common/src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['0ms', 0],
    ['0s', 0],
    ['2s', 2_000],
    ['1.5s', 1_500],
    ['1.1s', 1_100],
    ['0.001s', 1],
    ['1m', 60_000],
    ['1.5m', 90_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h30m', 5_400_000],
    ['2s500ms', 2_500],
    ['24h', 86_400_000],
  ])('%s → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
    expect(durationProblem(text)).toBeUndefined();
  });

  it.each(['', '250', '2', '2 s', ' 2s', '2sec', '2S', '-1s', '1d', 's', '.5s', '1.s', 'ms', '1e3ms', '2s '])(
    'rejects %j: a unit is required',
    (text) => {
      expect(() => parseDuration(text)).toThrow(RangeError);
      expect(() => parseDuration(text)).toThrow(/expected a duration string with a unit \(ms, s, m, h\)/);
    },
  );

  it('rejects sub-millisecond precision and more than 24h', () => {
    expect(() => parseDuration('0.5ms')).toThrow('expected a duration that is a whole number of milliseconds, got "0.5ms"');
    expect(() => parseDuration('1.0001s')).toThrow(/whole number of milliseconds/);
    expect(() => parseDuration('25h')).toThrow('expected a duration of at most 24h, got "25h"');
    expect(() => parseDuration('99999999999999999999h')).toThrow(/at most 24h/);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [1, '1ms'],
    [250, '250ms'],
    [999, '999ms'],
    [1_000, '1s'],
    [1_500, '1.5s'],
    [1_250, '1.25s'],
    [1_001, '1.001s'],
    [2_000, '2s'],
    [60_000, '1m'],
    [90_000, '1m30s'],
    [60_250, '1m0.25s'],
    [300_000, '5m'],
    [3_600_000, '1h'],
    [3_661_500, '1h1m1.5s'],
    [0.5, '0.5ms'],
    [-1_500, '-1.5s'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 7, 999, 1_000, 1_001, 59_999, 60_000, 61_001, 3_599_999, 3_600_000, 86_399_999, 86_400_000]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });

  it('refuses non-finite values', () => {
    expect(() => formatDuration(Number.NaN)).toThrow(RangeError);
    expect(() => formatDuration(Infinity)).toThrow(RangeError);
  });
});
