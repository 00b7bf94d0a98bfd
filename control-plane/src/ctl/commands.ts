import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { parseServiceConfig, parseYaml } from '../../../common/src/config/load.js';
import { ConfigError } from '../../../common/src/errors.js';
import type { AutoscaleView } from '../autoscale/types.js';
import type { SubscriberView } from '../push/server.js';
import type { EndpointView, ServiceView } from '../registry/registry.js';
import { type AdminClient, CtlError, errorMessage, type Reply } from './client.js';
import { diffLines, lines } from './diff.js';
import { formatTable } from './table.js';

/**
 * The `outrigger ctl` commands. Each makes one or a few admin API requests (control-plane/src/api/http.ts)
 * and prints a table or a short confirmation, or with -o json / -o yaml the admin API's answer unchanged.
 */

/** -o: a table or message (the default), or the admin API's answer as JSON or YAML. */
export type Output = 'table' | 'json' | 'yaml';

export interface CtlContext {
  readonly client: AdminClient;
  /** As given with -o (or --json); undefined: the command's default. */
  readonly output: Output | undefined;
  out(text: string): void;
}

/** One circuit as GET /api/circuits lists it. */
export interface CircuitRow {
  /** Instance id of the sidecar that reported it. */
  readonly reporter: string | null;
  readonly service: string;
  /** "" for the service's own breaker. */
  readonly endpoint: string;
  readonly state: string;
}

const seg = (s: string): string => encodeURIComponent(s);
const quote = (s: string): string => JSON.stringify(s);

/** Whether -o asks for the admin API's answer rather than a table or message. */
const wantsData = (ctx: CtlContext): boolean => ctx.output === 'json' || ctx.output === 'yaml';

/** The admin API's answer as -o asks: YAML, else JSON. */
function printData(ctx: CtlContext, value: unknown): void {
  ctx.out(ctx.output === 'yaml' ? stringify(value) : `${JSON.stringify(value, null, 2)}\n`);
}

function versionOf(body: unknown): string {
  const v = (body as { version?: unknown } | null)?.version;
  return typeof v === 'number' || typeof v === 'string' ? String(v) : '?';
}

/** A number without float noise: 1.25, 3, 0.33. */
function num(n: number | undefined): string {
  return n === undefined ? '-' : String(Math.round(n * 100) / 100);
}

/** GET /api/services/NAME; `no service "NAME"` (exit 1) on 404. */
async function getService(ctx: CtlContext, name: string): Promise<ServiceView> {
  return (await ctx.client.ok('GET', `/api/services/${seg(name)}`, undefined, noService(name))) as ServiceView;
}

function findEndpoint(svc: ServiceView, address: string): EndpointView {
  const e = svc.endpoints.find((x) => x.address === address);
  if (e === undefined) throw new CtlError(`no endpoint ${quote(address)} in service ${quote(svc.name)}`, 1);
  return e;
}

/** The load-balancing policy in force: the policy's `lb`, or the schema's default when it has none. */
function effectiveLb(svc: ServiceView): string {
  try {
    return parseServiceConfig(svc.policy, `services.${svc.name}`).lb;
  } catch {
    return typeof svc.policy['lb'] === 'string' ? svc.policy['lb'] : '?';
  }
}

/** static / registered while serving, else draining / drained. */
function endpointState(e: EndpointView): string {
  return e.state === 'serving' ? e.source : e.state;
}

function weightCell(e: EndpointView): string {
  if (e.pinnedWeight !== undefined) return `${e.weight} (pinned)`;
  if (e.computed?.weight !== undefined) return `${e.weight} (computed)`;
  return String(e.weight);
}

function costCell(e: EndpointView): string {
  return e.computed?.cost !== undefined ? `${num(e.cost)} (computed)` : num(e.cost);
}

// ---------------------------------------------------------------------------------------------------------

