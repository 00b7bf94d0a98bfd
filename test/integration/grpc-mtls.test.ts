/**
 * gRPC between two sidecars over mutual TLS: the caller's sidecar opens HTTP/2 with ALPN h2 to the callee's
 * strict inbound listener, which takes it beside HTTP/1.1 on the same port and speaks h2c to its app. Real
 * processes: a control plane (the mesh CA), a @grpc/grpc-js server; the sidecars run in this process.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/src/main.js';
import { spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { echoClient, startGrpcServer, type EchoClient, type GrpcServerProcess } from '../helpers/grpc.js';
import { send, waitFor } from '../helpers/net.js';
import { startSidecar } from '../helpers/sidecar.js';

describe('gRPC over mutual TLS between sidecars', () => {
  let cp: ControlPlaneProcess;
  let server: GrpcServerProcess;
  let inventory: Sidecar;
  let web: Sidecar;
  let client: EchoClient;

  beforeAll(async () => {
    cp = await spawnControlPlane('services:\n  inventory:\n    protocol: grpc\n');
    server = await startGrpcServer('inv');
    inventory = await startSidecar(`
service: inventory
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
inbound: { listen: 127.0.0.1:0, target: http://${server.address} }
controlPlane: { addresses: [${cp.grpc}] }
log: { level: silent }
services: {}
`);
    web = await startSidecar(`
service: web
admin: { listen: 127.0.0.1:0 }
outbound: { listen: 127.0.0.1:0 }
controlPlane: { addresses: [${cp.grpc}], subscribe: [inventory] }
log: { level: silent }
services: {}
`);
    // The shared outbound listener routes by :authority.
    client = echoClient(web.addresses.outbound, 'inventory');
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await web?.stop();
    await inventory?.stop();
    await server?.close();
    await cp?.stop();
  });

  it('unary and streaming calls pass; the callee took them over mutual TLS from "web"', async () => {
    const r = await waitFor(() => client.unary({ msg: 'over mtls' }).catch(() => undefined), 15_000);
    expect(r).toMatchObject({ server: 'inv', msg: 'over mtls' });
    expect((await client.serverStream(10)).length).toBe(10);
    expect(await client.clientStream([5, 6])).toMatchObject({ sum: 11 });
    // The callee's inbound side counted the calls (inbound gRPC metrics) and failed no handshake.
    const metrics = (await send(inventory.addresses.admin, { path: '/metrics' })).body;
    expect(metrics).toMatch(/outrigger_grpc_calls_total\{direction="inbound",service="inventory",grpc_code="OK"\} [1-9]/);
    // (Calls made before the caller had its certificate went in plaintext and were refused: no handshake failed.)
    expect(metrics).not.toMatch(/outrigger_mtls_refused_total\{direction="inbound",reason="(handshake|identity)"\} [1-9]/);
    // The mesh endpoint is reached over TLS: the caller's view marks it `mesh`.
    const cfg = JSON.parse((await send(web.addresses.admin, { path: '/config?format=json' })).body) as { services: Record<string, { protocol: string; endpoints: { mesh?: boolean }[] }> };
    expect(cfg.services['inventory']?.protocol).toBe('grpc');
    expect(cfg.services['inventory']?.endpoints.every((e) => e.mesh === true)).toBe(true);
  });

  it('a plaintext HTTP/2 client straight to the strict inbound listener is refused', async () => {
    const direct = echoClient(inventory.addresses.inbound!);
    try {
      const err = await direct.unary({ msg: 'x' }, { deadlineMs: 3_000 }).then(
        () => undefined,
        (e: unknown) => e as grpc.ServiceError,
      );
      expect(err).toBeDefined();
      expect(err!.code).not.toBe(grpc.status.OK);
    } finally {
      direct.close();
    }
  });
});
