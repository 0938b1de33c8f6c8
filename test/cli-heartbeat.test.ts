/**
 * The client faces of heartbeats and server-side waiting (docs/api.md, "Heartbeats"): the compiled
 * `cinode` command (lib/cli/main.js) run as a separate process against a real backend on 127.0.0.1
 * (real clock, a 1 s reaper): `session open --heartbeat`, `session ping`, `session keep` until a
 * signal or the session's end; the client's `wait` keeping a request open while the server holds
 * it; and the keep loop's retries. `npm test` builds lib/ first; on its own: `npm run build:lib`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { CinodeApiError, CinodeClient, keepSession, type SessionView } from '../src/client/index.js';
import { CLI_PATH, REPO_ROOT, requireBuiltLib, runCli, type CliRun } from './support/process.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

let server: TestServer;
const outputs: string[] = [];
/** Keepers still running: a failed test must not leave one behind (jest would wait for it). */
const keepers = new Set<ChildProcess>();

beforeAll(async () => {
  requireBuiltLib();
  server = await startTestServer({ defaults: { 'rate-limit': '1000/5m' }, reaperInterval: '1s' });
});

afterAll(async () => {
  for (const child of keepers) child.kill('SIGKILL');
  await server.close();
  removeDir(server.dir);
  for (const output of outputs) expect(output).not.toContain(KEYS.alpha);
});

const env = () => ({ CINODE_URL: server.url, CINODE_KEY: KEYS.alpha, CINODE_TIMEOUT: undefined });

async function cinode(args: string[]): Promise<CliRun> {
  const run = await runCli(args, env());
  outputs.push(run.stdout, run.stderr);
  return run;
}

interface Listed {
  ssid: string;
  heartbeat: string | null;
  heartbeat_deadline: string | null;
}

/** The session's deadline as `/Session/list` shows it (listing names no session, so it is no ping). */
async function deadlineOf(ssid: string): Promise<number | undefined> {
  const listed = (await server.get('/Session/list', { key: KEYS.alpha })).json as Listed[];
  const session = listed.find((s) => s.ssid === ssid);
  return session?.heartbeat_deadline ? Date.parse(session.heartbeat_deadline) : undefined;
}

/** `cinode session keep ...` as a separate process, its output gathered. */
function keep(args: string[]) {
  const child = spawn(process.execPath, [CLI_PATH, 'session', 'keep', ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env() } as NodeJS.ProcessEnv });
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out.stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out.stderr += chunk));
  keepers.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => {
    keepers.delete(child);
    outputs.push(out.stdout, out.stderr);
    resolve(code);
  }));
  return { child, out, exited };
}

