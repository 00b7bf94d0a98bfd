import { optionsOf, type Args, type OptionSpec } from './args.js';
import { COMMANDS, CTL_COMMANDS, CTL_FILE_FLAGS, CTL_FLAGS, CTL_OUTPUT_CHOICES, CTL_SUMMARY, type Command } from './commands.js';

/**
 * `outrigger completion bash|zsh`: completion scripts generated from the command table, so that they offer
 * exactly the subcommands and flags the parser accepts. Neither needs the bash-completion package.
 */

const flagWords = (c: Command): string[] =>
  Object.entries(optionsOf(c)).flatMap(([name, o]) => (o.short === undefined ? [`--${name}`] : [`--${name}`, `-${o.short}`]));

const TOP_FLAGS = ['--help', '--version'];
const commandNames = (): string[] => [...COMMANDS.map((c) => c.name), 'ctl', 'help'];

/** bash: `compgen` words for the value of a flag, or nothing (a value to type). */
function bashValue(o: OptionSpec): string {
  if (o.file === true) return 'COMPREPLY=($(compgen -f -- "$cur"))';
  if (o.choices !== undefined) return `COMPREPLY=($(compgen -W "${o.choices.join(' ')}" -- "$cur"))`;
  return 'COMPREPLY=()';
}

function bashCommand(c: Command): string {
  const valued = Object.entries(c.options).filter(([, o]) => o.type === 'string');
  const lines: string[] = [`    ${c.name})`];
  if (valued.length > 0) {
    lines.push('      case "$prev" in');
    for (const [name, o] of valued) lines.push(`        --${name}${o.short !== undefined ? `|-${o.short}` : ''}) ${bashValue(o)}; return ;;`);
    lines.push('      esac');
  }
  lines.push(`      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${flagWords(c).join(' ')}" -- "$cur")); return; fi`);
  const p = c.positionals?.[0];
  if (p?.choices !== undefined) lines.push(`      COMPREPLY=($(compgen -W "${p.choices.join(' ')}" -- "$cur"))`);
  else if (p?.file === true) lines.push('      COMPREPLY=($(compgen -f -- "$cur"))');
  lines.push('      ;;');
  return lines.join('\n');
}

export function bashCompletion(): string {
  return `# bash completion for outrigger. Load it with:  source <(outrigger completion bash)
_outrigger() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i
  if (( COMP_CWORD > 0 )); then prev="\${COMP_WORDS[COMP_CWORD-1]}"; fi
  for (( i = 1; i < COMP_CWORD; i++ )); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  if [[ -z "$cmd" ]]; then
    if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${TOP_FLAGS.join(' ')}" -- "$cur"))
    else COMPREPLY=($(compgen -W "${commandNames().join(' ')}" -- "$cur")); fi
    return
  fi
  case "$cmd" in
${COMMANDS.map(bashCommand).join('\n')}
    ctl)
      case "$prev" in --server|--token) COMPREPLY=(); return ;; ${CTL_FILE_FLAGS.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;; --output|-o) COMPREPLY=($(compgen -W "${CTL_OUTPUT_CHOICES.join(' ')}" -- "$cur")); return ;; esac
      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${CTL_FLAGS.join(' ')}" -- "$cur")); return; fi
      local sub="" j
      for (( j = i + 1; j < COMP_CWORD; j++ )); do
        case "\${COMP_WORDS[j]}" in --server|--token|--token-file|--ca-file|--output|-o) (( j++ )) ;; -*) ;; *) sub="\${COMP_WORDS[j]}"; break ;; esac
      done
      if [[ -z "$sub" ]]; then COMPREPLY=($(compgen -W "${CTL_COMMANDS.join(' ')}" -- "$cur"))
      else case "$sub" in policy) COMPREPLY=($(compgen -W "get set" -- "$cur")) ;; weight) COMPREPLY=($(compgen -W "set clear" -- "$cur")) ;; esac; fi
      ;;
    help)
      COMPREPLY=($(compgen -W "${commandNames().join(' ')}" -- "$cur"))
      ;;
  esac
}
complete -o default -F _outrigger outrigger
`;
}

/** Text safe inside a single-quoted zsh word and the `[...]` of a spec or the description of a `name:description`. */
const zq = (text: string): string => text.replace(/'/g, '').replace(/\[/g, '(').replace(/\]/g, ')');
/** The same for the message of a `:message:action` spec, where a colon ends the message. */
const zmsg = (text: string): string => zq(text).replace(/:/g, '\\:');

function zshOption(name: string, o: OptionSpec): string {
  const names = o.short === undefined ? `--${name}` : `(-${o.short} --${name})'{-${o.short},--${name}}'`;
  const action = o.type === 'boolean' ? '' : o.file === true ? `:${(o.value ?? 'file').toLowerCase()}:_files` : o.choices !== undefined ? `:${(o.value ?? 'value').toLowerCase()}:(${o.choices.join(' ')})` : `:${zmsg(o.value ?? 'value')}: `;
  return `'${names}[${zq(o.help)}]${action}'`;
}

function zshCommand(c: Command): string {
  const specs = Object.entries(optionsOf(c)).map(([name, o]) => zshOption(name, o));
  const p = c.positionals?.[0];
  if (p !== undefined) specs.push(`'1:${p.name.toLowerCase()}:${p.choices !== undefined ? `(${p.choices.join(' ')})` : p.file === true ? '_files' : ' '}'`);
  return `    ${c.name}) _arguments -s \\\n        ${specs.join(' \\\n        ')} ;;`;
}

export function zshCompletion(): string {
  const described = [...COMMANDS.map((c) => `'${c.name}:${zq(c.summary)}'`), `'ctl:${zq(CTL_SUMMARY)}'`, "'help:help for a command'"];
  return `#compdef outrigger
# zsh completion for outrigger. Load it with:  source <(outrigger completion zsh)   (after compinit)
# or save it as _outrigger in a directory of $fpath.
_outrigger() {
  local -a commands
  commands=(
    ${described.join('\n    ')}
  )
  if (( CURRENT == 2 )); then
    if [[ $words[CURRENT] == -* ]]; then compadd -- ${TOP_FLAGS.join(' ')}; else _describe -t commands 'outrigger command' commands; fi
    return
  fi
  local cmd=$words[2]
  shift words
  (( CURRENT-- ))
  case $cmd in
${COMMANDS.map(zshCommand).join('\n')}
    ctl) _arguments -s \\
        '--server[the control plane HTTP address]:host\\:port: ' \\
        '--token[the bearer token]:token: ' \\
        '--token-file[read the token from a file]:file:_files' \\
        '--ca-file[the CA that signed the control plane certificate]:file:_files' \\
        '(-o --output)'{-o,--output}'[output format]:format:(${CTL_OUTPUT_CHOICES.join(' ')})' \\
        '--json[print the JSON answer]' \\
        '1:ctl command:(${CTL_COMMANDS.join(' ')})' \\
        '*::argument:_files' ;;
    help) _describe -t commands 'outrigger command' commands ;;
  esac
}
if [[ $zsh_eval_context[-1] == loadautoload ]]; then
  _outrigger "$@"
else
  compdef _outrigger outrigger
fi
`;
}

export async function runCompletion(args: Args): Promise<void> {
  process.stdout.write(args.positionals[0] === 'zsh' ? zshCompletion() : bashCompletion());
}
