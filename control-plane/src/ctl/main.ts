import { AdminClient, CtlError } from './client.js';
import * as cmd from './commands.js';

/**
 * `outrigger ctl`: the operator's command line for a running control plane, over its HTTP admin API.
 * Exit codes: 0 done; 1 the control plane refused, or the service / endpoint / file is unknown or invalid;
 * 2 usage error, or the control plane cannot be reached.
 */

export const DEFAULT_SERVER = '127.0.0.1:15080';

export const CTL_USAGE = `usage: outrigger ctl [--server HOST:PORT] [--json] <command>

commands:
  services                          services: load-balancing policy, endpoints serving/total, policy source
  endpoints SERVICE                 endpoints of a service: weight (pinned/computed), cost, capacity, zone,
                                    state (static, registered, draining, drained), instance id
  circuits [SERVICE]                circuit-breaker states reported by sidecars
  policy get SERVICE                the service's policy, as YAML
  policy set SERVICE -f FILE        set the service's policy from a YAML or JSON file (FILE - reads stdin)
  weight set SERVICE ENDPOINT N     pin the weight of an endpoint (host:port) to N (1..1000)
  weight clear SERVICE ENDPOINT     unpin it: the computed or registered weight applies again
  drain ENDPOINT                    take host:port out of every service's snapshots
  undrain ENDPOINT                  bring a drained host:port back
  sidecars                          connected sidecars: versions sent and ACKed, last NACK
  autoscale [SERVICE]               autoscaled services: bounds, target, current/desired, utilization,
                                    state; with SERVICE also its last decisions
  scale SERVICE [--min N] [--max N] [--target X]
                                    change an autoscaled service's bounds or target utilization until
                                    the control plane restarts; the value "default" restores cp.yaml's
  help                              this text

options:
  --server HOST:PORT   the control plane's HTTP admin address (listen.http in cp.yaml);
                       default: $OUTRIGGER_CONTROL_PLANE, else ${DEFAULT_SERVER}
  --json               print the admin API's JSON answer instead of a table

exit status: 0 done, 1 refused or unknown (service, endpoint, invalid policy), 2 usage error or
the control plane cannot be reached
`;

export interface CtlIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
}

interface Parsed {
  readonly server: string;
  readonly json: boolean;
  readonly help: boolean;
  readonly file: string | undefined;
  /** --min, --max, --target of `scale`, as given. */
  readonly scale: Readonly<Partial<Record<'min' | 'max' | 'target', string>>>;
  readonly positional: readonly string[];
}

const usage = (message: string): CtlError => new CtlError(message, 2, true);

