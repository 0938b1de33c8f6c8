/**
 * Test support: one small isolation hook script for every hook, written into a temporary folder.
 * Each run appends a line to `log` (the hook and its whole CINODE_* environment), and the test
 * steers it with files beside it: `fail-HOOK` or `fail-HOOK-HOSTNAME` makes it fail (two lines
 * on stderr, exit 3), `block-HOOK` makes it wait (after logging `started`) until the file is gone,
 * `sleep-HOOK` makes it sleep that many seconds. session-setup prints a line of noise, then its
 * session data as the last line of stdout (or the content of `setup-stdout` when that exists).
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type HookKind = 'setup' | 'teardown' | 'attach' | 'detach';

const SCRIPT = `#!/bin/sh
hook="$1"
dir="$(dirname "$0")"
printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' "$hook" "$CINODE_PROJECT" "$CINODE_SSID" "\${CINODE_ALIAS-UNSET}" "\${CINODE_HOSTNAME-UNSET}" "\${CINODE_IP-UNSET}" "\${CINODE_POOL-UNSET}" "\${CINODE_SESSION_DATA-UNSET}" "started" >> "$dir/log"
if [ -e "$dir/block-$hook" ]; then
  while [ -e "$dir/block-$hook" ]; do sleep 0.05; done
fi
if [ -e "$dir/sleep-$hook" ]; then sleep "$(cat "$dir/sleep-$hook")"; fi
if [ -e "$dir/fail-$hook" ] || [ -e "$dir/fail-$hook-\${CINODE_HOSTNAME:-none}" ]; then
  echo "something went wrong first" >&2
  echo "$hook broke on cue" >&2
  exit 3
fi
if [ "$hook" = setup ]; then
  if [ -e "$dir/setup-stdout" ]; then cat "$dir/setup-stdout"; else echo "noise before the data"; printf '{"vlan": 42, "ssid": "%s"}\\n' "$CINODE_SSID"; fi
fi
printf '%s|%s|%s|%s\\n' "$hook" "$CINODE_SSID" "\${CINODE_HOSTNAME-UNSET}" "finished" >> "$dir/log"
exit 0
`;

export interface HookRun {
  hook: HookKind;
  project: string;
  ssid: string;
  alias: string;
  hostname: string;
  ip: string;
  pool: string;
  data: string;
}

export class TestHooks {
  readonly dir: string;
  readonly script: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'cinode-hooks-'));
    this.script = join(this.dir, 'hook.sh');
    writeFileSync(this.script, SCRIPT);
    chmodSync(this.script, 0o755);
  }

  /** The `isolation:` block that runs this script for every hook (`only`: just those hooks). */
  yaml(timeout = '20s', only: readonly HookKind[] = ['setup', 'teardown', 'attach', 'detach']): string[] {
    const names: Record<HookKind, string> = { setup: 'session-setup', teardown: 'session-teardown', attach: 'node-attach', detach: 'node-detach' };
    return ['isolation:', ...only.map((h) => `  ${names[h]}: [${JSON.stringify(this.script)}, ${h}]`), `  timeout: ${timeout}`];
  }

  /** The runs that started, in order. */
  runs(): HookRun[] {
    if (!existsSync(join(this.dir, 'log'))) return [];
    return readFileSync(join(this.dir, 'log'), 'utf8')
      .split('\n')
      .filter((line) => line.endsWith('|started'))
      .map((line) => {
        const [hook, project, ssid, alias, hostname, ip, pool, data] = line.split('|');
        return { hook: hook as HookKind, project: project!, ssid: ssid!, alias: alias!, hostname: hostname!, ip: ip!, pool: pool!, data: data! };
      });
  }

  /** Runs that finished with exit 0, as `hook ssid hostname`. */
  finished(): string[] {
    if (!existsSync(join(this.dir, 'log'))) return [];
    return readFileSync(join(this.dir, 'log'), 'utf8')
      .split('\n')
      .filter((line) => line.endsWith('|finished'))
      .map((line) => line.split('|').slice(0, 3).join(' '));
  }

  /** `hook hostname` of every run that started, in order (for order checks). */
  order(): string[] {
    return this.runs().map((r) => (r.hostname === 'UNSET' ? r.hook : `${r.hook} ${r.hostname}`));
  }

  cue(name: string, content = ''): void {
    writeFileSync(join(this.dir, name), content);
  }

  uncue(name: string): void {
    rmSync(join(this.dir, name), { force: true });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
