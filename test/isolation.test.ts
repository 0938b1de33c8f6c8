/**
 * Session isolation hooks (docs/api.md, "Session isolation") against the real server over HTTP on
 * loopback, with a real SQLite file (or PostgreSQL under CINODE_TEST_DATABASE=postgres) and real
 * hook scripts: the order of the runs and their environment, the session data, every failure rule,
 * the teardown's retries and the operator's re-run, the history and the metric.
 */
import { FAILED_NODE_LIMIT_MESSAGE } from '../src/api/messages.js';
import { parseConfig } from '../src/config/config.js';
import { hookEnv, sessionData } from '../src/machines/hooks.js';
import { teardownRetryAt, TEARDOWN_GIVE_UP_MS } from '../src/workers/isolation.js';
import { DrivenClock } from './support/clock.js';
import { TestHooks } from './support/hooks.js';
import { runCli } from './support/process.js';
import { KEYS, removeDir, startTestServer, waitFor, type ConfigSpec, type TestServer } from './support/server.js';

let server: TestServer;
let hooks: TestHooks;

const alpha = { key: KEYS.alpha };
const admin = { key: KEYS.beta };
const WAIT_MS = 20_000;

async function start(spec: ConfigSpec = {}, timeout = '20s', clock?: () => number): Promise<void> {
  hooks ??= new TestHooks();
  server = await startTestServer(
    {
      pools: [
        { name: 'c7', nodes: 3 },
        { name: 'pair', ver: '8', nodes: 2 },
      ],
      defaults: { 'rate-limit': '100/5m' },
      topYaml: hooks.yaml(timeout),
      ...spec,
      projects: { beta: { admin: true }, ...spec.projects },
    },
    clock,
  );
}

beforeEach(() => {
  hooks = new TestHooks();
});

afterEach(async () => {
  await server?.close();
  removeDir(server.dir);
  hooks.remove();
  hooks = undefined as unknown as TestHooks;
});

async function stateOf(hostname: string): Promise<string> {
  const rows = (await server.get('/Inventory')).json as unknown[][];
  return rows.find((r) => r[1] === hostname)?.[5] as string;
}

async function show(ssid: string): Promise<Record<string, unknown>> {
  return (await server.get('/Session/show', { ...alpha, ssid })).json as Record<string, unknown>;
}

async function events(session: string): Promise<Array<{ subject: string; reason: string; detail: string | null; hostname: string | null }>> {
  return (await server.get('/Admin/events', { ...admin, session, limit: 500 })).json as Array<{ subject: string; reason: string; detail: string | null; hostname: string | null }>;
}

async function allReady(): Promise<boolean> {
  const rows = (await server.get('/Inventory')).json as unknown[][];
  return rows.every((r) => r[5] === 'Ready');
}