function parseArgs(argv: readonly string[], env: CtlIo['env']): Parsed {
  let server = env['OUTRIGGER_CONTROL_PLANE'] || DEFAULT_SERVER;
  let json = false;
  let help = false;
  let file: string | undefined;
  const scale: Partial<Record<'min' | 'max' | 'target', string>> = {};
  const positional: string[] = [];
  const value = (i: number, name: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v === '') throw usage(`${name} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    const eq = a.indexOf('=');
    const [name, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    if (name === '--json' && inline === undefined) json = true;
    else if (name === '--help' || name === '-h') help = true;
    else if (name === '--server') {
      server = inline ?? value(i++, '--server');
      if (server === '') throw usage('--server needs a value');
    } else if (name === '-f' || name === '--file') {
      file = inline ?? value(i++, name);
      if (file === '') throw usage(`${name} needs a value`);
    } else if (name === '--min' || name === '--max' || name === '--target') {
      scale[name.slice(2) as 'min' | 'max' | 'target'] = inline ?? value(i++, name);
    } else if (a.startsWith('-') && a !== '-' && !/^-\d/.test(a)) throw usage(`unknown option ${quote(a)}`);
    else positional.push(a);
  }
  return { server, json, help, file, scale, positional };
}

const quote = (s: string): string => JSON.stringify(s);

/** Checks the positional arguments of `what` against the names it expects (a trailing `?` marks an optional one). */
function expectArgs(what: string, got: readonly string[], names: readonly string[]): void {
  const required = names.filter((n) => !n.endsWith('?')).length;
  if (got.length < required) throw usage(`${what}: missing ${names.slice(got.length).filter((n) => !n.endsWith('?')).join(' ')}`);
  if (got.length > names.length) throw usage(`${what}: unexpected ${quote(got[names.length] ?? '')}`);
}

async function dispatch(p: Parsed, out: (text: string) => void): Promise<void> {
  const [command, ...rest] = p.positional;
  if (p.file !== undefined && !(command === 'policy' && rest[0] === 'set')) throw usage('-f FILE is only for policy set');
  if (Object.keys(p.scale).length > 0 && command !== 'scale') throw usage('--min, --max and --target are only for scale');
  const ctx = (): cmd.CtlContext => ({ client: new AdminClient(p.server), json: p.json, out });
  switch (command) {
    case 'services':
      expectArgs('services', rest, []);
      return cmd.services(ctx());
    case 'endpoints':
      expectArgs('endpoints', rest, ['SERVICE']);
      return cmd.endpoints(ctx(), rest[0] ?? '');
    case 'circuits':
      expectArgs('circuits', rest, ['SERVICE?']);
      return cmd.circuits(ctx(), rest[0]);
    case 'sidecars':
      expectArgs('sidecars', rest, []);
      return cmd.sidecars(ctx());
    case 'autoscale':
      expectArgs('autoscale', rest, ['SERVICE?']);
      return cmd.autoscale(ctx(), rest[0]);
    case 'scale': {
      expectArgs('scale', rest, ['SERVICE']);
      const change: Record<string, number | null> = {};
      for (const [flag, key] of [['min', 'min'], ['max', 'max'], ['target', 'targetUtilization']] as const) {
        const text = p.scale[flag];
        if (text === undefined) continue;
        if (text === 'default') change[key] = null;
        else {
          const n = Number(text);
          if (text.trim() === '' || !Number.isFinite(n)) throw usage(`scale: --${flag} must be a number or "default", got ${quote(text)}`);
          change[key] = n;
        }
      }
      if (Object.keys(change).length === 0) throw usage('scale: give --min N, --max N and/or --target X');
      return cmd.scale(ctx(), rest[0] ?? '', change);
    }
    case 'drain':
      expectArgs('drain', rest, ['ENDPOINT']);
      return cmd.drain(ctx(), rest[0] ?? '');
    case 'undrain':
      expectArgs('undrain', rest, ['ENDPOINT']);
      return cmd.undrain(ctx(), rest[0] ?? '');
    case 'policy': {
      const [sub, ...args] = rest;
      if (sub === 'get') {
        expectArgs('policy get', args, ['SERVICE']);
        return cmd.policyGet(ctx(), args[0] ?? '');
      }
      if (sub === 'set') {
        expectArgs('policy set', args, ['SERVICE']);
        if (p.file === undefined) throw usage('policy set: -f FILE is required');
        return cmd.policySet(ctx(), args[0] ?? '', p.file);
      }
      throw usage(sub === undefined ? 'policy: expected get or set' : `policy: unknown subcommand ${quote(sub)} (expected get or set)`);
    }
    case 'weight': {
      const [sub, ...args] = rest;
      if (sub === 'set') {
        expectArgs('weight set', args, ['SERVICE', 'ENDPOINT', 'N']);
        const text = args[2] ?? '';
        const n = Number(text);
        if (text.trim() === '' || !Number.isFinite(n)) throw usage(`weight set: N must be a number, got ${quote(text)}`);
        return cmd.weightSet(ctx(), args[0] ?? '', args[1] ?? '', n);
      }
      if (sub === 'clear') {
        expectArgs('weight clear', args, ['SERVICE', 'ENDPOINT']);
        return cmd.weightClear(ctx(), args[0] ?? '', args[1] ?? '');
      }
      throw usage(sub === undefined ? 'weight: expected set or clear' : `weight: unknown subcommand ${quote(sub)} (expected set or clear)`);
    }
    case undefined:
      throw usage('a command is required');
    default:
      throw usage(`unknown command ${quote(command)}`);
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
    const parsed = parseArgs(argv, io.env);
    if (parsed.help || parsed.positional[0] === 'help') {
      io.stdout(CTL_USAGE);
      return 0;
    }
    await dispatch(parsed, io.stdout);
    return 0;
  } catch (err) {
    if (!(err instanceof CtlError)) throw err;
    if (err.usage) io.stderr(`${CTL_USAGE}\n`);
    io.stderr(`outrigger ctl: ${err.message}\n`);
    return err.exitCode;
  }
}
