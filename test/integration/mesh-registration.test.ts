/**
 * A mesh instance (its inbound listener takes mutual TLS) is published to callers only once its sidecar has
 * a certificate: before that its listener could only refuse them. An instance in mode `mesh` takes the
 * control plane's mesh-wide mode, which comes back with the certificate.
 */
import { Metadata } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Certificate, ControlPlaneMessage, Instance } from '../../proto/gen/outrigger/v1/discovery.js';
import { createKeyAndCsr } from '../../sidecar/src/identity/csr.js';
import { discoveryClient, sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { freePort, waitFor } from '../helpers/net.js';
import { TEST_SIDECAR_TOKEN } from '../helpers/tokens.js';

interface Listed {
  instances: { id: string; address: string; mesh?: boolean }[];
}

describe('registration of mesh instances', () => {
  let cp: ControlPlaneProcess;
  beforeAll(async () => {
    cp = await spawnControlPlane('mtls: { mode: permissive }\n');
  }, 20_000);
  afterAll(async () => {
    await cp?.stop();
  });

  const listed = async (id: string) => (JSON.parse((await sendApi(cp.http, { path: '/api/instances' })).body) as Listed).instances.find((i) => i.id === id);

  it('waits for the certificate, then publishes the instance with the mesh-wide mode', async () => {
    const client = discoveryClient(cp.grpc);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${TEST_SIDECAR_TOKEN}`);
    const call = client.stream(metadata);
    const certificates: Certificate[] = [];
    let snapshots = 0;
    call.on('data', (m: ControlPlaneMessage) => {
      if (m.msg?.$case === 'certificate') certificates.push(m.msg.certificate);
      if (m.msg?.$case === 'snapshot') snapshots++;
    });
    call.on('error', () => {});
    try {
      const address = `127.0.0.1:${await freePort()}`;
      const instance: Instance = { service: 'inventory', id: 'inv-mesh-1', address, weight: 0, capacity: 0, zone: '', mtls: 'mesh' };
      call.write({ msg: { $case: 'hello', hello: { instance, subscriptions: [], lastVersion: '', service: 'inventory' } } });
      call.write({ msg: { $case: 'heartbeat', heartbeat: {} } });
      await waitFor(() => snapshots > 0, 10_000);
      // Connected and heartbeating, but without a certificate: not published.
      expect(await listed('inv-mesh-1')).toBeUndefined();

      const { csrPem } = await createKeyAndCsr('outrigger.local', 'inventory');
      call.write({ msg: { $case: 'certificateRequest', certificateRequest: { csrPem } } });
      await waitFor(() => certificates.length > 0, 10_000);
      expect(certificates[0]).toMatchObject({ error: '', mode: 'permissive', trustDomain: 'outrigger.local' });
      const published = await waitFor(() => listed('inv-mesh-1'), 10_000);
      expect(published).toMatchObject({ address, mesh: true });
    } finally {
      call.cancel();
      client.close();
    }
  });
});
