/**
 * The action's three stages run in this process with their real collaborators, as the bundled
 * entry points wire them (runtime.ts: `launch`, @actions/core, the CinodeClient), against a real
 * server on 127.0.0.1. The runner's side is played here as test/support/runner.ts plays it for
 * processes: inputs as INPUT_*, fresh GITHUB_OUTPUT/STATE/ENV/STEP_SUMMARY files per step, state
 * handed to the same use's later stages, exported variables to every later step.
 * action-e2e.test.ts runs the committed bundles as processes; this file runs the same code where
 * coverage sees it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMain } from '../src/action/main-impl.js';
import { runPost } from '../src/action/post-impl.js';
import { runPre } from '../src/action/pre-impl.js';
import { launch } from '../src/action/runtime.js';
import type { ActionDeps } from '../src/action/ports.js';
import { parseAnnotations, parseFileCommands, type Annotation } from './support/runner.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

const ALIAS = 'org/repo/41/1/build/0';
const c7 = (n: number): string => `c7-${n}.test.example`;

interface Step {
  failed: boolean;
  outputs: Record<string, string>;
  summary: string;
  stdout: string;
  annotations: Annotation[];
}

/** A job on one runner, in this process: the environment its steps share. */
class InProcessJob {
  readonly dir = mkdtempSync(join(tmpdir(), 'cinode-action-'));
  /** What steps wrote to GITHUB_ENV so far. */
  readonly env: Record<string, string> = {};
  /**
   * One summary file for the whole job, each step's part read as what it appended: @actions/core
   * keeps the summary file it first opened for the life of the process, and here every step
   * shares one process.
   */
  private readonly summaryFile = join(this.dir, 'summary');
  private seq = 0;

