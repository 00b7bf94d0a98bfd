import { helpText, parseCommand, UsageError } from './args.js';
import { COMMANDS, commandNamed, CTL_SUMMARY } from './commands.js';
import { CommandError } from './errors.js';
import { packageVersion } from './package.js';

/**
 * The `outrigger` command: picks the subcommand, parses its flags (args.ts), runs it. Exit status: 0 done,
 * 1 the command failed (invalid configuration, a port in use), 2 usage error (one line and a hint on stderr).
 * `ctl` gets its arguments untouched: it has its own parser (control-plane/src/ctl/main.ts).
 */

function usage(): string {
  const rows: [string, string][] = [...COMMANDS.map((c): [string, string] => [c.name, c.summary]), ['ctl', CTL_SUMMARY], ['help', 'help for a command: outrigger help COMMAND']];
  // The commands that run things first, then the tools, then the demo.
  const order = ['sidecar', 'control-plane', 'ctl', 'validate', 'schema', 'completion', 'version', 'demo', 'demo-instance', 'demo-app', 'help'];
  rows.sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
  const width = Math.max(...rows.map(([n]) => n.length)) + 2;
  return `usage: outrigger <command> [options]

The Outrigger service mesh: a sidecar proxy beside each service instance, and the control plane that feeds them.

commands:
${rows.map(([n, s]) => `  ${n.padEnd(width)}${s}`).join('\n')}

flags:
  -h, --help      this help (after a command: that command's help)
      --version   print the version

Run "outrigger <command> --help" for a command's flags. Documentation: docs/cli.md.
`;
}

function usageError(err: UsageError): never {
  const where = err.command === undefined ? 'outrigger' : `outrigger ${err.command}`;
  process.stderr.write(`${where}: ${err.message}\nrun "${where} --help" for usage\n`);
  process.exit(2);
}

function failure(err: CommandError): never {
  const text = err.message.endsWith('\n') ? err.message : `${err.message}\n`;
  process.stderr.write(`outrigger: ${text}`);
  process.exit(err.exitCode);
}

async function help(topic: string | undefined): Promise<void> {
  if (topic === undefined) {
    process.stdout.write(usage());
    return;
  }
  if (topic === 'ctl') {
    const { runCtl } = await import('../../control-plane/src/ctl/main.js');
    process.exitCode = await runCtl(['help']);
    return;
  }
  const command = commandNamed(topic);
  if (command === undefined) throw new UsageError(`unknown command "${topic}"`, undefined);
  process.stdout.write(helpText(command));
}

export async function main(argv: readonly string[]): Promise<void> {
  const [name, ...args] = argv;
  try {
    switch (name) {
      case 'ctl': {
        const { runCtl } = await import('../../control-plane/src/ctl/main.js');
        process.exitCode = await runCtl(args);
        return;
      }
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(usage());
        return;
      case 'help':
        if (args.length > 1) throw new UsageError(`help takes one command, got ${args.length}`, undefined);
        await help(args[0]);
        return;
      case '--version':
        process.stdout.write(`outrigger ${packageVersion()}\n`);
        return;
    }
    const command = commandNamed(name);
    if (command === undefined) {
      throw new UsageError(name.startsWith('-') ? `unknown flag ${name}` : `unknown command "${name}"`, undefined);
    }
    const parsed = parseCommand(command, args);
    if (parsed === 'help') {
      process.stdout.write(helpText(command));
      return;
    }
    await command.run(parsed);
  } catch (err) {
    if (err instanceof UsageError) usageError(err);
    if (err instanceof CommandError) failure(err);
    throw err;
  }
}
