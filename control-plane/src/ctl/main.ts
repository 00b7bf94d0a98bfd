import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AdminClient, CtlError, DEFAULT_CA_FILE, loadCa } from './client.js';
import * as cmd from './commands.js';

/**
 * `outrigger ctl`: the operator's command line for a running control plane, over its HTTP admin API.
 * Arguments are parsed with node:util parseArgs (strict: an unknown option is an error). Exit codes: 0 done
 * (also --help); 1 the control plane refused, the service / endpoint / file is unknown or invalid, or a dry
 * run found the policy invalid; 2 usage error (one line and a hint on stderr), or the control plane cannot
 * be reached.
 */

export const DEFAULT_SERVER = '127.0.0.1:15080';

const HINT = 'run "outrigger ctl --help" for usage';

const OPTIONS = {
  server: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'ca-file': { type: 'string' },
  output: { type: 'string', short: 'o' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  file: { type: 'string', short: 'f' },
  'dry-run': { type: 'boolean' },
  min: { type: 'string' },
  max: { type: 'string' },
  target: { type: 'string' },
} as const;

type OptionName = keyof typeof OPTIONS;

/** Options every command takes. */
const COMMON: readonly OptionName[] = ['server', 'token', 'token-file', 'ca-file', 'output', 'json', 'help'];

interface CommandSpec {
  /** "services", "policy set", ... */
  readonly name: string;
  /** Positional arguments after the name; a trailing "?" marks an optional one. */
  readonly args: readonly string[];
  /** The synopsis's option part, e.g. "-f FILE [--dry-run]". */
  readonly synopsis?: string;
  readonly options?: readonly OptionName[];
  /** The first line is the summary in the command list; the rest is shown by `ctl COMMAND --help`. */
  readonly help: readonly string[];
}

const COMMANDS: readonly CommandSpec[] = [
  { name: 'services', args: [], help: ['services: load-balancing policy, endpoints serving/total, policy source'] },
  {
    name: 'endpoints',
    args: ['SERVICE'],
    help: ['endpoints of a service: weight (pinned/computed), cost, capacity, zone,', 'state (static, registered, draining, drained), instance id'],
  },
  { name: 'circuits', args: ['SERVICE?'], help: ['circuit-breaker states reported by sidecars'] },
  {
    name: 'policy get',
    args: ['SERVICE'],
    help: ["the service's policy in force, as YAML (valid input for policy set);", '-o json: the admin API answer, -o table: one row per key'],
  },
  {
    name: 'policy set',
    args: ['SERVICE'],
    synopsis: '-f FILE [--dry-run]',
    options: ['file', 'dry-run'],
    help: ["replace the service's policy with a YAML or JSON file (- reads", 'stdin); keys the file leaves out take their defaults'],
  },
  {
    name: 'policy patch',
    args: ['SERVICE'],
    synopsis: '-f FILE [--dry-run]',
    options: ['file', 'dry-run'],
    help: ['merge a YAML or JSON merge patch (RFC 7386) into the policy in', 'force: mappings merge, null deletes a key, lists and values replace'],
  },
  {
    name: 'policy delete',
    args: ['SERVICE'],
    synopsis: '[--dry-run]',
    options: ['dry-run'],
    help: ["drop the run-time policy: cp.yaml's policy (or none) applies again"],
  },
  { name: 'weight set', args: ['SERVICE', 'ENDPOINT', 'N'], help: ['pin the weight of an endpoint (host:port) to N (1..1000)'] },
  { name: 'weight clear', args: ['SERVICE', 'ENDPOINT'], help: ['unpin it: the computed or registered weight applies again'] },
  { name: 'drain', args: ['ENDPOINT'], help: ["take host:port out of every service's snapshots"] },
  { name: 'undrain', args: ['ENDPOINT'], help: ['bring a drained host:port back'] },
  { name: 'sidecars', args: [], help: ['connected sidecars: versions sent and ACKed, last NACK'] },
  {
    name: 'autoscale',
    args: ['SERVICE?'],
    help: ['autoscaled services: bounds, target, current/desired, utilization,', 'state; with SERVICE also its last decisions'],
  },
  {
    name: 'scale',
    args: ['SERVICE'],
    synopsis: '[--min N] [--max N] [--target X]',
    options: ['min', 'max', 'target'],
    help: ["change an autoscaled service's bounds or target utilization until", 'the control plane restarts; the value "default" restores cp.yaml\'s'],
  },
];

/** Commands with subcommands. */
const GROUPS = new Set(COMMANDS.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0] ?? ''));

