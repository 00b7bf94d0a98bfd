import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../../common/src/atomic-file.js';
import type { Clock } from '../../../common/src/clock.js';
import type { Logger } from '../../../common/src/logger.js';
import type { ControlPlaneConfig } from '../config/types.js';
import { CaError, CertificateAuthority } from './authority.js';

/** File names of a generated CA, in the state file's directory. */
export const CA_CERT_FILE = 'mesh-ca.crt';
export const CA_KEY_FILE = 'mesh-ca.key';

/**
 * Shared state (docs/ha.md): returns the value stored under a name, created with `make()` by whichever
 * replica gets there first.
 */
export type SharedCreate = (make: () => Promise<string>) => Promise<string>;

/**
 * The mesh CA the control plane signs with: loaded from the files cp.yaml names, else from the files it
 * generated on an earlier start beside its state, else generated now and written there (the key readable by
 * its owner only). With `shared` (the etcd store) and no files named in cp.yaml, the CA is the one in the
 * shared state, generated once by the first replica.
 */
export async function openAuthority(mtls: ControlPlaneConfig['mtls'], stateFile: string, clock: Clock, logger: Logger, shared?: SharedCreate): Promise<CertificateAuthority> {
  const opts = { trustDomain: mtls.trustDomain, clock };
  const given = mtls.ca;
  if (given === undefined && shared !== undefined) {
    let made = false;
    const text = await shared(async () => {
      made = true;
      return JSON.stringify((await CertificateAuthority.generate(opts)).material());
    });
    let ca: CertificateAuthority;
    try {
      ca = await CertificateAuthority.load(JSON.parse(text) as { certPem: string; keyPem: string }, opts);
    } catch (err) {
      throw new CaError(`the shared mesh CA in etcd: ${err instanceof Error ? err.message : String(err)}`);
    }
    // Its certificate (public) beside the state as well, for clients on this host to pin (ctl, sidecars).
    const certFile = join(dirname(stateFile), CA_CERT_FILE);
    await writeFileAtomic(certFile, ca.certPem);
    logger.info({ trustDomain: mtls.trustDomain, store: 'etcd', cert: certFile }, made ? 'mesh CA generated (shared)' : 'mesh CA loaded (shared)');
    return ca;
  }
  const dir = dirname(stateFile);
  const certFile = given?.certFile ?? join(dir, CA_CERT_FILE);
  const keyFile = given?.keyFile ?? join(dir, CA_KEY_FILE);
  if (given !== undefined || (existsSync(certFile) && existsSync(keyFile))) {
    let certPem: string;
    let keyPem: string;
    try {
      [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    } catch (err) {
      throw new CaError(`cannot read the mesh CA (${certFile}, ${keyFile}): ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      const ca = await CertificateAuthority.load({ certPem, keyPem }, opts);
      logger.info({ cert: certFile, trustDomain: mtls.trustDomain }, 'mesh CA loaded');
      return ca;
    } catch (err) {
      throw new CaError(`${certFile}, ${keyFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const ca = await CertificateAuthority.generate(opts);
  const material = ca.material();
  await mkdir(dir, { recursive: true });
  await writeFile(keyFile, material.keyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(certFile, material.certPem, { mode: 0o644, flag: 'wx' });
  logger.info({ cert: certFile, key: keyFile, trustDomain: mtls.trustDomain }, 'mesh CA generated');
  return ca;
}
