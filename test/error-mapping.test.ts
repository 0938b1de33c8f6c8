/**
 * docs/api.md's error tables, kind by kind, through Fastify's inject() on a real started server
 * with a real database: for each error its status, its body (JSON `{"msg"}`, or the legacy plain
 * text of a capacity shortfall), and its headers (content type, Retry-After, X-Request-Id). The
 * socket tests (api.test.ts, malformed.test.ts) check the same server over HTTP; here no socket is
 * involved, so each case is a request and its answer. Time is a driven clock, so the Retry-After
 * of the rate limit is exact.
 */
import { sql } from 'kysely';
import { DrivenClock } from './support/clock.js';
import { testDatabaseKind } from './support/database.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

interface Injected {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  text: string;
  json: unknown;
}

const C7 = { name: 'c7', ver: '7', arch: 'x86_64', nodes: 3 };
const ARM = { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 1 };
const c7 = (n: number): string => `c7-${n}.test.example`;
const JSON_TYPE = 'application/json; charset=utf-8';
const ENDPOINTS =
  '/Node/get, /Node/done, /Node/fail, /Inventory, /Session/get, /Session/done, /Session/show, /Session/list, /Session/extend, /Queue, /Session/ping, ' +
  '/Admin/nodes, /Admin/events, /Admin/usage, /Admin/sessions, /Admin/node/release, /Admin/node/disable, /Admin/node/enable, /Admin/session/teardown, ' +
  '/healthz, /metrics, /dashboard, /openapi.json';

let s: TestServer;
let clock: DrivenClock;

beforeEach(async () => {
  clock = new DrivenClock();
  s = await startTestServer(
    {
      reaperInterval: '1h',
      defaults: { 'rate-limit': '100/5m' },
      projects: {
        alpha: { 'node-quota': 2, 'max-failed-nodes': 1 },
        beta: { admin: true },
        never: { 'rate-limit': '2/5m' },
      },
      pools: [C7, ARM],
    },
    clock.now,
  );
});

afterEach(async () => {
  await s.close();
  removeDir(s.dir);
});

/** A request through inject(): GET with the query as legacy clients write it, or POST with a body. */
async function call(
  url: string,
  options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {},
): Promise<Injected> {
  const reply = await s.server.app.inject({ method: options.method ?? 'GET', url, headers: options.headers, payload: options.body });
  let json: unknown;
  try {
    json = JSON.parse(reply.body);
  } catch {
    json = undefined;
  }
  return { status: reply.statusCode, headers: reply.headers, text: reply.body, json };
}

/** An error answered as docs/api.md says: the status, `{"msg"}` as JSON, a request id, no Retry-After. */
function expectJsonError(reply: Injected, status: number, msg: string | RegExp): void {
  expect(reply.status).toBe(status);
  expect(reply.headers['content-type']).toBe(JSON_TYPE);
  expect(Object.keys(reply.json as object)).toEqual(['msg']);
  if (typeof msg === 'string') expect(reply.json).toEqual({ msg });
  else expect((reply.json as { msg: string }).msg).toMatch(msg);
  expect(reply.headers['x-request-id']).toEqual(expect.any(String));
  expect(reply.headers['retry-after']).toBeUndefined();
}

async function ok<T>(url: string): Promise<T> {
  const reply = await call(url);
  expect([url, reply.status]).toEqual([url, 200]);
  return reply.json as T;
}

const A = `key=${KEYS.alpha}`;
const B = `key=${KEYS.beta}`;
const N = `key=${KEYS.never}`;

describe('1: 403 Invalid duffy key', () => {
  test('no key, an empty key, a key no project has, and key= and a Bearer header that differ', async () => {
    for (const url of ['/Node/get', '/Node/get?key=', '/Session/list?key=not-a-key', '/Admin/nodes?key=nope']) {
      expectJsonError(await call(url), 403, 'Invalid duffy key');
    }
    expectJsonError(await call(`/Session/list?${A}`, { headers: { authorization: `Bearer ${KEYS.beta}` } }), 403, 'Invalid duffy key');
    expectJsonError(await call('/Session/list', { headers: { authorization: 'Bearer wrong-key' } }), 403, 'Invalid duffy key');
    // POST as a form and as JSON answer the same.
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    expectJsonError(await call('/Node/get', { method: 'POST', headers: form, body: 'key=wrong&count=1' }), 403, 'Invalid duffy key');
    expectJsonError(
      await call('/Node/get', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"key": "wrong"}' }),
      403,
      'Invalid duffy key',
    );
  });

  test('comes before every other error', async () => {
    expectJsonError(await call('/Node/get?key=wrong&count=x'), 403, 'Invalid duffy key');
    expectJsonError(await call('/Session/done?key=wrong&ssid=nope'), 403, 'Invalid duffy key');
  });

  test('the keyless inventory, when the server lists it only to a key', async () => {
    await s.close();
    removeDir(s.dir);
    s = await startTestServer({ publicInventory: false, pools: [C7] });
    expectJsonError(await call('/Inventory'), 403, /^Invalid duffy key: this server lists its inventory only to a key \(public-inventory is off\); pass key=$/);
  });
});

