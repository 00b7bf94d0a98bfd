import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { buildPicker, hashKeyFromHeaders, isHashPolicy, lbPolicies, pickerFactories, type LbPolicy } from '../../../sidecar/src/lb/index.js';
import { makeEndpoints, opts } from './helpers.js';

describe('lb registry', () => {
  it('has a factory for every documented policy', () => {
    const all: LbPolicy[] = [
      'random',
      'weighted-random',
      'round-robin',
      'weighted-round-robin',
      'least-request',
      'least-load',
      'peak-ewma',
      'ring-hash',
      'maglev',
    ];
    expect([...lbPolicies].sort()).toEqual([...all].sort());
    for (const policy of all) {
      const eps = makeEndpoints(3);
      const p = pickerFactories[policy](eps, opts());
      expect(eps).toContain(p.pick('key', undefined));
    }
  });

  it('buildPicker builds the policy’s picker; a hashing picker is sticky per key and random without one', () => {
    const eps = makeEndpoints(5);
    const ring = buildPicker('ring-hash', eps, opts(1));
    const key = hashKeyFromHeaders({ header: 'x-user-id' }, { 'x-user-id': 'alice' });
    expect(key).toBe('alice');
    const first = ring.pick(key, undefined);
    for (let i = 0; i < 20; i++) expect(ring.pick('alice', undefined)).toBe(first);
    const bare = buildPicker('maglev', eps, opts(2));
    const seen = new Set(Array.from({ length: 200 }, () => bare.pick(undefined, undefined)));
    expect(seen.size).toBe(5);
    expect(isHashPolicy('maglev')).toBe(true);
    expect(isHashPolicy('least-load')).toBe(false);
  });
});

describe('hashKeyFromHeaders', () => {
  it('reads a header, joining repeated values', () => {
    expect(hashKeyFromHeaders({ header: 'x-user-id' }, { 'x-user-id': 'u1' })).toBe('u1');
    expect(hashKeyFromHeaders({ header: 'x-user-id' }, { 'x-user-id': ['u1', 'u2'] })).toBe('u1,u2');
    expect(hashKeyFromHeaders({ header: 'x-user-id' }, {})).toBeUndefined();
    expect(hashKeyFromHeaders(undefined, { 'x-user-id': 'u1' })).toBeUndefined();
  });

  it('reads a cookie', () => {
    const h = { cookie: 'a=1; session = "s-42" ; other=x' };
    expect(hashKeyFromHeaders({ cookie: 'session' }, h)).toBe('s-42');
    expect(hashKeyFromHeaders({ cookie: 'other' }, h)).toBe('x');
    expect(hashKeyFromHeaders({ cookie: 'sess' }, h)).toBeUndefined();
    expect(hashKeyFromHeaders({ cookie: 'a' }, { cookie: ['z=0', 'a=7'] })).toBe('7');
    expect(hashKeyFromHeaders({ cookie: 'a' }, {})).toBeUndefined();
  });

  it('accepts node:http request headers', () => {
    const headers: IncomingHttpHeaders = { 'x-user-id': 'n1', 'set-cookie': ['a=b'], cookie: 'uid=c' };
    expect(hashKeyFromHeaders({ header: 'x-user-id' }, headers)).toBe('n1');
  });

  it('prefers the header, falling back to the cookie', () => {
    const on = { header: 'x-user-id', cookie: 'uid' };
    expect(hashKeyFromHeaders(on, { 'x-user-id': 'h', cookie: 'uid=c' })).toBe('h');
    expect(hashKeyFromHeaders(on, { cookie: 'uid=c' })).toBe('c');
  });
});
