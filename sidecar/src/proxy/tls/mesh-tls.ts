import tls from 'node:tls';
import type net from 'node:net';
import { identityOf } from '../../../../common/src/security/spiffe.js';

/**
 * Mutual TLS between sidecars. A sidecar's credentials (its service certificate and key, and the mesh CA it
 * trusts) are one swappable secure context: a rotation replaces it, new connections use the new one and
 * connections already open keep theirs, so a rotation drops nothing. Node's host-name check ignores URI
 * SANs, so the peer's SPIFFE ID is checked here on both sides.
 */

/** How an inbound listener treats connections: TLS required, TLS or plaintext, or plaintext only. */
export type MtlsMode = 'strict' | 'permissive' | 'off';

export interface MeshCredentialsMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
}

/** Why a mesh connection was refused, for metrics. */
export type TlsRefusal = 'plaintext' | 'handshake' | 'identity';

export class MeshCredentials {
  private ctx: tls.SecureContext;
  private current: MeshCredentialsMaterial;
  private readonly watchers = new Set<(m: MeshCredentialsMaterial) => void>();

  constructor(
    readonly trustDomain: string,
    material: MeshCredentialsMaterial,
  ) {
    this.ctx = MeshCredentials.context(material);
    this.current = material;
  }

  private static context(m: MeshCredentialsMaterial): tls.SecureContext {
    return tls.createSecureContext(contextOptions(m));
  }

  /** The context new outgoing connections use. */
  get secureContext(): tls.SecureContext {
    return this.ctx;
  }

  get material(): MeshCredentialsMaterial {
    return this.current;
  }

  /** Swaps in new credentials (a renewed certificate or a new CA bundle); throws if they do not load. */
  rotate(material: MeshCredentialsMaterial): void {
    this.ctx = MeshCredentials.context(material);
    this.current = material;
    for (const w of this.watchers) w(material);
  }

  /** Calls `fn` after every rotation; returns the unsubscribe function. */
  watch(fn: (m: MeshCredentialsMaterial) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }
}

function contextOptions(m: MeshCredentialsMaterial): tls.SecureContextOptions {
  return { cert: m.certPem, key: m.keyPem, ca: m.caPem, minVersion: 'TLSv1.2' };
}

/** The inbound side: what a listener needs to accept mesh connections. */
export interface InboundTls {
  readonly mode: MtlsMode;
  /** Absent until the sidecar has its certificate: a strict listener refuses every connection until then. */
  readonly credentials: MeshCredentials | undefined;
  /** Counts a refused connection. */
  refused(reason: TlsRefusal): void;
}

/** The outbound side: the credentials to present and the service the peer must prove to be. */
export interface UpstreamTls {
  readonly credentials: MeshCredentials;
  readonly service: string;
  refused(reason: TlsRefusal): void;
}

/** An error whose code tells a refused peer identity from other connect failures. */
export class MeshIdentityError extends Error {
  readonly code = 'ERR_MESH_IDENTITY';
}

/**
 * Opens a TLS connection to a sidecar's inbound listener that only completes if its peer is `t.service`;
 * `alpn` is what the connection will speak (`h2` for the HTTP/2 engine).
 */
export function connectMesh(host: string, port: number, t: UpstreamTls, alpn: readonly string[] = HTTP1_ALPN): tls.TLSSocket {
  const td = t.credentials.trustDomain;
  const socket = tls.connect({
    host,
    port,
    secureContext: t.credentials.secureContext,
    ALPNProtocols: alpn as string[],
    // The chain is verified against the mesh CA (rejectUnauthorized); the name is the SPIFFE ID, not the host.
    checkServerIdentity: (_host, cert) => {
      const id = identityOf(cert.subjectaltname, td);
      if ('error' in id) {
        t.refused('identity');
        return new MeshIdentityError(`upstream ${host}:${port}: ${id.error}`);
      }
      if (id.service !== t.service) {
        t.refused('identity');
        return new MeshIdentityError(`upstream ${host}:${port} is service "${id.service}", not "${t.service}"`);
      }
      return undefined;
    },
  });
  socket.setNoDelay(true);
  return socket;
}

const HTTP1_ALPN: readonly string[] = ['http/1.1'];

/** TLS records start with 22 (handshake); an HTTP request starts with a letter. */
const TLS_HANDSHAKE = 0x16;

/**
 * The accepting side of a mesh listener. Each accepted socket's first bytes decide: a TLS handshake goes
 * to a node:tls server that requires a client certificate from the mesh CA (so OpenSSL verifies the
 * chain and dates), and then the client's SPIFFE ID must name a service of the trust domain; plaintext is
 * served only in permissive mode and otherwise answered 403 `mtls-required`. `ready` receives the socket
 * to speak HTTP on and the client's service (undefined for plaintext). Every refusal is counted.
 */
export class MeshAcceptor {
  private readonly server: tls.Server;
  private readonly unwatch: () => void;

  constructor(
    readonly settings: InboundTls,
    private readonly credentials: MeshCredentials,
    handshakeTimeoutMs: number,
    private readonly ready: (socket: net.Socket, peer: string | undefined) => void,
  ) {
    this.server = tls.createServer({
      ...contextOptions(credentials.material),
      requestCert: true,
      rejectUnauthorized: true,
      // Both engines: an HTTP/2 client sends the connection preface next, which the listener recognizes.
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: handshakeTimeoutMs,
    });
    this.server.on('secureConnection', this.onSecure);
    this.server.on('tlsClientError', this.onTlsError);
    this.unwatch = credentials.watch((m) => this.server.setSecureContext(contextOptions(m)));
  }

  private readonly onSecure = (socket: tls.TLSSocket): void => {
    const id = identityOf(socket.getPeerCertificate().subjectaltname, this.credentials.trustDomain);
    if ('error' in id) {
      this.settings.refused('identity');
      socket.destroy();
      return;
    }
    this.ready(socket, id.service);
  };

  private readonly onTlsError = (_err: Error, socket: tls.TLSSocket): void => {
    this.settings.refused('handshake');
    socket.destroy();
  };

  /** Takes over an accepted socket; `deadline` bounds the wait for its first bytes. */
  accept(socket: net.Socket, deadline: (fn: () => void) => { cancel(): void }): void {
    let first = true;
    const timer = deadline(() => {
      if (first) socket.destroy();
    });
    socket.on('error', noop);
    socket.once('data', (chunk: Buffer) => {
      first = false;
      timer.cancel();
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] === TLS_HANDSHAKE) {
        this.server.emit('connection', socket);
        return;
      }
      if (this.settings.mode === 'permissive') {
        this.ready(socket, undefined);
        socket.resume();
        return;
      }
      this.settings.refused('plaintext');
      socket.end(PLAINTEXT_REFUSED);
    });
  }

  close(): void {
    this.unwatch();
  }
}

function noop(): void {}

/** What a plaintext client of a strict listener reads before the connection closes. */
const REFUSED_BODY = JSON.stringify({ error: 'mtls-required', message: 'this listener accepts mutual TLS from mesh sidecars only' });
const PLAINTEXT_REFUSED =
  'HTTP/1.1 403 Forbidden\r\nx-outrigger-error: mtls-required\r\ncontent-type: application/json\r\nconnection: close\r\n' +
  `content-length: ${Buffer.byteLength(REFUSED_BODY)}\r\n\r\n${REFUSED_BODY}`;
