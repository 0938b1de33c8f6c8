/**
 * `/Admin/usage` against sessions of known length on a real server driven by its injectable
 * clock (SQLite, or PostgreSQL with CINODE_TEST_DATABASE=postgres): node-hours by project, by
 * alias with and without depth, and by pool, each stay clipped to the range; the parameters'
 * errors; and `cinode admin usage` (lib/cli/main.js as a separate process) as a table, CSV and JSON.
 * `npm test` builds lib/ first; on its own: `npm run build:lib` before jest.
 */
import { requireBuiltLib, runCli } from './support/process.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-03-02T00:00:00Z');
let now = T0;
let server: TestServer;
/** Hostnames each session got, to count distinct nodes. */
const hosts: Record<string, string[]> = {};

async function call(path: string, query: Record<string, string | number>): Promise<unknown> {
  const reply = await server.get(path, query);
  expect([path, reply.status, reply.text]).toEqual([path, 200, expect.anything()]);
  return reply.json;
}

async function usage(query: Record<string, string | number>): Promise<unknown[]> {
  return (await call('/Admin/usage', { key: KEYS.beta, ...query })) as unknown[];
}

const at = (hours: number) => new Date(T0 + hours * HOUR).toISOString();
const distinct = (...lists: string[][]) => new Set(lists.flat()).size;

