/**
 * The action's keeper end to end (docs/api.md, "Heartbeats"): the built dist/pre, dist/main and
 * dist/post run as separate `node` processes the way the runner runs them (test/support/runner.ts),
 * against a real cinode server on 127.0.0.1 whose reaper passes every second, under this machine's
 * Node and under Node 24 (CINODE_NODE24), both at once:
 * - the keeper pre starts keeps a 10 s heartbeat, never-expiring session alive across a 30 s job,
 *   and post stops it (the process is gone);
 * - a runner killed with its whole process group (SIGKILL) before post: the detached keeper sees
 *   its runner gone and stops, and the session ends `heartbeat-lost` within the heartbeat plus
 *   the reaper interval.
 * Slow by nature (the heartbeat must pass): two tests, about 35 s and 15 s.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRunning } from '../src/action/keeper.js';
import { Job, distEntry, parseFileCommands, type JobContext } from './support/runner.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

const NODE24 = process.env.CINODE_NODE24 ?? '';
const RUNTIMES = [process.execPath, ...(NODE24 !== '' ? [NODE24] : [])];
if (process.env.CI === 'true' && NODE24 === '') throw new Error('CINODE_NODE24 is not set: CI runs the keeper under Node 24 too');

const HEARTBEAT_MS = 10_000;
const REAPER_MS = 1_000;
/** What a loaded machine may add to a deadline (the soak bench runs beside the tests). */
const SLACK_MS = 3_000;

interface Listed {
  ssid: string;
}
interface Shown {
  state: string;
  end_reason: string | null;
  ended_at: string | null;
  heartbeat: string | null;
}

let server: TestServer;
const dirs: string[] = [];
const keepers: number[] = [];

beforeAll(async () => {
  for (const stage of ['pre', 'main', 'post'] as const) {
    if (!existsSync(distEntry(stage))) throw new Error(`${distEntry(stage)} is missing: run \`npm run build\``);
  }
  server = await startTestServer({ defaults: { 'rate-limit': '100/5m' }, reaperInterval: '1s' });
});

afterAll(async () => {
  // A keeper a failed test left behind is stopped here, not left pinging.
  for (const pid of keepers) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
  await server.close();
  removeDir(server.dir);
  for (const dir of dirs) removeDir(dir);
});

const bearer = { authorization: `Bearer ${KEYS.never}` };
const context = (job: string): JobContext => ({ repository: 'example-org/storage', runId: '42', runAttempt: '1', job, jobIndex: 0 });
const inputs = () => ({ url: server.url, key: KEYS.never, timeout: '30s', heartbeat: '10s', lifetime: 'never' });

/** Whether the session is active, read from the listing (which names no session, so pings nothing). */
async function active(ssid: string): Promise<boolean> {
  return ((await server.get('/Session/list', {}, bearer)).json as Listed[]).some((s) => s.ssid === ssid);
}

/** The session's heartbeat deadline, read from the listing (no ping). */
async function deadline(ssid: string): Promise<number> {
  const listed = (await server.get('/Session/list', {}, bearer)).json as Array<Listed & { heartbeat_deadline: string }>;
  return Date.parse(listed.find((s) => s.ssid === ssid)!.heartbeat_deadline);
}

async function shown(ssid: string): Promise<Shown> {
  return (await server.get('/Session/show', { ssid }, bearer)).json as Shown;
}

function keeperLog(dir: string, ssid: string): string {
  return readFileSync(join(dir, `cinode-keeper-${ssid}.log`), 'utf8');
}

async function keptAcrossJob(node: string, index: number): Promise<void> {
  const job = new Job(node, context(`keep-${index}`), inputs());
  dirs.push(job.dir);
  const use = job.use('nodes', { count: '1' });
  const pre = await job.run(use, 'pre');
  if (pre.code !== 0) throw new Error(`pre failed:\n${job.transcript()}`);
  const ssid = use.state.ssid!;
  const keeper = Number(use.state['keeper-pid']);
  keepers.push(keeper);
  expect(isRunning(keeper)).toBe(true);
  expect(pre.stdout).toContain(`Started keeper ${keeper}`);
  expect(await shown(ssid)).toMatchObject({ state: 'active', heartbeat: '10s' });
  expect((await job.run(use, 'main')).code).toBe(0);

  // Three heartbeats long, checked every second without pinging: the keeper alone keeps it.
  const started = Date.now();
  await waitFor(
    'a 30 s job',
    async () => {
      if (!(await active(ssid))) throw new Error(`session ${ssid} ended during the job:\n${keeperLog(job.dir, ssid)}`);
      return Date.now() - started >= 30_000;
    },
    60_000,
  );

  const post = await job.run(use, 'post');
  expect(post.code).toBe(0);
  expect(post.stdout).toContain(`Stopped keeper ${keeper}.`);
  expect(isRunning(keeper)).toBe(false);
  expect(await shown(ssid)).toMatchObject({ state: 'done', end_reason: 'done' });
  const log = keeperLog(job.dir, ssid);
  expect(log).toContain('received SIGTERM: stopping');
  for (const text of [log, ...job.steps.map((s) => `${s.stdout}${s.stderr}`.replace(/^::add-mask::.*$/gm, ''))]) expect(text).not.toContain(KEYS.never);
}

