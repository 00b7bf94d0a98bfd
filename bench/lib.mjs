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

// ---------------------------------------------------------------------------------------------
// The control-plane benches (control-plane.mjs, control-plane-scale.mjs): names, addresses, numbers, and
// the little protobuf reading their simulated sidecars need to ACK a snapshot.

export const serviceName = (s) => `svc-${String(s).padStart(3, '0')}`;
/** Static endpoint e of service s: 198.18.0.0/16. */
export const endpointAddress = (opts, s, e) => {
  const k = s * opts.endpoints + e;
  return `198.18.${Math.floor(k / 250)}.${(k % 250) + 1}:8080`;
};
/** Simulated sidecar i's address: 198.19.0.0/16. */
export const sidecarAddress = (i) => `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}:15006`;
export const fmt = (n, d = 0) => (n === Infinity ? 'timeout' : Number.isFinite(n) ? n.toFixed(d) : '–');

export function varint(buf, pos) {
  let v = 0;
  let mul = 1;
  for (;;) {
    const b = buf[pos++];
    if (b === undefined) throw new Error('truncated varint');
    v += (b & 0x7f) * mul;
    if (b < 0x80) return [v, pos];
    mul *= 128;
  }
}

export function skip(buf, pos, wt) {
  switch (wt) {
    case 0: return varint(buf, pos)[1];
    case 1: return pos + 8;
    case 2: {
      const [len, p] = varint(buf, pos);
      return p + len;
    }
    case 5: return pos + 4;
    default: throw new Error(`unexpected wire type ${wt}`);
  }
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Sends `signal` to a detached child's process group (or the child alone); nothing if it has exited. */
export function signalGroup(c, signal = 'SIGKILL') {
  if (!c || c.exited || !c.pid) return;
  try {
    process.kill(-c.pid, signal);
  } catch {
    try {
      process.kill(c.pid, signal);
    } catch {
      // already gone
    }
  }
}

/** The last `lines` lines of a log file ('' when it cannot be read). */
export function tail(file, lines) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** A `/proc/PID/status` figure in kB (VmRSS, RssAnon, VmHWM), or `missing` when it cannot be read. */
export function procStatusKb(pid, key, missing) {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : missing;
  } catch {
    return missing;
  }
}

/** The head of an encoded Snapshot: version, nonce, instance TTL and how many services it carries. */
export function decodeSnapshotHead(buf) {
  const out = { version: '', nonce: '', services: [], serviceCount: 0, instanceTtlMs: 0 };
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p] = varint(buf, pos);
    const field = tag >>> 3;
    const wt = tag & 7;
    if ((field === 1 || field === 2) && wt === 2) {
      const [len, q] = varint(buf, p);
      const s = buf.toString('utf8', q, q + len);
      if (field === 1) out.version = s;
      else out.nonce = s;
      pos = q + len;
    } else if (field === 4 && wt === 0) {
      [out.instanceTtlMs, pos] = varint(buf, p);
    } else {
      if (field === 3) out.serviceCount++;
      pos = skip(buf, p, wt);
    }
  }
  return out;
}
