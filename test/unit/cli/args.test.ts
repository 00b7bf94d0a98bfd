/** The subcommands' argument parser: --help first, strict flags, typed values, one-line usage errors. */
import { describe, expect, it } from 'vitest';
import { helpText, parseCommand, UsageError, type Args, type CommandSpec } from '../../../cli/src/args.js';
import { COMMANDS } from '../../../cli/src/commands.js';

const spec: CommandSpec = {
  name: 'thing',
  summary: 'a thing',
  description: 'Does a thing.',
  options: {
    config: { type: 'string', short: 'c', value: 'FILE', required: true, help: 'the file (required)' },
    rps: { type: 'string', value: 'N', help: 'a rate' },
    kind: { type: 'string', value: 'KIND', choices: ['a', 'b'], help: 'a kind' },
    json: { type: 'boolean', help: 'JSON' },
  },
  positionals: [{ name: 'TARGET', required: false }],
};

const parsed = (argv: string[]): Args => {
  const r = parseCommand(spec, argv);
  if (r === 'help') throw new Error('unexpected help');
  return r;
};
const usageError = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).command).toBe('thing');
    return (err as Error).message;
  }
  throw new Error('no UsageError');
};

describe('parseCommand', () => {
  it('answers help for --help or -h anywhere before --, whatever else is wrong on the line', () => {
    expect(parseCommand(spec, ['--help'])).toBe('help');
    expect(parseCommand(spec, ['--bogus', '-h'])).toBe('help');
    expect(parseCommand(spec, ['--config', 'x', '--help'])).toBe('help');
  });

  it('reads long, short and --flag=value forms; the last of a repeated flag wins', () => {
    const a = parsed(['-c', 'a.yaml', '--rps=5', '--json', 'target', '--rps', '7']);
    expect(a.required('config', 'FILE')).toBe('a.yaml');
    expect(a.number('rps', 20, { min: 0, max: 1000 })).toBe(7);
    expect(a.flag('json')).toBe(true);
    expect(a.positionals).toEqual(['target']);
    expect(parsed([]).number('rps', 20, { min: 0 })).toBe(20);
  });

  it('refuses unknown flags, missing values, values given to a boolean, extra arguments, bad choices, with one short line', () => {
    expect(usageError(() => parsed(['--bogus']))).toBe('unknown flag --bogus');
    expect(usageError(() => parsed(['-x']))).toBe('unknown flag -x');
    expect(usageError(() => parsed(['--config']))).toBe('flag --config needs a value');
    expect(usageError(() => parsed(['--config', '--json']))).toBe('flag --config needs a value');
    expect(usageError(() => parsed(['--json=yes']))).toBe('flag --json takes no value');
    expect(usageError(() => parsed(['one', 'two']))).toBe('unexpected argument "two"');
    expect(usageError(() => parsed(['--kind', 'c']))).toBe('--kind must be one of a, b, got "c"');
  });

  it('names a missing required flag and a bad number with its range', () => {
    expect(usageError(() => parsed([]).required('config', 'FILE'))).toBe('--config FILE is required');
    expect(usageError(() => parsed(['--rps', 'abc']).number('rps', 0, { min: 0, max: 1000 }))).toBe('--rps must be a number 0..1000, got "abc"');
    expect(usageError(() => parsed(['--rps', '1.5']).number('rps', 0, { min: 1, integer: true }))).toBe('--rps must be an integer >= 1, got "1.5"');
    expect(usageError(() => parsed(['--rps=']).number('rps', 0, { min: 0 }))).toBe('--rps needs a non-empty value');
  });
});

describe('helpText', () => {
  it('shows the required flags in the usage line and every flag with its help', () => {
    const text = helpText(spec);
    expect(text.split('\n')[0]).toBe('usage: outrigger thing --config FILE [options] [TARGET]');
    expect(text).toMatch(/-c, --config FILE\s+the file \(required\)/);
    expect(text).toMatch(/-h, --help\s+show this help/);
  });

  it('exists for every subcommand, each naming itself', () => {
    for (const c of COMMANDS) expect(helpText(c)).toMatch(new RegExp(`^usage: outrigger ${c.name}[ \\n]`));
  });
});
