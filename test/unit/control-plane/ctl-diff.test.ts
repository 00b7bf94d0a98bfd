import { describe, expect, it } from 'vitest';
import { diffLines, lines } from '../../../control-plane/src/ctl/diff.js';

describe('diffLines', () => {
  it('marks lines only before with -, only after with +, common ones with a space, in order', () => {
    const before = lines('lb: round-robin\nretry:\n  attempts: 2\nhealthCheck:\n  interval: 2s\n');
    const after = lines('lb: least-load\nretry:\n  attempts: 2\nhealthCheck:\n  interval: 2s\ntimeout: 5s\n');
    expect(diffLines(before, after)).toEqual(['-lb: round-robin', '+lb: least-load', ' retry:', '   attempts: 2', ' healthCheck:', '   interval: 2s', '+timeout: 5s']);
  });

  it('handles empty sides and identical texts', () => {
    expect(diffLines([], ['a', 'b'])).toEqual(['+a', '+b']);
    expect(diffLines(['a', 'b'], [])).toEqual(['-a', '-b']);
    expect(diffLines(['a', 'b'], ['a', 'b'])).toEqual([' a', ' b']);
    expect(lines('')).toEqual([]);
    expect(lines('{}\n')).toEqual(['{}']);
  });

  it('keeps the longest run of common lines', () => {
    expect(diffLines(['a', 'x', 'b', 'c'], ['a', 'b', 'y', 'c'])).toEqual([' a', '-x', ' b', '+y', ' c']);
  });
});
