/**
 * Nodes out of service, against the real server: held nodes (`/Node/fail` without node=) stay in
 * their session until the project's fail hold ends and then go to reclaim; failed nodes (with
 * node=) and disabled ones are never handed out until an operator returns them, through reclaim;
 * operators' calls refuse what does not apply; and the event history tells a session's story.
 * Time is a driven clock: holds end and events age when the test moves it on and asks for a
 * reaper pass, not after real seconds; only the reclaim commands run in real time.
 */
import type { AdminNodeView, EventView } from '../src/api/types.js';
import { DrivenClock, reapNow } from './support/clock.js';
import { ScriptDir } from './support/scripts.js';
import { hostnameOf, KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

interface Got {
  hosts: string[];
  ssid: string;
}
interface Show {
  ssid: string;
  state: 'active' | 'done';
  expires_at: string | null;
  hosts: Array<{ hostname: string; state: string }>;
}

const alpha = { key: KEYS.alpha };
const beta = { key: KEYS.beta };
const never = { key: KEYS.never };
const POOL = { name: 'c7', ver: '7', nodes: 3 };
const c7 = (n: number): string => hostnameOf(POOL, n - 1);
const FAIL_HOLD_MS = 2_000;

let server: TestServer | undefined;
let dir: ScriptDir | undefined;

afterEach(async () => {
  await server?.close();
  if (server) removeDir(server.dir);
  dir?.remove();
  server = dir = undefined;
});

/**
 * Three nodes whose reclaim logs their names; beta is the operators' project. The reaper's timer
 * is set beyond any test (1h): its passes are the ones a test asks for, at the driven clock's time.
 */
async function launch(): Promise<{ s: TestServer; clock: DrivenClock; reclaimed: () => string[] }> {
  const scripts = (dir = new ScriptDir());
  const reclaim = scripts.script('reclaim.sh', 'echo "$CINODE_HOSTNAME" >> "$1"');
  const hold = { 'fail-hold': `${FAIL_HOLD_MS / 1000}s` };
  const clock = new DrivenClock();
  server = await startTestServer(
    {
      reaperInterval: '1h',
      defaults: { 'rate-limit': '100/5m' },
      projects: { alpha: hold, never: hold, beta: { admin: true } },
      pools: [{ ...POOL, reclaim: [reclaim, scripts.path('reclaimed.log')], reclaimTimeout: '30s' }],
    },
    clock.now,
  );
  return { s: server, clock, reclaimed: () => scripts.lines('reclaimed.log') };
}

async function ok<T>(s: TestServer, path: string, query: Record<string, string | number>): Promise<T> {
  const reply = await s.get(path, query);
  expect([reply.status, path]).toEqual([200, path]);
  return reply.json as T;
}

async function stateOf(s: TestServer, hostname: string): Promise<string | undefined> {
  const rows = (await s.get('/Inventory')).json as Array<[number, string, string | null, string | null, number, string]>;
  return rows.find((r) => r[1] === hostname)?.[5];
}

async function waitForState(s: TestServer, hostnames: readonly string[], state: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(`${hostnames.join(', ')} ${state}`, async () => {
    const states = await Promise.all(hostnames.map((h) => stateOf(s, h)));
    return states.every((st) => st === state);
  }, timeoutMs);
}

/** Takes every ready node and checks which they are, checks no project gets another, gives them back and waits until they are ready. */
async function exhaust(s: TestServer, expected: string[]): Promise<void> {
  const got = await ok<Got>(s, '/Node/get', { ...alpha, count: expected.length });
  expect([...got.hosts].sort()).toEqual(expected);
  for (const project of [alpha, beta, never]) expect((await s.get('/Node/get', project)).status).toBe(503);
  await ok(s, '/Node/done', { ...alpha, ssid: got.ssid });
  await waitForState(s, expected, 'Ready');
}

describe('held nodes', () => {
  test('stay in their session until the fail hold ends, then go to reclaim, though the session never expires', async () => {
    const { s, clock, reclaimed } = await launch();
    const opened = await ok<{ ssid: string; expires_at: string | null }>(s, '/Session/get', { ...never, alias: 'dbg', lifetime: 'never' });
    expect(opened.expires_at).toBeNull();
    const got = await ok<Got>(s, '/Node/get', { ...never, ssid: 'dbg', count: 2 });
    expect(got.hosts).toEqual([c7(1), c7(2)]);

    expect((await s.get('/Node/fail', { ...never, ssid: 'dbg' })).text).toBe('"Done"');
    const held = await ok<Show>(s, '/Session/show', { ...never, ssid: 'dbg' });
    expect(held).toMatchObject({ state: 'active', expires_at: null });
    expect(held.hosts).toEqual([expect.objectContaining({ hostname: c7(1), state: 'held' }), expect.objectContaining({ hostname: c7(2), state: 'held' })]);
    expect(await stateOf(s, c7(1))).toBe('Fail');
    expect(await ok(s, '/Inventory', never)).toEqual([
      [c7(1), got.ssid],
      [c7(2), got.ssid],
    ]);
    const heldViews = await ok<AdminNodeView[]>(s, '/Admin/nodes', { ...beta, state: 'held' });
    expect(heldViews.map((n) => [n.hostname, n.ssid])).toEqual([
      [c7(1), got.ssid],
      [c7(2), got.ssid],
    ]);
    const until = /^held for debugging by never until (\S+)$/.exec(heldViews[0]!.reason ?? '')?.[1];
    expect(until).toBeDefined();

    // Meanwhile nobody else gets them: only the third node is ready.
    expect((await s.get('/Node/get', { ...alpha, count: 2 })).status).toBe(503);
    expect((await ok<Got>(s, '/Node/get', alpha)).hosts).toEqual([c7(3)]);

    // A moment before the hold ends a reaper pass keeps them; the first pass after it sends them to reclaim.
    clock.advanceTo(Date.parse(until!) - 1);
    await reapNow(s);
    expect(await stateOf(s, c7(1))).toBe('Fail');
    expect(reclaimed()).toEqual([]);
    clock.advance(FAIL_HOLD_MS);
    await reapNow(s);
    await waitForState(s, got.hosts, 'Ready', 15_000);
    expect([...reclaimed()].sort()).toEqual(got.hosts);
    const ended = (await ok<EventView[]>(s, '/Admin/events', { ...beta, hostname: c7(1) })).find((e) => e.from === 'held');
    expect(ended).toMatchObject({ to: 'reclaiming', reason: 'hold ended', ssid: got.ssid, project: 'never', alias: 'dbg' });
    expect(Date.parse(ended!.at)).toBeGreaterThanOrEqual(Date.parse(until!));

    // The session lives on without them, and can take nodes again.
    expect(await ok<Show>(s, '/Session/show', { ...never, ssid: 'dbg' })).toMatchObject({ state: 'active', expires_at: null, hosts: [] });
    expect((await ok<Got>(s, '/Node/get', { ...never, ssid: 'dbg' })).ssid).toBe(got.ssid);
  });

  test('an operator may release a held node before its hold ends: it leaves the session through reclaim', async () => {
    const { s, reclaimed } = await launch();
    const got = await ok<Got>(s, '/Node/get', { ...never, count: 2 });
    await ok(s, '/Node/fail', { ...never, ssid: got.ssid });

    const released = await ok<AdminNodeView>(s, '/Admin/node/release', { ...beta, hostname: c7(1) });
    expect(released).toMatchObject({ hostname: c7(1), state: 'reclaiming', ssid: null, reason: 'released by an operator of project beta' });
    await waitForState(s, [c7(1)], 'Ready', 15_000);
    expect(reclaimed()).toEqual([c7(1)]);
    const show = await ok<Show>(s, '/Session/show', { ...never, ssid: got.ssid });
    expect(show.hosts).toEqual([expect.objectContaining({ hostname: c7(2), state: 'held' })]);
  });
});

describe('failed nodes', () => {
  test('are never handed out, whoever asks and however often, until an operator releases them', async () => {
    const { s, reclaimed } = await launch();
    const got = await ok<Got>(s, '/Node/get', alpha);
    expect(got.hosts).toEqual([c7(1)]);
    expect((await s.get('/Node/fail', { ...alpha, ssid: got.ssid, node: c7(1) })).text).toBe('"Done"');

    expect(await stateOf(s, c7(1))).toBe('Failed');
    expect((await ok<Show>(s, '/Session/show', { ...alpha, ssid: got.ssid })).hosts).toEqual([]);
    const failed = await ok<AdminNodeView[]>(s, '/Admin/nodes', { ...beta, state: 'failed' });
    expect(failed).toEqual([expect.objectContaining({ hostname: c7(1), ssid: null, reason: expect.stringMatching(`^reported broken by project alpha \\(alias none, session ${got.ssid}\\)`) })]);

    // c7-1 is the least used node: it would come first if it could come at all.
    for (let round = 0; round < 3; round++) await exhaust(s, [c7(2), c7(3)]);
    expect(await stateOf(s, c7(1))).toBe('Failed');
    expect(reclaimed()).not.toContain(c7(1));

    const released = await ok<AdminNodeView>(s, '/Admin/node/release', { ...beta, hostname: c7(1) });
    expect(released).toMatchObject({ state: 'reclaiming', reason: 'released by an operator of project beta' });
    await waitForState(s, [c7(1)], 'Ready', 15_000);
    expect(reclaimed().filter((h) => h === c7(1))).toHaveLength(1);
    expect((await ok<Got>(s, '/Node/get', alpha)).hosts).toEqual([c7(1)]);
  });
});

describe('operators', () => {
  test('disable takes a ready node out of service; enable returns it through reclaim', async () => {
    const { s, clock, reclaimed } = await launch();
    const disabled = await ok<AdminNodeView>(s, '/Admin/node/disable', { ...beta, hostname: c7(1) });
    expect(disabled).toMatchObject({ hostname: c7(1), state: 'disabled', reason: 'disabled by an operator of project beta' });
    expect(await stateOf(s, c7(1))).toBe('Reserved');

    expect((await s.get('/Node/get', { ...alpha, count: 3 })).status).toBe(503);
    await exhaust(s, [c7(2), c7(3)]);
    // The reaper and reclaim come and go, a day later: a disabled node stays disabled.
    clock.advance(86_400_000);
    await reapNow(s);
    expect(await stateOf(s, c7(1))).toBe('Reserved');

    const enabled = await ok<AdminNodeView>(s, '/Admin/node/enable', { ...beta, hostname: c7(1) });
    expect(enabled).toMatchObject({ state: 'reclaiming', reason: 'enabled by an operator of project beta' });
    await waitForState(s, [c7(1)], 'Ready', 15_000);
    expect(reclaimed().filter((h) => h === c7(1))).toHaveLength(1);
    expect((await ok<Got>(s, '/Node/get', alpha)).hosts).toEqual([c7(1)]);
  });

  test('calls that do not apply are refused by name, and only admin projects may make them', async () => {
    const { s } = await launch();
    const got = await ok<Got>(s, '/Node/get', alpha);
    expect(got.hosts).toEqual([c7(1)]);

    const refusals: Array<[string, Record<string, string>, number, string]> = [
      ['/Admin/node/release', { hostname: c7(2) }, 409, `Node ${c7(2)} is ready; release returns failed and held nodes to service`],
      ['/Admin/node/enable', { hostname: c7(2) }, 409, `Node ${c7(2)} is ready; enable returns disabled nodes to service`],
      ['/Admin/node/disable', { hostname: c7(1) }, 409, `Node ${c7(1)} is deployed in session ${got.ssid}; disable takes ready, failed and held nodes out of service`],
      ['/Admin/node/release', { hostname: 'nope.example' }, 404, 'No node nope.example; cinode admin nodes lists the nodes in service'],
      ['/Admin/events', { hostname: 'nope.example' }, 404, 'No node nope.example; cinode admin nodes lists the nodes in service'],
    ];
    for (const [path, query, status, msg] of refusals) {
      const reply = await s.get(path, { ...beta, ...query });
      expect([path, reply.status, reply.json]).toEqual([path, status, { msg }]);
    }

    const notAdmin = 'Project alpha may not make admin calls; they need the key of a project with admin: true';
    for (const path of ['/Admin/nodes', '/Admin/events', '/Admin/node/disable']) {
      const reply = await s.get(path, { ...alpha, hostname: c7(2) });
      expect([path, reply.status, reply.json]).toEqual([path, 403, { msg: notAdmin }]);
    }
    expect((await s.get('/Admin/nodes', { key: 'not-a-key' })).json).toEqual({ msg: 'Invalid duffy key' });
    // The Bearer header works as well as key=.
    const viaHeader = await s.get('/Admin/nodes', {}, { authorization: `Bearer ${KEYS.beta}` });
    expect(viaHeader.status).toBe(200);

    // Nothing refused changed anything.
    expect((viaHeader.json as AdminNodeView[]).map((n) => [n.hostname, n.state])).toEqual([
      [c7(1), 'deployed'],
      [c7(2), 'ready'],
      [c7(3), 'ready'],
    ]);
  });
});

describe('the event history of a session', () => {
  test('by alias or ssid: opened, its nodes coming and going, done, with project and alias', async () => {
    const { s } = await launch();
    const opened = await ok<{ ssid: string }>(s, '/Session/get', { ...alpha, alias: 'ev' });
    const got = await ok<Got>(s, '/Node/get', { ...alpha, ssid: 'ev' });
    expect(got.hosts).toEqual([c7(1)]);
    await ok(s, '/Node/done', { ...alpha, ssid: 'ev' });
    await waitForState(s, [c7(1)], 'Ready');

    const story = (events: EventView[]) => events.map((e) => [e.subject, e.hostname, e.from, e.to, e.reason, e.project, e.alias, e.ssid]);
    const expected = [
      ['session', null, null, 'active', 'opened', 'alpha', 'ev', opened.ssid],
      ['node', c7(1), 'ready', 'deployed', 'allocated', 'alpha', 'ev', opened.ssid],
      ['session', null, 'active', 'done', 'session done', 'alpha', 'ev', opened.ssid],
      ['node', c7(1), 'deployed', 'reclaiming', 'session done', 'alpha', 'ev', opened.ssid],
    ];
    expect(story(await ok<EventView[]>(s, '/Admin/events', { ...beta, session: 'ev' }))).toEqual(expected);
    expect(story(await ok<EventView[]>(s, '/Admin/events', { ...beta, session: opened.ssid }))).toEqual(expected);
    // limit keeps the latest.
    expect(story(await ok<EventView[]>(s, '/Admin/events', { ...beta, session: 'ev', limit: 2 }))).toEqual(expected.slice(2));
  });
});

test('the reaper drops events older than event-retention, and keeps newer ones', async () => {
  const clock = new DrivenClock();
  server = await startTestServer(
    { reaperInterval: '1h', topYaml: ['event-retention: 1h'], projects: { beta: { admin: true } }, pools: [POOL] },
    clock.now,
  );
  const s = server;
  const got = await ok<Got>(s, '/Node/get', { ...alpha, ver: '7' });
  const historyOf = async (): Promise<EventView[]> => ok<EventView[]>(s, '/Admin/events', { ...beta, hostname: got.hosts[0]! });
  expect((await historyOf()).map((e) => e.to)).toEqual(['ready', 'deployed']);

  // An hour on, exactly the retention: a pass keeps them.
  clock.advance(3_600_000);
  await reapNow(s);
  expect((await historyOf()).map((e) => e.to)).toEqual(['ready', 'deployed']);

  clock.advance(3_600_000); // two hours on: past the retention
  await ok(s, '/Node/done', { ...alpha, ssid: got.ssid });
  await reapNow(s);
  expect(await historyOf()).toHaveLength(1);
  const [kept] = await historyOf();
  expect(kept).toMatchObject({ from: 'deployed', to: 'ready', reason: 'session done' });
});