describe('2: 400 malformed parameter, naming it', () => {
  test.each([
    ['/Node/get', 'count=x', /^count: "x" is not a whole number; accepted: a whole number from 1 to 50$/],
    ['/Node/get', 'count=0', /^count: /],
    ['/Node/get', 'count=51', /^count: /],
    ['/Node/get', 'ver=', /^ver: empty value; accepted: /],
    ['/Node/get', 'arch=x86 64', /^arch: /],
    ['/Node/get', 'count=1&count=2', /^count: given 2 times with different values; give it once$/],
    ['/Session/get', 'lifetime=0s', /^lifetime: /],
    ['/Session/get', 'lifetime=soon', /^lifetime: /],
    ['/Session/get', 'alias=a+b', /^alias: /],
    ['/Session/extend', 'ssid=x', /^lifetime: /],
    ['/Node/done', 'ssid=x&node=', /^node: /],
    ['/Session/show', '', /^ssid: /],
  ])('%s?%s', async (path, query, msg) => {
    expectJsonError(await call(`${path}?${A}${query ? `&${query}` : ''}`), 400, msg);
  });

  test('of the admin calls, after the admin check', async () => {
    expectJsonError(await call(`/Admin/nodes?${B}&state=x`), 400, /^state: "x" is not a node state; accepted: ready, deployed, reclaiming, failed, held, disabled$/);
    expectJsonError(await call(`/Admin/events?${B}&limit=0`), 400, /^limit: /);
    expectJsonError(await call(`/Admin/events?${B}&hostname=${c7(1)}&session=x`), 400, /^hostname and session: give one of them/);
    expectJsonError(await call(`/Admin/nodes?${A}&state=x`), 403, /^Project alpha may not make admin calls/);
  });

  test("Fastify's own refusals keep the shape and say how to send parameters", async () => {
    const hint = /; send parameters in the query string, a form or a JSON object body$/;
    const json = { 'content-type': 'application/json' };
    expectJsonError(await call('/Node/get', { method: 'POST', headers: json, body: '{"key": ' }), 400, hint);
    expectJsonError(await call('/Node/get', { method: 'POST', headers: { 'content-type': 'text/xml' }, body: '<key/>' }), 415, hint);
    expectJsonError(await call('/Node/get', { method: 'POST', headers: json, body: JSON.stringify({ key: 'x'.repeat(70 * 1024) }) }), 413, hint);
  });
});

describe('3: 403 Invalid session ID', () => {
  test('an unknown ssid, an unknown alias, a malformed one, and another project\'s session', async () => {
    const theirs = await ok<{ ssid: string }>(`/Session/get?${B}&alias=theirs`);
    for (const ssid of ['0b6f4a7e-58e5-4c37-9a57-7d1a3a3b8f10', 'no-such-alias', 'x'.repeat(200), theirs.ssid, 'theirs']) {
      expectJsonError(await call(`/Session/show?${A}&ssid=${ssid}`), 403, 'Invalid session ID');
    }
    expectJsonError(await call(`/Node/get?${A}&ssid=theirs`), 403, 'Invalid session ID');
  });

  test('comes after a malformed parameter', async () => {
    expectJsonError(await call(`/Node/done?${A}&ssid=nope&node=`), 400, /^node: /);
    expectJsonError(await call(`/Session/extend?${A}&ssid=nope&lifetime=x`), 400, /^lifetime: /);
  });
});

describe('4: 409 not active, 5: 400 node not in session', () => {
  test('a done session, for calls that need it active', async () => {
    const opened = await ok<{ ssid: string }>(`/Session/get?${A}&alias=gone`);
    expect((await call(`/Session/done?${A}&ssid=gone`)).text).toBe('"Done"');
    const msg = `Session ${opened.ssid} is not active`;
    expectJsonError(await call(`/Session/extend?${A}&ssid=gone&lifetime=1h`), 409, msg);
    expectJsonError(await call(`/Node/get?${A}&ssid=${opened.ssid}`), 409, msg);
    expectJsonError(await call(`/Node/fail?${A}&ssid=gone`), 409, msg);
    // The legacy answer of /Node/done on a done session is a 200, not an error.
    const again = await call(`/Node/done?${A}&ssid=gone`);
    expect([again.status, again.json]).toEqual([200, { msg: 'Session not in Prod' }]);
  });

  test('node= naming a host that is not in the session', async () => {
    const got = await ok<{ ssid: string; hosts: string[] }>(`/Node/get?${A}`);
    expect(got.hosts).toEqual([c7(1)]);
    expectJsonError(await call(`/Node/done?${A}&ssid=${got.ssid}&node=${c7(2)}`), 400, `Node ${c7(2)} is not in session ${got.ssid}`);
    expectJsonError(await call(`/Node/fail?${A}&ssid=${got.ssid}&node=nowhere.example`), 400, `Node nowhere.example is not in session ${got.ssid}`);
    // Nothing changed: the node is still in the session.
    const show = await ok<{ hosts: Array<{ hostname: string; state: string }> }>(`/Session/show?${A}&ssid=${got.ssid}`);
    expect(show.hosts.map((h) => [h.hostname, h.state])).toEqual([[c7(1), 'deployed']]);
  });
});