describe('the hooks run in order, with their environment', () => {
  beforeEach(() => start());

  test('setup before /Session/get answers, attach before /Node/get answers, detach when a node leaves, teardown last', async () => {
    const opened = await server.get('/Session/get', { ...alpha, alias: 'org/repo/1' });
    expect(opened.status).toBe(200);
    const { ssid } = opened.json as { ssid: string };
    expect(hooks.runs()).toEqual([{ hook: 'setup', project: 'alpha', ssid, alias: 'org/repo/1', hostname: 'UNSET', ip: 'UNSET', pool: 'UNSET', data: 'UNSET' }]);
    const data = { vlan: 42, ssid };
    expect(await show(ssid)).toMatchObject({ state: 'active', isolation: data, teardown: null });

    const got = await server.get('/Node/get', { ...alpha, ssid, count: 2 });
    expect(got.status).toBe(200);
    const hosts = (got.json as { hosts: string[] }).hosts;
    const attaches = hooks.runs().filter((r) => r.hook === 'attach');
    expect(attaches.map((r) => r.hostname).sort()).toEqual([...hosts].sort());
    for (const run of attaches) {
      expect(run).toMatchObject({ project: 'alpha', ssid, alias: 'org/repo/1', pool: 'c7' });
      expect(run.ip).toMatch(/^192\.0\.2\.\d+$/);
      expect(JSON.parse(run.data)).toEqual(data);
    }
    expect(hooks.finished().filter((f) => f.startsWith('attach'))).toHaveLength(2);

    // A dropped node is detached before it is ready again (its pool has no reclaim command).
    const [first, second] = hosts as [string, string];
    expect((await server.get('/Node/done', { ...alpha, ssid, node: first })).status).toBe(200);
    await waitFor('the dropped node ready again', async () => (await stateOf(first)) === 'Ready', WAIT_MS);
    expect(hooks.finished()).toContain(`detach ${ssid} ${first}`);
    expect(await show(ssid)).toMatchObject({ state: 'active', hosts: [expect.objectContaining({ hostname: second, state: 'deployed' })] });

    expect((await server.get('/Session/done', { ...alpha, ssid })).status).toBe(200);
    await waitFor('the teardown done', async () => (await show(ssid)).teardown === 'done', WAIT_MS);
    expect(hooks.order()).toEqual(['setup', ...attaches.map((r) => `attach ${r.hostname}`), `detach ${first}`, `detach ${second}`, 'teardown']);
    const teardown = hooks.runs().find((r) => r.hook === 'teardown')!;
    expect(JSON.parse(teardown.data)).toEqual(data);
    expect(teardown.hostname).toBe('UNSET');
    await waitFor('every node ready', allReady, WAIT_MS);

    // Every run is an event of the session's history, with its exit status and duration.
    const hookEvents = (await events(ssid)).filter((e) => e.subject === 'hook');
    expect(hookEvents.map((e) => e.reason.split(' ')[0])).toEqual(['session-setup', 'node-attach', 'node-attach', 'node-detach', 'node-detach', 'session-teardown']);
    for (const e of hookEvents) expect(e.reason).toMatch(/succeeded \(exit status 0, \d+\.\ds\)$/);

    const metrics = (await server.get('/metrics')).text;
    expect(metrics).toMatch(/cinode_hook_runs_total\{hook="node-attach",outcome="ok"\} 2/);
    expect(metrics).toMatch(/cinode_hook_runs_total\{hook="session-teardown",outcome="ok"\} 1/);
  });

  test('legacy /Node/get: setup then attach before it answers; the alias is present and empty; expiry detaches and tears down', async () => {
    const got = await server.get('/Node/get', { ...alpha, count: 1 });
    expect(got.status).toBe(200);
    const { ssid, hosts } = got.json as { ssid: string; hosts: string[] };
    expect(hooks.order()).toEqual(['setup', `attach ${hosts[0]}`]);
    expect(hooks.runs().map((r) => r.alias)).toEqual(['', '']);
    expect(JSON.parse(hooks.runs()[1]!.data)).toEqual({ vlan: 42, ssid });

    expect((await server.get('/Node/fail', { ...alpha, ssid, node: hosts[0] })).status).toBe(200);
    await waitFor('the reported node detached and quarantined', async () => (await stateOf(hosts[0]!)) === 'Failed', WAIT_MS);
    expect(hooks.finished()).toContain(`detach ${ssid} ${hosts[0]}`);
  });

  test('a session that expires is detached and torn down like one that is done', async () => {
    const { ssid } = (await server.get('/Session/get', { ...alpha, lifetime: '1s' })).json as { ssid: string };
    const { hosts } = (await server.get('/Node/get', { ...alpha, ssid })).json as { hosts: string[] };
    await waitFor('the expired session torn down', async () => (await show(ssid)).teardown === 'done', WAIT_MS);
    expect(hooks.order().slice(-2)).toEqual([`detach ${hosts[0]}`, 'teardown']);
  });

  test('an alias that names an active session returns it without a second setup', async () => {
    await server.get('/Session/get', { ...alpha, alias: 'same' });
    const again = await server.get('/Session/get', { ...alpha, alias: 'same' });
    expect((again.json as { created: boolean }).created).toBe(false);
    expect(hooks.order()).toEqual(['setup']);
  });

  test('an alias whose session another call is still setting up: 503 to ask again, then that same session', async () => {
    hooks.cue('block-setup');
    const first = server.get('/Session/get', { ...alpha, alias: 'racing' });
    await waitFor('the first setup to start', () => hooks.order().includes('setup'), WAIT_MS);
    const second = await server.get('/Session/get', { ...alpha, alias: 'racing' });
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBe('1');
    expect(second.json).toEqual({ msg: 'Session racing is being set up by another call (its session-setup is running); ask again in a moment' });
    hooks.uncue('block-setup');
    const opened = (await first).json as { ssid: string; created: boolean };
    expect(opened.created).toBe(true);
    expect((await server.get('/Session/get', { ...alpha, alias: 'racing' })).json).toMatchObject({ ssid: opened.ssid, created: false });
    expect(hooks.order()).toEqual(['setup']);
  });
});

