// Helpers shared by the benchmark scripts.
import net from 'node:net';

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
