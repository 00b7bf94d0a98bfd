import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { parseServiceConfig, parseYaml } from '../../../common/src/config/load.js';
import { ConfigError } from '../../../common/src/errors.js';
import type { AutoscaleView } from '../autoscale/types.js';
import type { SubscriberView } from '../push/server.js';
import type { EndpointView, ServiceView } from '../registry/registry.js';
import { type AdminClient, CtlError } from './client.js';
import { formatTable } from './table.js';

/**
 * The `outrigger ctl` commands. Each makes one or a few admin API requests (control-plane/src/api/http.ts)
 * and prints a table or a short confirmation, or with --json the admin API's answer unchanged.
 */

export interface CtlContext {
  readonly client: AdminClient;
  /** Print the admin API's JSON instead of tables. */
  readonly json: boolean;
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

function printJson(ctx: CtlContext, value: unknown): void {
  ctx.out(`${JSON.stringify(value, null, 2)}\n`);
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
  return (await ctx.client.ok('GET', `/api/services/${seg(name)}`, undefined, (r) =>
    r.status === 404 ? new CtlError(`no service ${quote(name)}`, 1) : undefined,
  )) as ServiceView;
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
  const [body, version] = await Promise.all([ctx.client.ok('GET', '/api/services'), ctx.json ? undefined : ctx.client.ok('GET', '/api/version')]);
  if (ctx.json) return printJson(ctx, body);
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
  if (ctx.json) return printJson(ctx, svc);
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
  if (ctx.json) return printJson(ctx, body);
  if (list.length === 0) {
    ctx.out(`no circuits reported${service === undefined ? '' : ` for ${service}`} (sidecars report them with their load)\n`);
    return;
  }
  const rows = list.map((c) => [c.reporter ?? '-', c.service, c.endpoint === '' ? '(service)' : c.endpoint, c.state]);
  ctx.out(formatTable(['REPORTER', 'SERVICE', 'ENDPOINT', 'STATE'], rows));
}

export async function policyGet(ctx: CtlContext, service: string): Promise<void> {
  const body = await ctx.client.ok('GET', `/api/services/${seg(service)}/policy`, undefined, (r) =>
    r.status === 404 ? new CtlError(`no service ${quote(service)}`, 1) : undefined,
  );
  if (ctx.json) return printJson(ctx, body);
  ctx.out(stringify((body as { policy: unknown }).policy));
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

export async function policySet(ctx: CtlContext, service: string, file: string): Promise<void> {
  const policy = readPolicyFile(file);
  const body = await ctx.client.ok('PUT', `/api/services/${seg(service)}/policy`, policy, (r, message) => {
    if (r.status !== 400) return undefined;
    const issues = (r.body as { issues?: unknown }).issues;
    const lines = Array.isArray(issues) && issues.every((i) => typeof i === 'string') ? (issues as string[]) : message.split('\n');
    const source = file === '-' ? '(stdin)' : file;
    return new CtlError(`the control plane refused the policy in ${source} for ${service}:\n${lines.map((l) => `  ${l}`).join('\n')}`, 1);
  });
  if (ctx.json) return printJson(ctx, body);
  ctx.out(`policy of ${service} set (state version ${versionOf(body)})\n`);
}

export async function weightSet(ctx: CtlContext, service: string, address: string, weight: number): Promise<void> {
  findEndpoint(await getService(ctx, service), address);
  const body = await ctx.client.ok('PUT', `/api/services/${seg(service)}/weights/${seg(address)}`, { weight });
  if (ctx.json) return printJson(ctx, body);
  ctx.out(`weight of ${service} ${address} pinned to ${weight} (state version ${versionOf(body)})\n`);
}

export async function weightClear(ctx: CtlContext, service: string, address: string): Promise<void> {
  const e = findEndpoint(await getService(ctx, service), address);
  const body = await ctx.client.ok('DELETE', `/api/services/${seg(service)}/weights/${seg(address)}`);
  if (ctx.json) return printJson(ctx, body);
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
  if (ctx.json) return printJson(ctx, body);
  ctx.out(`drained ${address}${names.length > 0 ? ` in ${names.join(', ')}` : ''} (state version ${versionOf(body)})\n`);
}

export async function undrain(ctx: CtlContext, address: string): Promise<void> {
  const body = await ctx.client.ok('POST', '/api/undrain', { address }, (r, message) =>
    r.status === 404 ? new CtlError(`${quote(address)} is not drained`, 1) : new CtlError(`cannot undrain ${quote(address)}: ${message}`, 1),
  );
  if (ctx.json) return printJson(ctx, body);
  ctx.out(`undrained ${address} (state version ${versionOf(body)})\n`);
}

export async function sidecars(ctx: CtlContext): Promise<void> {
  const body = await ctx.client.ok('GET', '/api/sidecars');
  if (ctx.json) return printJson(ctx, body);
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
  if (ctx.json) return printJson(ctx, service === undefined ? body : list[0]);
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
  if (ctx.json) return printJson(ctx, body);
  ctx.out(`${service}: min ${body.min}, max ${body.max}, target utilization ${num(body.targetUtilization)} (now ${body.current} running, desired ${body.desired})\n`);
}
