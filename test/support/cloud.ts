/**
 * Test support: a fake cloud made of real shell scripts, for command pools. The provision script
 * records each run (start and end in milliseconds, and the CINODE_* variables it got), sleeps a
 * while so that runs can overlap, and prints one JSON line per node with a hostname never used
 * before. The deprovision script records the node JSON it reads on stdin. Switch files make
 * either fail, or make provision print extra lines.
 */
import { writeFileSync } from 'node:fs';
import type { ScriptDir } from './scripts.js';

/** One provision run, as the script recorded it. */
export interface ProvisionRun {
  id: string;
  startMs: number;
  /** Infinity while it runs (or when it was killed). */
  endMs: number;
  count: number;
  pool: string;
  ver: string;
  arch: string;
  flavor: string;
  /** Whether the failure switch was on: the run printed nothing and exited 1. */
  failed: boolean;
}

/** The node as a provision run printed it, and as deprovision must get it back. */
export interface CloudNode {
  hostname: string;
  ip: string;
  data: { id: string };
}

export interface Deprovision {
  atMs: number;
  node: CloudNode;
  /** Whether the failure switch was on: the machine was not destroyed. */
  failed: boolean;
}

export class FakeCloud {
  readonly provision: string[];
  readonly deprovision: string[];

  constructor(
    private readonly scripts: ScriptDir,
    provisionSeconds = 0.3,
  ) {
    const file = (name: string) => JSON.stringify(scripts.path(name));
    this.setProvisionSeconds(provisionSeconds);
    const provision = scripts.script(
      'provision.sh',
      `
run="$(date +%s%N)-$$"
printf 'start\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n' "$(date +%s%3N)" "$run" "$CINODE_COUNT" "$CINODE_POOL" "$CINODE_VER" "$CINODE_ARCH" "$CINODE_FLAVOR" >> ${file('runs.log')}
if [ -e ${file('provision.fail')} ]; then
  cat ${file('provision.fail')} >&2
  printf 'failed\\t%s\\t%s\\n' "$(date +%s%3N)" "$run" >> ${file('runs.log')}
  exit 1
fi
sleep "$(cat ${file('provision.seconds')})"
if [ -e ${file('provision.extra')} ]; then cat ${file('provision.extra')}; fi
i=0
while [ "$i" -lt "$CINODE_COUNT" ]; do
  i=$((i + 1))
  printf '{"hostname": "vm-%s-%s.cloud.test", "ip": "198.51.100.%s", "data": {"id": "%s-%s"}}\\n' "$run" "$i" "$((($$ + i) % 250 + 1))" "$run" "$i"
done
printf 'end\\t%s\\t%s\\n' "$(date +%s%3N)" "$run" >> ${file('runs.log')}
`,
    );
    const deprovision = scripts.script(
      'deprovision.sh',
      `
node="$(cat)"
if [ -e ${file('deprovision.fail')} ]; then
  printf 'failed\\t%s\\t%s\\n' "$(date +%s%3N)" "$node" >> ${file('deprovisions.log')}
  cat ${file('deprovision.fail')} >&2
  exit 1
fi
printf 'done\\t%s\\t%s\\n' "$(date +%s%3N)" "$node" >> ${file('deprovisions.log')}
`,
    );
    this.provision = [provision];
    this.deprovision = [deprovision];
  }

  setProvisionSeconds(seconds: number): void {
    writeFileSync(this.scripts.path('provision.seconds'), `${seconds}\n`);
  }

  /** Makes provision exit 1 with `stderr`, or (null) work again. */
  failProvision(stderr: string | null): void {
    this.toggle('provision.fail', stderr);
  }

  /** Makes deprovision exit 1 with `stderr`, or (null) work again. */
  failDeprovision(stderr: string | null): void {
    this.toggle('deprovision.fail', stderr);
  }

  /** Lines provision prints before its nodes, or (null) none. */
  printExtra(lines: string[] | null): void {
    this.toggle('provision.extra', lines && `${lines.join('\n')}\n`);
  }

  runs(): ProvisionRun[] {
    const runs = new Map<string, ProvisionRun>();
    for (const line of this.scripts.lines('runs.log')) {
      const [kind, at, id, count, pool, ver, arch, flavor] = line.split('\t');
      if (kind === 'start') {
        runs.set(id!, { id: id!, startMs: Number(at), endMs: Infinity, count: Number(count), pool: pool!, ver: ver!, arch: arch!, flavor: flavor ?? '', failed: false });
      } else {
        const run = runs.get(id!)!;
        run.endMs = Number(at);
        run.failed = kind === 'failed';
      }
    }
    return [...runs.values()];
  }

  deprovisions(): Deprovision[] {
    return this.scripts.lines('deprovisions.log').map((line) => {
      const [kind, at, json] = line.split('\t');
      return { atMs: Number(at), node: JSON.parse(json!) as CloudNode, failed: kind === 'failed' };
    });
  }

  /** Hostnames of the machines deprovision destroyed. */
  destroyed(): string[] {
    return this.deprovisions()
      .filter((d) => !d.failed)
      .map((d) => d.node.hostname);
  }

  /** The most nodes being provisioned at one time: the counts of overlapping runs added up. */
  maxInFlight(): number {
    return peak(this.runs().flatMap((r) => [{ at: r.startMs, delta: r.count }, { at: r.endMs, delta: -r.count }]));
  }

  /**
   * The most machines that existed at one time, counting each from the start of the run that made
   * it (the server counts nodes being provisioned against max-nodes) until it was destroyed.
   */
  maxAlive(): number {
    const made = this.runs().flatMap((r) => (r.failed ? [] : [{ at: r.startMs, delta: r.count }]));
    const gone = this.deprovisions().flatMap((d) => (d.failed ? [] : [{ at: d.atMs, delta: -1 }]));
    return peak([...made, ...gone]);
  }

  private toggle(name: string, content: string | null): void {
    if (content === null) this.scripts.unlink(name);
    else writeFileSync(this.scripts.path(name), content);
  }
}

/** The highest running total of `delta`s in time order, ends before starts at the same time. */
function peak(changes: Array<{ at: number; delta: number }>): number {
  changes.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let most = 0;
  for (const change of changes) {
    now += change.delta;
    most = Math.max(most, now);
  }
  return most;
}
