import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseControlPlaneConfig } from '../../../control-plane/src/config/load.js';
import { Authenticator, bearerSecret, mayCall } from '../../../control-plane/src/auth/tokens.js';
import { parseSidecarConfig } from '../../../common/src/config/load.js';
import { ConfigError } from '../../../common/src/errors.js';

function issuesOf(text: string): readonly string[] {
  try {
    parseControlPlaneConfig(text, 'cp.yaml', tmpdir());
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  return [];
}

describe('cp.yaml auth', () => {
  it('names the key of a missing secret, an unknown role, a short secret, duplicate names and services on a non-sidecar role', () => {
    expect(issuesOf('auth: { tokens: [ { name: a, role: admin } ] }')).toEqual(['auth.tokens[0].secret: expected exactly one of secret, secretFile, secretEnv, got none']);
    expect(issuesOf('auth: { tokens: [ { name: a, secret: 0123456789abcdef, role: root } ] }')).toEqual(['auth.tokens[0].role: expected one of admin, operator, reader, sidecar, got "root"']);
    expect(issuesOf('auth: { tokens: [ { name: a, secret: short, role: admin } ] }')).toEqual(['auth.tokens[0].secret: expected a secret of at least 16 characters, got "short"']);
    expect(issuesOf('auth: { tokens: [ { name: a, secret: 0123456789abcdef, role: admin }, { name: a, secret: 0123456789abcdeg, role: reader } ] }')).toEqual([
      'auth.tokens[1].name: expected a name no other token has, got "a"',
    ]);
    expect(issuesOf('auth: { tokens: [ { name: a, secret: 0123456789abcdef, role: reader, services: [x] } ] }')).toEqual([
      'auth.tokens[0].services: expected no services for role reader (only a sidecar token is scoped to services), got ["x"]',
    ]);
    expect(issuesOf('auth: { tokens: [] }')).toEqual(['auth.tokens: expected at least one token (or disabled: true), got []']);
    expect(issuesOf('auth: { tokens: [ { name: a, secretEnv: OUTRIGGER_TEST_UNSET_VARIABLE, role: admin } ] }')).toEqual([
      'auth.tokens[0].secretEnv: expected the environment variable OUTRIGGER_TEST_UNSET_VARIABLE to hold the secret, got nothing',
    ]);
  });

  it('reads secretFile relative to cp.yaml, trimmed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'outrigger-auth-'));
    writeFileSync(join(dir, 'ops.token'), '  0123456789abcdefXYZ\n');
    const c = parseControlPlaneConfig('auth: { tokens: [ { name: ops, secretFile: ops.token, role: operator } ] }', join(dir, 'cp.yaml'));
    expect(c.auth).toEqual({ disabled: false, tokens: [{ name: 'ops', secret: '0123456789abcdefXYZ', role: 'operator' }] });
    expect(parseControlPlaneConfig('auth: { disabled: true }', 'cp.yaml').auth).toEqual({ disabled: true, tokens: [] });
    expect(parseControlPlaneConfig('', 'cp.yaml').auth).toBeUndefined();
  });
});

describe('tokens', () => {
  const auth = new Authenticator([
    { name: 'r', secret: 'reader-secret-0123456789', role: 'reader' },
    { name: 's', secret: 'sidecar-secret-0123456789', role: 'sidecar', services: ['a'] },
    { name: 'any', secret: 'sidecar-any-0123456789', role: 'sidecar', services: ['*'] },
  ]);

  it('knows its secrets only, whole', () => {
    expect(auth.authenticate('reader-secret-0123456789')?.name).toBe('r');
    expect(auth.authenticate('reader-secret-012345678')).toBeUndefined();
    expect(auth.authenticate('')).toBeUndefined();
    expect(auth.authenticate(undefined)).toBeUndefined();
    expect([...(auth.authenticate('sidecar-secret-0123456789')?.services ?? [])]).toEqual(['a']);
    expect(auth.authenticate('sidecar-any-0123456789')?.services).toBeUndefined();
    expect(bearerSecret('Bearer abc')).toBe('abc');
    expect(bearerSecret('bearer  abc ')).toBe('abc');
    expect(bearerSecret('Basic abc')).toBeUndefined();
  });

  it('lets reader GET, operator also change, admin everything, sidecar nothing on the HTTP API', () => {
    const p = (path: string): string[] => path.split('/').filter((s) => s !== '');
    expect(mayCall('reader', 'GET', p('/api/services'))).toBe(true);
    expect(mayCall('reader', 'POST', p('/api/drain'))).toBe(false);
    for (const [method, path] of [['POST', '/api/drain'], ['POST', '/api/undrain'], ['PUT', '/api/services/a/policy'], ['PATCH', '/api/services/a/policy'], ['DELETE', '/api/services/a/policy'], ['PUT', '/api/services/a/weights/1.2.3.4:5'], ['PUT', '/api/autoscale/a']] as const) {
      expect(mayCall('operator', method, p(path)), `${method} ${path}`).toBe(true);
    }
    expect(mayCall('operator', 'POST', p('/api/something-new'))).toBe(false);
    expect(mayCall('admin', 'POST', p('/api/something-new'))).toBe(true);
    expect(mayCall('sidecar', 'GET', p('/api/services'))).toBe(false);
  });
});

describe('sidecar.yaml controlPlane token', () => {
  it('takes token or tokenFile, not both', () => {
    expect(parseSidecarConfig('service: a\ncontrolPlane: { addresses: [127.0.0.1:1], token: abc }', 'sidecar.yaml').controlPlane?.token).toBe('abc');
    expect(() => parseSidecarConfig('service: a\ncontrolPlane: { addresses: [127.0.0.1:1], token: abc, tokenFile: t }', 'sidecar.yaml')).toThrow('controlPlane.tokenFile: expected token or tokenFile, not both');
  });
});