/**
 * A runner of its own: a process (leading its own process group) that runs pre as its child and
 * stays, as Runner.Worker does, until the test SIGKILLs the whole group.
 */
async function runnerKilled(node: string, index: number): Promise<void> {
  const job = new Job(node, context(`killed-${index}`), inputs());
  dirs.push(job.dir);
  const stepDir = join(job.dir, 'pre');
  mkdirSync(stepDir);
  const files = { GITHUB_STATE: join(stepDir, 'state'), GITHUB_OUTPUT: join(stepDir, 'output'), GITHUB_ENV: join(stepDir, 'env') };
  for (const file of Object.values(files)) writeFileSync(file, '');
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', RUNNER_TEMP: job.dir, ...files };
  for (const [name, value] of Object.entries(job.use('nodes').inputs)) env[`INPUT_${name.toUpperCase()}`] = value;
  const script = [
    "const { spawn } = require('node:child_process');",
    'const pre = spawn(process.execPath, [process.argv[1]], { stdio: "inherit" });',
    "pre.on('exit', (code) => console.log(`pre exited ${code}`));",
    'setInterval(() => {}, 1000);',
  ].join('\n');
  const runner = spawn(node, ['-e', script, distEntry('pre')], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  runner.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  runner.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  await waitFor('pre to finish under the runner', () => out.includes('pre exited'), 30_000);
  expect(out).toContain('pre exited 0');
  const state = Object.fromEntries(parseFileCommands(readFileSync(files.GITHUB_STATE, 'utf8')));
  const ssid = state.ssid!;
  const keeper = Number(state['keeper-pid']);
  keepers.push(keeper);
  expect(isRunning(keeper)).toBe(true);

  // Once the keeper has pinged (the deadline moved on from the one the session was opened with),
  // the runner dies with everything in its process group; the keeper, detached, is not in it.
  const opened = await deadline(ssid);
  await waitFor('the keeper to ping', async () => (await deadline(ssid)) > opened, 10_000);
  const killedAt = Date.now();
  process.kill(-runner.pid!, 'SIGKILL');
  await waitFor('the keeper to notice its runner is gone', () => !isRunning(keeper), 5_000);
  expect(keeperLog(job.dir, ssid)).toContain(`process ${runner.pid} is gone`);

  await waitFor('the session to end', async () => !(await active(ssid)), HEARTBEAT_MS + REAPER_MS + SLACK_MS + 5_000);
  const ended = await shown(ssid);
  expect(ended).toMatchObject({ state: 'done', end_reason: 'heartbeat-lost' });
  // The last ping came at most a third of the heartbeat before the kill, and none after it.
  const endedAfterKill = Date.parse(ended.ended_at!) - killedAt;
  expect(endedAfterKill).toBeGreaterThan(HEARTBEAT_MS - HEARTBEAT_MS / 3 - SLACK_MS);
  expect(endedAfterKill).toBeLessThanOrEqual(HEARTBEAT_MS + REAPER_MS + SLACK_MS);
  expect(keeperLog(job.dir, ssid)).not.toContain(KEYS.never);
}

test('the keeper keeps a 10 s heartbeat session alive across a 30 s job, and post stops it (each Node at once)', async () => {
  await Promise.all(RUNTIMES.map((node, i) => keptAcrossJob(node, i)));
}, 120_000);

test('a runner killed with its process group: the keeper stops, the session ends heartbeat-lost within heartbeat + reaper interval', async () => {
  await Promise.all(RUNTIMES.map((node, i) => runnerKilled(node, i)));
}, 90_000);
