import { describe, expect, it } from 'vitest';
import { mergePatch } from '../../../control-plane/src/registry/merge-patch.js';

describe('mergePatch (RFC 7386)', () => {
  // The examples of RFC 7386, appendix A.
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  it.each(cases)('%j patched with %j is %j', (target, patch, result) => {
    expect(mergePatch(target, patch)).toEqual(result);
  });

  it('keeps what the patch does not mention, deep inside a policy, and changes neither argument', () => {
    const policy = { lb: 'round-robin', retry: { attempts: 2, on: ['reset'] }, healthCheck: { http: { path: '/healthz' }, interval: '2s' } };
    const patch = { lb: 'least-load', retry: { attempts: 3 }, healthCheck: { interval: null } };
    const before = structuredClone(policy);
    expect(mergePatch(policy, patch)).toEqual({ lb: 'least-load', retry: { attempts: 3, on: ['reset'] }, healthCheck: { http: { path: '/healthz' } } });
    expect(policy).toEqual(before);
    expect(patch).toEqual({ lb: 'least-load', retry: { attempts: 3 }, healthCheck: { interval: null } });
  });

  it('a "__proto__" key from JSON stays a plain key', () => {
    const out = mergePatch({}, JSON.parse('{"__proto__": {"polluted": true}}')) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
  });
});
