/**
 * docs/api.md, "Heartbeats", against the real server over HTTP on loopback with a real database
 * (SQLite, or PostgreSQL under CINODE_TEST_DATABASE=postgres), on a driven clock: `heartbeat=` and
 * its bounds, `/Session/ping`, every call naming the session counting as a ping (refused ones too),
 * the `heartbeat` fields of `show`, and the reaper ending a silent session (`heartbeat-lost`),
 * never-expiring ones included.
 */
import { DrivenClock, reapNow } from './support/clock.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

interface Show {
  ssid: string;
  alias: string | null;
  state: 'active' | 'done';
  expires_at: string | null;
  end_reason: string | null;
  heartbeat: string | null;
  heartbeat_deadline: string | null;
  hosts: Array<{ hostname: string; state: string }>;
}

const alpha = { key: KEYS.alpha };
const never = { key: KEYS.never };
const RATE = { 'rate-limit': '100/5m' };
const SECOND = 1000;

let server: TestServer;
let clock: DrivenClock;

beforeEach(async () => {
  clock = new DrivenClock();
  server = await startTestServer({ defaults: RATE, reaperInterval: '1h' }, clock.now);
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
});

async function open(query: Record<string, string>): Promise<{ ssid: string; created: boolean }> {
  const reply = await server.get('/Session/get', query);
  expect(reply.status).toBe(200);
  return reply.json as { ssid: string; created: boolean };
}

async function show(ssid: string, key: string = KEYS.alpha): Promise<Show> {
  const reply = await server.get('/Session/show', { key, ssid });
  expect(reply.status).toBe(200);
  return reply.json as Show;
}

/** The session's fields as the database has them, read without a ping (the admin listing does not name it). */
async function stateOf(ssid: string, key: string = KEYS.alpha): Promise<'active' | 'done'> {
  const reply = await server.get('/Session/list', { key });
  return (reply.json as Show[]).some((s) => s.ssid === ssid) ? 'active' : 'done';
}

const iso = (ms: number) => new Date(ms).toISOString();

describe('heartbeat= on /Session/get', () => {
  test.each(['9s', '1h1s', '2h', '0s', 'never', 'soon', ''])('heartbeat=%s is refused with the accepted range', async (value) => {
    const reply = await server.get('/Session/get', { ...alpha, heartbeat: value });
    expect(reply.status).toBe(400);
    const { msg } = reply.json as { msg: string };
    expect(msg).toMatch(/^heartbeat: /);
    expect(msg).toContain('from 10s to 1h');
    expect(await server.get('/Session/list', alpha)).toMatchObject({ json: [] });
  });

  test('the bounds themselves are accepted, and show gives the heartbeat and its deadline', async () => {
    for (const [value, ms] of [
      ['10s', 10 * SECOND],
      ['1h', 3600 * SECOND],
      ['5m', 300 * SECOND],
    ] as const) {
      const { ssid } = await open({ ...alpha, heartbeat: value });
      const view = await show(ssid);
      expect(view).toMatchObject({ heartbeat: value, heartbeat_deadline: iso(clock.now() + ms) });
    }
  });

  test('a session without a heartbeat, and one a legacy /Node/get opened, show null for both fields', async () => {
    const { ssid } = await open(alpha);
    expect(await show(ssid)).toMatchObject({ heartbeat: null, heartbeat_deadline: null });
    const legacy = (await server.get('/Node/get', alpha)).json as { ssid: string };
    expect(await show(legacy.ssid)).toMatchObject({ heartbeat: null, heartbeat_deadline: null });
    // Years of silence end neither.
    clock.advance(400 * 86_400 * SECOND);
    await reapNow(server);
    expect((await show(ssid)).end_reason).toBe('expired');
  });

  test('re-opening by alias returns the session unchanged: the heartbeat given again is ignored', async () => {
    const first = await open({ ...alpha, alias: 'job-7', heartbeat: '30s' });
    clock.advance(20 * SECOND);
    const again = await open({ ...alpha, alias: 'job-7', heartbeat: '1h' });
    expect(again).toMatchObject({ ssid: first.ssid, created: false });
    // The re-open counts as a ping: the deadline moved on, the heartbeat stayed.
    expect(await show('job-7')).toMatchObject({ heartbeat: '30s', heartbeat_deadline: iso(clock.now() + 30 * SECOND) });
    // An alias re-opened without a heartbeat keeps it too.
    expect(await open({ ...alpha, alias: 'job-7' })).toMatchObject({ created: false });
    expect((await show('job-7')).heartbeat).toBe('30s');
  });
});