describe('failure rules', () => {
  test('setup fails: 503 with its last stderr line, no session, teardown cleans up, rate limit untouched', async () => {
    await start({ defaults: { 'rate-limit': '1/1h' } });
    hooks.cue('fail-setup');
    hooks.cue('block-teardown');
    const refused = await server.get('/Session/get', { ...alpha, alias: 'broken' });
    expect(refused.status).toBe(503);
    expect(refused.json).toEqual({ msg: 'Session setup failed: setup broke on cue' });
    const { ssid } = hooks.runs()[0]!;
    // Unknown to its client from the refusal on: while its teardown runs, and once that deleted it.
    const unknown = async (): Promise<void> => {
      expect((await server.get('/Session/show', { ...alpha, ssid })).status).toBe(403);
      expect((await server.get('/Session/show', { ...alpha, ssid: 'broken' })).status).toBe(403);
      expect((await server.get('/Session/list', alpha)).json).toEqual([]);
    };
    await waitFor('the teardown of the failed setup to start', () => hooks.order().includes('teardown'), WAIT_MS);
    await unknown();
    hooks.uncue('block-teardown');
    await waitFor('the teardown of the failed setup', () => hooks.finished().includes(`teardown ${ssid} UNSET`), WAIT_MS);
    await unknown();

    const legacy = await server.get('/Node/get', alpha);
    expect(legacy.status).toBe(503);
    expect(legacy.json).toEqual({ msg: 'Session setup failed: setup broke on cue' });
    await waitFor('the nodes ready again', allReady, WAIT_MS);

    hooks.uncue('fail-setup');
    // Neither failed setup counted: the one session the rate limit allows is still to be had.
    const opened = await server.get('/Session/get', { ...alpha, alias: 'broken' });
    expect(opened.status).toBe(200);
    expect((await server.get('/Session/get', alpha)).status).toBe(429);
    await waitFor('both failed sessions gone', async () => (await events('broken')).some((e) => e.reason.includes('session-teardown succeeded')), WAIT_MS);
  });

  test('setup prints something that is not a JSON object: refused clearly', async () => {
    await start();
    hooks.cue('setup-stdout', '["a list"]\n');
    const refused = await server.get('/Session/get', alpha);
    expect(refused.status).toBe(503);
    expect((refused.json as { msg: string }).msg).toBe('Session setup failed: the last line of its stdout is not a JSON object: ["a list"]');
    hooks.cue('setup-stdout', '');
    const opened = (await server.get('/Session/get', alpha)).json as { ssid: string };
    expect((await show(opened.ssid)).isolation).toEqual({});
  });

  test('setup times out: its process group is killed and the call answers 503', async () => {
    await start({}, '1s');
    hooks.cue('sleep-setup', '30');
    const refused = await server.get('/Session/get', alpha);
    expect(refused.status).toBe(503);
    expect((refused.json as { msg: string }).msg).toMatch(/^Session setup failed: session-setup timed out after 1s and was killed/);
    expect((await server.get('/metrics')).text).toMatch(/cinode_hook_runs_total\{hook="session-setup",outcome="timeout"\} 1/);
  });

  test('attach fails: that node is quarantined with its stderr and detached; the request is served with another', async () => {
    await start();
    hooks.cue('fail-attach-c7-1.test.example');
    const got = await server.get('/Node/get', { ...alpha, count: 2 });
    expect(got.status).toBe(200);
    const { ssid, hosts } = got.json as { ssid: string; hosts: string[] };
    expect(hosts.sort()).toEqual(['c7-2.test.example', 'c7-3.test.example']);
    await waitFor('the broken node detached and quarantined', async () => (await stateOf('c7-1.test.example')) === 'Failed', WAIT_MS);
    expect(hooks.finished()).toContain(`detach ${ssid} c7-1.test.example`);
    const node = ((await server.get('/Admin/nodes', admin)).json as Array<{ hostname: string; reason: string }>).find((n) => n.hostname === 'c7-1.test.example')!;
    expect(node.reason).toBe('node-attach failed: attach broke on cue');
    const failed = (await events(ssid)).find((e) => e.subject === 'node' && e.reason.startsWith('node-attach failed'))!;
    expect(failed.detail).toBe('something went wrong first\nattach broke on cue');
    expect(hooks.runs().filter((r) => r.hook === 'setup')).toHaveLength(1);
  });

  test('attach fails and too few nodes are left: capacity 503, every node this request attached detached, no session', async () => {
    await start();
    hooks.cue('fail-attach-pair-1.test.example');
    const got = await server.get('/Node/get', { ...alpha, ver: '8', count: 2 });
    expect(got.status).toBe(503);
    expect(got.text).toBe('Insufficient Nodes in READY State');
    const { ssid } = hooks.runs()[0]!;
    await waitFor('the segment torn down', () => hooks.finished().includes(`teardown ${ssid} UNSET`), WAIT_MS);
    expect(hooks.finished()).toEqual(expect.arrayContaining([`detach ${ssid} pair-1.test.example`, `detach ${ssid} pair-2.test.example`]));
    expect(await stateOf('pair-1.test.example')).toBe('Failed');
    await waitFor('the attached node ready again', async () => (await stateOf('pair-2.test.example')) === 'Ready', WAIT_MS);
    expect((await server.get('/Session/list', alpha)).json).toEqual([]);
    // In a live session, the session stays, and the node it attached leaves again.
    hooks.uncue('fail-attach-pair-1.test.example');
    const { ssid: live } = (await server.get('/Session/get', alpha)).json as { ssid: string };
    hooks.cue('fail-attach');
    expect((await server.get('/Node/get', { ...alpha, ssid: live, ver: '8' })).status).toBe(503);
    expect((await show(live)).state).toBe('active');
  });

  test('a node reported broken counts against the failed-node limit while its detach still runs', async () => {
    await start({ projects: { alpha: { 'max-failed-nodes': 1 } } });
    hooks.cue('block-detach');
    const { ssid, hosts } = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { ssid: string; hosts: string[] };
    expect((await server.get('/Node/fail', { ...alpha, ssid, node: hosts[0] })).status).toBe(200);
    await waitFor('its detach to start', () => hooks.order().includes(`detach ${hosts[0]}`), WAIT_MS);
    expect(await stateOf(hosts[0]!)).toBe('Deprovision'); // the legacy name of reclaiming
    const refused = await server.get('/Node/fail', { ...alpha, ssid, node: hosts[1] });
    expect([refused.status, refused.json]).toEqual([403, { msg: FAILED_NODE_LIMIT_MESSAGE }]);
    hooks.uncue('block-detach');
    await waitFor('the node quarantined', async () => (await stateOf(hosts[0]!)) === 'Failed', WAIT_MS);
    expect((await server.get('/Node/fail', { ...alpha, ssid, node: hosts[1] })).status).toBe(403);
    expect(await stateOf(hosts[1]!)).toBe('Deployed');
  });

  test('detach fails: the node is quarantined and the session goes on', async () => {
    await start();
    hooks.cue('fail-detach');
    const { ssid, hosts } = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { ssid: string; hosts: string[] };
    await server.get('/Node/done', { ...alpha, ssid, node: hosts[0] });
    await waitFor('the node quarantined', async () => (await stateOf(hosts[0]!)) === 'Failed', WAIT_MS);
    const node = ((await server.get('/Admin/nodes', admin)).json as Array<{ hostname: string; reason: string }>).find((n) => n.hostname === hosts[0])!;
    expect(node.reason).toBe(`node-detach failed (session ${ssid}): detach broke on cue`);
    expect((await show(ssid)).state).toBe('active');
    expect((await server.get('/Node/get', { ...alpha, ssid })).status).toBe(200);
  });

  test('teardown fails: the session is done for its client, teardown pending, retried until it works; an operator runs it again', async () => {
    await start();
    hooks.cue('fail-teardown');
    const { ssid } = (await server.get('/Session/get', alpha)).json as { ssid: string };
    expect((await server.get('/Admin/session/teardown', { ...admin, ssid })).status).toBe(409);
    await server.get('/Session/done', { ...alpha, ssid });
    await waitFor('a failed teardown', () => hooks.runs().some((r) => r.hook === 'teardown'), WAIT_MS);
    expect(await show(ssid)).toMatchObject({ state: 'done', teardown: 'pending' });
    hooks.uncue('fail-teardown');
    // The first retry comes within 10 s.
    await waitFor('the retried teardown', async () => (await show(ssid)).teardown === 'done', 15_000);
    expect(hooks.runs().filter((r) => r.hook === 'teardown')).toHaveLength(2);
    const reasons = (await events(ssid)).filter((e) => e.subject === 'hook').map((e) => e.reason);
    expect(reasons.some((r) => /^session-teardown failed \(exit status 3, .*\): teardown broke on cue$/.test(r))).toBe(true);

    const rerun = await server.get('/Admin/session/teardown', { ...admin, ssid });
    expect(rerun.status).toBe(200);
    expect(rerun.json).toEqual({ ssid, teardown: 'pending' });
    await waitFor('the teardown run again', () => hooks.runs().filter((r) => r.hook === 'teardown').length === 3, WAIT_MS);
    await waitFor('done again', async () => (await show(ssid)).teardown === 'done', WAIT_MS);
    expect((await server.get('/Admin/session/teardown', { ...admin, ssid: '00000000-0000-4000-8000-000000000000' })).status).toBe(404);
    expect((await server.get('/Admin/session/teardown', { ...alpha, ssid })).status).toBe(403);
  });
});

