import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { deepFreeze } from './freeze.js';
import { fallbackMessage, formatIssues } from './issues.js';
import { serviceSchema, sidecarSchema } from './schema.js';
import type { ServiceConfig, SidecarConfig } from './types.js';

export { deepFreeze };

/**
 * Loading sidecar.yaml: YAML 1.2 (so `on:` is a string key, not a boolean) → zod schema → deep-frozen
 * SidecarConfig. Every failure is a ConfigError whose issues name the key path, what was expected and what
 * was got: `sidecar.yaml: services.orders.retry.attempts: expected integer 0..10, got "three"`.
 */

/**
 * Parses YAML text into plain data.
 * @param file  names the source in error messages (ConfigError.file).
 * @throws ConfigError naming the line and column of each syntax error.
 */
export function parseYaml(text: string, file: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { version: '1.2', lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `line ${line}, column ${col}: YAML syntax error: ${e.message.split('\n')[0] ?? e.code}`;
      }),
    );
  }
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (e) {
    throw new ConfigError(file, [`YAML error: ${e instanceof Error ? e.message : String(e)}`]);
  }
}

/** Validates `value` against `schema`; deep-frozen result, or ConfigError with one line per problem. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value, { reportInput: true, error: fallbackMessage });
  if (!result.success) throw new ConfigError(where, formatIssues(result.error.issues, value));
  return deepFreeze(result.data);
}

/**
 * Validates already-parsed sidecar config data (e.g. from JSON or a test) into a frozen SidecarConfig.
 * @throws ConfigError
 */
export function validateSidecarConfig(value: unknown, file: string): SidecarConfig {
  if (value === null || value === undefined) {
    throw new ConfigError(file, ['(root): expected a mapping with at least `service: <name>`, got an empty document']);
  }
  return validate(sidecarSchema, value, file);
}

/**
 * Parses and validates the text of a sidecar.yaml.
 * @param file  the file name as it should appear in messages (the path as given, e.g. "sidecar.yaml").
 * @throws ConfigError
 */
export function parseSidecarConfig(text: string, file: string): SidecarConfig {
  return validateSidecarConfig(parseYaml(text, file), file);
}

/**
 * Reads, parses and validates a sidecar.yaml; errors name the path as given.
 * @throws ConfigError, also when the file cannot be read.
 */
export async function loadSidecarConfig(file: string): Promise<SidecarConfig> {
  return parseSidecarConfig(await readConfigFile(file), file);
}

/** Reads a configuration file; a failure is a ConfigError naming the file. */
export async function readConfigFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [`cannot read the file${code !== undefined ? ` (${code})` : ''}: ${e instanceof Error ? e.message : String(e)}`]);
  }
}

/**
 * Validates one service's policy (as pushed by the control plane or written in its config) into a frozen
 * ServiceConfig. Key paths in messages are relative to the policy (`retry.attempts: ...`).
 * @param where  names the source in messages (ConfigError.file), e.g. "control plane update v12 for orders".
 * @throws ConfigError
 */
export function parseServiceConfig(value: unknown, where: string): ServiceConfig {
  return validate(serviceSchema, value, where);
}
