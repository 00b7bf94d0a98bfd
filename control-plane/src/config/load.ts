import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { deepFreeze, parseServiceConfig, parseYaml, readConfigFile, validate } from '../../../common/src/config/load.js';
import { ConfigError } from '../../../common/src/errors.js';
import { describeValue, formatPath } from '../../../common/src/config/issues.js';
import { DEFAULT_POLICY_RULES, policyProblems, type PolicyRules } from './policy-rules.js';
import { controlPlaneSchema } from './schema.js';
import { MIN_SECRET_LENGTH, type TokenSpec } from '../auth/tokens.js';
import type { AutoscaleDriverConfig, AutoscaleServiceConfig, ControlPlaneConfig, ServicePolicy } from './types.js';

/**
 * Loading cp.yaml: the sidecar's YAML reader and validator (same messages: `cp.yaml: services.orders.retry.
 * attempts: expected integer 0..10, got "three"`), the control plane's schema, and each service policy kept
 * both as written and as parsed (ServicePolicy).
 */

/**
 * Validates one service policy given in the YAML/JSON shape of `services.NAME` (from cp.yaml, the admin API,
 * the store): the sidecar's schema, then the control plane's own rules (policy-rules.ts). The policy is
 * copied through JSON first, so what is validated is exactly what will be persisted and pushed.
 * @param where  names the source in messages (ConfigError.file), e.g. "services.orders".
 * @throws ConfigError whose issues name the key path relative to the policy (`retry.attempts: ...`).
 */
export function parsePolicy(input: unknown, where: string, rules: PolicyRules = DEFAULT_POLICY_RULES): ServicePolicy {
  let copy: unknown;
  try {
    copy = input === undefined ? undefined : (JSON.parse(JSON.stringify(input)) as unknown);
  } catch (e) {
    throw new ConfigError(where, [`(root): expected a JSON-compatible mapping, got a value JSON cannot hold (${e instanceof Error ? e.message : String(e)})`]);
  }
  const config = parseServiceConfig(copy, where);
  const problems = policyProblems(config, rules);
  if (problems.length > 0) throw new ConfigError(where, problems.map((p) => `${formatPath(p.path)}: ${p.message}, got ${describeValue(valueAt(copy, p.path))}`));
  // serviceSchema accepted it, so it is a plain mapping.
  return { input: deepFreeze(copy as Record<string, unknown>), config };
}

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  let cur = root;
  for (const key of path) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[key] : undefined;
  return cur;
}

/**
 * Validates already-parsed cp.yaml data. An empty document means all defaults.
 * @param file     names the source in messages (ConfigError.file).
 * @param baseDir  directory a relative `store.file` is resolved against; default: the directory of `file`.
 * @throws ConfigError
 */
