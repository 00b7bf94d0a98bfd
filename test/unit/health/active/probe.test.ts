import { describe, expect, it } from 'vitest';
import type { HealthCheckConfig } from '../../../../common/src/config/types.js';
import { checkKind, proberFor } from '../../../../sidecar/src/health/active/probe.js';

const base = { intervalMs: 1_000, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 3 };

describe('proberFor / checkKind', () => {
  it('picks the prober of the configured kind (no I/O until called)', () => {
    const http: HealthCheckConfig = { ...base, http: { path: '/healthz', expectedStatuses: [200] } };
    const tcp: HealthCheckConfig = { ...base, tcp: {} };
    const grpc: HealthCheckConfig = { ...base, grpc: { service: '' } };
    expect(checkKind(http)).toBe('http');
    expect(checkKind(tcp)).toBe('tcp');
    expect(checkKind(grpc)).toBe('grpc');
    for (const hc of [http, tcp, grpc]) expect(typeof proberFor(hc)).toBe('function');
  });

  it('refuses a config without a check kind', () => {
    expect(checkKind(base)).toBeUndefined();
    expect(() => proberFor(base)).toThrow(/none of http, tcp, grpc/);
  });
});