export async function services(ctx: CtlContext): Promise<void> {
  const [body, version] = await Promise.all([ctx.client.ok('GET', '/api/services'), wantsData(ctx) ? undefined : ctx.client.ok('GET', '/api/version')]);
  if (wantsData(ctx)) return printData(ctx, body);
  const list = (body as { services: readonly ServiceView[] }).services;
  if (list.length === 0) {
    ctx.out(`no services (state version ${versionOf(version)})\n`);
    return;
  }
  const rows = list.map((s) => [s.name, effectiveLb(s), `${s.endpoints.filter((e) => e.state === 'serving').length}/${s.endpoints.length}`, s.policySource]);
  ctx.out(formatTable(['SERVICE', 'LB', 'ENDPOINTS', 'POLICY'], rows, ['left', 'left', 'right']));
  ctx.out(`\nstate version ${versionOf(version)}\n`);
}

export async function endpoints(ctx: CtlContext, service: string): Promise<void> {
  const svc = await getService(ctx, service);
  if (wantsData(ctx)) return printData(ctx, svc);
  if (svc.endpoints.length === 0) {
    ctx.out(`service ${quote(svc.name)} has no endpoints\n`);
    return;
  }
  const rows = svc.endpoints.map((e) => [e.address, weightCell(e), costCell(e), String(e.capacity), e.zone ?? '-', endpointState(e), e.instance ?? '-']);
  ctx.out(formatTable(['ADDRESS', 'WEIGHT', 'COST', 'CAPACITY', 'ZONE', 'STATE', 'INSTANCE'], rows, ['left', 'left', 'left', 'right']));
}

/**
 * Circuits of every service or of one. A sidecar also reports breakers of services in its own static
 * config, which the control plane may not know: only a service with no circuits and no registry entry is
 * unknown.
 */
export async function circuits(ctx: CtlContext, service: string | undefined): Promise<void> {
  const [body, known] = await Promise.all([
    ctx.client.ok('GET', service === undefined ? '/api/circuits' : `/api/circuits?service=${seg(service)}`),
    service === undefined ? undefined : ctx.client.request('GET', `/api/services/${seg(service)}`),
  ]);
  const list = (body as { circuits: readonly CircuitRow[] }).circuits;
  if (service !== undefined && list.length === 0 && known?.status === 404) throw new CtlError(`no service ${quote(service)}`, 1);
  if (wantsData(ctx)) return printData(ctx, body);
  if (list.length === 0) {
    ctx.out(`no circuits reported${service === undefined ? '' : ` for ${service}`} (sidecars report them with their load)\n`);
    return;
  }
  const rows = list.map((c) => [c.reporter ?? '-', c.service, c.endpoint === '' ? '(service)' : c.endpoint, c.state]);
  ctx.out(formatTable(['REPORTER', 'SERVICE', 'ENDPOINT', 'STATE'], rows));
}

const noService = (service: string) => (r: Reply): CtlError | undefined => (r.status === 404 ? new CtlError(`no service ${quote(service)}`, 1) : undefined);

/** A policy as KEY VALUE rows: dotted key paths (`retry.attempts`, `endpoints[0].address`), leaves as YAML flow. */
function policyRows(value: unknown, path: string, rows: string[][]): string[][] {
  const entries = Array.isArray(value)
    ? value.map((v, i): [string, unknown] => [`${path}[${i}]`, v])
    : value !== null && typeof value === 'object'
      ? Object.entries(value).map(([k, v]): [string, unknown] => [path === '' ? k : `${path}.${k}`, v])
      : undefined;
  if (entries === undefined || entries.length === 0) rows.push([path === '' ? '(policy)' : path, stringify(value, { collectionStyle: 'flow' }).trimEnd()]);
  else for (const [key, v] of entries) policyRows(v, key, rows);
  return rows;
}

