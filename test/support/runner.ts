/**
 * Test support: the GitHub runner's side of a JavaScript action, enough to run the committed
 * dist/{pre,main,post}/index.js as separate `node` processes the way a job does:
 * - inputs as `INPUT_<NAME>` (upper-cased, spaces to `_`, dashes kept), with action.yml's defaults;
 * - fresh `GITHUB_OUTPUT`, `GITHUB_STATE`, `GITHUB_ENV` and `GITHUB_STEP_SUMMARY` files per step,
 *   read back after it (the `name<<delimiter` format of @actions/core, and `name=value`);
 * - what a step writes to `GITHUB_ENV` is in the environment of every later step of the job;
 * - what a use's pre and main write to `GITHUB_STATE` is `STATE_<name>` for that use's later
 *   stages only;
 * - workflow commands on stdout (`::warning ...::`, `::error::`) collected as annotations.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type Stage = 'pre' | 'main' | 'post';

export function distEntry(stage: Stage): string {
  return join(REPO_ROOT, 'dist', stage, 'index.js');
}

/** Reads a file command file: `name<<DELIM\nvalue\nDELIM` blocks and `name=value` lines. */
export function parseFileCommands(text: string): Array<[string, string]> {
  const lines = text.split('\n');
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc) {
      const [, name, delimiter] = heredoc;
      const value: string[] = [];
      i++;
      while (i < lines.length && lines[i] !== delimiter) value.push(lines[i++]!);
      if (i >= lines.length) throw new Error(`file command ${name}: no closing delimiter ${delimiter}`);
      pairs.push([name!, value.join('\n')]);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`file command line not understood: ${JSON.stringify(line)}`);
    pairs.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return pairs;
}

export interface Annotation {
  level: 'warning' | 'error' | 'notice';
  properties: Record<string, string>;
  message: string;
}

/** `::warning title=T::message` and the like, with the runner's escapes undone. */
export function parseAnnotations(stdout: string): Annotation[] {
  const unescape = (s: string) => s.replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%3A/g, ':').replace(/%2C/g, ',').replace(/%25/g, '%');
  const annotations: Annotation[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^::(warning|error|notice)( [^:]*)?::(.*)$/.exec(line.replace(/\r$/, ''));
    if (!match) continue;
    const properties: Record<string, string> = {};
    for (const part of (match[2] ?? '').trim().split(',').filter(Boolean)) {
      const eq = part.indexOf('=');
      properties[part.slice(0, eq)] = unescape(part.slice(eq + 1));
    }
    annotations.push({ level: match[1] as Annotation['level'], properties, message: unescape(match[3]!) });
  }
  return annotations;
}

export interface StepResult {
  use: string;
  stage: Stage;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  outputs: Record<string, string>;
  state: Record<string, string>;
  env: Record<string, string>;
  summary: string;
  annotations: Annotation[];
  /** The values masked with `::add-mask::`. */
  masked: string[];
}

export interface RunningStep {
  child: ChildProcess;
  /** Resolves once stdout has matched (for sending a signal at the right moment). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  done: Promise<StepResult>;
}

/** The github context a job's default alias expression reads. */
export interface JobContext {
  repository: string;
  runId: string;
  runAttempt: string;
  job: string;
  /** strategy.job-index: 0 outside a matrix. */
  jobIndex: number;
}

/** action.yml's defaults, with `alias`'s expression evaluated as the runner would. */
export function actionDefaults(context: JobContext): Record<string, string> {
  return {
    alias: `${context.repository}/${context.runId}/${context.runAttempt}/${context.job}/${context.jobIndex}`,
    count: '1',
    teardown: 'true',
    timeout: '5m',
    'key-in-query': 'false',
    heartbeat: '5m',
  };
}

/** One `uses:` of the action in a job: its inputs and the state its stages have saved. */
export class ActionUse {
  readonly state: Record<string, string> = {};
  constructor(
    readonly name: string,
    readonly inputs: Record<string, string>,
  ) {}
}

/** A job on one runner: the environment its steps share, and the uses of the action. */
export class Job {
  readonly dir: string;
  /** What steps have written to GITHUB_ENV so far. */
  readonly env: Record<string, string> = {};
  readonly steps: StepResult[] = [];
  private seq = 0;

