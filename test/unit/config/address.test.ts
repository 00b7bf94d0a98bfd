import { describe, expect, it } from 'vitest';
import { checkHostPort, listenersCollide, parseHostPort } from '../../../common/src/config/address.js';
import { describeValue, formatPath, suggestKey } from '../../../common/src/config/issues.js';

describe('host:port', () => {
  it.each([
    ['127.0.0.1:80', '127.0.0.1', 80],
    ['0.0.0.0:65535', '0.0.0.0', 65535],
    ['localhost:15000', 'localhost', 15000],
    ['orders.default.svc.cluster.local:8080', 'orders.default.svc.cluster.local', 8080],
    ['[::1]:8080', '::1', 8080],
    ['[2001:db8::1]:443', '2001:db8::1', 443],
  ])('parses %s', (address, host, port) => {
    expect(parseHostPort(address)).toEqual({ host, port });
    expect(checkHostPort(address)).toEqual({ host, port });
  });

  it('accepts port 0 only for listeners', () => {
    expect(parseHostPort('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(checkHostPort('127.0.0.1:0')).toEqual({ problem: 'expected host:port with port 1..65535' });
    expect(checkHostPort('127.0.0.1:0', true)).toEqual({ host: '127.0.0.1', port: 0 });
  });

  it.each(['', ':80', 'host', 'host:', 'host:http', 'host:-1', 'host:+80', 'host:123456', '1.2.3:80', '256.0.0.1:80', '::1:80', '[::1]', '[::1]80', '[zz]:80', 'a b:80', '-a:80', 'a..b:80'])(
    'rejects %j',
    (address) => {
      expect(checkHostPort(address)).toHaveProperty('problem');
      expect(() => parseHostPort(address)).toThrow(RangeError);
    },
  );

  it('knows which listeners collide', () => {
    const c = (a: string, b: string): boolean => listenersCollide(parseHostPort(a), parseHostPort(b));
    expect(c('127.0.0.1:9000', '127.0.0.1:9000')).toBe(true);
    expect(c('0.0.0.0:9000', '127.0.0.1:9000')).toBe(true);
    expect(c('127.0.0.1:9000', '[::]:9000')).toBe(true);
    expect(c('localhost:9000', '127.0.0.1:9000')).toBe(true);
    expect(c('127.0.0.1:9000', '127.0.0.2:9000')).toBe(false);
    expect(c('127.0.0.1:9000', '127.0.0.1:9001')).toBe(false);
    expect(c('127.0.0.1:0', '127.0.0.1:0')).toBe(false);
  });
});

describe('issue formatting helpers', () => {
  it('writes key paths with dots and array indices', () => {
    expect(formatPath([])).toBe('(root)');
    expect(formatPath(['services', 'orders', 'endpoints', 2, 'weight'])).toBe('services.orders.endpoints[2].weight');
    expect(formatPath(['services', 'pay.v2', 'lb'])).toBe('services["pay.v2"].lb');
  });

  it('describes values as truncated JSON', () => {
    expect(describeValue(undefined)).toBe('nothing');
    expect(describeValue('three')).toBe('"three"');
    expect(describeValue({ a: [1, 2] })).toBe('{"a":[1,2]}');
    expect(describeValue('y'.repeat(500))).toHaveLength(80);
  });

  it('suggests the key that was probably meant', () => {
    const keys = ['lb', 'hashOn', 'endpoints', 'retry', 'timeout', 'healthCheck'];
    expect(suggestKey('retyr', keys)).toBe(' (did you mean "retry"?)');
    expect(suggestKey('healthcheck', keys)).toBe(' (did you mean "healthCheck"?)');
    expect(suggestKey('health-check', keys)).toBe(' (did you mean "healthCheck"?)');
    expect(suggestKey('timeoutMs', keys)).toMatch(/did you mean "timeout"\? durations are written with a unit/);
    expect(suggestKey('colour', keys)).toBe('');
  });
});