/** The policy in force: YAML by default (valid input for policy set), -o json the admin API's answer, -o table one row per key. */
export async function policyGet(ctx: CtlContext, service: string): Promise<void> {
  const body = (await ctx.client.ok('GET', `/api/services/${seg(service)}/policy`, undefined, noService(service))) as { policy: unknown };
  if (ctx.output === 'json') return printData(ctx, body);
  if (ctx.output === 'table') {
    ctx.out(formatTable(['KEY', 'VALUE'], policyRows(body.policy, '', [])));
    return;
  }
  ctx.out(stringify(body.policy));
}

/** Reads and parses a policy file (YAML or JSON, which is YAML); "-" is stdin. */
export function readPolicyFile(file: string): unknown {
  const name = file === '-' ? '(stdin)' : file;
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CtlError(`${name}: cannot read the file${code !== undefined ? ` (${code})` : ''}`, 1);
  }
  try {
    return parseYaml(text, name);
  } catch (e) {
    if (e instanceof ConfigError) throw new CtlError(e.message, 1);
    throw e;
  }
}

/** The validation issues of a 400 answer, one per line. */
function issuesOf(r: Reply, message: string): string[] {
  const issues = (r.body as { issues?: unknown }).issues;
  return Array.isArray(issues) && issues.every((i) => typeof i === 'string') ? (issues as string[]) : message.split('\n');
}

const indent = (lines: readonly string[]): string => lines.map((l) => `  ${l}`).join('\n');

/** What PUT / PATCH / DELETE with ?dryRun=true answer. */
interface DryRunReply {
  readonly valid: boolean;
  readonly current: unknown;
  readonly policy: unknown;
}

/**
 * Sends a policy change: PUT (set), PATCH (merge patch) or DELETE. A dry run prints the diff of the policy
 * YAML (- in force, + after) and `valid`, or throws the control plane's validation errors (exit 1).
 */
async function changePolicy(ctx: CtlContext, what: 'set' | 'patch' | 'delete', service: string, body: unknown, source: string | undefined, dryRun: boolean): Promise<void> {
  const method = what === 'set' ? 'PUT' : what === 'patch' ? 'PATCH' : 'DELETE';
  const path = `/api/services/${seg(service)}/policy${dryRun ? '?dryRun=true' : ''}`;
  const refused = (lines: readonly string[]): CtlError =>
    new CtlError(`the control plane ${dryRun ? 'would refuse' : 'refused'} the ${what === 'patch' ? 'patched policy' : 'policy'}${source === undefined ? '' : ` in ${source}`} for ${service}:\n${indent(lines)}`, 1);
  const reply = await ctx.client.request(method, path, body);
  const message = errorMessage(reply);
  const answer = reply.body as Partial<DryRunReply> & { version?: unknown; changed?: unknown; policySource?: unknown };
  if (dryRun && (reply.status === 200 || (reply.status === 400 && answer.valid === false))) {
    if (wantsData(ctx)) printData(ctx, reply.body);
    else {
      const before = lines(answer.current === null || answer.current === undefined ? '' : stringify(answer.current));
      const after = lines(stringify(answer.policy));
      const diff = diffLines(before, after);
      ctx.out(diff.some((l) => !l.startsWith(' ')) ? `--- ${service} (in force)\n+++ ${service} (after policy ${what})\n${diff.join('\n')}\n` : `no change to the policy of ${service}\n`);
      if (answer.valid === true) ctx.out('valid (dry run: nothing was changed)\n');
    }
    if (answer.valid !== true) throw refused(issuesOf(reply, message));
    return;
  }
  if (reply.status === 404) throw new CtlError(`no service ${quote(service)}`, 1);
  if (reply.status === 400 && Array.isArray((reply.body as { issues?: unknown }).issues)) throw refused(issuesOf(reply, message));
  if (reply.status < 200 || reply.status >= 300) throw new CtlError(message, 1);
  if (wantsData(ctx)) return printData(ctx, reply.body);
  const version = versionOf(reply.body);
  if (what === 'delete') {
    const fallback = answer.policySource === 'config' ? "cp.yaml's policy applies" : answer.policy === null ? 'the service is gone' : 'the default policy applies';
    ctx.out(answer.changed === false ? `${service} has no run-time policy; nothing changed\n` : `run-time policy of ${service} deleted, ${fallback} (state version ${version})\n`);
    return;
  }
  ctx.out(answer.changed === false ? `policy of ${service} unchanged (state version ${version})\n` : `policy of ${service} ${what === 'set' ? 'set' : 'patched'} (state version ${version})\n`);
}