export function validateControlPlaneConfig(value: unknown, file: string, baseDir: string = dirname(file)): ControlPlaneConfig {
  const root = value === null || value === undefined ? {} : value;
  const parsed = validate(controlPlaneSchema, root, file);
  // Valid, so `root.services` (when present) is a mapping with exactly the names parsed.
  const raw = ((root as { services?: Record<string, unknown> | null }).services ?? {}) as Record<string, unknown>;
  const services: Record<string, ServicePolicy> = {};
  for (const [name, config] of Object.entries(parsed.services)) {
    services[name] = { input: deepFreeze(JSON.parse(JSON.stringify(raw[name])) as Record<string, unknown>), config };
  }
  const storeFile = isAbsolute(parsed.store.file) ? parsed.store.file : join(baseDir, parsed.store.file);
  const resolve = (p: string): string => (isAbsolute(p) ? p : join(baseDir, p));
  const autoscale: Record<string, AutoscaleServiceConfig> = {};
  for (const [name, a] of Object.entries(parsed.autoscale)) {
    const d = a.driver;
    // The schema checked that exactly one driver is given.
    const driver: AutoscaleDriverConfig =
      d.process !== undefined
        ? { kind: 'process', command: d.process.command, ports: d.process.ports, host: d.process.host, cwd: d.process.cwd === undefined ? baseDir : resolve(d.process.cwd), env: d.process.env, stopGraceMs: d.process.stopGrace }
        : d.compose !== undefined
          ? { kind: 'compose', command: d.compose.command, file: d.compose.file === undefined ? undefined : resolve(d.compose.file), project: d.compose.project, service: d.compose.service ?? name }
          : {
              kind: 'kubernetes',
              apiServer: d.kubernetes?.apiServer ?? '',
              namespace: d.kubernetes?.namespace ?? 'default',
              deployment: d.kubernetes?.deployment ?? name,
              tokenFile: d.kubernetes?.tokenFile === undefined ? undefined : resolve(d.kubernetes.tokenFile),
              caFile: d.kubernetes?.caFile === undefined ? undefined : resolve(d.kubernetes.caFile),
              insecureSkipTlsVerify: d.kubernetes?.insecureSkipTlsVerify ?? false,
            };
    autoscale[name] = {
      min: a.min,
      max: a.max,
      targetUtilization: a.targetUtilization,
      intervalMs: a.interval,
      stabilizationWindowMs: a.stabilizationWindow,
      cooldownMs: a.cooldown,
      driver,
    };
  }
  let auth: ControlPlaneConfig['auth'];
  if (parsed.auth !== undefined) {
    const problems: string[] = [];
    const tokens: TokenSpec[] = [];
    parsed.auth.tokens.forEach((t, i) => {
      const secret = readSecret(t, resolve, (key, message) => problems.push(`${formatPath(['auth', 'tokens', i, key])}: ${message}`));
      if (secret !== undefined) tokens.push({ name: t.name, secret, role: t.role, ...(t.services !== undefined ? { services: t.services } : {}) });
    });
    if (problems.length > 0) throw new ConfigError(file, problems);
    auth = { disabled: parsed.auth.disabled, tokens };
  }
  return deepFreeze({
    ...(auth !== undefined ? { auth } : {}),
    listen: parsed.listen,
    policies: parsed.policies,
    limits: parsed.limits,
    store: {
      file: storeFile,
      ...(parsed.store.etcd !== undefined
        ? { etcd: { endpoints: parsed.store.etcd.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`)), prefix: parsed.store.etcd.prefix, leaseTtlMs: parsed.store.etcd.leaseTtl } }
        : {}),
    },
    instanceTtlMs: parsed.instanceTtl,
    drainTimeMs: parsed.drainTime,
    weightIntervalMs: parsed.weightInterval,
    mtls: {
      mode: parsed.mtls.mode,
      trustDomain: parsed.mtls.trustDomain,
      certTtlMs: parsed.mtls.certTtl,
      ...(parsed.mtls.ca !== undefined ? { ca: { certFile: resolve(parsed.mtls.ca.certFile), keyFile: resolve(parsed.mtls.ca.keyFile) } } : {}),
    },
    tls: {
      enabled: parsed.tls.enabled,
      serverNames: parsed.tls.serverNames,
      certTtlMs: parsed.tls.certTtl,
      ...(parsed.tls.certFile !== undefined && parsed.tls.keyFile !== undefined ? { certFile: resolve(parsed.tls.certFile), keyFile: resolve(parsed.tls.keyFile) } : {}),
    },
    services,
    ...(Object.keys(autoscale).length > 0 ? { autoscale } : {}),
  });
}

/**
 * The secret of one token: as written, or read from its file (trimmed; a relative path against cp.yaml's
 * directory) or environment variable, at least MIN_SECRET_LENGTH characters.
 */
function readSecret(
  t: { readonly secret?: string | undefined; readonly secretFile?: string | undefined; readonly secretEnv?: string | undefined },
  resolve: (p: string) => string,
  problem: (key: string, message: string) => void,
): string | undefined {
  if (t.secret !== undefined) return t.secret;
  let key: string;
  let value: string | undefined;
  if (t.secretFile !== undefined) {
    key = 'secretFile';
    try {
      value = readFileSync(resolve(t.secretFile), 'utf8').trim();
    } catch (err) {
      problem(key, `cannot read ${resolve(t.secretFile)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      return undefined;
    }
  } else {
    key = 'secretEnv';
    value = process.env[t.secretEnv ?? '']?.trim();
    if (value === undefined || value === '') {
      problem(key, `expected the environment variable ${t.secretEnv ?? ''} to hold the secret, got nothing`);
      return undefined;
    }
  }
  if (value.length < MIN_SECRET_LENGTH) {
    problem(key, `expected a secret of at least ${MIN_SECRET_LENGTH} characters, got ${value.length}`);
    return undefined;
  }
  return value;
}

/**
 * Parses and validates the text of a cp.yaml.
 * @param file  the file name as it should appear in messages (the path as given, e.g. "cp.yaml").
 * @throws ConfigError
 */
export function parseControlPlaneConfig(text: string, file: string, baseDir?: string): ControlPlaneConfig {
  return validateControlPlaneConfig(parseYaml(text, file), file, baseDir);
}

/**
 * Reads, parses and validates a cp.yaml; errors name the path as given.
 * @throws ConfigError, also when the file cannot be read.
 */
export async function loadControlPlaneConfig(file: string): Promise<ControlPlaneConfig> {
  return parseControlPlaneConfig(await readConfigFile(file), file);
}
