/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against a running mesh:
 * a control plane, three "inventory" instances (each a real app process behind its own sidecar process)
 * and a "web" sidecar calling them under steady load. The page shows every instance eligible with a closed
 * circuit; after one app process is SIGKILLed its row turns ineligible with an open circuit within a few
 * seconds, and healthy again after the app is restarted on its port. Screenshots go to test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendApi, spawnControlPlane, type ControlPlaneProcess } from '../helpers/control-plane.js';
import { waitFor } from '../helpers/net.js';
import { TEST_ADMIN_TOKEN } from '../helpers/tokens.js';
import { startProcessUpstream, type ProcessUpstream } from '../helpers/process-upstream.js';
import { ports, spawnSidecar, type SidecarProcess } from '../helpers/sidecar.js';

const CHROMIUM = '/usr/bin/chromium';
const repoRoot = new URL('../../', import.meta.url).pathname;
const artifacts = join(repoRoot, 'test-artifacts');

/** Short windows so a dead instance is taken out within a second or two, and let back in soon after it returns. */
const CP_YAML = `instanceTtl: 5s
weightInterval: 1s
services:
  inventory:
    lb: round-robin
    slowStart: 0s
    outlierDetection: { consecutiveGatewayFailure: 3, interval: 1s, baseEjectionTime: 1s, maxEjectionTime: 2s, maxEjectionPercent: 50 }
    circuitBreaker: { errorThresholdPercentage: 10, volumeThreshold: 3, rollingWindow: 1s, resetTimeout: 2s }
    retry: { attempts: 2, perTryTimeout: 1s }
`;

/** Steady open-loop load (bounded in-flight) until stopped. */
function steadyLoad(target: string, host: string, rps: number): { stop(): Promise<void>; sent: () => number; ok: () => number } {
  const pool = new Pool(`http://${target}`, { connections: 16 });
  let sent = 0;
  let ok = 0;
  let inflight = 0;
  const timer = setInterval(() => {
    if (inflight >= 50) return;
    sent++;
    inflight++;
    pool
      .request({ path: '/', method: 'GET', headers: { host }, headersTimeout: 3_000, bodyTimeout: 3_000 })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode === 200) ok++;
      })
      .catch(() => {})
      .finally(() => inflight--);
  }, 1_000 / rps);
  return {
    async stop() {
      clearInterval(timer);
      await pool.close().catch(() => {});
    },
    sent: () => sent,
    ok: () => ok,
  };
}

const row = (address: string, eligible: 'true' | 'false', circuit: string): string => `tr[data-instance="${address}"][data-eligible="${eligible}"][data-circuit="${circuit}"]`;

