import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.js';

/** Debian's etcd-server (`.ci/run` installs it); tests that need etcd skip without it. */
export const ETCD_BINARY = process.env['OUTRIGGER_ETCD'] ?? '/usr/bin/etcd';
export const HAVE_ETCD = existsSync(ETCD_BINARY);

export interface EtcdProcess {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly dataDir: string;
  child: ChildProcess;
  output: string;
  /** kill -9 (the data directory stays). */
  kill(): Promise<void>;
  /** Starts it again on the same ports with the same data directory. */
  restart(): Promise<void>;
  /** Kills it and removes the data directory. */
  destroy(): Promise<void>;
}

/**
 * A single-member etcd of its own, as a real process on free loopback ports with a temporary data directory
 * (never the system's etcd on 2379).
 */
export async function startEtcd(): Promise<EtcdProcess> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'outrigger-etcd-'));
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name',
    'test',
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    client,
    '--advertise-client-urls',
    client,
    '--listen-peer-urls',
    peer,
    '--initial-advertise-peer-urls',
    peer,
    '--initial-cluster',
    `test=${peer}`,
    '--initial-cluster-state',
    'new',
    '--log-level',
    'error',
  ];
  const exited = (c: ChildProcess): Promise<void> =>
    new Promise((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) resolve();
      else c.once('exit', () => resolve());
    });
  const start = async (): Promise<ChildProcess> => {
    const c = spawn(ETCD_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env['ETCD_UNSUPPORTED_ARCH'] ?? '' } });
    c.stdout?.on('data', (d: Buffer) => (proc.output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (proc.output += d.toString()));
    proc.child = c;
    await waitFor(async () => {
      if (c.exitCode !== null) throw new Error(`etcd exited with ${c.exitCode}: ${proc.output}`);
      return (await fetch(`${client}/health`).catch(() => undefined))?.ok === true;
    }, 20_000);
    return c;
  };
  const proc: EtcdProcess = {
    endpoint: client,
    dataDir,
    child: undefined as unknown as ChildProcess,
    output: '',
    kill: async () => {
      const done = exited(proc.child);
      proc.child.kill('SIGKILL');
      await done;
    },
    restart: async () => {
      await start();
    },
    destroy: async () => {
      await proc.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  await start();
  return proc;
}

export interface Partition {
  /** http://127.0.0.1:PORT: give this to the side that is to be cut off. */
  readonly endpoint: string;
  /** Cuts the link: open connections are dropped, new ones accepted and never answered (a black hole). */
  cut(): void;
  /** Restores the link; connections held in the black hole are closed, so clients connect again. */
  heal(): void;
  close(): Promise<void>;
}

/** A TCP relay to `endpoint` (http://host:port) that a test can cut like a network partition. */
export async function startPartition(endpoint: string): Promise<Partition> {
  const target = new URL(endpoint);
  const open = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    if (cut) return; // held: never connected upstream
    const upstream = connect(Number(target.port), target.hostname);
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const dropAll = (): void => {
    for (const s of open) s.destroy();
    open.clear();
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut: () => {
      cut = true;
      // Held silently: the peer sees no reset, as in a partition (the sockets stay open, unanswered).
      for (const s of open) {
        s.unpipe();
        s.pause();
      }
    },
    heal: () => {
      cut = false;
      dropAll();
    },
    close: () =>
      new Promise<void>((resolve) => {
        dropAll();
        server.close(() => resolve());
      }),
  };
}