  /** Runs one stage of `use` with `inputs` (over action.yml's defaults), as the runner would. */
  async step(use: Record<string, string>, stage: (deps: ActionDeps) => Promise<unknown>, inputs: Record<string, string>): Promise<Step> {
    const stepDir = join(this.dir, `step-${++this.seq}`);
    mkdirSync(stepDir);
    const files = {
      GITHUB_OUTPUT: join(stepDir, 'output'),
      GITHUB_STATE: join(stepDir, 'state'),
      GITHUB_ENV: join(stepDir, 'env'),
    };
    for (const file of Object.values(files)) writeFileSync(file, '');
    writeFileSync(this.summaryFile, '', { flag: 'a' });
    const summaryBefore = readFileSync(this.summaryFile, 'utf8').length;
    const all = { count: '1', teardown: 'true', timeout: '5m', 'key-in-query': 'false', alias: ALIAS, ...inputs };
    const stepEnv: Record<string, string> = {
      ...this.env,
      ...files,
      GITHUB_STEP_SUMMARY: this.summaryFile,
      ...Object.fromEntries(Object.entries(all).map(([name, value]) => [`INPUT_${name.replace(/ /g, '_').toUpperCase()}`, value])),
      ...Object.fromEntries(Object.entries(use).map(([name, value]) => [`STATE_${name}`, value])),
    };

    const savedEnv = { ...process.env };
    const savedExitCode = process.exitCode;
    const write = process.stdout.write;
    const listeners = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
    let stdout = '';
    let failed: boolean;
    Object.assign(process.env, stepEnv);
    process.exitCode = undefined;
    process.stdout.write = ((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      await new Promise<void>((resolve) => launch(async (deps) => stage(deps).finally(resolve)));
      failed = process.exitCode === 1;
    } finally {
      process.stdout.write = write;
      process.exitCode = savedExitCode;
      for (const name of Object.keys(process.env)) if (!(name in savedEnv)) delete process.env[name];
      Object.assign(process.env, savedEnv);
      // launch() listens for the runner's cancellation signals: this process is not a step.
      for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        for (const listener of process.listeners(signal)) if (!listeners[signal].includes(listener)) process.removeListener(signal, listener);
      }
    }

    for (const [name, value] of parseFileCommands(readFileSync(files.GITHUB_STATE, 'utf8'))) use[name] = value;
    for (const [name, value] of parseFileCommands(readFileSync(files.GITHUB_ENV, 'utf8'))) this.env[name] = value;
    return {
      failed,
      outputs: Object.fromEntries(parseFileCommands(readFileSync(files.GITHUB_OUTPUT, 'utf8'))),
      summary: readFileSync(this.summaryFile, 'utf8').slice(summaryBefore),
      stdout,
      annotations: parseAnnotations(stdout),
    };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let server: TestServer;
let job: InProcessJob;

beforeEach(async () => {
  server = await startTestServer({
    defaults: { 'rate-limit': '1000/5m' },
    pools: [
      { name: 'c7', ver: '7', arch: 'x86_64', nodes: 3 },
      { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 1 },
    ],
  });
  job = new InProcessJob();
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
  job.remove();
});

const connection = (): Record<string, string> => ({ url: server.url, key: KEYS.alpha });

async function sessionOf(ssid: string): Promise<{ state: string; hosts: Array<{ hostname: string; state: string }> }> {
  const reply = await server.get('/Session/show', { key: KEYS.alpha, ssid });
  expect(reply.status).toBe(200);
  return reply.json as { state: string; hosts: Array<{ hostname: string; state: string }> };
}

describe('one use: pre opens, main adds, releases and reports, post ends', () => {
  test('the outputs, the exported variables, the job summary and the server agree', async () => {
    const use: Record<string, string> = {};
    const pre = await job.step(use, runPre, { ...connection(), lifetime: '2h' });
    expect(pre.failed).toBe(false);
    expect(use).toEqual({ alias: ALIAS, owner: 'true', ssid: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(job.env).toEqual({ CINODE_URL: server.url, CINODE_SSID: use.ssid, CINODE_ALIAS: ALIAS });
    expect(pre.stdout).toContain(`Opened session ${use.ssid} (alias ${ALIAS}, expires at `);
    // The key is masked for the runner's logs.
    expect(pre.stdout).toContain(`::add-mask::${KEYS.alpha}`);

    const add = await job.step(use, runMain, { ...connection(), count: '2', ver: '7', arch: 'x86_64' });
    expect(add.failed).toBe(false);
    expect(add.stdout).toContain(`Using session ${use.ssid} (alias ${ALIAS}) found by the pre step.`);
    expect(add.stdout).toContain(`Adding 2 nodes (ver=7 arch=x86_64) to session ${use.ssid}`);
    expect(add.outputs).toMatchObject({ ssid: use.ssid, alias: ALIAS, hosts: `${c7(1)}\n${c7(2)}`, 'all-hosts': `${c7(1)}\n${c7(2)}` });
    expect(JSON.parse(add.outputs['hosts-json']!)).toEqual([
      { hostname: c7(1), ip: '192.0.2.1', ver: '7', arch: 'x86_64', flavor: null },
      { hostname: c7(2), ip: '192.0.2.2', ver: '7', arch: 'x86_64', flavor: null },
    ]);
    expect(job.env.CINODE_HOSTS).toBe(`${c7(1)} ${c7(2)}`);
    expect(add.summary).toContain(`<h3>cinode session ${ALIAS}</h3>`);
    expect(add.summary).toContain(`Session ${use.ssid}, 2 hosts, expires `);
    expect(add.summary).toContain('; this step added 2.');
    expect(add.summary).toMatch(/<th>Hostname<\/th>/);

    const change = await job.step(use, runMain, { ...connection(), count: '1', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', drop: c7(1), fail: c7(2) });
    expect(change.failed).toBe(false);
    expect(change.outputs.hosts).toBe('arm-1.test.example');
    expect(change.outputs['all-hosts']).toBe('arm-1.test.example');
    expect(change.summary).toContain('1 host, expires ');
    expect(change.summary).toContain('this step added 1, released 1, reported 1 broken.');
    expect(change.summary).toContain('<td>tiny</td>');
    const during = await sessionOf(use.ssid!);
    expect(during.hosts.map((h) => [h.hostname, h.state])).toEqual([['arm-1.test.example', 'deployed']]);

    const count0 = await job.step(use, runMain, { ...connection(), count: '0' });
    expect(count0.failed).toBe(false);
    expect(count0.outputs.hosts).toBe('');
    expect(count0.summary).toContain(`Session ${use.ssid}, 1 host, expires `);
    expect(count0.summary).not.toContain('; this step');

    const post = await job.step(use, runPost, connection());
    expect(post.failed).toBe(false);
    expect(post.stdout).toContain(`Ended session ${use.ssid}`);
    expect((await sessionOf(use.ssid!)).state).toBe('done');
  });

  test('a second use in the job finds the session by the exported variables and leaves ending it to the first', async () => {
    const first: Record<string, string> = {};
    expect((await job.step(first, runMain, connection())).failed).toBe(false);
    const second: Record<string, string> = {};
    const again = await job.step(second, runMain, connection());
    expect(again.failed).toBe(false);
    expect(again.stdout).toContain(`Using session ${first.ssid} (alias ${ALIAS}), opened by an earlier use of the action in this job`);
    expect(again.outputs['all-hosts']!.split('\n')).toHaveLength(2);

    const leave = await job.step(second, runPost, connection());
    expect(leave.stdout).toContain('to the use of cinode that opened it');
    expect((await sessionOf(first.ssid!)).state).toBe('active');
    await job.step(first, runPost, connection());
    expect((await sessionOf(first.ssid!)).state).toBe('done');
  });

  test('a session of the alias already open on the server is used, not owned; teardown false leaves a session open', async () => {
    const opened = (await server.get('/Session/get', { key: KEYS.alpha, alias: ALIAS })).json as { ssid: string };
    const use: Record<string, string> = {};
    const pre = await job.step(use, runPre, connection());
    expect(pre.failed).toBe(false);
    expect(use.ssid).toBe(opened.ssid);
    expect(use.owner).toBe('');
    const post = await job.step(use, runPost, connection());
    expect(post.stdout).toContain('to the use of cinode that opened it');

    const other: Record<string, string> = {};
    const alias = 'kept-open';
    await job.step(other, runPre, { ...connection(), alias });
    const kept = await job.step(other, runPost, { ...connection(), alias, teardown: 'false' });
    expect(kept.stdout).toContain('teardown is false');
    expect((await sessionOf(other.ssid!)).state).toBe('active');
  });
});

describe('failures', () => {
  test('a refused key fails pre and main with the reason; post then has nothing to end', async () => {
    const use: Record<string, string> = {};
    const pre = await job.step(use, runPre, { url: server.url, key: 'not-a-key-0123456789' });
    expect(pre.failed).toBe(true);
    expect(pre.annotations).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringContaining('cinode could not open the session: Invalid duffy key') }));
    const main = await job.step(use, runMain, { url: server.url, key: 'not-a-key-0123456789' });
    expect(main.failed).toBe(true);
    expect(main.annotations).toContainEqual(expect.objectContaining({ level: 'error', message: expect.stringContaining('cinode could not open the session') }));
    const post = await job.step(use, runPost, { url: server.url, key: 'not-a-key-0123456789' });
    expect(post.failed).toBe(false);
    expect(post.stdout).toContain('This use of cinode opened no session: nothing to end.');
  });

  test('more nodes than the pools hold fails main, names the step, and post still ends the session', async () => {
    const use: Record<string, string> = {};
    const main = await job.step(use, runMain, { ...connection(), count: '4', ver: '7' });
    expect(main.failed).toBe(true);
    expect(main.annotations).toContainEqual(
      expect.objectContaining({ level: 'error', message: expect.stringContaining('cinode could not add 4 nodes (ver=7): count 4 exceeds the 3 nodes pool c7 can hold') }),
    );
    const post = await job.step(use, runPost, connection());
    expect(post.failed).toBe(false);
    expect((await sessionOf(use.ssid!)).state).toBe('done');
  });

  test('post cannot reach the server: a warning that says how to end the session, not a failure', async () => {
    const use: Record<string, string> = {};
    await job.step(use, runPre, connection());
    const url = server.url;
    await server.close();
    const post = await job.step(use, runPost, { url, key: KEYS.alpha, timeout: '1s' });
    expect(post.failed).toBe(false);
    expect(post.annotations).toContainEqual(
      expect.objectContaining({ level: 'warning', properties: { title: 'cinode teardown failed' }, message: expect.stringContaining(`cinode session done ${use.ssid}`) }),
    );
    // afterEach closes it again: a closed server's close is the same promise.
  });
});
