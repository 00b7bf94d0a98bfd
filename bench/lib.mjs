// Helpers shared by the benchmark scripts.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';

/** n distinct free ports on `host`: hold n listeners on port 0 at once, then release them. */
export async function freePorts(n, host = '127.0.0.1') {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, host, resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(() => resolve()))));
  }
}

/** The CPU's model name (from /proc/cpuinfo on Linux). */
export function cpuModel() {
  let model = os.cpus()[0]?.model ?? '?';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1].trim();
  } catch {
    // not Linux
  }
  return model;
}

/** Short commit of `repoDir` and whether its work tree has uncommitted changes. */
export function gitState(repoDir) {
  const git = (args) => spawnSync('git', ['-C', repoDir, ...args], { encoding: 'utf8', timeout: 10_000 }).stdout?.trim();
  return { commit: git(['rev-parse', '--short', 'HEAD']), dirty: Boolean(git(['status', '--porcelain'])) };
}
