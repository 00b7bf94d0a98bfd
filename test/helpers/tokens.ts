/**
 * Tokens of the test control planes: spawnControlPlane writes TEST_AUTH_YAML into its cp.yaml (unless the
 * test gives its own `auth:`), and test/helpers/env.ts puts the admin token in $OUTRIGGER_TOKEN for every
 * test, so sidecars (an admin token may open a discovery stream as any service) and ctl carry it.
 */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const TEST_SIDECAR_TOKEN = 'test-sidecar-token-0123456789abcdef';

export const TEST_AUTH_YAML = `auth:
  tokens:
    - { name: test-admin, secret: ${TEST_ADMIN_TOKEN}, role: admin }
    - { name: test-sidecar, secret: ${TEST_SIDECAR_TOKEN}, role: sidecar }
`;

/** The admin token as request headers. */
export const ADMIN_AUTH: Readonly<Record<string, string>> = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
