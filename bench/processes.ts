/**
 * The servers under test as child processes: cinode (`node lib/cli/main.js serve`) and the no-op
 * server, each on 127.0.0.1 with an ephemeral port, its JSON log (stdout) going to a file. Also the
 * configuration the benchmark gives cinode, and the peak memory of a process from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as lib/bench/bench/processes.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI_PATH = join(REPO_ROOT, 'lib', 'cli', 'main.js');
export const NOOP_PATH = join(REPO_ROOT, 'lib', 'bench', 'bench', 'noop-server.js');

const START_TIMEOUT_MS = 180_000;

export interface Project {
  name: string;
  key: string;
  /** Extra policy settings, as YAML scalars. */
  settings?: Record<string, string>;
}

export const BENCH_PROJECT: Project = { name: 'bench', key: 'bench-key-0123456789abcdef' };
/**
 * Projects whose sessions live one second: the reaper scenario creates its sessions through
 * several, as many CI projects would (one project's calls are serialized by its quota lock).
 */
export const REAP_PROJECTS: Project[] = Array.from({ length: 8 }, (_, i) => ({
  name: `reap${i + 1}`,
  key: `reap${i + 1}-key-0123456789abcdef`,
  settings: { 'session-lifetime': '1s' },
}));

export interface ConfigOptions {
  database: string;
  reaperInterval: string;
  /** One pool, `nodes` nodes, no reclaim command: a released node is ready again at once. */
  nodes: number;
  projects: Project[];
}

/** cinode.yaml for the benchmark: limits out of the way (quota, rate limit, count), one big pool. */
export function configYaml(options: ConfigOptions): string {
  const lines = [
    'listen: 127.0.0.1:0',
    `database: ${JSON.stringify(options.database)}`,
    `reaper-interval: ${options.reaperInterval}`,
    'public-inventory: true',
    'defaults:',
    '  ver: "7"',
    '  arch: x86_64',
    '  session-lifetime: 6h',
    '  node-quota: 1000000',
    '  max-failed-nodes: 5',
    '  rate-limit: 999999/1s',
    '  max-count: 10000',
    'projects:',
  ];
  for (const p of options.projects) {
    lines.push(`  - name: ${p.name}`, `    key: ${JSON.stringify(p.key)}`);
    for (const [k, v] of Object.entries(p.settings ?? {})) lines.push(`    ${k}: ${v}`);
  }
  lines.push('pools:', '  - name: bench', '    ver: "7"', '    arch: x86_64', '    flavor: null', '    nodes:');
  for (let i = 0; i < options.nodes; i++) {
    lines.push(`      - {hostname: n${String(i + 1).padStart(6, '0')}.bench.example, ip: 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ServerProcess {
  readonly port: number;
  readonly pid: number;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    port: number,
    /** From spawn to the "listening" line on stderr. */
    readonly startupMs: number,
    /** When the "listening" line arrived (performance.now()). */
    readonly listeningAt: number,
    readonly exited: Promise<Exit>,
    private readonly stderrText: () => string,
  ) {
    this.port = port;
    this.pid = child.pid!;
  }

  /**
   * Starts `argv` (after `node`) and waits for `<name> listening on http://host:port` on stderr.
   * stdout (the JSON log) goes to `logFile`.
   */
  static async start(name: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Promise<ServerProcess> {
    const out = openSync(logFile, 'a');
    const started = performance.now();
    const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, env, stdio: ['ignore', out, 'pipe'] });
    closeSync(out);
    let stderr = '';
    const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const port = await new Promise<{ port: number; at: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms: ${stderr.slice(-2000)}`)), START_TIMEOUT_MS);
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        const at = performance.now();
        stderr += chunk;
        const match = / listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
        if (match) {
          clearTimeout(timer);
          resolve({ port: Number(match[1]), at });
        }
      });
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${exit.code}, signal ${exit.signal}) before listening: ${stderr.slice(-2000).trim()}`));
      });
    });
    return new ServerProcess(name, child, port.port, port.at - started, port.at, exited, () => stderr);
  }

  /** The arguments (after `node`) that start cinode on `configPath`, on a port of its choice. */
  static cinodeArgv(configPath: string): string[] {
    return [CLI_PATH, 'serve', '--config', configPath, '--listen', '127.0.0.1:0'];
  }

  static cinode(configPath: string, logFile: string): Promise<ServerProcess> {
    return ServerProcess.start('cinode', ServerProcess.cinodeArgv(configPath), logFile);
  }

  static noop(logFile: string): Promise<ServerProcess> {
    return ServerProcess.start('noop', [NOOP_PATH, '--listen', '127.0.0.1:0'], logFile);
  }

  stderr(): string {
    return this.stderrText();
  }

  /** Peak resident memory (VmHWM) in MiB since start or since the last `resetPeak()`. */
  peakMiB(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    return kb / 1024;
  }

  /** Current resident memory (VmRSS) in MiB. */
  rssMiB(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]) / 1024;
  }

  /** CPU time (user + system, ms) the process has used, from /proc/PID/stat (in ticks of 10 ms). */
  cpuMs(): number {
    const fields = readFileSync(`/proc/${this.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  }

  /** Resets VmHWM to the current RSS (`echo 5 > /proc/PID/clear_refs`); false where not allowed. */
  resetPeak(): boolean {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  async stop(): Promise<Exit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
