/**
 * Contextualization: while a project holds a node, the project's SSH public keys may log in to
 * it. cinode logs in to the node with the operator's key (OpenSSH's `ssh`, no local shell) and
 * keeps the project's keys in one marked block of the login user's authorized_keys, so that at
 * release it can take away exactly those keys and nothing else. The lines around the block, the
 * operator's own key among them, are never changed: losing that key would lock cinode out.
 */
import { runCommand, type CommandResult } from './command.js';

export interface SshSettings {
  /** The login user, e.g. root. */
  user: string;
  /** The private key cinode logs in with. */
  privateKey: string;
  /** The default port; a node may override it. */
  port: number;
  /** The authorized_keys file, relative to the login user's home, e.g. .ssh/authorized_keys. */
  authorizedKeys: string;
  /** 'ignore': no host key check; else a known_hosts file checked strictly. */
  knownHosts: 'ignore' | string;
  /** Bounds each whole remote command (connect and run). */
  timeoutMs: number;
}

export interface SshTarget {
  hostname: string;
  ip: string | null;
  sshPort: number | null;
}

export const BEGIN_MARKER = '# BEGIN cinode: keys of the project holding this node';
export const END_MARKER = '# END cinode';

/** `text` as one word for sh, whatever it holds. */
function shQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The `ssh` argv that runs `sh -s` on the target, the script coming on stdin. */
export function sshArgv(settings: SshSettings, target: SshTarget): string[] {
  const hostKeys =
    settings.knownHosts === 'ignore'
      ? ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null']
      : ['-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${settings.knownHosts}`];
  // Half the budget for connecting: a host that does not answer is then reported as such by ssh,
  // rather than as a bare timeout.
  const connectTimeout = Math.max(1, Math.floor(settings.timeoutMs / 2000));
  return [
    'ssh',
    // No ~/.ssh/config and no system-wide known hosts: only what the settings say counts.
    '-F', '/dev/null',
    '-i', settings.privateKey,
    '-p', String(target.sshPort ?? settings.port),
    '-l', settings.user,
    '-T',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', `ConnectTimeout=${connectTimeout}`,
    '-o', 'LogLevel=ERROR',
    '-o', 'GlobalKnownHostsFile=/dev/null',
    ...hostKeys,
    // `--`: a host name can never be taken for an option.
    '--',
    target.ip ?? target.hostname,
    'sh -s',
  ];
}

/**
 * The remote script: `body` with the file and markers defined, and `outside`, which prints the
 * file without cinode's block(s), byte for byte (a missing final newline stays missing). The
 * whole script is one brace group, so sh has read all of it before anything runs and no command
 * can eat the rest of the script from stdin.
 */
function remoteScript(settings: SshSettings, body: string[]): string {
  const file = settings.authorizedKeys.startsWith('/') ? settings.authorizedKeys : `./${settings.authorizedKeys}`;
  return [
    '{',
    'set -eu',
    'exec </dev/null',
    'umask 077',
    'cd',
    `f=${shQuote(file)}`,
    `begin=${shQuote(BEGIN_MARKER)}`,
    `end=${shQuote(END_MARKER)}`,
    // The new file is written next to the old one and moved over it: the file is never half written.
    'tmp="$f.cinode-tmp.$$"',
    `trap 'rm -f "$tmp"' EXIT`,
    'outside() {',
    '  if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then nl=0; else nl=1; fi',
    `  awk -v b="$begin" -v e="$end" -v nl="$nl" '`,
    '    $0 == b { if (inside) bad = 1; inside = 1; next }',
    '    inside && $0 == e { inside = 0; next }',
    '    inside { next }',
    '    { printf "%s%s", (n++ ? "\\n" : ""), $0 }',
    '    END { if (inside || bad) exit 3; if (n && nl) printf "\\n" }',
    `  ' "$f" || { echo "$f: a cinode block without its end marker; fix it by hand" >&2; exit 1; }`,
    '}',
    ...body,
    'exit 0',
    '}',
    '',
  ].join('\n');
}

function refused(reason: string): CommandResult {
  return { ok: false, reason, stdout: '', stderr: '' };
}

/** Adds `keys` in cinode's marked block (replacing any earlier block), creating dirs/file (umask 077) as needed. */
export function installKeys(settings: SshSettings, target: SshTarget, keys: readonly string[], running?: Set<() => void>): Promise<CommandResult> {
  // A line break would let a key end the block early or add lines cinode does not own.
  const bad = keys.findIndex((key) => /[\r\n\0]/.test(key) || key.trim() === '' || key.trimStart().startsWith('#'));
  if (bad >= 0) return Promise.resolve(refused(`contextualize: key ${bad + 1} is not a single-line public key`));
  const script = remoteScript(settings, [
    'mkdir -p "$(dirname "$f")"',
    // Copied first so that the new file keeps the old one's mode and owner.
    'if [ -e "$f" ]; then cp -p "$f" "$tmp"; fi',
    '{',
    '  printf "%s\\n" "$begin"',
    ...(keys.length > 0 ? [`  printf "%s\\n" ${keys.map(shQuote).join(' ')}`] : []),
    '  printf "%s\\n" "$end"',
    '  if [ -e "$f" ]; then outside; fi',
    '} >"$tmp"',
    'mv -f "$tmp" "$f"',
  ]);
  return runCommand({ label: 'contextualize', argv: sshArgv(settings, target), env: {}, timeoutMs: settings.timeoutMs, stdin: script }, running);
}

/** Removes cinode's block; ok when there was none (or no file). Fails if the block is still there afterwards. */
export function removeKeys(settings: SshSettings, target: SshTarget, running?: Set<() => void>): Promise<CommandResult> {
  const script = remoteScript(settings, [
    '[ -e "$f" ] || exit 0',
    // grep: 0 found, 1 not found, more an error (already on stderr).
    'found=0; grep -qxF -e "$begin" "$f" || found=$?',
    '[ "$found" -eq 1 ] && exit 0',
    '[ "$found" -eq 0 ] || exit "$found"',
    'cp -p "$f" "$tmp"',
    'outside >"$tmp"',
    'mv -f "$tmp" "$f"',
    'if grep -qxF -e "$begin" "$f"; then echo "$f: the cinode block is still there after removing it" >&2; exit 1; fi',
  ]);
  return runCommand({ label: 'decontextualize', argv: sshArgv(settings, target), env: {}, timeoutMs: settings.timeoutMs, stdin: script }, running);
}

/** Contextualization over SSH: the shape of core's Contextualizer, which the composition root wires in. */
export interface SshContextualizer {
  install(target: SshTarget, keys: readonly string[]): Promise<CommandResult>;
  remove(target: SshTarget): Promise<CommandResult>;
  timeoutMs: number;
}

/**
 * Each ssh run keeps its kill function in `running` while it runs: the server kills what is still
 * in flight when it shuts down.
 */
export function sshContextualizer(settings: SshSettings, running: Set<() => void>): SshContextualizer {
  return {
    install: (node, keys) => installKeys(settings, node, keys, running),
    remove: (node) => removeKeys(settings, node, running),
    timeoutMs: settings.timeoutMs,
  };
}