export async function policySet(ctx: CtlContext, service: string, file: string, dryRun = false): Promise<void> {
  return changePolicy(ctx, 'set', service, readPolicyFile(file), file === '-' ? '(stdin)' : file, dryRun);
}

export async function policyPatch(ctx: CtlContext, service: string, file: string, dryRun = false): Promise<void> {
  const patch = readPolicyFile(file);
  const source = file === '-' ? '(stdin)' : file;
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw new CtlError(`${source}: expected a mapping of the policy keys to change (null deletes a key)`, 1);
  return changePolicy(ctx, 'patch', service, patch, source, dryRun);
}

export async function policyDelete(ctx: CtlContext, service: string, dryRun = false): Promise<void> {
  return changePolicy(ctx, 'delete', service, undefined, undefined, dryRun);
}

export async function weightSet(ctx: CtlContext, service: string, address: string, weight: number): Promise<void> {
  findEndpoint(await getService(ctx, service), address);
  const body = await ctx.client.ok('PUT', `/api/services/${seg(service)}/weights/${seg(address)}`, { weight });
  if (wantsData(ctx)) return printData(ctx, body);
  ctx.out(`weight of ${service} ${address} pinned to ${weight} (state version ${versionOf(body)})\n`);
}

export async function weightClear(ctx: CtlContext, service: string, address: string): Promise<void> {
  const e = findEndpoint(await getService(ctx, service), address);
  const body = await ctx.client.ok('DELETE', `/api/services/${seg(service)}/weights/${seg(address)}`);
  if (wantsData(ctx)) return printData(ctx, body);
  ctx.out(
    e.pinnedWeight === undefined
      ? `weight of ${service} ${address} was not pinned; nothing changed\n`
      : `weight of ${service} ${address} unpinned (state version ${versionOf(body)})\n`,
  );
}

/**
 * Drains an endpoint that some service has. The admin API would also drain an address no service has yet,
 * and offers no undrain, so a mistyped address is refused here instead of being drained for good.
 */
export async function drain(ctx: CtlContext, address: string): Promise<void> {
  const list = ((await ctx.client.ok('GET', '/api/services')) as { services: readonly ServiceView[] }).services;
  const names = list.filter((s) => s.endpoints.some((e) => e.address === address)).map((s) => s.name);
  if (names.length === 0) throw new CtlError(`no endpoint ${quote(address)}`, 1);
  const body = await ctx.client.ok('POST', '/api/drain', { address }, (r, message) =>
    r.status === 404 ? new CtlError(`no endpoint ${quote(address)}`, 1) : new CtlError(`cannot drain ${quote(address)}: ${message}`, 1),
  );
  if (wantsData(ctx)) return printData(ctx, body);
  ctx.out(`drained ${address}${names.length > 0 ? ` in ${names.join(', ')}` : ''} (state version ${versionOf(body)})\n`);
}

export async function undrain(ctx: CtlContext, address: string): Promise<void> {
  const body = await ctx.client.ok('POST', '/api/undrain', { address }, (r, message) =>
    r.status === 404 ? new CtlError(`${quote(address)} is not drained`, 1) : new CtlError(`cannot undrain ${quote(address)}: ${message}`, 1),
  );
  if (wantsData(ctx)) return printData(ctx, body);
  ctx.out(`undrained ${address} (state version ${versionOf(body)})\n`);
}