describe('more of the rules', () => {
  test('a teardown that keeps failing is given up a day after the session ended', async () => {
    const clock = new DrivenClock();
    await start({}, '20s', clock.now);
    hooks.cue('fail-teardown');
    const { ssid } = (await server.get('/Session/get', alpha)).json as { ssid: string };
    await server.get('/Session/done', { ...alpha, ssid });
    await waitFor('a failed teardown', async () => (await events(ssid)).some((e) => e.reason.startsWith('session-teardown failed')), WAIT_MS);
    expect((await show(ssid)).teardown).toBe('pending');
    clock.advance(TEARDOWN_GIVE_UP_MS + 60_000);
    server.server.isolation.kick();
    await waitFor('the teardown given up', async () => (await show(ssid)).teardown === 'failed', WAIT_MS);
    // The operator fixes the segment's problem and runs it again, with the command.
    hooks.uncue('fail-teardown');
    const run = await runCli(['admin', 'session', 'teardown', ssid], { CINODE_URL: server.url, CINODE_KEY: KEYS.beta });
    expect(run).toMatchObject({ code: 0, stdout: `${ssid}: teardown pending\n` });
    await waitFor('done', async () => (await show(ssid)).teardown === 'done', WAIT_MS);
    const refused = await runCli(['admin', 'session', 'teardown', ssid], { CINODE_URL: server.url, CINODE_KEY: KEYS.alpha });
    expect(refused.code).not.toBe(0);
  });

  test('only some hooks configured: the others succeed at once; held nodes are detached at the end', async () => {
    await start({ topYaml: hooks.yaml('20s', ['setup', 'detach']) });
    const { ssid, hosts } = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { ssid: string; hosts: string[] };
    expect(hooks.order()).toEqual(['setup']);
    expect((await server.get('/Node/fail', { ...alpha, ssid })).status).toBe(200);
    await server.get('/Session/done', { ...alpha, ssid });
    await waitFor('every node ready', allReady, WAIT_MS);
    expect(hooks.order().slice(1).sort()).toEqual(hosts.map((h) => `detach ${h}`).sort());
    await waitFor('the teardown done', async () => (await show(ssid)).teardown === 'done', WAIT_MS);
    expect((await show(ssid)).isolation).toEqual({ vlan: 42, ssid });
  });

  test('a hook that cannot start fails like one that exits non-zero', async () => {
    await start({ topYaml: ['isolation:', `  session-setup: [${JSON.stringify(`${hooks.dir}/missing.sh`)}]`] });
    const refused = await server.get('/Session/get', alpha);
    expect(refused.status).toBe(503);
    expect((refused.json as { msg: string }).msg).toMatch(/^Session setup failed: session-setup could not start ".*missing\.sh": /);
  });

  test('the environment of each hook, and the session data read from the last line of stdout', () => {
    const session = { ssid: 's-1', project: 'p', alias: null };
    expect(hookEnv('session-setup', session)).toEqual({ CINODE_PROJECT: 'p', CINODE_SSID: 's-1', CINODE_ALIAS: '' });
    expect(hookEnv('node-detach', { ...session, alias: 'a', data: { vlan: 7 } }, { hostname: 'n1', ip: null, pool: 'c7' })).toEqual({
      CINODE_PROJECT: 'p',
      CINODE_SSID: 's-1',
      CINODE_ALIAS: 'a',
      CINODE_SESSION_DATA: '{"vlan":7}',
      CINODE_HOSTNAME: 'n1',
      CINODE_IP: '',
      CINODE_POOL: 'c7',
    });
    expect(hookEnv('session-teardown', session).CINODE_SESSION_DATA).toBe('{}');
    expect(sessionData('')).toEqual({ data: {} });
    expect(sessionData('log line\n{"vlan": 1}\n\n')).toEqual({ data: { vlan: 1 } });
    expect(sessionData('{"vlan": 1}\nnot json')).toEqual({ problem: 'the last line of its stdout is not a JSON object: not json' });
    expect(sessionData('null')).toEqual({ problem: 'the last line of its stdout is not a JSON object: null' });
  });

  test('a failed teardown is retried after 10 s, doubling to at most 10 minutes, for a day', () => {
    const ended = 1_000_000;
    expect(teardownRetryAt(ended, ended, 0)).toBe(ended + 10_000);
    expect(teardownRetryAt(ended, ended, 1)).toBe(ended + 20_000);
    expect(teardownRetryAt(ended, ended, 5)).toBe(ended + 320_000);
    expect(teardownRetryAt(ended, ended, 6)).toBe(ended + 600_000);
    expect(teardownRetryAt(ended, ended, 500)).toBe(ended + 600_000);
    expect(teardownRetryAt(ended + TEARDOWN_GIVE_UP_MS, ended, 3)).toBeNull();
  });
});

