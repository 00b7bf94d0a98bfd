import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { request as httpRequest, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { echo, send, startUpstream, waitFor, type Upstream } from '../helpers/net.js';
import { ports, rssMb, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function configYaml(p: { admin: number; outbound: number }, services: string): string {
  return `service: proc\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\nlog: { level: info, accessLog: { enabled: true } }\nservices:\n${services}\n`;
}

describe('the sidecar process', () => {
  it('reloads its config on SIGHUP without dropping a request in flight, and keeps the old config on a bad reload', async () => {
    const held: ServerResponse[] = [];
    const a: Upstream = await startUpstream((req, res) => {
      if (req.url === '/slow') held.push(res);
      else echo('a')(req, res);
    });
    const b: Upstream = await startUpstream(echo('b'));
    cleanups.push(() => a.close(), () => b.close());
    const p = await ports();
    const proc: SidecarProcess = await spawnSidecar(configYaml(p, `  one: { endpoints: [ { address: ${a.address} } ] }`), p.admin);
    cleanups.push(() => proc.stop());
    const out = `127.0.0.1:${p.outbound}`;

    const inFlight = send(out, { path: '/slow', headers: { host: 'one' } });
    await waitFor(() => held.length === 1);
    writeFileSync(proc.file, configYaml(p, `  one: { endpoints: [ { address: ${a.address} } ] }\n  two: { endpoints: [ { address: ${b.address} } ] }`));
    proc.child.kill('SIGHUP');
    await waitFor(async () => (await send(out, { headers: { host: 'two' } })).status === 200);
    held[0]!.end('finished after reload');
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('finished after reload');
    const cfg = JSON.parse((await send(`127.0.0.1:${p.admin}`, { path: '/config/status' })).body) as { version: string };
    expect(cfg.version).toBe('2');

    writeFileSync(proc.file, configYaml(p, `  one: { lb: fastest, endpoints: [ { address: ${a.address} } ] }`));
    proc.child.kill('SIGHUP');
    await waitFor(() => proc.stdout.includes('config reload rejected'));
    expect(proc.stdout).toMatch(/services\.one\.lb/);
    // The old config (with both services) is still in force.
    expect((await send(out, { headers: { host: 'two' } })).status).toBe(200);
    const after = JSON.parse((await send(`127.0.0.1:${p.admin}`, { path: '/config/status' })).body) as { version: string; lastReloadError: string };
    expect(after.version).toBe('2');
    expect(after.lastReloadError).toMatch(/services\.one\.lb/);
    // Access log lines are JSON with the request's outcome.
    const line = await waitFor(() => proc.stdout.split('\n').find((l) => l.includes('"access"') && l.includes('"/slow"')));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ access: { direction: 'outbound', service: 'one', method: 'GET', path: '/slow', status: 200, endpoint: a.address } });
    expect(await proc.stop()).toBe(0);
  });

  it('refuses to start on an invalid config, naming the file, the key and what was expected', async () => {
    const p = await ports();
    const bad = configYaml(p, `  orders:\n    retry: { attempts: three }\n    endpoints: [ { address: 127.0.0.1:1 } ]`);
    await expect(spawnSidecar(bad, p.admin)).rejects.toThrow(/sidecar\.yaml: services\.orders\.retry\.attempts: expected integer 0\.\.10, got "three"/);
  });

  it('streams a 1 GiB upload and a 1 GiB download with flat memory', async () => {
    const GiB = 1024 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const up = await startUpstream((req, res) => {
      if (req.method === 'POST') {
        const hash = createHash('sha1');
        let n = 0;
        req.on('data', (c: Buffer) => {
          n += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes: n })));
        return;
      }
      // Download: write 1 GiB honouring back-pressure.
      res.writeHead(200, { 'content-length': String(GiB) });
      let sent = 0;
      const pump = (): void => {
        while (sent < GiB) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    cleanups.push(() => up.close());
    const p = await ports();
    const proc = await spawnSidecar(configYaml(p, `  big: { endpoints: [ { address: ${up.address} } ] }`).replace('accessLog: { enabled: true }', 'accessLog: { enabled: false }'), p.admin);
    cleanups.push(() => proc.stop());
    const pid = proc.child.pid!;
    const idleRss = rssMb(pid);
    let maxRss = idleRss;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssMb(pid))), 50);
    cleanups.push(async () => clearInterval(sampler));

    const uploaded = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.outbound, method: 'POST', headers: { host: 'big', 'content-length': String(GiB) }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      let sent = 0;
      const pump = (): void => {
        while (sent < GiB) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    expect(JSON.parse(uploaded)).toEqual({ bytes: GiB });

    const downloaded = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.outbound, headers: { host: 'big' }, agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
      });
      req.on('error', reject);
      req.end();
    });
    expect(downloaded).toBe(GiB);
    clearInterval(sampler);
    // A proxy that buffered would grow by up to 1 GiB; with back-pressure it stays within garbage-collector
    // slack of its idle size whatever the size of the body.
    expect(maxRss - idleRss).toBeLessThan(128);
  }, 120_000);
});
