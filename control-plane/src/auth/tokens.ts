import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Bearer tokens of the control plane: who a presented secret is (a named token with a role), compared in
 * constant time (SHA-256 of the presented secret against the SHA-256 of every known secret, with
 * crypto.timingSafeEqual, never stopping at the first match), and what each role may do.
 *
 *   reader    GET on the HTTP API (and the dashboard)
 *   operator  reader + drain/undrain, weights, policy set/patch/delete, scale
 *   admin     everything, and may also open a discovery stream (as any service)
 *   sidecar   only the gRPC discovery stream, as one of its `services` (any when absent or ["*"])
 */

export const ROLES = ['admin', 'operator', 'reader', 'sidecar'] as const;
export type Role = (typeof ROLES)[number];

/** Shortest secret cp.yaml accepts. */
export const MIN_SECRET_LENGTH = 16;

/** A token as cp.yaml declares it, with its secret resolved. */
export interface TokenSpec {
  readonly name: string;
  readonly secret: string;
  readonly role: Role;
  /** Role sidecar: the services it may register or identify as; undefined: any. */
  readonly services?: readonly string[] | undefined;
}

/** Who presented a valid token. */
export interface Principal {
  readonly name: string;
  readonly role: Role;
  /** undefined: any service. */
  readonly services: ReadonlySet<string> | undefined;
}

const hash = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

export class Authenticator {
  private readonly entries: readonly { readonly digest: Buffer; readonly principal: Principal }[];

  constructor(tokens: readonly TokenSpec[]) {
    this.entries = tokens.map((t) => ({
      digest: hash(t.secret),
      principal: { name: t.name, role: t.role, services: t.services === undefined || t.services.includes('*') ? undefined : new Set(t.services) },
    }));
  }

  /** The token whose secret this is; undefined for an unknown (or empty) secret. */
  authenticate(secret: string | undefined): Principal | undefined {
    if (secret === undefined || secret === '') return undefined;
    const d = hash(secret);
    let found: Principal | undefined;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === undefined) found = e.principal;
    return found;
  }
}

/** The secret of an `Authorization: Bearer SECRET` header (scheme case-insensitive); undefined otherwise. */
export function bearerSecret(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** Whether a principal may open a discovery stream at all. */
export function mayStream(p: Principal): boolean {
  return p.role === 'sidecar' || p.role === 'admin';
}

/** Whether a principal may register or identify as `service` on a discovery stream. */
export function mayActAs(p: Principal, service: string): boolean {
  return p.services === undefined || p.services.has(service);
}

/**
 * Whether `role` may make this HTTP API request (path segments after the host).
 * Writes an operator may do: drain/undrain, weights, policies, autoscale overrides (scale).
 */
export function mayCall(role: Role, method: string, parts: readonly string[]): boolean {
  if (role === 'admin') return true;
  if (role === 'sidecar') return false;
  if (method === 'GET' || method === 'HEAD') return true;
  if (role !== 'operator') return false;
  const [root, kind, , sub] = parts;
  if (root !== 'api') return false;
  return kind === 'drain' || kind === 'undrain' || kind === 'autoscale' || (kind === 'services' && (sub === 'policy' || sub === 'weights'));
}