describe('6: 403 policy', () => {
  test('the node quota, lifetime=never, the failed-node limit', async () => {
    expectJsonError(await call(`/Node/get?${A}&count=3`), 403, 'Quota exceeded: requested 3 + allocated 0 > quota 2');
    expectJsonError(
      await call(`/Session/get?${A}&lifetime=never`),
      403,
      'lifetime=never is not allowed for project alpha: its sessions must expire; give a duration (at most 12h)',
    );
    const got = await ok<{ ssid: string; hosts: string[] }>(`/Node/get?${A}&count=2`);
    expectJsonError(await call(`/Node/get?${A}`), 403, 'Quota exceeded: requested 1 + allocated 2 > quota 2');
    expectJsonError(
      await call(`/Node/fail?${A}&ssid=${got.ssid}`),
      403,
      'Exceeded maximum allowed fail nodes limit, please release other machines to continue',
    );
  });

  test('an admin call of a project without admin: true', async () => {
    for (const path of ['/Admin/nodes', '/Admin/events', `/Admin/node/disable?hostname=${c7(1)}`]) {
      const sep = path.includes('?') ? '&' : '?';
      expectJsonError(
        await call(`${path}${sep}${A}`),
        403,
        'Project alpha may not make admin calls; they need the key of a project with admin: true',
      );
    }
  });
});

describe('7: 400 no pool, count too large', () => {
  test('no pool serves what was asked', async () => {
    expectJsonError(await call(`/Node/get?${A}&ver=99`), 400, 'No pool serves ver=99 arch=x86_64 flavor=none');
    expectJsonError(await call(`/Node/get?${A}&ver=9-stream&arch=aarch64&flavor=huge`), 400, 'No pool serves ver=9-stream arch=aarch64 flavor=huge');
  });

  test('more nodes than the pools can ever hold', async () => {
    expectJsonError(await call(`/Node/get?${B}&count=4`), 400, 'count 4 exceeds the 3 nodes pool c7 can hold');
    // The quota answers first (order 6 before 7).
    expectJsonError(await call(`/Node/get?${A}&count=4`), 403, 'Quota exceeded: requested 4 + allocated 0 > quota 2');
  });
});

describe('8: 429 rate limit, with Retry-After', () => {
  test('the third session in five minutes is refused until the first leaves the window', async () => {
    await ok(`/Session/get?${N}`);
    clock.advance(100_000);
    await ok(`/Node/get?${N}`);
    clock.advance(20_000);
    const limited = await call(`/Session/get?${N}`);
    expect(limited.status).toBe(429);
    expect(limited.headers['content-type']).toBe(JSON_TYPE);
    expect(limited.json).toEqual({ msg: 'Rate limit exceeded: 2 sessions in the last 5m' });
    // The first session leaves the window 300 s after it opened, 120 s of which have passed.
    expect(limited.headers['retry-after']).toBe('180');
    const viaNodeGet = await call(`/Node/get?${N}`);
    expect([viaNodeGet.status, viaNodeGet.headers['retry-after']]).toEqual([429, '180']);

    // An alias the project has open is not a new session: not counted, not refused.
    expect((await call(`/Session/get?${N}&alias=x`)).status).toBe(429);
    clock.advance(180_000);
    expect((await call(`/Session/get?${N}&alias=x`)).status).toBe(200);
    expect((await call(`/Session/get?${N}&alias=x`)).status).toBe(200);
  });
});

