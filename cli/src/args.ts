import { parseArgs } from 'node:util';

/**
 * The one argument parser of the `outrigger` subcommands: `node:util` parseArgs in strict mode (an unknown
 * flag is an error), `--help`/`-h` on every command, and typed readers for the values. A problem with the
 * command line is a UsageError: one line, then a hint (cli.ts prints both and exits 2).
 */

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** The value's placeholder in usage text, e.g. FILE, HOST:PORT, N. */
  readonly value?: string;
  /** Words a shell completes for the value. */
  readonly choices?: readonly string[];
  /** Completed as a file name. */
  readonly file?: boolean;
  /** Shown in the usage line (the command checks it: Args.required). */
  readonly required?: boolean;
  readonly help: string;
}

export interface PositionalSpec {
  /** Placeholder in usage text, e.g. FILE, KIND. */
  readonly name: string;
  readonly required: boolean;
  readonly choices?: readonly string[];
  readonly file?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** What it does, a few lines (printed by `--help` under the usage line). */
  readonly description: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  readonly positionals?: readonly PositionalSpec[];
  /** Extra text at the end of `--help` (examples, exit status). */
  readonly footer?: string;
}

/** A command line the user must fix. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The subcommand whose `--help` the hint points to; undefined: `outrigger --help`. */
    readonly command: string | undefined,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

const HELP: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help' };

/** The options of `spec` plus --help. */
export function optionsOf(spec: CommandSpec): Readonly<Record<string, OptionSpec>> {
  return { ...spec.options, help: HELP };
}

/** The parsed command line of one subcommand, with readers that throw UsageError. */
export class Args {
  constructor(
    private readonly command: string,
    private readonly values: Readonly<Record<string, string | boolean | undefined>>,
    readonly positionals: readonly string[],
  ) {}

  /** A string option, or undefined when not given. An empty value counts as missing. */
  string(name: string): string | undefined {
    const v = this.values[name];
    if (typeof v !== 'string') return undefined;
    if (v === '') throw new UsageError(`--${name} needs a non-empty value`, this.command);
    return v;
  }

  required(name: string, placeholder: string): string {
    const v = this.string(name);
    if (v === undefined) throw new UsageError(`--${name} ${placeholder} is required`, this.command);
    return v;
  }

  flag(name: string): boolean {
    return this.values[name] === true;
  }

  /** A number option in [min, max] (integers only when `integer`), or `fallback` when not given. */
  number(name: string, fallback: number, range: { readonly min: number; readonly max?: number; readonly integer?: boolean }): number {
    const text = this.string(name);
    if (text === undefined) return fallback;
    const n = Number(text);
    const inRange = text.trim() !== '' && Number.isFinite(n) && n >= range.min && (range.max === undefined || n <= range.max) && (range.integer !== true || Number.isInteger(n));
    if (!inRange) {
      const kind = range.integer === true ? 'an integer' : 'a number';
      const bounds = range.max === undefined ? `>= ${range.min}` : `${range.min}..${range.max}`;
      throw new UsageError(`--${name} must be ${kind} ${bounds}, got ${JSON.stringify(text)}`, this.command);
    }
    return n;
  }
}

/** Rewords parseArgs' messages (long, and written for programmers) as one short line. */
function reword(err: Error & { code?: string }): string {
  const option = /--[A-Za-z0-9-]+/.exec(err.message)?.[0] ?? /'(-[A-Za-z0-9])\b/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${option ?? err.message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /does not take an argument/.test(err.message) ? `flag ${option ?? ''} takes no value` : `flag ${option ?? ''} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const arg = /Unexpected argument '([^']*)'/.exec(err.message)?.[1];
      return arg === undefined ? 'unexpected argument' : `unexpected argument "${arg}"`;
    }
    default:
      return err.message;
  }
}

/**
 * Parses the arguments after the subcommand's name.
 * @returns 'help' when --help/-h was given (nothing else is checked then), else the parsed Args.
 * @throws UsageError on an unknown flag, a missing value, or too many / too few positional arguments.
 */
export function parseCommand(spec: CommandSpec, argv: readonly string[]): Args | 'help' {
  // --help wins over any other mistake on the line, as in kubectl and git.
  const dashDash = argv.indexOf('--');
  const before = dashDash < 0 ? argv : argv.slice(0, dashDash);
  if (before.includes('--help') || before.includes('-h')) return 'help';
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, o] of Object.entries(optionsOf(spec))) options[name] = o.short === undefined ? { type: o.type } : { type: o.type, short: o.short };
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: (spec.positionals?.length ?? 0) > 0 });
  } catch (err) {
    throw new UsageError(reword(err as Error & { code?: string }), spec.name);
  }
  const values: Record<string, string | boolean | undefined> = {};
  for (const [k, v] of Object.entries(parsed.values)) values[k] = Array.isArray(v) ? v[v.length - 1] : v;
  const positionals = spec.positionals ?? [];
  const required = positionals.filter((p) => p.required);
  if (parsed.positionals.length < required.length) {
    throw new UsageError(`${required.map((p) => p.name).slice(parsed.positionals.length).join(' ')} is required`, spec.name);
  }
  if (parsed.positionals.length > positionals.length) {
    throw new UsageError(`unexpected argument "${parsed.positionals[positionals.length] ?? ''}"`, spec.name);
  }
  parsed.positionals.forEach((value, i) => {
    const p = positionals[i];
    if (p?.choices !== undefined && !p.choices.includes(value)) {
      throw new UsageError(`${p.name} must be one of ${p.choices.join(', ')}, got ${JSON.stringify(value)}`, spec.name);
    }
  });
  for (const [name, o] of Object.entries(spec.options)) {
    const v = values[name];
    if (o.choices !== undefined && typeof v === 'string' && !o.choices.includes(v)) {
      throw new UsageError(`--${name} must be one of ${o.choices.join(', ')}, got ${JSON.stringify(v)}`, spec.name);
    }
  }
  return new Args(spec.name, values, parsed.positionals);
}

/** The `--help` text of one command. */
export function helpText(spec: CommandSpec): string {
  const opts = Object.entries(optionsOf(spec));
  const required = Object.entries(spec.options).filter(([, o]) => o.required === true);
  const synopsisOptions = required.map(([name, o]) => ` --${name} ${o.value ?? 'VALUE'}`).join('') + (Object.keys(spec.options).length > required.length ? ' [options]' : '');
  const synopsisArgs = (spec.positionals ?? []).map((p) => (p.required ? ` ${p.name}` : ` [${p.name}]`)).join('');
  const left = opts.map(([name, o]) => `${o.short !== undefined ? `-${o.short}, ` : '    '}--${name}${o.value !== undefined ? ` ${o.value}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 3;
  const lines = opts.map(([, o], i) => `  ${(left[i] ?? '').padEnd(width)}${o.help}`);
  return `usage: outrigger ${spec.name}${synopsisOptions}${synopsisArgs}\n\n${spec.description.trimEnd()}\n\noptions:\n${lines.join('\n')}\n${spec.footer !== undefined ? `\n${spec.footer.trimEnd()}\n` : ''}`;
}