describe('without isolation', () => {
  test('no hook runs, show has isolation and teardown null, and an operator cannot tear down', async () => {
    server = await startTestServer({ projects: { beta: { admin: true } } });
    const { ssid } = (await server.get('/Session/get', alpha)).json as { ssid: string };
    expect(await show(ssid)).toMatchObject({ isolation: null, teardown: null });
    await server.get('/Session/done', { ...alpha, ssid });
    expect(await show(ssid)).toMatchObject({ isolation: null, teardown: null });
    const refused = await server.get('/Admin/session/teardown', { ...admin, ssid });
    expect(refused.status).toBe(409);
    expect(refused.json).toEqual({ msg: `Session ${ssid} was opened without isolation hooks: it has no teardown` });
  });

  test('a reload that adds isolation: the next session is set up', async () => {
    server = await startTestServer({ projects: { beta: { admin: true } } });
    const { writeFileSync, readFileSync } = await import('node:fs');
    const config = readFileSync(server.configPath, 'utf8').replace('defaults:', `${hooks.yaml().join('\n')}\ndefaults:`);
    writeFileSync(server.configPath, config);
    await server.server.reload();
    const { ssid } = (await server.get('/Session/get', alpha)).json as { ssid: string };
    expect(hooks.order()).toEqual(['setup']);
    expect((await show(ssid)).isolation).toEqual({ vlan: 42, ssid });
  });
});