  constructor(
    readonly node: string,
    readonly context: JobContext,
    readonly baseInputs: Record<string, string>,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'cinode-job-'));
  }

  use(name: string, inputs: Record<string, string> = {}): ActionUse {
    return new ActionUse(name, { ...actionDefaults(this.context), ...this.baseInputs, ...inputs });
  }

  /** Starts one stage of one use as its own process. */
  start(use: ActionUse, stage: Stage, timeoutMs = 60_000): RunningStep {
    const stepDir = join(this.dir, `${String(++this.seq).padStart(2, '0')}-${use.name}-${stage}`);
    mkdirSync(stepDir);
    const files = {
      GITHUB_OUTPUT: join(stepDir, 'output'),
      GITHUB_STATE: join(stepDir, 'state'),
      GITHUB_ENV: join(stepDir, 'env'),
      GITHUB_PATH: join(stepDir, 'path'),
      GITHUB_STEP_SUMMARY: join(stepDir, 'summary.md'),
    };
    for (const file of Object.values(files)) writeFileSync(file, '');
    const env: Record<string, string> = {
      // A clean environment: nothing of the test process's own CI (GITHUB_*, INPUT_*, STATE_*) leaks in.
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? this.dir,
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_REPOSITORY: this.context.repository,
      GITHUB_RUN_ID: this.context.runId,
      GITHUB_RUN_ATTEMPT: this.context.runAttempt,
      GITHUB_JOB: this.context.job,
      GITHUB_WORKSPACE: this.dir,
      RUNNER_TEMP: this.dir,
      ...this.env,
      ...files,
    };
    for (const [name, value] of Object.entries(use.inputs)) env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value;
    for (const [name, value] of Object.entries(use.state)) env[`STATE_${name}`] = value;

    const started = Date.now();
    const child = spawn(this.node, [distEntry(stage)], { cwd: this.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      for (const w of waiters.splice(0)) {
        if (w.pattern.test(stdout)) w.resolve();
        else waiters.push(w);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);

    const done = new Promise<StepResult>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => {
        clearTimeout(killer);
        try {
          const read = (file: string) => Object.fromEntries(parseFileCommands(readFileSync(file, 'utf8')));
          const state = read(files.GITHUB_STATE);
          const written = read(files.GITHUB_ENV);
          // The runner hands a use's state to its later stages, and the env to every later step.
          Object.assign(use.state, state);
          Object.assign(this.env, written);
          const result: StepResult = {
            use: use.name,
            stage,
            code,
            signal,
            stdout,
            stderr,
            ms: Date.now() - started,
            outputs: read(files.GITHUB_OUTPUT),
            state,
            env: written,
            summary: readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
            annotations: parseAnnotations(stdout),
            masked: [...stdout.matchAll(/^::add-mask::(.*)$/gm)].map((m) => m[1]!),
          };
          this.steps.push(result);
          resolve(result);
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });

    const waitForOutput = (pattern: RegExp, waitMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(stdout)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on stdout of ${use.name} ${stage} within ${waitMs} ms:\n${stdout}\n${stderr}`)), waitMs);
        waiters.push({
          pattern,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        void done.then(() => {
          clearTimeout(timer);
          if (!pattern.test(stdout)) reject(new Error(`${use.name} ${stage} ended without printing ${pattern}:\n${stdout}\n${stderr}`));
        }, reject);
      });

    return { child, waitForOutput, done };
  }

  /** Runs one stage to its end. */
  run(use: ActionUse, stage: Stage, timeoutMs?: number): Promise<StepResult> {
    return this.start(use, stage, timeoutMs).done;
  }

  /**
   * Runs a job's uses the way the runner orders them: every pre (in order, at the start of the
   * job), then each main, stopping at the first step that fails (later steps are skipped), then
   * the posts in reverse order of registration. As in actions/runner's ActionRunner, a use's post
   * is registered when its pre or main runs, and runs whatever happened (post-if: always()).
   * `pre: false` is a local action (`uses: ./`), for which the runner runs no pre.
   */
  async runAll(uses: ActionUse[], options: { pre?: boolean } = {}): Promise<{ failed: boolean }> {
    let failed = false;
    const posts: ActionUse[] = [];
    const step = async (use: ActionUse, stage: Stage) => {
      if (failed) return;
      if (!posts.includes(use)) posts.push(use);
      if ((await this.run(use, stage)).code !== 0) failed = true;
    };
    if (options.pre !== false) for (const use of uses) await step(use, 'pre');
    for (const use of uses) await step(use, 'main');
    for (const use of posts.reverse()) await this.run(use, 'post');
    return { failed };
  }

  /** A readable account of every step, for a failing expectation's message. */
  transcript(): string {
    return this.steps
      .map((s) => `--- ${s.use} ${s.stage}: exit ${s.code}${s.signal ? ` (${s.signal})` : ''} in ${s.ms} ms\n${s.stdout}${s.stderr}`)
      .join('\n');
  }
}