describe('cinode session open --heartbeat and session ping', () => {
  test('open --heartbeat opens the session with it; ping shows it with its deadline', async () => {
    const opened = await cinode(['session', 'open', '--alias', 'hb-open', '--heartbeat', '30s']);
    expect(opened.code).toBe(0);
    const ssid = opened.stdout.trim();
    const ping = await cinode(['--json', 'session', 'ping', 'hb-open']);
    expect(ping.code).toBe(0);
    const view = JSON.parse(ping.stdout) as SessionView;
    expect(view).toMatchObject({ ssid, state: 'active', heartbeat: '30s' });
    expect(Math.abs(Date.parse(view.heartbeat_deadline!) - (Date.now() + 30_000))).toBeLessThan(5_000);
    const human = await cinode(['session', 'ping', ssid]);
    expect(human.stdout).toMatch(/^heartbeat\s+30s$/m);
    expect(human.stdout).toMatch(/^heartbeat_deadline\s+\d{4}-/m);
  });

  test('a heartbeat out of range or malformed is a usage error naming the range; so is a bad --wait', async () => {
    for (const value of ['5s', '2h', 'soon']) {
      const run = await cinode(['session', 'open', '--heartbeat', value]);
      expect(run).toMatchObject({ code: 2, stdout: '' });
      expect(run.stderr).toContain('from 10s to 1h');
    }
    const wait = await cinode(['node', 'get', '--wait', 'forever']);
    expect(wait.code).toBe(2);
    expect(wait.stderr).toContain('--wait: "forever" is not a duration');
  });

  test('ping of an unknown session exits 3; of a session that ended, exits 0 and says so', async () => {
    const unknown = await cinode(['session', 'ping', 'no-such-session']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('Invalid session ID');
    const ssid = (await cinode(['session', 'open', '--heartbeat', '10s'])).stdout.trim();
    await cinode(['session', 'done', ssid]);
    const ended = await cinode(['session', 'ping', ssid]);
    expect(ended.code).toBe(0);
    expect(ended.stderr).toContain(`session ${ssid} has ended (done)`);
  });
});

describe('cinode session keep', () => {
  test('keeps a 10 s heartbeat session alive past its heartbeat, pinging every third of it, until SIGTERM: exit 0', async () => {
    const ssid = (await cinode(['session', 'open', '--heartbeat', '10s'])).stdout.trim();
    const firstDeadline = (await deadlineOf(ssid))!;
    const keeper = keep([ssid]);
    await waitFor('the keeper to start', () => keeper.out.stderr.includes(`keeping session ${ssid} alive (heartbeat 10s)`));
    // Past the first heartbeat, with the reaper passing every second: alive, the deadline moved on.
    await waitFor('the heartbeat and two reaper passes to go by', () => Date.now() > firstDeadline + 2_000, 20_000);
    expect(await deadlineOf(ssid)).toBeGreaterThan(Date.now());
    keeper.child.kill('SIGTERM');
    expect(await keeper.exited).toBe(0);
    expect(keeper.out.stderr).toContain(`stopped keeping session ${ssid} alive`);
    expect(keeper.out.stderr).not.toContain('ping failed');
  }, 40_000);

  test('--every sets the interval; SIGINT stops it too', async () => {
    const ssid = (await cinode(['session', 'open', '--heartbeat', '1h'])).stdout.trim();
    const keeper = keep([ssid, '--every', '1s']);
    const first = (await deadlineOf(ssid))!;
    await waitFor('two pings a second apart', async () => ((await deadlineOf(ssid)) ?? 0) >= first + 2_000, 15_000);
    keeper.child.kill('SIGINT');
    expect(await keeper.exited).toBe(0);
  }, 30_000);

  test('exits 2 with a clear message once the session ends meanwhile; 3 for an unknown session', async () => {
    const ssid = (await cinode(['session', 'open', '--heartbeat', '10s'])).stdout.trim();
    const keeper = keep([ssid, '--every', '1s']);
    await waitFor('the keeper to start', () => keeper.out.stderr.includes('keeping session'));
    await cinode(['session', 'done', ssid]);
    expect(await keeper.exited).toBe(2);
    expect(keeper.out.stderr).toContain(`session ${ssid} ended (done at `);

    const unknown = keep(['00000000-0000-4000-8000-000000000000']);
    expect(await unknown.exited).toBe(3);
    expect(unknown.out.stderr).toContain('Invalid session ID');
  }, 30_000);

  test('a session without a heartbeat: exits 2, unless --every is given', async () => {
    const ssid = (await cinode(['session', 'open'])).stdout.trim();
    const keeper = keep([ssid]);
    expect(await keeper.exited).toBe(2);
    expect(keeper.out.stderr).toContain('has no heartbeat');
    const bad = keep([ssid, '--every', 'often']);
    expect(await bad.exited).toBe(2);
    expect(bad.out.stderr).toContain('--every: "often" is not a duration');
  });
});

describe('the keep loop', () => {
  const view = (state: 'active' | 'done', heartbeat: string | null = '30s'): SessionView => ({
    ssid: 's',
    alias: null,
    state,
    created_at: '2026-01-01T00:00:00.000Z',
    expires_at: null,
    ended_at: state === 'done' ? '2026-01-01T01:00:00.000Z' : null,
    end_reason: state === 'done' ? 'heartbeat-lost' : null,
    hosts: [],
    heartbeat,
    heartbeat_deadline: null,
  });

  test('a transient failure is retried at the next round; a refusal ends the loop with it', async () => {
    const answers: Array<SessionView | CinodeApiError> = [
      new CinodeApiError('transport', 'no answer'),
      view('active'),
      new CinodeApiError('server', 'HTTP 503'),
      view('active'),
      new CinodeApiError('invalid-key', 'Invalid duffy key'),
    ];
    const transient: string[] = [];
    const pinged: string[] = [];
    const loop = keepSession({
      ping: async () => {
        const answer = answers.shift()!;
        if (answer instanceof Error) throw answer;
        return answer;
      },
      ssid: 's',
      everyMs: 5,
      signal: new AbortController().signal,
      onPing: (v) => pinged.push(v.state),
      onTransientError: (e) => transient.push(e.kind),
    });
    await expect(loop).rejects.toMatchObject({ kind: 'invalid-key' });
    expect(transient).toEqual(['transport', 'server']);
    expect(pinged).toEqual(['active', 'active']);
  });

  test('ends with the end reason once the session is done; stops when no longer wanted or aborted mid-ping', async () => {
    await expect(keepSession({ ping: async () => view('done'), ssid: 's', signal: new AbortController().signal })).rejects.toThrow(
      'session s ended (heartbeat-lost at 2026-01-01T01:00:00.000Z)',
    );
    let wanted = 2;
    expect(await keepSession({ ping: async () => view('active'), ssid: 's', everyMs: 1, signal: new AbortController().signal, stillWanted: () => wanted-- > 0 })).toBe(
      'unwanted',
    );
    const stop = new AbortController();
    const hanging = keepSession({ ping: () => new Promise<SessionView>(() => undefined), ssid: 's', signal: stop.signal });
    stop.abort();
    expect(await hanging).toBe('stopped');
  });
});

describe('the client waits as long as the server may hold a request (wait=)', () => {
  let slow: Server;
  let url: string;
  const seen: string[] = [];

  beforeAll(async () => {
    // Holds every request 1.5 s, as the server does a /Node/get waiting in its queue.
    slow = createServer((request, response) => {
      seen.push(request.url ?? '');
      setTimeout(() => response.writeHead(200, { 'content-type': 'application/json' }).end('{"hosts": ["n1.example"], "ssid": "s"}'), 1_500);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const address = slow.address() as { port: number };
    url = `http://127.0.0.1:${address.port}`;
  });

  afterAll(() => new Promise<void>((resolve) => slow.close(() => resolve())));

  test('with wait, the request outlives the client timeouts; without, it is given up', async () => {
    const client = new CinodeClient({ url, key: KEYS.alpha, requestTimeoutMs: 300, timeoutMs: 500 });
    expect(await client.getNodes({ count: 1, wait: '2s' })).toEqual({ hosts: ['n1.example'], ssid: 's' });
    expect(seen.at(-1)).toBe('/Node/get?count=1&wait=2s');
    await expect(client.getNodes({ count: 1 })).rejects.toMatchObject({ kind: 'transport' });
    await expect(client.getNodes({ wait: 'later' })).rejects.toMatchObject({ kind: 'bad-request' });
  });
});
