import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerResponse } from 'node:http';
import type { Sidecar } from '../../sidecar/src/main.js';
import { send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, startSidecar } from '../helpers/sidecar.js';

describe('inbound listener', () => {
  let app: Upstream;
  let sidecar: Sidecar;
  const held: ServerResponse[] = [];

  beforeAll(async () => {
    app = await startUpstream((req, res) => {
      if (req.url === '/hold') {
        held.push(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`app saw ${req.url} from ${String(req.headers['x-forwarded-for'])}`);
    });
    const p = await ports();
    sidecar = await startSidecar(`
service: catalog
admin: { listen: 127.0.0.1:${p.admin} }
outbound: { listen: 127.0.0.1:${p.outbound} }
inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address}, maxConcurrent: 2 }
log: { level: silent }
services: {}
`);
  });

  afterAll(async () => {
    await sidecar.stop(100);
    await app.close();
  });

  it('forwards to the local app', async () => {
    const r = await send(sidecar.addresses.inbound!, { path: '/items' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('app saw /items from 127.0.0.1');
  });

  it('sheds load beyond maxConcurrent with 503 overloaded and retry-after, and admits again afterwards', async () => {
    const inbound = sidecar.addresses.inbound!;
    const first = [send(inbound, { path: '/hold' }), send(inbound, { path: '/hold' })];
    await waitFor(() => held.length === 2);
    const shed = await send(inbound, { path: '/items' });
    expect(shed.status).toBe(503);
    expect(shed.headers['x-outrigger-error']).toBe('overloaded');
    expect(shed.headers['retry-after']).toBe('1');
    for (const res of held.splice(0)) res.end('released');
    const done = await Promise.all(first);
    expect(done.map((d) => d.status)).toEqual([200, 200]);
    const again = await send(inbound, { path: '/items' });
    expect(again.status).toBe(200);
    const m = await send(sidecar.addresses.admin, { path: '/metrics' });
    expect(m.body).toMatch(/outrigger_requests_total\{direction="inbound",service="catalog",code="503"\} 1/);
  });
});
