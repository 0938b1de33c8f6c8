/**
 * `cinode completion bash|zsh`: a shell completion script made from the program's own command
 * tree, so it never falls behind the commands. zsh loads the same function through its bash
 * compatibility layer (bashcompinit), which every zsh ships.
 */
import { Argument, type Command } from 'commander';
import type { CliDeps } from './client-commands.js';

const SHELLS = ['bash', 'zsh'] as const;

interface Level {
  /** The subcommand names on the way here, space separated ('' for the program). */
  path: string;
  children: string[];
  options: string[];
}

function levels(command: Command, path = ''): Level[] {
  const visible = command.commands.filter((c) => c.name() !== 'help');
  const options = [...command.options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined)), '--help'];
  // An argument with fixed choices (completion's shell) completes like a subcommand.
  const choices = command.registeredArguments.flatMap((a) => a.argChoices ?? []);
  const here: Level = { path, children: [...visible.map((c) => c.name()), ...choices], options };
  return [here, ...visible.flatMap((c) => levels(c, path === '' ? c.name() : `${path} ${c.name()}`))];
}

/** A bash `case` arm per level: "path") echo "words";; */
function caseArms(all: Level[], words: (level: Level) => string[]): string {
  return all.map((level) => `    "${level.path}") echo "${words(level).join(' ')}" ;;`).join('\n');
}

export function bashCompletion(program: Command): string {
  const all = levels(program);
  // The global options are accepted after any subcommand too.
  const globals = all[0]!.options;
  const name = program.name();
  return `# ${name} completion for bash: eval "$(${name} completion bash)", e.g. in ~/.bashrc
_${name}_children() {
  case "$1" in
${caseArms(all, (level) => level.children)}
  esac
}
_${name}_options() {
  case "$1" in
${caseArms(all, (level) => [...new Set([...level.options, ...globals])])}
  esac
}
_${name}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word i
  # Only words that name a subcommand of the level reached so far move down the tree: option
  # values, ssids and hostnames do not.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case " $(_${name}_children "$path") " in
      *" $word "*) path="\${path:+$path }$word" ;;
    esac
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_${name}_options "$path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_${name}_children "$path")" -- "$cur"))
  fi
}
complete -o default -F _${name} ${name}
`;
}

export function zshCompletion(program: Command): string {
  return `#compdef ${program.name()}
# ${program.name()} completion for zsh: eval "$(${program.name()} completion zsh)", e.g. in ~/.zshrc
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program).split('\n').slice(1).join('\n')}`;
}

export function addCompletionCommand(program: Command, deps: CliDeps): void {
  program
    .command('completion')
    .description('print a shell completion script: eval "$(cinode completion bash)" in ~/.bashrc (zsh: ~/.zshrc)')
    .addArgument(new Argument('<shell>', 'the shell').choices(SHELLS))
    .action((shell: (typeof SHELLS)[number]) => {
      deps.stdout(shell === 'bash' ? bashCompletion(program) : zshCompletion(program));
    });
}
