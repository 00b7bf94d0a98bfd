import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { existsSync, readFileSync } from 'node:fs';

/**
 * The HTTP side of `outrigger ctl`: JSON requests to the control plane's admin API (control-plane/src/api/
 * http.ts) over HTTPS verified against the mesh CA (`--ca-file`; plain HTTP for an `http://` server URL),
 * with node:https, and the failures a user should see, each with its exit code.
 */

/** A failure `outrigger ctl` reports as `outrigger ctl: MESSAGE` and exits with `exitCode`. */
export class CtlError extends Error {
  constructor(
    message: string,
    /** 1: the control plane refused or does not know the thing; 2: usage, or the control plane is unreachable. */
    readonly exitCode: 1 | 2,
    /** A usage error: a hint to `outrigger ctl --help` follows the message. */
    readonly usage = false,
  ) {
    super(message);
    this.name = 'CtlError';
  }
}

/** PATCH bodies are sent as application/merge-patch+json, others as application/json. */
export type Method = 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE';

export interface Reply {
  readonly status: number;
  /** The parsed JSON body. */
  readonly body: unknown;
}

const REQUEST_TIMEOUT_MS = 10_000;

/** Why a connection failed, in words, from the error codes Node and undici put on `fetch`'s cause. */
function reason(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = (err as { cause?: unknown }).cause ?? err;
  const c = cause as { code?: unknown; message?: unknown; errors?: readonly { code?: unknown }[] };
  const code = typeof c.code === 'string' ? c.code : c.errors?.find((e) => typeof e.code === 'string')?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'ETIMEDOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connection timed out';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ECONNRESET':
      return 'connection reset';
    case 'UND_ERR_SOCKET':
      return 'the connection closed before an answer; is this the HTTP admin address (listen.http), not the gRPC one?';
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'EPROTO':
      return 'the TLS handshake failed; if the control plane runs with tls.enabled: false, give --server http://HOST:PORT';
    default:
      if ((typeof code === 'string' && code.startsWith('HPE_')) || (cause as { name?: unknown }).name === 'HTTPParserError') return 'the answer is not HTTP/1.1; is this the HTTP admin address (listen.http), not the gRPC one?';
      return typeof c.message === 'string' && c.message !== '' ? c.message : String(cause);
  }
}

/** Where `outrigger control-plane` without a cp.yaml keeps its state and CA, under its working directory. */
export const DEFAULT_CA_FILE = './outrigger-data/mesh-ca.crt';

/**
 * The CA a client pins: `--ca-file`, else $OUTRIGGER_CA_FILE, else DEFAULT_CA_FILE when it exists (a control
 * plane started without cp.yaml in the same directory); undefined: the system's trusted roots.
 * @throws CtlError (usage) when a given file cannot be read or holds no PEM certificate.
 */
