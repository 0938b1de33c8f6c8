/**
 * docs/api.md against the real server over HTTP on loopback, with a real SQLite file: the legacy
 * calls unchanged, the session calls, the error table and its precedence.
 */
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: TestServer;

beforeEach(async () => {
  server = await startTestServer({
    defaults: { 'rate-limit': '100/5m' },
    projects: { beta: { 'node-quota': 3 } },
  });
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
});

const alpha = { key: KEYS.alpha };

/**
 * An answer's expires_at is `lifetimeMs` after the server's clock while it answered: between
 * `before` (taken before the call) and now, give or take a second of rounding. Bracketed rather
 * than within a few seconds of one reading, so that a slow answer on a loaded machine passes.
 */
function expectExpiresAfter(expiresAt: string, lifetimeMs: number, before: number): void {
  const at = Date.parse(expiresAt);
  expect(at).toBeGreaterThanOrEqual(before + lifetimeMs - 1000);
  expect(at).toBeLessThanOrEqual(Date.now() + lifetimeMs + 1000);
}

async function inventory(): Promise<unknown[][]> {
  return (await server.get('/Inventory')).json as unknown[][];
}

async function stateOf(hostname: string): Promise<string> {
  const row = (await inventory()).find((r) => r[1] === hostname);
  return row?.[5] as string;
}