describe('losing the heartbeat', () => {
  test('a never-expiring session with nodes ends heartbeat-lost once its deadline passes; its nodes go to reclaim', async () => {
    const { ssid } = await open({ ...never, alias: 'forever', lifetime: 'never', heartbeat: '30s' });
    const got = (await server.get('/Node/get', { ...never, ssid, count: 2 })).json as { hosts: string[] };
    expect(got.hosts).toHaveLength(2);
    const lastPing = clock.now();

    clock.advance(30 * SECOND);
    expect(await reapNow(server)).toBe(0);
    expect(await stateOf(ssid, KEYS.never)).toBe('active');

    clock.advance(1);
    expect(await reapNow(server)).toBe(1);
    const ended = await show(ssid, KEYS.never);
    expect(ended).toMatchObject({ state: 'done', end_reason: 'heartbeat-lost', expires_at: null, heartbeat: '30s', heartbeat_deadline: null });
    expect(new Date((ended as unknown as { ended_at: string }).ended_at).getTime()).toBe(lastPing + 30 * SECOND + 1);
    // Without a reclaim command, the nodes are ready again at once.
    await waitFor('the nodes to be ready', async () => {
      const rows = (await server.get('/Inventory')).json as Array<[number, string, unknown, unknown, unknown, string]>;
      return got.hosts.every((h) => rows.find((r) => r[1] === h)?.[5] === 'Ready');
    });
    // The project's next calls see it done.
    expect((await server.get('/Node/get', { ...never, ssid })).status).toBe(409);
  });

  test('/Session/ping keeps a session alive, answers with the show body, and tells of a session that ended', async () => {
    const { ssid } = await open({ ...alpha, alias: 'kept', heartbeat: '10s' });
    for (let i = 0; i < 6; i++) {
      clock.advance(9 * SECOND);
      const ping = await server.get('/Session/ping', { ...alpha, ssid: i % 2 === 0 ? ssid : 'kept' });
      expect(ping.status).toBe(200);
      expect(ping.json).toMatchObject({ ssid, alias: 'kept', state: 'active', heartbeat: '10s', heartbeat_deadline: iso(clock.now() + 10 * SECOND), hosts: [] });
      await reapNow(server);
    }
    expect(await stateOf(ssid)).toBe('active');
    clock.advance(11 * SECOND);
    await reapNow(server);
    const late = await server.get('/Session/ping', { ...alpha, ssid });
    expect(late.status).toBe(200);
    expect(late.json).toMatchObject({ state: 'done', end_reason: 'heartbeat-lost', heartbeat_deadline: null });
  });

  test('a ping of an unknown or foreign session answers as the other session calls do; HEAD is refused', async () => {
    const { ssid } = await open({ ...alpha, heartbeat: '10s' });
    for (const query of [
      { ...alpha, ssid: '00000000-0000-4000-8000-000000000000' },
      { key: KEYS.beta, ssid },
      { ...alpha, ssid: 'bad ref!' },
    ]) {
      const reply = await server.get('/Session/ping', query);
      expect(reply).toMatchObject({ status: 403, json: { msg: 'Invalid session ID' } });
    }
    expect((await server.get('/Session/ping', { ssid })).status).toBe(403);
    expect((await server.get('/Session/ping', alpha)).status).toBe(400);
    const head = await fetch(`${server.url}/Session/ping?key=${KEYS.alpha}&ssid=${ssid}`, { method: 'HEAD' });
    expect(head.status).toBe(405);
  });

  test('every call naming the session counts as a ping, refused ones included', async () => {
    const { ssid } = await open({ ...alpha, alias: 'busy', heartbeat: '10s' });
    const got = (await server.get('/Node/get', { ...alpha, ssid, count: 3 })).json as { hosts: string[] };
    const calls: Array<[string, Record<string, string | number>, number]> = [
      ['/Node/get', { ssid }, 200],
      ['/Session/show', { ssid: 'busy' }, 200],
      ['/Session/extend', { ssid, lifetime: '1h' }, 200],
      ['/Node/done', { ssid, node: got.hosts[0]! }, 200],
      ['/Node/fail', { ssid, node: got.hosts[1]! }, 200],
      // Refused: too many nodes for now (503), a node not in the session (400), lifetime=never by policy (403).
      ['/Node/get', { ssid, count: 6 }, 503],
      ['/Node/done', { ssid, node: 'c9s-1.test.example' }, 400],
      ['/Session/extend', { ssid, lifetime: 'never' }, 403],
      ['/Node/fail', { ssid }, 200],
    ];
    for (const [path, query, status] of calls) {
      clock.advance(9 * SECOND);
      const reply = await server.get(path, { ...alpha, ...query });
      expect([path, reply.status]).toEqual([path, status]);
      await reapNow(server);
      expect([path, await stateOf(ssid)]).toEqual([path, 'active']);
    }
    // 9 calls 9 s apart: 81 s, eight heartbeats; silence then ends it.
    clock.advance(10 * SECOND + 1);
    await reapNow(server);
    expect(await show(ssid)).toMatchObject({ state: 'done', end_reason: 'heartbeat-lost' });
  });

  test('keepAlive (what a /Node/get waiting in the queue calls) keeps the session alive; sessions without a heartbeat or done are left alone', async () => {
    const { ssid } = await open({ ...alpha, heartbeat: '10s' });
    const plain = await open(alpha);
    const idOf = async (ref: string) => (await server.server.store.read().sessions.byRef(server.server.service.authenticate(KEYS.alpha).id, ref))!.id;
    for (let i = 0; i < 3; i++) {
      clock.advance(9 * SECOND);
      await server.server.service.keepAlive(await idOf(ssid));
      await server.server.service.keepAlive(await idOf(plain.ssid));
      await reapNow(server);
    }
    expect(await stateOf(ssid)).toBe('active');
    expect((await server.get('/Session/list', alpha)).json).toEqual(
      expect.arrayContaining([expect.objectContaining({ ssid, heartbeat_deadline: iso(clock.now() + 10 * SECOND) }), expect.objectContaining({ ssid: plain.ssid, heartbeat_deadline: null })]),
    );
    await server.get('/Session/done', { ...alpha, ssid });
    await server.server.service.keepAlive(await idOf(ssid));
    expect(await show(ssid)).toMatchObject({ state: 'done', end_reason: 'done', heartbeat_deadline: null });
  });

  test('calls on sessions without a heartbeat and on other sessions do not keep a session alive', async () => {
    const { ssid } = await open({ ...alpha, heartbeat: '10s' });
    const other = await open(alpha);
    clock.advance(6 * SECOND);
    await server.get('/Session/show', { ...alpha, ssid: other.ssid });
    await server.get('/Session/list', alpha);
    await server.get('/Inventory', alpha);
    clock.advance(5 * SECOND);
    expect(await reapNow(server)).toBe(1);
    expect(await show(ssid)).toMatchObject({ end_reason: 'heartbeat-lost' });
    expect(await show(other.ssid)).toMatchObject({ state: 'active', heartbeat: null });
  });
});
