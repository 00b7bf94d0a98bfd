import { describe, expect, it } from 'vitest';
import { Authorizer } from '../../../sidecar/src/proxy/authz.js';
import { parseServiceConfig } from '../../../common/src/config/load.js';

const policy = (authorization: unknown) => {
  const cfg = parseServiceConfig({ endpoints: [{ address: '127.0.0.1:1' }], authorization }, 'test');
  return new Authorizer(cfg.authorization!);
};

describe('authorization policies', () => {
  it('first matching rule decides, else the default; counts each decision', () => {
    const a = policy({
      default: 'deny',
      rules: [
        { action: 'deny', from: ['web'], paths: ['/admin'] },
        { from: ['web', 'catalog'], methods: ['GET', 'HEAD'] },
        { from: ['*'], paths: ['/healthz'] },
        { methods: ['OPTIONS'] },
      ],
    });
    expect(a.check('web', 'GET', '/items?x=1')).toEqual({ allowed: true, rule: 1 });
    expect(a.check('web', 'GET', '/admin/users')).toEqual({ allowed: false, rule: 0 });
    expect(a.check('web', 'POST', '/items')).toEqual({ allowed: false, rule: -1 });
    expect(a.check('payments', 'GET', '/items')).toEqual({ allowed: false, rule: -1 });
    expect(a.check('payments', 'GET', '/healthz')).toEqual({ allowed: true, rule: 2 });
    // A plaintext caller (no identity) never matches a `from`, not even "*".
    expect(a.check(undefined, 'GET', '/healthz')).toEqual({ allowed: false, rule: -1 });
    // A rule without `from` matches every caller, plaintext too.
    expect(a.check(undefined, 'OPTIONS', '/x')).toEqual({ allowed: true, rule: 3 });
    expect({ allowed: a.allowed, denied: a.denied }).toEqual({ allowed: 3, denied: 4 });
  });

  it('paths are prefixes of the path without its query', () => {
    const a = policy({ default: 'deny', rules: [{ paths: ['/items/'] }] });
    expect(a.decide(undefined, 'GET', '/items/7').allowed).toBe(true);
    expect(a.decide(undefined, 'GET', '/items').allowed).toBe(false);
    expect(a.decide(undefined, 'GET', '/other?next=/items/7').allowed).toBe(false);
  });

  it('allows everything by default; refuses malformed policies with the key named', () => {
    expect(policy({}).check('anyone', 'DELETE', '/').allowed).toBe(true);
    expect(() => policy({ default: 'maybe' })).toThrow(/authorization.default: expected allow or deny/);
    expect(() => policy({ rules: [{ from: ['Web'] }] })).toThrow(/authorization.rules\[0\].from\[0\]/);
    expect(() => policy({ rules: [{ methods: ['get'] }] })).toThrow(/expected an HTTP method in capitals/);
    expect(() => policy({ rules: [{ paths: ['items'] }] })).toThrow(/expected a path prefix starting with "\/"/);
    expect(() => policy({ rules: [{ from: [] }] })).toThrow(/at least one service name/);
    expect(() => policy({ rules: [{ users: ['x'] }] })).toThrow(/unknown key "users"/);
  });
});