describe('configuration', () => {
  const base = 'projects: []\npools: []\n';
  const problems = (yaml: string): string[] => {
    try {
      parseConfig(yaml + base, 'cinode.yaml', {});
      return [];
    } catch (error) {
      return (error as { problems: string[] }).problems;
    }
  };

  test('each hook an argv list, each optional, timeout a duration (default 2m)', () => {
    const config = parseConfig(`isolation:\n  node-attach: [./attach.sh, --fast]\n${base}`, 'cinode.yaml', {});
    expect(config.isolation).toEqual({ sessionSetup: null, sessionTeardown: null, nodeAttach: ['./attach.sh', '--fast'], nodeDetach: null, timeoutMs: 120_000 });
    expect(parseConfig(base, 'cinode.yaml', {}).isolation).toBeNull();
  });

  test('bad values are refused with what is accepted', () => {
    expect(problems('isolation:\n  session-setup: ./setup.sh\n')).toEqual(['cinode.yaml:2: isolation.session-setup: expected a list, got "./setup.sh"']);
    expect(problems('isolation:\n  node-detach: []\n')).toEqual([
      'cinode.yaml:2: isolation.node-detach: expected the command and its arguments as a list, such as [./reinstall.sh, --fast]',
    ]);
    expect(problems('isolation:\n  timeout: soon\n')[0]).toMatch(/^cinode\.yaml:2: isolation\.timeout: expected /);
    expect(problems('isolation:\n  node-atach: [./a.sh]\n')).toEqual([
      'cinode.yaml:2: isolation.node-atach: unknown key (expected one of: session-setup, session-teardown, node-attach, node-detach, timeout)',
    ]);
  });
});
