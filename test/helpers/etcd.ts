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
  const [only] = (await startEtcdCluster(1)).members;
  return only as EtcdProcess;
}

export interface EtcdCluster {
  readonly members: readonly EtcdProcess[];
  /** Every member's client URL. */
  readonly endpoints: readonly string[];
  destroy(): Promise<void>;
}

/** An etcd cluster of `size` members on loopback, started together; resolves once every member is healthy. */
export async function startEtcdCluster(size: number): Promise<EtcdCluster> {
  const specs = [];
  for (let i = 0; i < size; i++) specs.push({ name: `m${i}`, client: `http://127.0.0.1:${await freePort()}`, peer: `http://127.0.0.1:${await freePort()}` });
  const initialCluster = specs.map((m) => `${m.name}=${m.peer}`).join(',');
  const members = specs.map((m) => member(m.name, m.client, m.peer, initialCluster));
  await Promise.all(members.map((m) => m.restart()));
  return {
    members,
    endpoints: specs.map((m) => m.client),
    destroy: async () => {
      for (const m of members) await m.destroy();
    },
  };
}

function member(name: string, client: string, peer: string, initialCluster: string): EtcdProcess {
  const dataDir = mkdtempSync(join(tmpdir(), 'outrigger-etcd-'));
  const args = [
    ...['--name', name, '--data-dir', dataDir],
    ...['--listen-client-urls', client, '--advertise-client-urls', client],
    ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer],
    ...['--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--log-level', 'error'],
  ];
  const exited = (c: ChildProcess): Promise<void> =>
    new Promise((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) resolve();
      else c.once('exit', () => resolve());
    });
  const proc: EtcdProcess = {
    endpoint: client,
    dataDir,
    child: undefined as unknown as ChildProcess,
    output: '',
    kill: async () => {
      const c = proc.child as ChildProcess | undefined;
      if (c === undefined) return;
      const done = exited(c);
      c.kill('SIGKILL');
      await done;
    },
    // Starts the member (again, on the same ports and data directory) and waits until it is healthy (which
    // needs a quorum: members of a cluster are started together).
    restart: async () => {
      const c = spawn(ETCD_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout?.on('data', (d: Buffer) => (proc.output += d.toString()));
      c.stderr?.on('data', (d: Buffer) => (proc.output += d.toString()));
      proc.child = c;
      await waitFor(async () => {
        if (c.exitCode !== null) throw new Error(`etcd exited with ${c.exitCode}: ${proc.output}`);
        return (await fetch(`${client}/health`).catch(() => undefined))?.ok === true;
      }, 30_000);
    },
    destroy: async () => {
      await proc.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
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