describe('dashboard in a browser', () => {
  let cp: ControlPlaneProcess | undefined;
  const apps: ProcessUpstream[] = [];
  const sidecars: SidecarProcess[] = [];
  const addresses: string[] = [];
  let load: ReturnType<typeof steadyLoad> | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const t0 = performance.now();

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the dashboard browser test needs Debian's chromium (apt-get install chromium; .ci/run installs it)`);
    }
    mkdirSync(artifacts, { recursive: true });
    cp = await spawnControlPlane(CP_YAML);
    const grpc = cp.grpc;
    // One after the other (free ports are picked by binding and releasing; parallel picks could collide).
    // Each process is recorded as soon as it runs, so afterAll stops it even if a later start fails.
    for (const i of [0, 1, 2]) {
      const app = await startProcessUpstream();
      apps[i] = app;
      const p = await ports();
      addresses[i] = `127.0.0.1:${p.inbound}`;
      sidecars.push(
        await spawnSidecar(
          `service: inventory\ninstance: inv-${i}\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: 127.0.0.1:${p.outbound} }\n` +
            `inbound: { listen: 127.0.0.1:${p.inbound}, target: http://${app.address} }\n` +
            `controlPlane: { addresses: [${grpc}], reportInterval: 300ms }\nlog: { level: warn }\nservices: {}\n`,
          p.admin,
        ),
      );
    }
    const p = await ports();
    const webOut = `127.0.0.1:${p.outbound}`;
    sidecars.push(
      await spawnSidecar(
        `service: web\ninstance: web-1\nadmin: { listen: 127.0.0.1:${p.admin} }\noutbound: { listen: ${webOut} }\n` +
          `controlPlane: { addresses: [${grpc}], subscribe: [inventory], reportInterval: 300ms }\nlog: { level: warn }\nservices: {}\n`,
        p.admin,
      ),
    );
    // Every instance reachable through the caller before the load starts.
    await waitFor(async () => {
      const r = await sendApi(cp!.http, { path: '/api/dashboard' });
      const s = JSON.parse(r.body) as { services: { name: string; instances: { eligible: boolean | null }[] }[] };
      const inv = s.services.find((x) => x.name === 'inventory');
      return inv !== undefined && inv.instances.length === 3 && inv.instances.every((i) => i.eligible === true);
    }, 10_000);
    load = steadyLoad(webOut, 'inventory', 60);

    // playwright-core gives chromium a fresh temporary profile (user-data-dir) of its own and removes it on close.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    // The control plane's certificate is from its own mesh CA, which this fresh browser profile does not know.
    page = await browser.newPage({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: true });
    page.on('pageerror', (err) => console.error(`dashboard page error: ${err.message}`));
  }, 30_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await load?.stop();
    await Promise.all(sidecars.map((s) => s.stop()));
    await cp?.stop();
    await Promise.all(apps.filter((a) => a !== undefined).map((a) => a.close()));
    console.log(`dashboard browser test: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }, 20_000);

  it('shows the instances healthy, a killed one ineligible with an open circuit within seconds, and its recovery', async () => {
    // The token once in the address: the page keeps it as a cookie and its address loses it.
    await page.goto(`https://${cp!.http}/?token=${TEST_ADMIN_TOKEN}`);
    expect(page.url()).toBe(`https://${cp!.http}/`);
    await page.waitForSelector('[data-testid="connection"][data-status="live"]', { timeout: 5_000 });
    for (const a of addresses) await page.waitForSelector(row(a, 'true', 'closed'), { timeout: 5_000 });
    expect(await page.textContent('[data-testid="cp-version"]')).toMatch(/^\d+\.\d+\.\d+/);
    // A few seconds of traffic on the charts before the picture.
    await page.waitForFunction('document.querySelectorAll(".uplot").length >= 3', undefined, { timeout: 5_000 });
    // A few live events on top of the history the control plane sent.
    await new Promise((r) => setTimeout(r, 1_500));
    await page.screenshot({ path: join(artifacts, 'dashboard-healthy.png') });

    const victim = addresses[1]!;
    const killedAt = performance.now();
    await apps[1]!.kill9();
    await page.waitForSelector(row(victim, 'false', 'open'), { timeout: 5_000 });
    const tookOut = performance.now() - killedAt;
    expect(await page.getAttribute(`tr[data-instance="${victim}"]`, 'data-state')).toBe('serving');
    for (const a of addresses.filter((x) => x !== victim)) expect(await page.$(row(a, 'true', 'closed'))).not.toBeNull();
    await page.screenshot({ path: join(artifacts, 'dashboard-instance-down.png') });

    const restartedAt = performance.now();
    await apps[1]!.restart();
    await page.waitForSelector(row(victim, 'true', 'closed'), { timeout: 15_000 });
    const cameBack = performance.now() - restartedAt;
    await page.screenshot({ path: join(artifacts, 'dashboard-recovered.png') });
    console.log(`dashboard: instance shown out ${tookOut.toFixed(0)} ms after SIGKILL, back ${cameBack.toFixed(0)} ms after restart; load ${load!.ok()}/${load!.sent()} ok`);
    expect(await page.getAttribute('[data-testid="connection"]', 'data-status')).toBe('live');
  }, 60_000);
});