function synopsis(c: CommandSpec): string {
  return [c.name, ...c.args.map((a) => (a.endsWith('?') ? `[${a.slice(0, -1)}]` : a)), ...(c.synopsis === undefined ? [] : [c.synopsis])].join(' ');
}

const OPTIONS_TEXT = `  --server HOST:PORT   the control plane's HTTP admin address (listen.http in cp.yaml);
                       default: $OUTRIGGER_CONTROL_PLANE, else ${DEFAULT_SERVER}
  --token TOKEN        sent as Authorization: Bearer TOKEN; default: $OUTRIGGER_TOKEN
  --token-file FILE    read the token from FILE (e.g. admin.token beside the control plane's state)
  --ca-file FILE       the mesh CA (mesh-ca.crt beside the control plane's state) its TLS certificate
                       must chain to; default: $OUTRIGGER_CA_FILE, else ${DEFAULT_CA_FILE} if it
                       exists, else the system's roots. HOST:PORT is https; give http://HOST:PORT for
                       a control plane with tls.enabled: false
  -o, --output FORMAT  table (the default; policy get: yaml), json or yaml: the admin API's
                       answer as JSON or YAML
  --json               the same as -o json
  -h, --help           this text; after a command, its usage (outrigger ctl policy --help)
`;

const EXIT_TEXT = `exit status: 0 done, 1 refused or unknown (token missing, unknown or not allowed; service,
endpoint, invalid policy, also in a dry run), 2 usage error or the control plane cannot be reached
`;

function commandList(list: readonly CommandSpec[]): string {
  const width = 36;
  return list
    .map((c) => {
      const head = synopsis(c);
      const [first = '', ...rest] = c.help;
      const pad = ' '.repeat(width);
      const lead = head.length + 2 < width ? `  ${head.padEnd(width - 2)}${first}` : `  ${head}\n${pad}${first}`;
      return [lead, ...rest.map((l) => pad + l)].join('\n');
    })
    .join('\n');
}

export const CTL_USAGE = `usage: outrigger ctl [--server HOST:PORT] [--token TOKEN | --token-file FILE] [--ca-file FILE] [-o json|yaml|table] <command>

commands:
${commandList([...COMMANDS, { name: 'help', args: ['COMMAND?'], help: ["this text, or a command's (also: outrigger ctl COMMAND --help)"] }])}

options:
${OPTIONS_TEXT}
${EXIT_TEXT}`;

/** `outrigger ctl policy --help`, `outrigger ctl policy set --help`: the usage of those commands. */
function commandUsage(list: readonly CommandSpec[]): string {
  const extra = [...new Set(list.flatMap((c) => c.options ?? []))];
  const lines = extra.flatMap((o) => {
    switch (o) {
      case 'file':
        return ['  -f, --file FILE      the YAML or JSON file; - reads stdin'];
      case 'dry-run':
        return ['  --dry-run            the control plane validates and answers without changing anything;', '                       prints the policy diff (- in force, + after) and valid or the errors'];
      case 'min':
      case 'max':
      case 'target':
        return o === 'min' ? ['  --min N, --max N     bounds of the number of instances ("default": cp.yaml\'s)', '  --target X           target utilization, 0 < X <= 1 ("default": cp.yaml\'s)'] : [];
      default:
        return [];
    }
  });
  return `usage:\n${list.map((c) => `  outrigger ctl ${synopsis(c)}\n${c.help.map((l) => `      ${l}`).join('\n')}`).join('\n')}\n\noptions:\n${lines.map((l) => `${l}\n`).join('')}${OPTIONS_TEXT}\n${EXIT_TEXT}`;
}

export interface CtlIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