export async function sidecars(ctx: CtlContext): Promise<void> {
  const body = await ctx.client.ok('GET', '/api/sidecars');
  if (wantsData(ctx)) return printData(ctx, body);
  const list = (body as { sidecars: readonly SubscriberView[] }).sidecars;
  if (list.length === 0) {
    ctx.out('no sidecars connected\n');
    return;
  }
  const key = (s: SubscriberView): string => `${s.instance?.service ?? ''}\u0000${s.instance?.id ?? ''}`;
  const rows = [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)).map((s) => [
    s.instance?.id || '-',
    s.instance?.service || '-',
    s.sentVersion ?? '-',
    s.ackedVersion ?? '-',
    s.lastNack === null ? '-' : `v${s.lastNack.version}: ${s.lastNack.reason}`,
  ]);
  ctx.out(formatTable(['INSTANCE', 'SERVICE', 'SENT', 'ACKED', 'LAST NACK'], rows, ['left', 'left', 'right', 'right']));
}

function autoscaleRow(v: AutoscaleView): string[] {
  const last = v.decisions.find((d) => d.action !== 'none');
  return [
    v.service,
    v.driver,
    `${v.min}..${v.max}${v.overrides !== undefined && (v.overrides.min !== undefined || v.overrides.max !== undefined) ? ' *' : ''}`,
    `${num(v.targetUtilization)}${v.overrides?.targetUtilization !== undefined ? ' *' : ''}`,
    v.utilization === null ? '-' : num(v.utilization),
    `${v.current}/${v.desired}`,
    v.state,
    last === undefined ? '-' : `${last.action} ${last.current}→${last.desired}${last.error !== undefined ? ' (failed)' : ''}`,
  ];
}

/** Autoscaled services; with a service, also its decisions (newest first). */
export async function autoscale(ctx: CtlContext, service: string | undefined): Promise<void> {
  const body = (await ctx.client.ok('GET', '/api/autoscale')) as { services: readonly AutoscaleView[] };
  const list = service === undefined ? body.services : body.services.filter((v) => v.service === service);
  if (service !== undefined && list.length === 0) throw new CtlError(`${quote(service)} is not autoscaled`, 1);
  if (wantsData(ctx)) return printData(ctx, service === undefined ? body : list[0]);
  if (list.length === 0) {
    ctx.out('no autoscaled services (autoscale in cp.yaml)\n');
    return;
  }
  ctx.out(formatTable(['SERVICE', 'DRIVER', 'MIN..MAX', 'TARGET', 'UTIL', 'CURRENT/DESIRED', 'STATE', 'LAST ACTION'], list.map(autoscaleRow)));
  if (list.some((v) => v.overrides !== undefined && Object.keys(v.overrides).length > 0)) ctx.out('\n* set at run time (outrigger ctl scale)\n');
  const v = list[0];
  if (service === undefined || v === undefined) return;
  if (v.decisions.length === 0) {
    ctx.out('\nno decisions yet\n');
    return;
  }
  ctx.out('\n');
  ctx.out(
    formatTable(
      ['AT', 'ACTION', 'CURRENT', 'UTIL', 'RAW', 'DESIRED', 'REASON'],
      v.decisions.map((d) => [new Date(d.at).toISOString(), d.action, String(d.current), num(d.utilization), String(d.raw), String(d.desired), d.error !== undefined ? `${d.reason}; FAILED: ${d.error}` : d.reason]),
      ['left', 'left', 'right', 'right', 'right', 'right'],
    ),
  );
}

/** PUT /api/autoscale/NAME: run-time min, max, targetUtilization (null: back to cp.yaml's). */
export async function scale(ctx: CtlContext, service: string, change: Readonly<Record<string, number | null>>): Promise<void> {
  const body = (await ctx.client.ok('PUT', `/api/autoscale/${seg(service)}`, change, (r, message) =>
    r.status === 404 ? new CtlError(message, 1) : new CtlError(`the control plane refused: ${message}`, 1),
  )) as AutoscaleView;
  if (wantsData(ctx)) return printData(ctx, body);
  ctx.out(`${service}: min ${body.min}, max ${body.max}, target utilization ${num(body.targetUtilization)} (now ${body.current} running, desired ${body.desired})\n`);
}
