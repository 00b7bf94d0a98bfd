/**
 * The JSON Schemas of sidecar.yaml and cp.yaml (generated from the loaders' zod schemas): every example
 * configuration in the repository (deploy/, and the complete files shown in README.md and docs/) is valid
 * by the schema and by the loader; a wrong key or a wrong type is refused by both.
 */
import { Ajv } from 'ajv';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseYaml, validateSidecarConfig } from '../../../common/src/config/load.js';
import { validateControlPlaneConfig } from '../../../control-plane/src/config/load.js';
import { configJsonSchema, configJsonSchemaText } from '../../../cli/src/json-schema.js';
import { CONFIG_KINDS, SCHEMA_FILES, type ConfigKind } from '../../../cli/src/kinds.js';
import { detectKind } from '../../../cli/src/validate.js';
import { ConfigError } from '../../../common/src/errors.js';

const root = new URL('../../../', import.meta.url).pathname;

interface Example {
  readonly name: string;
  readonly text: string;
  readonly kind: ConfigKind;
}

/** deploy/*.yaml, and every ```yaml block of the docs that is a whole configuration file (not a fragment). */
function examples(): Example[] {
  const out: Example[] = [];
  for (const f of readdirSync(join(root, 'deploy')).filter((n) => n.endsWith('.yaml'))) {
    const text = readFileSync(join(root, 'deploy', f), 'utf8');
    const kind = detectKind(text, parseYaml(text, f));
    if (kind === undefined) throw new Error(`deploy/${f}: not recognisable as a sidecar or control-plane file`);
    out.push({ name: `deploy/${f}`, text, kind });
  }
  const docs = ['README.md', ...readdirSync(join(root, 'docs')).filter((n) => n.endsWith('.md')).map((n) => `docs/${n}`)];
  for (const doc of docs) {
    let i = 0;
    for (const m of readFileSync(join(root, doc), 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)) {
      i++;
      const text = m[1] ?? '';
      const first = text.split('\n').find((l) => l.trim() !== '' && !l.startsWith('#')) ?? '';
      if (/^\s/.test(first)) continue; // an indented fragment of a larger file
      let data: unknown;
      try {
        data = parseYaml(text, doc);
      } catch {
        continue; // several documents (a Kubernetes manifest)
      }
      const kind = detectKind(text, data);
      if (kind !== undefined) out.push({ name: `${doc} yaml block ${i}`, text, kind });
    }
  }
  return out;
}

const ajv = new Ajv({ allErrors: true });
const validators = Object.fromEntries(CONFIG_KINDS.map((k) => [k, ajv.compile(configJsonSchema(k))])) as Record<ConfigKind, ReturnType<typeof ajv.compile>>;

function bySchema(kind: ConfigKind, data: unknown): string[] {
  const validate = validators[kind];
  return validate(data) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`);
}

function byLoader(kind: ConfigKind, data: unknown, name: string): void {
  if (kind === 'sidecar') validateSidecarConfig(data, name);
  else validateControlPlaneConfig(data, name, root);
}

describe('the configuration JSON Schemas', () => {
  const all = examples();

  it('find the example configurations: the five of deploy/ and the complete files in the docs', () => {
    expect(all.filter((e) => e.name.startsWith('deploy/'))).toHaveLength(5);
    expect(all.filter((e) => !e.name.startsWith('deploy/')).length).toBeGreaterThanOrEqual(6);
    expect(new Set(all.map((e) => e.kind))).toEqual(new Set(CONFIG_KINDS));
  });

  it('accept every example configuration, which the loader accepts too', () => {
    for (const e of all) {
      const data = parseYaml(e.text, e.name);
      expect(bySchema(e.kind, data), e.name).toEqual([]);
      expect(() => byLoader(e.kind, data, e.name), e.name).not.toThrow();
    }
  });

  it('point every file of deploy/ at its schema on the first line', () => {
    for (const e of all.filter((x) => x.name.startsWith('deploy/'))) {
      expect(e.text.split('\n')[0], e.name).toBe(`# yaml-language-server: $schema=../schemas/${SCHEMA_FILES[e.kind]}`);
    }
  });

  it('refuse an unknown key and a wrong type, as the loader does', () => {
    const cases: [ConfigKind, unknown, RegExp][] = [
      ['sidecar', { service: 'a', servics: {} }, /servics/],
      ['sidecar', { service: 'a', inbound: { target: 'http://127.0.0.1:8080', maxConcurrent: 'many' } }, /inbound\.maxConcurrent/],
      ['sidecar', { service: 'a', services: { b: { endpoints: [{ address: '127.0.0.1:1' }], retry: { attempts: 'three' } } } }, /services\.b\.retry\.attempts/],
      ['sidecar', { service: 'a', services: { b: { endpoints: [{ address: '127.0.0.1:1' }], timeout: 5 } } }, /services\.b\.timeout/],
      ['control-plane', { listen: { grpc: 15010 } }, /listen\.grpc/],
      ['control-plane', { instanceTtl: '10 seconds' }, /instanceTtl/],
      ['control-plane', { store: { file: './s.json', mode: 'fast' } }, /store/],
    ];
    for (const [kind, data, key] of cases) {
      const problems = bySchema(kind, data);
      expect(problems.length, JSON.stringify(data)).toBeGreaterThan(0);
      expect(() => byLoader(kind, data, 'x.yaml')).toThrow(ConfigError);
      expect(() => byLoader(kind, data, 'x.yaml')).toThrow(key);
    }
  });

  it('list the top-level keys of each file, require `service` of a sidecar, and show duration defaults with a unit', () => {
    const sidecar = configJsonSchema('sidecar');
    expect(Object.keys(sidecar['properties'] as object)).toEqual(['service', 'instance', 'admin', 'inbound', 'outbound', 'controlPlane', 'services', 'log', 'metrics', 'http']);
    expect(sidecar['required']).toEqual(['service']);
    expect(sidecar['additionalProperties']).toBe(false);
    const cp = configJsonSchema('control-plane');
    expect(Object.keys(cp['properties'] as object)).toEqual(['listen', 'policies', 'limits', 'store', 'instanceTtl', 'drainTime', 'weightInterval', 'services', 'mtls', 'tls', 'autoscale', 'auth']);
    expect((cp['properties'] as Record<string, { default?: unknown; pattern?: string }>)['instanceTtl']).toMatchObject({ default: '10s', pattern: expect.any(String) });
    expect(bySchema('sidecar', { service: 'a', http: { idleTimeout: '1m30s' } })).toEqual([]);
  });

  it('are the files the build writes to schemas/ (what the package ships)', () => {
    for (const kind of CONFIG_KINDS) {
      const file = join(root, 'schemas', SCHEMA_FILES[kind]);
      expect(existsSync(file), `${file} (npm run build writes it)`).toBe(true);
      expect(readFileSync(file, 'utf8')).toBe(configJsonSchemaText(kind));
    }
  });
});