describe('9: 503 capacity, plain text, with Retry-After', () => {
  test('no ready node now: the legacy text body that cico retries on', async () => {
    await ok(`/Node/get?${B}&ver=9-stream&arch=aarch64`);
    const short = await call(`/Node/get?${A}&ver=9-stream&arch=aarch64`);
    expect(short.status).toBe(503);
    expect(short.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(short.text).toBe('Insufficient Nodes in READY State');
    expect(short.json).toBeUndefined();
    expect(short.headers['retry-after']).toBe('10');
    expect(short.headers['x-request-id']).toEqual(expect.any(String));
  });
});

describe('unknown endpoint: 404', () => {
  test('names the path, without its query, and lists the endpoints', async () => {
    expectJsonError(await call(`/Node/nope?${A}`), 404, `No such endpoint /Node/nope; the API serves ${ENDPOINTS}`);
    expectJsonError(await call('/', { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }), 404, `No such endpoint /; the API serves ${ENDPOINTS}`);
  });
});

describe('operators: 404 no node, 409 wrong state', () => {
  test('each action refused by name, and nothing changed', async () => {
    const got = await ok<{ ssid: string; hosts: string[] }>(`/Node/get?${A}`);
    const noNode = 'No node nope.example; cinode admin nodes lists the nodes in service';
    for (const path of ['/Admin/node/release', '/Admin/node/disable', '/Admin/node/enable', '/Admin/events']) {
      expectJsonError(await call(`${path}?${B}&hostname=nope.example`), 404, noNode);
    }
    expectJsonError(await call(`/Admin/node/release?${B}&hostname=${c7(2)}`), 409, `Node ${c7(2)} is ready; release returns failed and held nodes to service`);
    expectJsonError(await call(`/Admin/node/enable?${B}&hostname=${c7(2)}`), 409, `Node ${c7(2)} is ready; enable returns disabled nodes to service`);
    expectJsonError(
      await call(`/Admin/node/disable?${B}&hostname=${c7(1)}`),
      409,
      `Node ${c7(1)} is deployed in session ${got.ssid}; disable takes ready, failed and held nodes out of service`,
    );
    const nodes = await ok<Array<{ hostname: string; state: string }>>(`/Admin/nodes?${B}`);
    expect(nodes.map((n) => [n.hostname, n.state])).toEqual([
      [c7(1), 'deployed'],
      [c7(2), 'ready'],
      [c7(3), 'ready'],
      ['arm-1.test.example', 'ready'],
    ]);
  });
});

describe('X-Request-Id', () => {
  test('a sane incoming id is echoed, on success and error alike; another is replaced', async () => {
    const sane = await call(`/Node/get?key=wrong`, { headers: { 'x-request-id': 'job-42:step.1' } });
    expect(sane.headers['x-request-id']).toBe('job-42:step.1');
    expect((await call('/healthz', { headers: { 'x-request-id': 'h-1' } })).headers['x-request-id']).toBe('h-1');
    const insane = await call('/healthz', { headers: { 'x-request-id': 'has spaces and $' } });
    expect(insane.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('server faults', () => {
  test('500: a failure that is not the caller\'s names the request id for the operator, and is logged', async () => {
    // A real fault on the real database: the table the call reads is gone.
    await sql`ALTER TABLE sessions RENAME TO sessions_gone`.execute(s.server.store.db);
    const logged = s.logs.length;
    const reply = await call(`/Session/list?${A}`, { headers: { 'x-request-id': 'fault-1' } });
    expectJsonError(reply, 500, 'Internal error (request id fault-1); the operator can find it in the server log');
    expect(reply.headers['x-request-id']).toBe('fault-1');
    const lines = s.logs.slice(logged).map((line) => JSON.parse(line) as { msg: string; reqId?: string; status?: number });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'unexpected error', reqId: 'fault-1' }));
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'request', reqId: 'fault-1', status: 500 }));
    await sql`ALTER TABLE sessions_gone RENAME TO sessions`.execute(s.server.store.db);
    expect((await call(`/Session/list?${A}`)).status).toBe(200);
  });

  // On SQLite, a database that refuses writes (SQLITE_READONLY, as on a read-only disk): the
  // server's own connection is switched to query_only. PostgreSQL's lost connections are tested in
  // postgres.test.ts, so on PostgreSQL this test is not registered at all (nothing skips in CI).
  if (testDatabaseKind() !== 'sqlite') return;
  test('503: the database cannot be used right now; the server answers again once it can', async () => {
    await sql`PRAGMA query_only = ON`.execute(s.server.store.db);
    const logged = s.logs.length;
    const msg = 'The database is unavailable right now; try again in a few seconds';
    expectJsonError(await call(`/Node/get?${A}`), 503, msg);
    expectJsonError(await call(`/Session/get?${A}&alias=x`), 503, msg);
    expect(s.logs.slice(logged).some((line) => line.includes('"database unavailable"'))).toBe(true);
    // Nothing was half done: the failed calls left no session behind.
    await sql`PRAGMA query_only = OFF`.execute(s.server.store.db);
    expect(await ok(`/Session/list?${A}`)).toEqual([]);
    expect((await call(`/Node/get?${A}`)).status).toBe(200);
  });
});
