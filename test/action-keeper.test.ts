/**
 * The keeper's life (src/action/keeper.ts) in this process, against a real server on 127.0.0.1:
 * it pings until the process it watches is gone, stops with a clear line when the session is
 * unknown, never logs the key; and post's stop, SIGKILL included for a keeper that ignores
 * SIGTERM. test/action-keeper-e2e.test.ts runs it as the bundled, detached process.
 */
import { spawn } from 'node:child_process';
import { jest } from '@jest/globals';
import { isRunning, processKeeper, runKeeper } from '../src/action/keeper.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

let server: TestServer;
const lines: string[] = [];

beforeAll(async () => {
  server = await startTestServer({ defaults: { 'rate-limit': '100/5m' } });
  jest.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(line));
});

afterAll(async () => {
  jest.restoreAllMocks();
  await server.close();
  removeDir(server.dir);
});

/** A process to watch or stop; `ignoreTerm` makes it shrug off SIGTERM. */
function sleeper(ignoreTerm = false) {
  const script = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { pid: child.pid!, exited };
}

function env(ssid: string, watchPid: number): NodeJS.ProcessEnv {
  return {
    CINODE_KEEPER_URL: server.url,
    CINODE_KEEPER_KEY: KEYS.alpha,
    CINODE_KEEPER_KEY_IN_QUERY: 'true',
    CINODE_KEEPER_SSID: ssid,
    CINODE_KEEPER_EVERY_MS: '300',
    CINODE_KEEPER_WATCH_PID: String(watchPid),
  };
}

async function deadlineOf(ssid: string): Promise<number> {
  const listed = (await server.get('/Session/list', { key: KEYS.alpha })).json as Array<{ ssid: string; heartbeat_deadline: string }>;
  return Date.parse(listed.find((s) => s.ssid === ssid)!.heartbeat_deadline);
}

test('pings until the watched process is gone, then says so and ends with 0; the key never in its lines', async () => {
  const { ssid } = (await server.get('/Session/get', { key: KEYS.alpha, heartbeat: '10s' })).json as { ssid: string };
  const opened = await deadlineOf(ssid);
  const runner = sleeper();
  const keeping = runKeeper(env(ssid, runner.pid));
  await waitFor('two pings', async () => (await deadlineOf(ssid)) >= opened + 500);
  process.kill(runner.pid, 'SIGKILL');
  await runner.exited;
  expect(await keeping).toBe(0);
  expect(lines.join('\n')).toContain(`process ${runner.pid} is gone: the job ended without its post step; stopping`);
  expect(lines.join('\n')).not.toContain(KEYS.alpha);
});

test('an unknown session ends it with 1 and the reason', async () => {
  lines.length = 0;
  expect(await runKeeper(env('00000000-0000-4000-8000-000000000000', process.pid))).toBe(1);
  expect(lines.at(-1)).toContain('stopping: Invalid session ID');
  expect(lines.join('\n')).not.toContain(KEYS.alpha);
});

test("post's stop: SIGTERM, then SIGKILL for a keeper that ignores it; a keeper already gone is told apart", async () => {
  const stubborn = sleeper(true);
  // Its SIGTERM handler must be in place before the signal comes.
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(await processKeeper.stop(stubborn.pid)).toBe(true);
  await stubborn.exited;
  expect(isRunning(stubborn.pid)).toBe(false);
  expect(await processKeeper.stop(stubborn.pid)).toBe(false);
}, 15_000);