describe('legacy /Node/get and /Node/done', () => {
  test('a session with nodes: hosts and a full UUID ssid, then done', async () => {
    const got = await server.get('/Node/get', { ...alpha, count: 2 });
    expect(got.status).toBe(200);
    expect(got.headers.get('content-type')).toMatch(/application\/json/);
    const body = got.json as { hosts: string[]; ssid: string };
    expect(Object.keys(body).sort()).toEqual(['hosts', 'ssid']);
    expect(body.hosts).toHaveLength(2);
    expect(body.ssid).toMatch(UUID_V4);
    // defaults: ver 7, arch x86_64, no flavor -> pool c7
    for (const host of body.hosts) expect(host).toMatch(/^c7-\d\.test\.example$/);

    const done = await server.get('/Node/done', { ...alpha, ssid: body.ssid });
    expect(done.status).toBe(200);
    expect(done.text).toBe('"Done"');
    expect(done.headers.get('content-type')).toMatch(/application\/json/);

    const again = await server.get('/Node/done', { ...alpha, ssid: body.ssid });
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ msg: 'Session not in Prod' });
  });

  test('ver, arch and flavor choose the pool; aarch64 without flavor falls back to tiny', async () => {
    const c9s = (await server.get('/Node/get', { ...alpha, ver: '9-stream', arch: 'x86_64' })).json as { hosts: string[] };
    expect(c9s.hosts[0]).toMatch(/^c9s-/);
    const arm = (await server.get('/Node/get', { ...alpha, ver: '9-stream', arch: 'aarch64' })).json as { hosts: string[] };
    expect(arm.hosts[0]).toMatch(/^arm-/);
    const armTiny = (await server.get('/Node/get', { ...alpha, ver: '9-stream', arch: 'aarch64', flavor: 'tiny' })).json as { hosts: string[] };
    expect(armTiny.hosts[0]).toMatch(/^arm-/);
    const emptyFlavor = await server.get('/Node/get', 'key=' + KEYS.alpha + '&ver=9-stream&arch=x86_64&flavor=');
    expect(emptyFlavor.status).toBe(200);
  });

  test('least used ready nodes are chosen first', async () => {
    const first = (await server.get('/Node/get', { ...alpha, count: 1 })).json as { hosts: string[]; ssid: string };
    expect(first.hosts).toEqual(['c7-1.test.example']);
    await server.get('/Node/done', { ...alpha, ssid: first.ssid });
    await waitFor('c7-1 ready again', async () => (await stateOf('c7-1.test.example')) === 'Ready');
    const second = (await server.get('/Node/get', { ...alpha, count: 6 })).json as { hosts: string[] };
    // c7-1 has been used once: it comes last
    expect(second.hosts[5]).toBe('c7-1.test.example');
  });

  test('no pool, count beyond the pools, capacity', async () => {
    const noPool = await server.get('/Node/get', { ...alpha, ver: '5' });
    expect(noPool.status).toBe(400);
    expect(noPool.json).toEqual({ msg: 'No pool serves ver=5 arch=x86_64 flavor=none' });

    const tooMany = await server.get('/Node/get', { ...alpha, count: 7 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json).toEqual({ msg: 'count 7 exceeds the 6 nodes pool c7 can hold' });

    const held = await server.get('/Node/get', { ...alpha, count: 5 });
    expect(held.status).toBe(200);
    const short = await server.get('/Node/get', { ...alpha, count: 2 });
    expect(short.status).toBe(503);
    expect(short.text).toBe('Insufficient Nodes in READY State');
    expect(short.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(Number(short.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('sessions that live apart from their nodes', () => {
  test('a session with no nodes, nodes added twice, one host dropped, session done', async () => {
    const opened = await server.get('/Session/get', { ...alpha, alias: 'job/42:storage@x' });
    expect(opened.status).toBe(200);
    const session = opened.json as { ssid: string; alias: string; hosts: string[]; expires_at: string; created: boolean };
    expect(session.ssid).toMatch(UUID_V4);
    expect(session).toMatchObject({ alias: 'job/42:storage@x', hosts: [], created: true });
    expect(new Date(session.expires_at).toISOString()).toBe(session.expires_at);

    const add1 = (await server.get('/Node/get', { ...alpha, ssid: session.ssid, count: 2 })).json as { hosts: string[]; ssid: string };
    expect(add1.ssid).toBe(session.ssid);
    expect(add1.hosts).toHaveLength(2);
    // by alias; the body lists the new hosts only
    const add2 = (await server.get('/Node/get', { ...alpha, ssid: 'job/42:storage@x', count: 1 })).json as { hosts: string[]; ssid: string };
    expect(add2.hosts).toHaveLength(1);
    expect(add1.hosts).not.toContain(add2.hosts[0]);

    const drop = await server.get('/Node/done', { ...alpha, ssid: session.ssid, node: add1.hosts[0] });
    expect(drop.text).toBe('"Done"');
    const shown = (await server.get('/Session/show', { ...alpha, ssid: session.ssid })).json as { hosts: Array<{ hostname: string }>; state: string };
    expect(shown.state).toBe('active');
    expect(shown.hosts.map((h) => h.hostname).sort()).toEqual([add1.hosts[1], add2.hosts[0]].sort());

    // dropping every host keeps the session active
    const dropRest = await server.get('/Node/done', `key=${KEYS.alpha}&ssid=${session.ssid}&node=${add1.hosts[1]},${add2.hosts[0]}`);
    expect(dropRest.text).toBe('"Done"');
    const empty = (await server.get('/Session/show', { ...alpha, ssid: session.ssid })).json as { hosts: unknown[]; state: string };
    expect(empty).toMatchObject({ state: 'active', hosts: [] });

    const done = await server.get('/Session/done', { ...alpha, ssid: 'job/42:storage@x' });
    expect(done.text).toBe('"Done"');
    const doneAgain = await server.get('/Session/done', { ...alpha, ssid: session.ssid });
    expect(doneAgain.status).toBe(200);
    expect(doneAgain.text).toBe('"Done"');
    const after = (await server.get('/Session/show', { ...alpha, ssid: session.ssid })).json as Record<string, unknown>;
    expect(after).toMatchObject({ state: 'done', end_reason: 'done' });
    expect(typeof after.ended_at).toBe('string');
  });

  test('/Session/get is idempotent by alias; the alias is reusable once done', async () => {
    const first = (await server.get('/Session/get', { ...alpha, alias: 'build-7' })).json as { ssid: string; created: boolean };
    await server.get('/Node/get', { ...alpha, ssid: 'build-7' });
    const second = (await server.get('/Session/get', { ...alpha, alias: 'build-7', lifetime: '1h' })).json as {
      ssid: string;
      created: boolean;
      hosts: string[];
    };
    expect(second.ssid).toBe(first.ssid);
    expect(second.created).toBe(false);
    expect(second.hosts).toHaveLength(1);
    expect((await server.get('/Session/list', alpha)).json).toHaveLength(1);

    await server.get('/Session/done', { ...alpha, ssid: 'build-7' });
    const third = (await server.get('/Session/get', { ...alpha, alias: 'build-7' })).json as { ssid: string; created: boolean };
    expect(third.created).toBe(true);
    expect(third.ssid).not.toBe(first.ssid);
    // the alias now names the active session; its done one is still reachable by ssid
    expect(((await server.get('/Session/show', { ...alpha, ssid: 'build-7' })).json as { ssid: string }).ssid).toBe(third.ssid);
    await server.get('/Session/done', { ...alpha, ssid: 'build-7' });
    // with no active one, the alias names the most recent done session
    expect(((await server.get('/Session/show', { ...alpha, ssid: 'build-7' })).json as { ssid: string }).ssid).toBe(third.ssid);
  });

  test('list shows active sessions newest first, in the show shape', async () => {
    const a = (await server.get('/Session/get', { ...alpha, alias: 'a' })).json as { ssid: string };
    const b = (await server.get('/Node/get', alpha)).json as { ssid: string };
    const list = (await server.get('/Session/list', alpha)).json as Array<Record<string, unknown>>;
    expect(list.map((s) => s.ssid)).toEqual([b.ssid, a.ssid]);
    expect(Object.keys(list[0]!).sort()).toEqual(['alias', 'created_at', 'end_reason', 'ended_at', 'expires_at', 'heartbeat', 'heartbeat_deadline', 'hosts', 'isolation', 'ssid', 'state', 'teardown']);
    expect(Object.keys((list[0]!.hosts as object[])[0]!).sort()).toEqual(['arch', 'flavor', 'hostname', 'ip', 'state', 'ver']);
    expect((list[0]!.hosts as Array<{ state: string }>)[0]!.state).toBe('deployed');
  });

  test('lifetime: default, capped by the maximum, never only by policy, extend', async () => {
    const t0 = Date.now();
    const dflt = (await server.get('/Session/get', alpha)).json as { expires_at: string };
    expectExpiresAfter(dflt.expires_at, 6 * 3600_000, t0);

    const t1 = Date.now();
    const capped = (await server.get('/Session/get', { ...alpha, lifetime: '2d' })).json as { expires_at: string };
    expectExpiresAfter(capped.expires_at, 12 * 3600_000, t1);

    const never = await server.get('/Session/get', { ...alpha, lifetime: 'never' });
    expect(never.status).toBe(403);
    expect((never.json as { msg: string }).msg).toMatch(/never/);

    const allowed = (await server.get('/Session/get', { key: KEYS.never, lifetime: 'never', alias: 'forever' })).json as { expires_at: null };
    expect(allowed.expires_at).toBeNull();

    const s = (await server.get('/Session/get', { ...alpha, alias: 'ext', lifetime: '3h' })).json as { ssid: string; expires_at: string };
    // An extend never shortens: asking for 1h30m of a session with 3h left keeps the 3h.
    const kept = await server.get('/Session/extend', { ...alpha, ssid: 'ext', lifetime: '1h30m' });
    expect(kept.status).toBe(200);
    const keptView = kept.json as { ssid: string; expires_at: string; state: string };
    expect(keptView.ssid).toBe(s.ssid);
    expect(keptView.expires_at).toBe(s.expires_at);
    expect(((await server.get('/Session/show', { ...alpha, ssid: 'ext' })).json as { expires_at: string }).expires_at).toBe(s.expires_at);
    const t2 = Date.now();
    const extended = await server.get('/Session/extend', { ...alpha, ssid: 'ext', lifetime: '5h' });
    expect(extended.status).toBe(200);
    const view = extended.json as { ssid: string; expires_at: string; state: string };
    expectExpiresAfter(view.expires_at, 5 * 3600_000, t2);
    // Capped by the project's maximum (12h), still later than before.
    const t3 = Date.now();
    const cappedExtend = (await server.get('/Session/extend', { ...alpha, ssid: 'ext', lifetime: '2d' })).json as { expires_at: string };
    expectExpiresAfter(cappedExtend.expires_at, 12 * 3600_000, t3);
    // A session that never expires stays so.
    const foreverExtended = (await server.get('/Session/extend', { key: KEYS.never, ssid: 'forever', lifetime: '1h' })).json as { expires_at: null };
    expect(foreverExtended.expires_at).toBeNull();

    const extNever = await server.get('/Session/extend', { ...alpha, ssid: 'ext', lifetime: 'never' });
    expect(extNever.status).toBe(403);
    const missing = await server.get('/Session/extend', { ...alpha, ssid: 'ext' });
    expect(missing.status).toBe(400);
    expect((missing.json as { msg: string }).msg).toMatch(/^lifetime/);
  });
});

describe('/Node/fail', () => {
  test('without node: nodes held for debugging, shown as Fail, expiry moved to the fail hold', async () => {
    const got = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { hosts: string[]; ssid: string };
    const failedAt = Date.now();
    const fail = await server.get('/Node/fail', { ...alpha, ssid: got.ssid });
    const answeredAt = Date.now();
    expect(fail.text).toBe('"Done"');
    expect(await stateOf(got.hosts[0]!)).toBe('Fail');
    const view = (await server.get('/Session/show', { ...alpha, ssid: got.ssid })).json as { expires_at: string; hosts: Array<{ state: string }> };
    expect(view.hosts.map((h) => h.state)).toEqual(['held', 'held']);
    // The fail hold (12h) from when the fail was answered.
    expect(Date.parse(view.expires_at)).toBeGreaterThanOrEqual(failedAt + 12 * 3600_000 - 1000);
    expect(Date.parse(view.expires_at)).toBeLessThanOrEqual(answeredAt + 12 * 3600_000 + 1000);
    // done still ends it early
    expect((await server.get('/Node/done', { ...alpha, ssid: got.ssid })).text).toBe('"Done"');
    await waitFor('held nodes reclaimed', async () => (await stateOf(got.hosts[0]!)) === 'Ready');
  });

  test('with node: the host leaves the session into quarantine with the reporter as reason', async () => {
    await server.get('/Session/get', { ...alpha, alias: 'flaky' });
    const got = (await server.get('/Node/get', { ...alpha, ssid: 'flaky', count: 2 })).json as { hosts: string[]; ssid: string };
    const fail = await server.get('/Node/fail', { ...alpha, ssid: 'flaky', node: got.hosts[0] });
    expect(fail.text).toBe('"Done"');
    expect(await stateOf(got.hosts[0]!)).toBe('Failed');
    const row = (await inventory()).find((r) => r[1] === got.hosts[0]);
    expect(row?.[11]).toBe(0); // out of the allocation pool
    const view = (await server.get('/Session/show', { ...alpha, ssid: 'flaky' })).json as { hosts: Array<{ hostname: string }>; state: string };
    expect(view.state).toBe('active');
    expect(view.hosts.map((h) => h.hostname)).toEqual([got.hosts[1]]);
    const stored = await server.server.store.read().nodes.list();
    expect(stored.find((n) => n.hostname === got.hosts[0])?.reason).toMatch(/reported broken by project alpha \(alias flaky, session .*\) at \d{4}-/);
  });

  test('the failed/held node limit', async () => {
    const got = (await server.get('/Node/get', { ...alpha, count: 6 })).json as { hosts: string[]; ssid: string };
    const over = await server.get('/Node/fail', { ...alpha, ssid: got.ssid });
    expect(over.status).toBe(403);
    expect(over.json).toEqual({ msg: 'Exceeded maximum allowed fail nodes limit, please release other machines to continue' });
    const five = await server.get('/Node/fail', { ...alpha, ssid: got.ssid, node: got.hosts.slice(0, 5).join(',') });
    expect(five.text).toBe('"Done"');
    const sixth = await server.get('/Node/fail', { ...alpha, ssid: got.ssid, node: got.hosts[5] });
    expect(sixth.status).toBe(403);
  });
});

describe('the inventory', () => {
  test('unkeyed: 14-element rows by id with legacy state names and types', async () => {
    const got = (await server.get('/Node/get', alpha)).json as { hosts: string[]; ssid: string };
    const rows = await inventory();
    expect(rows).toHaveLength(12);
    expect(rows.map((r) => r[0])).toEqual([...rows.map((r) => r[0] as number)].sort((a, b) => a - b));
    for (const row of rows) {
      expect(row).toHaveLength(14);
      expect(typeof row[0]).toBe('number');
      expect(typeof row[4]).toBe('number');
      expect(typeof row[9]).toBe('string');
      expect([0, 1]).toContain(row[11]);
    }
    const mine = rows.find((r) => r[1] === got.hosts[0])!;
    expect(mine[5]).toBe('Deployed');
    expect(mine[6]).toBe(got.ssid);
    const free = rows.find((r) => r[1] === 'c9s-1.test.example')!;
    expect(free).toEqual([free[0], 'c9s-1.test.example', '192.0.2.1', null, 0, 'Ready', null, null, null, '9-stream', 'x86_64', 1, null, null]);
  });

  test('keyed: [hostname, ssid] of the caller only', async () => {
    const a = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { hosts: string[]; ssid: string };
    await server.get('/Node/get', { key: KEYS.beta });
    const rows = (await server.get('/Inventory', alpha)).json;
    expect(rows).toEqual(a.hosts.map((h) => [h, a.ssid]));
    const bearer = (await server.get('/Inventory', {}, { authorization: `Bearer ${KEYS.alpha}` })).json;
    expect(bearer).toEqual(rows);
    expect((await server.get('/Inventory', { key: 'wrong-key-000000000000' })).status).toBe(403);
  });
});

describe('projects never see each other', () => {
  test("another project's session answers exactly like an unknown one", async () => {
    const a = (await server.get('/Session/get', { ...alpha, alias: 'shared-name' })).json as { ssid: string };
    await server.get('/Node/get', { ...alpha, ssid: a.ssid });
    const beta = { key: KEYS.beta };
    const unknown = await server.get('/Session/show', { ...beta, ssid: '00000000-0000-4000-8000-000000000000' });
    for (const [path, extra] of [
      ['/Session/show', {}],
      ['/Session/done', {}],
      ['/Session/extend', { lifetime: '1h' }],
      ['/Node/get', {}],
      ['/Node/done', {}],
      ['/Node/fail', {}],
    ] as const) {
      for (const ref of [a.ssid, 'shared-name']) {
        const reply = await server.get(path, { ...beta, ...extra, ssid: ref });
        expect({ path, status: reply.status, body: reply.text }).toEqual({ path, status: 403, body: unknown.text });
      }
    }
    expect(unknown.json).toEqual({ msg: 'Invalid session ID' });
    // beta's own alias of the same name is a different session
    const b = (await server.get('/Session/get', { ...beta, alias: 'shared-name' })).json as { ssid: string; created: boolean };
    expect(b.created).toBe(true);
    expect(b.ssid).not.toBe(a.ssid);
    const still = (await server.get('/Session/show', { ...alpha, ssid: a.ssid })).json as { state: string; hosts: unknown[] };
    expect(still).toMatchObject({ state: 'active' });
    expect(still.hosts).toHaveLength(1);
  });
});

describe('errors and their precedence', () => {
  test('keys: none, empty, unknown, and key= against a different Bearer', async () => {
    for (const query of ['', 'key=', 'key=nope', `key=${KEYS.alpha}&key=${KEYS.beta}`]) {
      const reply = await server.get('/Node/get', query);
      expect([query, reply.status, reply.json]).toEqual([query, 403, { msg: 'Invalid duffy key' }]);
    }
    const mismatch = await server.get('/Session/list', alpha, { authorization: `Bearer ${KEYS.beta}` });
    expect(mismatch.status).toBe(403);
    expect(mismatch.json).toEqual({ msg: 'Invalid duffy key' });
    const same = await server.get('/Session/list', alpha, { authorization: `Bearer ${KEYS.alpha}` });
    expect(same.status).toBe(200);
  });

  test('key before malformed parameter before session before state before node before quota', async () => {
    expect((await server.get('/Node/get', { count: 'x' })).status).toBe(403);
    expect((await server.get('/Node/get', { ...alpha, count: 'x', ssid: 'nope' })).status).toBe(400);
    expect((await server.get('/Node/done', { ...alpha, ssid: 'nope', node: 'zz' })).status).toBe(403);
    const s = (await server.get('/Node/get', alpha)).json as { ssid: string; hosts: string[] };
    await server.get('/Session/done', { ...alpha, ssid: s.ssid });
    const notActive = await server.get('/Node/done', { ...alpha, ssid: s.ssid, node: 'zz' });
    expect(notActive.status).toBe(409);
    expect(notActive.json).toEqual({ msg: `Session ${s.ssid} is not active` });
    for (const [path, extra] of [
      ['/Node/get', {}],
      ['/Node/fail', {}],
      ['/Session/extend', { lifetime: '1h' }],
    ] as const) {
      expect((await server.get(path, { ...alpha, ...extra, ssid: s.ssid })).status).toBe(409);
    }
    const live = (await server.get('/Node/get', alpha)).json as { ssid: string };
    const notIn = await server.get('/Node/done', { ...alpha, ssid: live.ssid, node: 'zz.example' });
    expect(notIn.status).toBe(400);
    expect(notIn.json).toEqual({ msg: `Node zz.example is not in session ${live.ssid}` });
    const notInFail = await server.get('/Node/fail', { ...alpha, ssid: live.ssid, node: 'zz.example' });
    expect(notInFail.status).toBe(400);
  });

  test('quota before count-too-large before capacity', async () => {
    const beta = { key: KEYS.beta }; // quota 3
    await server.get('/Node/get', { ...beta, count: 2 });
    const quota = await server.get('/Node/get', { ...beta, count: 2 });
    expect(quota.status).toBe(403);
    expect(quota.json).toEqual({ msg: 'Quota exceeded: requested 2 + allocated 2 > quota 3' });
    const count = await server.get('/Node/get', { ...alpha, count: 7 });
    expect(count.status).toBe(400);
  });

  test('unknown endpoints and bodies get JSON errors; every response has a request id', async () => {
    const missing = await server.get('/Node/steal', alpha);
    expect(missing.status).toBe(404);
    expect((missing.json as { msg: string }).msg).toMatch(/No such endpoint \/Node\/steal/);
    expect(missing.headers.get('x-request-id')).toBeTruthy();
    const echoed = await server.get('/Session/list', alpha, { 'x-request-id': 'job-123.abc' });
    expect(echoed.headers.get('x-request-id')).toBe('job-123.abc');
    const insane = await server.get('/Session/list', alpha, { 'x-request-id': 'bad id <script>' });
    expect(insane.headers.get('x-request-id')).toMatch(UUID_V4);
    const badJson = await server.post('/Session/get', '{"key": ', 'application/json');
    expect(badJson.status).toBe(400);
    expect(typeof (badJson.json as { msg: string }).msg).toBe('string');
  });
});

describe('POST, form and JSON bodies', () => {
  test('the same parameters as a form or JSON body', async () => {
    const form = await server.post('/Session/get', `key=${KEYS.alpha}&alias=form-one`, 'application/x-www-form-urlencoded');
    expect((form.json as { alias: string }).alias).toBe('form-one');
    const json = await server.post('/Node/get', JSON.stringify({ key: KEYS.alpha, ssid: 'form-one', count: 2 }), 'application/json');
    expect((json.json as { hosts: string[] }).hosts).toHaveLength(2);
    const bearer = await server.post('/Session/done', JSON.stringify({ ssid: 'form-one' }), 'application/json', {
      authorization: `Bearer ${KEYS.alpha}`,
    });
    expect(bearer.text).toBe('"Done"');
  });
});

describe('the rate limit', () => {
  test('counts sessions actually created, with Retry-After', async () => {
    await server.close();
    removeDir(server.dir);
    server = await startTestServer({ defaults: { 'rate-limit': '3/5m' } });
    await server.get('/Session/get', { ...alpha, alias: 'same' });
    await server.get('/Session/get', { ...alpha, alias: 'same' }); // not created: not counted
    await server.get('/Node/get', alpha);
    await server.get('/Session/get', alpha);
    const limited = await server.get('/Node/get', alpha);
    expect(limited.status).toBe(429);
    expect(limited.json).toEqual({ msg: 'Rate limit exceeded: 3 sessions in the last 5m' });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(200);
    // adding nodes to a live session is no new session
    expect((await server.get('/Node/get', { ...alpha, ssid: 'same' })).status).toBe(200);
    // an existing alias still answers
    expect((await server.get('/Session/get', { ...alpha, alias: 'same' })).status).toBe(200);
    expect((await server.get('/Session/get', { ...alpha, alias: 'other' })).status).toBe(429);
  });
});

describe('logs', () => {
  test('one structured line per request, the key redacted', async () => {
    server.logs.length = 0;
    await server.get('/Session/list', alpha);
    await server.get('/Node/get', { ...alpha, count: 'bad' });
    const lines = server.logs.map((l) => JSON.parse(l) as { msg: string; url?: string; status?: number; reqId?: string });
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(2);
    expect(requests[0]!.url).toBe('/Session/list?key=[REDACTED]');
    expect(requests[1]!.status).toBe(400);
    expect(server.logs.join('\n')).not.toContain(KEYS.alpha);
  });
});

describe('/healthz', () => {
  test('answers ok', async () => {
    const reply = await server.get('/healthz');
    expect(reply.status).toBe(200);
    expect(reply.json).toEqual({ status: 'ok' });
  });
});
