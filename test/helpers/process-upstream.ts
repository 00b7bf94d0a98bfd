import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, waitFor } from './net.js';

/** A tiny HTTP app in its own process, so a test can kill -9 it for real. */
const APP = `
const http = require('node:http');
const port = Number(process.argv[1]);
let n = 0;
http.createServer((req, res) => {
  n++;
  if (req.url === '/healthz') { res.end('ok'); return; }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ pid: process.pid, n }));
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

export interface ProcessUpstream {
  readonly port: number;
  readonly address: string;
  child: ChildProcess;
  /** SIGKILL: the kernel resets its connections; new ones are refused. */
  kill9(): Promise<void>;
  /** Starts the app again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function start(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', APP, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`upstream exited with ${String(code)} before it was ready`)));
    child.stdout?.once('data', () => resolve(child));
  });
}

function exited(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve();
    else c.once('exit', () => resolve());
  });
}

export async function startProcessUpstream(): Promise<ProcessUpstream> {
  const port = await freePort();
  const up: ProcessUpstream = {
    port,
    address: `127.0.0.1:${port}`,
    child: await start(port),
    async kill9() {
      const done = exited(up.child);
      up.child.kill('SIGKILL');
      await done;
    },
    async restart() {
      // The port is free again once the process is gone; retry briefly if the kernel still holds it.
      const child = await waitFor(async () => start(port).catch(() => undefined), 3_000);
      if (child !== undefined) up.child = child;
    },
    async close() {
      const done = exited(up.child);
      up.child.kill('SIGTERM');
      await done;
    },
  };
  return up;
}