beforeAll(async () => {
  requireBuiltLib();
  server = await startTestServer(
    {
      projects: { beta: { admin: true } },
      defaults: { 'rate-limit': '1000/5m' },
      pools: [
        { name: 'c7', ver: '7', nodes: 6 },
        { name: 'c9s', ver: '9-stream', nodes: 2 },
      ],
    },
    () => now,
  );
  // T0: alpha's "org/repo/1/1/build" takes two c7 nodes, beta one c7 node (no alias).
  await call('/Session/get', { key: KEYS.alpha, alias: 'org/repo/1/1/build' });
  hosts.a = ((await call('/Node/get', { key: KEYS.alpha, ver: '7', count: 2, ssid: 'org/repo/1/1/build' })) as { hosts: string[] }).hosts;
  const beta = (await call('/Node/get', { key: KEYS.beta, ver: '7' })) as { hosts: string[]; ssid: string };
  hosts.beta = beta.hosts;
  // T0+15m: beta's session ends.
  now = T0 + HOUR / 4;
  await call('/Session/done', { key: KEYS.beta, ssid: beta.ssid });
  // T0+30m: alpha's "org/repo/2/1/test" takes a c9s node.
  now = T0 + HOUR / 2;
  await call('/Session/get', { key: KEYS.alpha, alias: 'org/repo/2/1/test' });
  hosts.b = ((await call('/Node/get', { key: KEYS.alpha, ver: '9-stream', ssid: 'org/repo/2/1/test' })) as { hosts: string[] }).hosts;
  // T0+1h: the first session ends; alpha's "other/x" takes a c7 node.
  now = T0 + HOUR;
  await call('/Session/done', { key: KEYS.alpha, ssid: 'org/repo/1/1/build' });
  await call('/Session/get', { key: KEYS.alpha, alias: 'other/x' });
  hosts.c = ((await call('/Node/get', { key: KEYS.alpha, ver: '7', ssid: 'other/x' })) as { hosts: string[] }).hosts;
  // T0+2h30m: the c9s node leaves its session (which stays active); "other/x" is still going at T0+3h.
  now = T0 + 2.5 * HOUR;
  await call('/Node/done', { key: KEYS.alpha, ssid: 'org/repo/2/1/test', node: hosts.b[0]! });
  now = T0 + 3 * HOUR;
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

describe('/Admin/usage', () => {
  test('by project: node-hours of each stay, an open one up to now', async () => {
    expect(await usage({ from: at(0), to: at(3), by: 'project' })).toEqual([
      { project: 'alpha', sessions: 3, nodes: distinct(hosts.a!, hosts.b!, hosts.c!), node_hours: 2 * 1 + 2 + 2 },
      { project: 'beta', sessions: 1, nodes: 1, node_hours: 0.25 },
    ]);
  });

  test('each stay clipped to the range; a stay outside it does not count', async () => {
    // 00:30 to 02:00: the first session's two nodes 30m each, the c9s node 1h30m, other/x 1h; beta's ended at 00:15.
    expect(await usage({ from: '2026-03-02T00:30:00Z', to: '2026-03-02T02:00', by: 'project' })).toEqual([
      { project: 'alpha', sessions: 3, nodes: distinct(hosts.a!, hosts.b!, hosts.c!), node_hours: 1 + 1.5 + 1 },
    ]);
    expect(await usage({ from: '2026-03-03', to: '2026-03-04' })).toEqual([]);
  });

  test('by alias, whole and grouped by its first N parts (depth)', async () => {
    expect(await usage({ from: at(0), to: at(3), by: 'alias' })).toEqual([
      { project: 'alpha', alias: 'org/repo/1/1/build', sessions: 1, nodes: 2, node_hours: 2 },
      { project: 'alpha', alias: 'org/repo/2/1/test', sessions: 1, nodes: 1, node_hours: 2 },
      { project: 'alpha', alias: 'other/x', sessions: 1, nodes: 1, node_hours: 2 },
      { project: 'beta', alias: null, sessions: 1, nodes: 1, node_hours: 0.25 },
    ]);
    expect(await usage({ from: at(0), to: at(3), by: 'alias', depth: 2 })).toEqual([
      { project: 'alpha', alias: 'org/repo', sessions: 2, nodes: 3, node_hours: 4 },
      { project: 'alpha', alias: 'other/x', sessions: 1, nodes: 1, node_hours: 2 },
      { project: 'beta', alias: null, sessions: 1, nodes: 1, node_hours: 0.25 },
    ]);
    expect(await usage({ from: at(0), to: at(3), by: 'alias', depth: 1 })).toEqual([
      { project: 'alpha', alias: 'org', sessions: 2, nodes: 3, node_hours: 4 },
      { project: 'alpha', alias: 'other', sessions: 1, nodes: 1, node_hours: 2 },
      { project: 'beta', alias: null, sessions: 1, nodes: 1, node_hours: 0.25 },
    ]);
  });

  test('by pool, over all projects', async () => {
    expect(await usage({ from: at(0), to: at(3), by: 'pool' })).toEqual([
      { pool: 'c7', sessions: 3, nodes: distinct(hosts.a!, hosts.beta!, hosts.c!), node_hours: 2 + 0.25 + 2 },
      { pool: 'c9s', sessions: 1, nodes: 1, node_hours: 2 },
    ]);
  });

  test('the default range is the last 30 days; to defaults to now', async () => {
    expect(await usage({})).toEqual(await usage({ from: at(3 - 30 * 24), to: at(3) }));
    expect(await usage({ from: at(1) })).toEqual([{ project: 'alpha', sessions: 2, nodes: 2, node_hours: 1.5 + 2 }]);
  });

  test.each([
    [{ from: 'yesterday' }, 'from: "yesterday" is not a date or time; accepted: an ISO 8601 date or time'],
    [{ to: '2026-02-30' }, 'to: "2026-02-30" is not a valid date or time'],
    [{ from: '2026-03-02', to: '2026-03-01' }, 'from: 2026-03-02T00:00:00.000Z is not before to 2026-03-01T00:00:00.000Z'],
    [{ by: 'job' }, 'by: "job" is not a grouping; accepted: project, alias, pool'],
    [{ by: 'project', depth: 2 }, 'depth: groups aliases, so it goes with by=alias (not by=project)'],
    [{ by: 'alias', depth: 0 }, 'depth: "0" is out of range; accepted: a whole number from 1 to 32'],
    [{ by: 'alias', depth: 'x' }, 'depth: "x" is out of range'],
  ])('%j is refused with 400: %s', async (query, message) => {
    const reply = await server.get('/Admin/usage', { key: KEYS.beta, ...query });
    expect(reply.status).toBe(400);
    expect((reply.json as { msg: string }).msg).toContain(message);
  });

  test('a key of a project without admin: true gets 403', async () => {
    expect((await server.get('/Admin/usage', { key: KEYS.alpha })).status).toBe(403);
  });
});

describe('cinode admin usage', () => {
  const env = () => ({ CINODE_URL: server.url, CINODE_KEY: KEYS.beta });

  test('a table by default, node-hours to two decimals', async () => {
    const run = await runCli(['admin', 'usage', '--from', at(0), '--to', at(3), '--by', 'alias', '--depth', '2'], env());
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toBe(
      [
        'PROJECT  ALIAS     SESSIONS  NODES  NODE_HOURS',
        'alpha    org/repo  2         3      4.00',
        'alpha    other/x   1         1      2.00',
        'beta     -         1         1      0.25',
        '',
      ].join('\n'),
    );
  });

  test('--csv: a header and one line a row; --json: the /Admin/usage body', async () => {
    const csv = await runCli(['admin', 'usage', '--from', at(0), '--to', at(3), '--by', 'pool', '--csv'], env());
    expect(csv).toMatchObject({ code: 0, stderr: '' });
    const c7 = distinct(hosts.a!, hosts.beta!, hosts.c!);
    expect(csv.stdout).toBe(`pool,sessions,nodes,node_hours\nc7,3,${c7},4.25\nc9s,1,1,2\n`);
    const json = await runCli(['--json', 'admin', 'usage', '--from', at(0), '--to', at(3)], env());
    expect(json).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(json.stdout)).toEqual(await usage({ from: at(0), to: at(3) }));
  });

  test("the server's 400 and a non-admin key's 403 come out as errors, the key never printed", async () => {
    const bad = await runCli(['admin', 'usage', '--from', 'soon'], env());
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('from: "soon" is not a date or time');
    const refused = await runCli(['admin', 'usage'], { ...env(), CINODE_KEY: KEYS.alpha });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('admin: true');
    for (const run of [bad, refused]) expect(run.stdout + run.stderr).not.toContain(KEYS.alpha);
  });
});