type Values = { -readonly [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

const usage = (message: string): CtlError => new CtlError(message, 2, true);
const quote = (s: string): string => JSON.stringify(s);

/** parseArgs's errors, in ctl's words. */
function parse(argv: readonly string[]): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    const option = /'(-[^' ]*?)(?:, (--[^' ]+))?(?: <value>)?'/.exec(message);
    const name = option?.[2] ?? option?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw usage(`unknown option ${quote(name)}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      if (message.includes('does not take an argument')) throw usage(`${name} takes no value`);
      if (message.includes('ambiguous')) throw usage(`${name} needs a value (write ${name}=VALUE for a value that starts with "-")`);
      throw usage(`${name} needs a value`);
    }
    throw usage(message.split('\n')[0] ?? message);
  }
}

/** The command the positionals name (with its arguments), or the group ("policy") when only that is given. */
function resolve(positionals: readonly string[]): { spec?: CommandSpec; group?: string; args: readonly string[] } {
  const [first, second, ...rest] = positionals;
  if (first === undefined) return { args: [] };
  if (GROUPS.has(first)) {
    const spec = COMMANDS.find((c) => c.name === `${first} ${second ?? ''}`);
    if (spec !== undefined) return { spec, args: rest };
    return { group: first, args: second === undefined ? [] : [second, ...rest] };
  }
  const spec = COMMANDS.find((c) => c.name === first);
  return spec === undefined ? { args: positionals.slice(1) } : { spec, args: positionals.slice(1) };
}

/** Help text for `help [COMMAND...]` or `COMMAND --help`. */
function helpFor(words: readonly string[]): string {
  if (words.length === 0) return CTL_USAGE;
  const { spec, group } = resolve(words);
  if (spec !== undefined) return commandUsage([spec]);
  if (group !== undefined) return commandUsage(COMMANDS.filter((c) => c.name.startsWith(`${group} `)));
  throw usage(`unknown command ${quote(words.join(' '))}`);
}

/** Checks the positional arguments of a command against the names it expects. */
function expectArgs(spec: CommandSpec, got: readonly string[]): void {
  const required = spec.args.filter((n) => !n.endsWith('?'));
  if (got.length < required.length) throw usage(`${spec.name}: missing ${required.slice(got.length).join(' ')}`);
  if (got.length > spec.args.length) throw usage(`${spec.name}: unexpected ${quote(got[spec.args.length] ?? '')}`);
}

const FLAG: Record<OptionName, string> = {
  server: '--server',
  token: '--token',
  'token-file': '--token-file',
  'ca-file': '--ca-file',
  output: '-o',
  json: '--json',
  help: '--help',
  file: '-f FILE',
  'dry-run': '--dry-run',
  min: '--min',
  max: '--max',
  target: '--target',
};

function outputOf(values: Values): cmd.Output | undefined {
  const o = values.output;
  if (o !== undefined && o !== 'json' && o !== 'yaml' && o !== 'table') throw usage(`-o: expected json, yaml or table, got ${quote(o)}`);
  if (values.json === true && o !== undefined && o !== 'json') throw usage(`--json and -o ${o} disagree`);
  return values.json === true ? 'json' : o;
}

/** The token: --token, else --token-file's content (trimmed), else $OUTRIGGER_TOKEN; undefined when none. */
function tokenOf(values: Values, env: CtlIo['env']): string | undefined {
  if (values.token !== undefined && values['token-file'] !== undefined) throw usage('give --token or --token-file, not both');
  if (values.token !== undefined) {
    if (values.token.trim() === '') throw usage('--token needs a value');
    return values.token.trim();
  }
  const file = values['token-file'];
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw usage(`--token-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    if (text.trim() === '') throw usage(`--token-file: ${file} is empty`);
    return text.trim();
  }
  const fromEnv = env['OUTRIGGER_TOKEN']?.trim();
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

async function dispatch(
  spec: CommandSpec,
  args: readonly string[],
  values: Values,
  server: string,
  token: string | undefined,
  ca: ReturnType<typeof loadCa>,
  out: (text: string) => void,
): Promise<void> {
  const allowed = new Set([...COMMON, ...(spec.options ?? [])]);
  for (const key of Object.keys(values) as OptionName[]) {
    if (allowed.has(key)) continue;
    const users = COMMANDS.filter((c) => c.options?.includes(key)).map((c) => c.name);
    throw usage(`${FLAG[key]} is only for ${users.join(', ').replace(/, ([^,]*)$/, ' and $1')}`);
  }
  expectArgs(spec, args);
  const ctx: cmd.CtlContext = { client: new AdminClient(server, token, ca), output: outputOf(values), out };
  const [a = '', b = '', c = ''] = args;
  const dryRun = values['dry-run'] === true;
  switch (spec.name) {
    case 'services':
      return cmd.services(ctx);
    case 'endpoints':
      return cmd.endpoints(ctx, a);
    case 'circuits':
      return cmd.circuits(ctx, args[0]);
    case 'sidecars':
      return cmd.sidecars(ctx);
    case 'autoscale':
      return cmd.autoscale(ctx, args[0]);
    case 'scale': {
      const change: Record<string, number | null> = {};
      for (const [flag, key] of [['min', 'min'], ['max', 'max'], ['target', 'targetUtilization']] as const) {
        const text = values[flag];
        if (text === undefined) continue;
        if (text === 'default') change[key] = null;
        else {
          const n = Number(text);
          if (text.trim() === '' || !Number.isFinite(n)) throw usage(`scale: --${flag} must be a number or "default", got ${quote(text)}`);
          change[key] = n;
        }
      }
      if (Object.keys(change).length === 0) throw usage('scale: give --min N, --max N and/or --target X');
      return cmd.scale(ctx, a, change);
    }
    case 'drain':
      return cmd.drain(ctx, a);
    case 'undrain':
      return cmd.undrain(ctx, a);
    case 'policy get':
      return cmd.policyGet(ctx, a);
    case 'policy set':
    case 'policy patch': {
      const file = values.file;
      if (file === undefined || file === '') throw usage(`${spec.name}: -f FILE is required`);
      return spec.name === 'policy set' ? cmd.policySet(ctx, a, file, dryRun) : cmd.policyPatch(ctx, a, file, dryRun);
    }
    case 'policy delete':
      return cmd.policyDelete(ctx, a, dryRun);
    case 'weight set': {
      const n = Number(c);
      if (c.trim() === '' || !Number.isFinite(n)) throw usage(`weight set: N must be a number, got ${quote(c)}`);
      return cmd.weightSet(ctx, a, b, n);
    }
    case 'weight clear':
      return cmd.weightClear(ctx, a, b);
    default:
      throw usage(`unknown command ${quote(spec.name)}`);
  }
}

/**
 * Runs `outrigger ctl ARGS` (argv without "ctl").
 * @returns the exit status.
 */
export async function runCtl(
  argv: readonly string[],
  io: CtlIo = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), env: process.env },
): Promise<number> {
  try {
    const { values, positionals } = parse(argv);
    if (positionals[0] === 'help') {
      io.stdout(helpFor(positionals.slice(1)));
      return 0;
    }
    if (values.help === true) {
      io.stdout(helpFor(positionals));
      return 0;
    }
    const { spec, group, args } = resolve(positionals);
    if (spec === undefined) {
      const [first, second] = positionals;
      if (first === undefined) throw usage('a command is required');
      if (group === undefined) throw usage(`unknown command ${quote(first)}`);
      const subs = COMMANDS.filter((x) => x.name.startsWith(`${group} `)).map((x) => x.name.slice(group.length + 1));
      const expected = `expected ${subs.join(', ').replace(/, ([^,]*)$/, ' or $1')}`;
      throw usage(second === undefined ? `${group}: ${expected}` : `${group}: unknown subcommand ${quote(second)} (${expected})`);
    }
    const server = values.server ?? (io.env['OUTRIGGER_CONTROL_PLANE'] || DEFAULT_SERVER);
    if (server === '') throw usage('--server needs a value');
    if (values['ca-file'] === '') throw usage('--ca-file needs a value');
    await dispatch(spec, args, values, server, tokenOf(values, io.env), loadCa(values['ca-file'], io.env), io.stdout);
    return 0;
  } catch (err) {
    if (!(err instanceof CtlError)) throw err;
    io.stderr(`outrigger ctl: ${err.message}\n`);
    if (err.usage) io.stderr(`${HINT}\n`);
    return err.exitCode;
  }
}
