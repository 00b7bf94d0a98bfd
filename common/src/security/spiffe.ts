/**
 * Service identities: `spiffe://<trust domain>/service/<name>`, carried as the URI SAN of a certificate.
 * Node's own host-name check ignores URI SANs, so both sides of a mesh connection check them here.
 */

export const DEFAULT_TRUST_DOMAIN = 'outrigger.local';

/** A trust domain: lower-case DNS-like labels (SPIFFE: letters, digits, `.`, `-`, `_`). */
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$/;
/** Service names as sidecar.yaml allows them. */
const SERVICE = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

export function isTrustDomain(value: string): boolean {
  return TRUST_DOMAIN.test(value);
}

/** The SPIFFE ID of a service in a trust domain. */
export function spiffeId(trustDomain: string, service: string): string {
  if (!TRUST_DOMAIN.test(trustDomain)) throw new Error(`invalid trust domain "${trustDomain}"`);
  if (!SERVICE.test(service)) throw new Error(`invalid service name "${service}"`);
  return `spiffe://${trustDomain}/service/${service}`;
}

export interface ServiceIdentity {
  readonly trustDomain: string;
  readonly service: string;
}

/** The trust domain and service of a `spiffe://TD/service/NAME` ID; undefined for anything else. */
export function parseSpiffeId(uri: string): ServiceIdentity | undefined {
  if (!uri.startsWith('spiffe://')) return undefined;
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const trustDomain = rest.slice(0, slash);
  const path = rest.slice(slash + 1).split('/');
  if (path.length !== 2 || path[0] !== 'service') return undefined;
  const service = path[1] ?? '';
  if (!TRUST_DOMAIN.test(trustDomain) || !SERVICE.test(service)) return undefined;
  return { trustDomain, service };
}

/**
 * The URI SANs of a certificate, from Node's `subjectaltname` string (`DNS:a, URI:spiffe://…`), as
 * `tls.TLSSocket.getPeerCertificate()` and `crypto.X509Certificate` give it. Values with commas or quotes
 * come JSON-quoted (`URI:"…"`); those are decoded.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined || subjectAltName === '') return [];
  const out: string[] = [];
  let i = 0;
  while (i < subjectAltName.length) {
    const colon = subjectAltName.indexOf(':', i);
    if (colon < 0) break;
    const kind = subjectAltName.slice(i, colon).trim();
    let value: string;
    let next: number;
    if (subjectAltName[colon + 1] === '"') {
      // A JSON string: find its closing quote, skipping escapes.
      let j = colon + 2;
      while (j < subjectAltName.length && subjectAltName[j] !== '"') j += subjectAltName[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(subjectAltName.slice(colon + 1, j + 1)) as string;
      } catch {
        return out;
      }
      next = subjectAltName.indexOf(',', j + 1);
    } else {
      next = subjectAltName.indexOf(',', colon + 1);
      value = subjectAltName.slice(colon + 1, next < 0 ? undefined : next);
    }
    if (kind === 'URI') out.push(value);
    if (next < 0) break;
    i = next + 1;
  }
  return out;
}

/**
 * The one service identity a certificate carries in the trust domain, or the reason it has none: a mesh
 * certificate has exactly one `spiffe://` URI SAN.
 */
export function identityOf(subjectAltName: string | undefined, trustDomain: string): { service: string } | { error: string } {
  const ids = uriSans(subjectAltName).filter((u) => u.startsWith('spiffe://'));
  if (ids.length === 0) return { error: 'the certificate carries no spiffe:// identity' };
  if (ids.length > 1) return { error: `the certificate carries ${ids.length} spiffe:// identities` };
  const id = parseSpiffeId(ids[0] ?? '');
  if (id === undefined) return { error: `"${ids[0]}" is not a service identity (spiffe://<trust domain>/service/<name>)` };
  if (id.trustDomain !== trustDomain) return { error: `"${ids[0]}" is of trust domain ${id.trustDomain}, not ${trustDomain}` };
  return { service: id.service };
}
