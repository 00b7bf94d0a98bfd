import { Duplex } from 'node:stream';
import { connect } from 'node:tls';

/**
 * grpc-js sends the target's host as the TLS server name (SNI) even when it is an IP address, as in
 * `controlPlane.addresses: [127.0.0.1:15010]`; Node.js then prints DEP0123 ("Setting the TLS ServerName to an
 * IP address is not permitted by RFC 6066") once per process, on the sidecar's stderr. The name only selects a
 * certificate on servers that host several (the control plane has one), and the certificate is still checked
 * against the IP address. This spends Node's one warning quietly: a TLS client over a socket that goes nowhere,
 * with an IP server name, while deprecation warnings are off. Nothing else is silenced.
 */
let done = false;

export function quietIpServernameWarning(): void {
  if (done) return;
  done = true;
  const saved = process.noDeprecation;
  process.noDeprecation = true;
  try {
    const nowhere = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    const socket = connect({ socket: nowhere, servername: '127.0.0.1' });
    socket.on('error', () => {});
    socket.destroy();
    nowhere.destroy();
  } finally {
    process.noDeprecation = saved ?? false;
  }
}
