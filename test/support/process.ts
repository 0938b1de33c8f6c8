/**
 * Test support: the compiled server (lib/cli/main.js) as a separate process on 127.0.0.1, for
 * tests that kill it (SIGKILL mid-work) and start it again on the same database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testDatabaseUrl } from './database.js';
import { configYaml, type ConfigSpec } from './server.js';

/** The repository root (this file is test/support/process.ts). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_PATH = join(REPO_ROOT, 'lib', 'cli', 'main.js');

/** A deadline, not a speed: a `cinode serve` on a loaded machine took 15 s to say it listens. */
const START_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 3;

/** Fails (for a jest `beforeAll`) when the compiled server is missing. */
export function requireBuiltLib(): void {
  if (!existsSync(CLI_PATH)) {
    throw new Error(`${CLI_PATH} is missing: run \`npm run build:lib\` first (\`npm test\` builds lib/ before running jest)`);
  }
}

/** A port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly url: string;
  readonly dir: string;
  readonly configPath: string;
  /** The `database:` URL the configuration names (see testDatabaseUrl). */
  readonly databaseUrl: string;
  readonly child: ChildProcess;
  /** Complete stdout lines so far: the server's JSON logs. */
  readonly stdoutLines: string[];
  /** Everything written to stderr so far. */
  stderr(): string;
  /** The parsed JSON log lines (lines that are not JSON are left out). */
  logs(): Array<Record<string, unknown>>;
  readonly exited: Promise<Exit>;
  /** Sends `signal` (SIGTERM by default) and waits for the process to end. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

export interface ProcessOptions {
  /** The folder of the configuration and the database; a new temporary one by default. Reuse it to restart on the same database. */
  dir?: string;
  spec?: ConfigSpec;
  env?: Record<string, string>;
  /** The port to listen on (a restart of the same replica); a free one by default. */
  port?: number;
}

class StartFailed extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

async function launch(dir: string, configPath: string, port: number, env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI_PATH, 'serve', '--config', configPath, '--listen', `127.0.0.1:${port}`], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdoutLines: string[] = [];
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    stdoutLines.push(...parts.filter((line) => line !== ''));
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new StartFailed(`cinode did not print "listening on" within ${START_TIMEOUT_MS} ms; stderr:\n${stderr}`, false));
    }, START_TIMEOUT_MS);
    const onData = () => {
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match) {
        clearTimeout(timer);
        child.stderr!.off('data', onData);
        resolve(match[1]!);
      }
    };
    child.stderr!.on('data', onData);
    void exited.then((exit) => {
      clearTimeout(timer);
      reject(
        new StartFailed(
          `cinode exited (code ${exit.code}, signal ${exit.signal}) before listening; stderr:\n${stderr}`,
          /EADDRINUSE/.test(stderr),
        ),
      );
    });
    void spawnError.then((error) => {
      clearTimeout(timer);
      reject(new StartFailed(`could not start ${process.execPath}: ${error.message}`, false));
    });
  });

  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return {
    url,
    dir,
    configPath,
    databaseUrl: testDatabaseUrl(dir),
    child,
    stdoutLines,
    stderr: () => stderr,
    logs: () =>
      stdoutLines.flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    exited,
    kill,
  };
}

/**
 * Writes the configuration (configYaml, with the database of `dir`: see testDatabaseUrl) and starts
 * `node lib/cli/main.js serve` on a free 127.0.0.1 port; resolves once it is listening.
 */
export async function startServerProcess(options: ProcessOptions = {}): Promise<ServerProcess> {
  requireBuiltLib();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'cinode-proc-'));
  const configPath = join(dir, 'cinode.yaml');
  writeFileSync(configPath, configYaml(dir, options.spec ?? {}));
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await launch(dir, configPath, port, options.env ?? {});
    } catch (error) {
      // Another process may take the port between the probe and the server's listen: try another.
      if (error instanceof StartFailed && error.addressInUse && attempt < START_ATTEMPTS && options.port === undefined) continue;
      throw error;
    }
  }
}

/** What one run of the `cinode` command printed, and how it ended. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node lib/cli/main.js ...args` as a separate process with `env` over this process's
 * environment (a variable set to undefined is removed). The backend may run in this process.
 */
export function runCli(args: readonly string[], env: Record<string, string | undefined>): Promise<CliRun> {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], { cwd: REPO_ROOT, env: merged as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
