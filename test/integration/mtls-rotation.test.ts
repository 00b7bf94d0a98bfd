/**
 * Certificate rotation end to end: with a short certificate lifetime the control plane issues new
 * certificates while traffic flows, and every request between the sidecars still succeeds. Upstream
 * connections are closed after 50 ms idle, so most requests open a new connection and handshake with
 * whatever certificates are current at that moment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { runLoad } from '../helpers/load.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

const issued = (cp: ControlPlaneProcess): number => (cp.stdout.match(/certificate issued/g) ?? []).length;

describe('mesh certificates renewed under load', () => {
  let cp: ControlPlaneProcess;
  let app: Upstream;
  const sidecars: SidecarProcess[] = [];
  let webOut = '';

  beforeAll(async () => {
    // 8 s certificates: each sidecar renews about every 4 s.
    cp = await spawnControlPlane('instanceTtl: 5s\nmtls: { certTtl: 8s }\n');
    app = await startUpstream((_req, res) => res.end('ok'));
    const pi = await ports();
    sidecars.push(
      await spawnSidecar(
        `service: inventory\ninstance: inv-1\nadmin: { listen: 127.0.0.1:${pi.admin} }\noutbound: { listen: 127.0.0.1:${pi.outbound} }\n` +
          `inbound: { listen: 127.0.0.1:${pi.inbound}, target: http://${app.address}, mtls: strict }\n` +
          `controlPlane: { addresses: [${cp.grpc}] }\nlog: { level: warn }\nservices: {}\n`,
        pi.admin,
      ),
    );
    const pw = await ports();
    webOut = `127.0.0.1:${pw.outbound}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\nadmin: { listen: 127.0.0.1:${pw.admin} }\noutbound: { listen: ${webOut} }\nhttp: { upstreamIdleTimeout: 50ms }\n` +
          `controlPlane: { addresses: [${cp.grpc}], subscribe: [inventory] }\nlog: { level: warn }\nservices: {}\n`,
        pw.admin,
      ),
    );
    await waitFor(async () => (await send(webOut, { headers: { host: 'inventory' } })).status === 200, 10_000);
  }, 30_000);

  afterAll(async () => {
    for (const s of sidecars) await s.stop();
    await cp?.stop();
    await app?.close();
  });

  it('no request fails while both sidecars get new certificates', async () => {
    const before = issued(cp);
    const result = await runLoad({ target: webOut, host: 'inventory', rps: 10, durationMs: 10_000 });
    // Both sidecars renewed at least once during the load (about twice each at 4 s).
    expect(issued(cp) - before).toBeGreaterThanOrEqual(2);
    expect(result.sent).toBeGreaterThan(50);
    expect(result.failed).toBe(0);
  }, 30_000);
});
