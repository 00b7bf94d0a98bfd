import { describe, expect, it } from 'vitest';
import { signCa, verifyCa } from '../../../common/src/security/ca-signature.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('CA signatures of the join-token bootstrap', () => {
  it('is HMAC-SHA256 of the PEM keyed with the secret, lower-case hex', () => {
    const sig = signCa(PEM, 'secret-0123456789abcdef');
    expect(sig).toMatch(/^[0-9a-f]{64}$/);
    expect(signCa(PEM, 'secret-0123456789abcdef')).toBe(sig);
    expect(signCa(PEM, 'secret-0123456789abcdeg')).not.toBe(sig);
    expect(signCa(`${PEM} `, 'secret-0123456789abcdef')).not.toBe(sig);
  });

  it("names the token whose signature matches the sidecar's secret, and none for another secret, another CA or malformed signatures", () => {
    const signatures = [
      { token: 'admin', hmacSha256: signCa(PEM, 'admin-secret-0123456789') },
      { token: 'garbage', hmacSha256: 'zz' },
      { token: 'sidecar', hmacSha256: signCa(PEM, 'sidecar-secret-0123456789').toUpperCase() },
    ];
    expect(verifyCa(PEM, 'sidecar-secret-0123456789', signatures)).toBe('sidecar');
    expect(verifyCa(PEM, 'admin-secret-0123456789', signatures)).toBe('admin');
    expect(verifyCa(PEM, 'wrong-secret-0123456789', signatures)).toBeUndefined();
    expect(verifyCa(PEM.replace('MIIB', 'MIIC'), 'sidecar-secret-0123456789', signatures)).toBeUndefined();
    expect(verifyCa(PEM, 'sidecar-secret-0123456789', [])).toBeUndefined();
  });
});