export function loadCa(option: string | undefined, env: Readonly<Record<string, string | undefined>>): { pem: string; file: string } | undefined {
  const fromEnv = env['OUTRIGGER_CA_FILE']?.trim();
  const given = option ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
  const what = option !== undefined ? '--ca-file' : 'OUTRIGGER_CA_FILE';
  const file = given ?? (existsSync(DEFAULT_CA_FILE) ? DEFAULT_CA_FILE : undefined);
  if (file === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CtlError(`${given === undefined ? file : what}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 2, true);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CtlError(`${given === undefined ? file : what}: ${file} holds no PEM certificate; expected the mesh CA (mesh-ca.crt beside the control plane's state)`, 2, true);
  return { pem, file };
}

/** Error codes of a certificate that does not verify (node:tls). */
const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Turns `--server` (HOST:PORT, or a URL) into the base URL (HOST:PORT: https); throws a usage CtlError when it is neither. */
export function baseUrl(server: string): URL {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `https://${server}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CtlError(`--server: expected HOST:PORT, got ${JSON.stringify(server)}`, 2, true);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CtlError(`--server: expected HOST:PORT or an http(s) URL, got ${JSON.stringify(server)}`, 2, true);
  return url;
}

export class AdminClient {
  private readonly base: URL;

  /**
   * @param server  as the user gave it (HOST:PORT); named in messages.
   * @param token   sent as `Authorization: Bearer TOKEN`; undefined: none.
   * @param ca      the CA the server's certificate must chain to (PEM) and the file it came from (named in
   *   messages); undefined: the system's trusted roots.
   */
  constructor(
    readonly server: string,
    private readonly token?: string,
    private readonly ca?: { readonly pem: string; readonly file: string },
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    this.base = baseUrl(server);
  }

  /** One request with node:http(s); resolves with the status and body text. */
  private send(method: Method, url: URL, headers: Record<string, string>, body: string | undefined): Promise<{ status: number; text: string }> {
    const https = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const options = { method, headers, timeout: this.timeoutMs, ...(https && this.ca !== undefined ? { ca: this.ca.pem } : {}) };
      const onResponse = (res: IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      };
      const req = https ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
      req.on('error', reject);
      req.end(body);
    });
  }

  /**
   * Sends one request; any HTTP status but 401 and 403 comes back as a Reply.
   * @throws CtlError (exit 2) when the control plane cannot be reached or does not answer with JSON; (exit 1)
   *   when it refuses the token (401) or the token's role (403).
   */
  async request(method: Method, path: string, body?: unknown): Promise<Reply> {
    const url = new URL(path, this.base);
    let res: { status: number; text: string };
    let text: string;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    try {
      res = await this.send(method, url, headers, body === undefined ? undefined : JSON.stringify(body));
      text = res.text;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && CERT_ERRORS.has(code)) {
        const detail = `${code}: ${err instanceof Error ? err.message : String(err)}`;
        throw new CtlError(
          this.ca === undefined
            ? `the control plane's TLS certificate at ${this.server} is not trusted (${detail}); give --ca-file with its mesh CA (mesh-ca.crt beside its state) or set OUTRIGGER_CA_FILE`
            : `the control plane's TLS certificate at ${this.server} is not signed by the CA in ${this.ca.file} (${detail})`,
          2,
        );
      }
      const hint = url.protocol === 'http:' && code === 'ECONNRESET' ? '; the control plane serves HTTPS unless its cp.yaml says tls: { enabled: false }: give HOST:PORT or https://' : '';
      throw new CtlError(`cannot reach the control plane at ${this.server} (${reason(err)}${hint})`, 2);
    }
    let reply: Reply;
    try {
      reply = { status: res.status, body: JSON.parse(text) as unknown };
    } catch {
      throw new CtlError(
        `the server at ${this.server} answered ${method} ${url.pathname} with HTTP ${res.status} and no JSON; is it the control plane's HTTP admin address (listen.http)?`,
        2,
      );
    }
    if (res.status === 401) {
      throw new CtlError(
        this.token === undefined
          ? `the control plane at ${this.server} requires a token: give --token, --token-file or OUTRIGGER_TOKEN (its admin.token file, or a token of cp.yaml's auth.tokens)`
          : `the control plane at ${this.server} does not know this token (HTTP 401)`,
        1,
      );
    }
    if (res.status === 403) throw new CtlError(`permission denied: ${errorMessage(reply)}`, 1);
    return reply;
  }

  /**
   * Like request, for the 2xx case; any other status becomes a CtlError (exit 1) with the control plane's
   * `error` message (which names what was wrong), unless `onError` returns one of its own first.
   */
  async ok(method: Method, path: string, body?: unknown, onError?: (reply: Reply, message: string) => CtlError | undefined): Promise<unknown> {
    const reply = await this.request(method, path, body);
    if (reply.status >= 200 && reply.status < 300) return reply.body;
    const message = errorMessage(reply);
    throw onError?.(reply, message) ?? new CtlError(message, 1);
  }
}

/** The admin API's `error` field, or the HTTP status when there is none. */
export function errorMessage(reply: Reply): string {
  const e = (reply.body as { error?: unknown } | null)?.error;
  return typeof e === 'string' && e !== '' ? e : `HTTP ${reply.status}`;
}
