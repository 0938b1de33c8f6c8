/**
 * Test support: small shell scripts in a temporary folder, for the commands a pool runs (reclaim),
 * and a check that a process the script started is really gone.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class ScriptDir {
  readonly dir: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'cinode-scripts-'));
  }

  /** A path inside the folder, for files the scripts write or read. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /** Writes `body` as a /bin/sh script (`set -u`), executable; returns its path. */
  script(name: string, body: string): string {
    const file = this.path(name);
    writeFileSync(file, `#!/bin/sh\nset -u\n${body.trim()}\n`);
    chmodSync(file, 0o755);
    return file;
  }

  /** The file's lines (empty ones dropped); none when it does not exist yet. */
  lines(name: string): string[] {
    const file = this.path(name);
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line !== '');
  }

  /** The number a script wrote into `name`, once it is there. */
  pid(name: string): number | undefined {
    const [first] = this.lines(name);
    const pid = Number(first);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  }

  touch(name: string): void {
    writeFileSync(this.path(name), '');
  }

  unlink(name: string): void {
    rmSync(this.path(name), { force: true });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Whether the process runs. `process.kill(pid, 0)` also succeeds for a zombie that its parent has
 * not reaped yet (an orphan waits for PID 1, which in a container may never reap it), so a
 * zombie counts as gone.
 */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
