/**
 * Many simultaneous calls against one server: a node is handed out at most once, a request gets
 * all its nodes or none, and node states always match session membership.
 */
import { hostnameOf, KEYS, removeDir, startTestServer, waitFor, type PoolSpec, type Reply, type TestServer } from './support/server.js';
import { seededRandom as random } from './support/random.js';

const POOL: PoolSpec = { name: 'c7', ver: '7', arch: 'x86_64', nodes: 50 };
const POOL_HOSTS = Array.from({ length: POOL.nodes }, (_, i) => hostnameOf(POOL, i));
const alpha = { key: KEYS.alpha };

let server: TestServer;

beforeEach(async () => {
  server = await startTestServer({
    pools: [POOL],
    defaults: { 'max-count': 50 },
    projects: { alpha: { 'node-quota': 1000, 'rate-limit': '1000/5m' } },
  });
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
});

function statusCounts(replies: readonly Reply[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const r of replies) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}

async function nodeRows() {
  return server.server.store.read().nodes.list();
}

test('200 simultaneous /Node/get on 50 ready nodes: 50 sessions of distinct nodes, 150 capacity refusals', async () => {
  const replies = await Promise.all(Array.from({ length: 200 }, () => server.get('/Node/get', { ...alpha, count: 1 })));

  expect(statusCounts(replies)).toEqual({ 200: 50, 503: 150 });
  for (const refused of replies.filter((r) => r.status === 503)) {
    expect(refused.text).toBe('Insufficient Nodes in READY State');
    expect(refused.headers.get('content-type')).toMatch(/^text\/plain/);
  }

  const granted = replies.filter((r) => r.status === 200).map((r) => r.json as { hosts: string[]; ssid: string });
  for (const body of granted) expect(body.hosts).toHaveLength(1);
  const hosts = granted.map((b) => b.hosts[0]!);
  expect(new Set(hosts).size).toBe(50);
  expect([...hosts].sort()).toEqual([...POOL_HOSTS].sort());
  expect(new Set(granted.map((b) => b.ssid)).size).toBe(50);

  const ssidOfHost = new Map(granted.map((b) => [b.hosts[0]!, b.ssid]));
  const rows = await nodeRows();
  expect(rows).toHaveLength(50);
  for (const row of rows) {
    expect(row.state).toBe('deployed');
    expect(row.sessionId).not.toBeNull();
    expect(row.ssid).toBe(ssidOfHost.get(row.hostname));
  }
  expect(new Set(rows.map((r) => r.sessionId)).size).toBe(50);
  // the keyed inventory agrees: one [hostname, ssid] pair per node
  const pairs = (await server.get('/Inventory', alpha)).json as Array<[string, string]>;
  expect(pairs).toHaveLength(50);
  expect(new Map(pairs)).toEqual(ssidOfHost);
});

test('concurrent /Node/get ssid= and /Node/done node= on 10 sessions: membership and states agree', async () => {
  const next = random(20151124);
  const sessions: string[] = [];
  for (let i = 0; i < 10; i++) {
    const opened = await server.get('/Session/get', { ...alpha, alias: `job-${i}` });
    expect(opened.status).toBe(200);
    sessions.push((opened.json as { ssid: string }).ssid);
  }
  // (session, host) -> times added minus times released, counted from the replies
  const balance = new Map<string, number>();
  const bump = (ssid: string, host: string, by: number) => balance.set(`${ssid} ${host}`, (balance.get(`${ssid} ${host}`) ?? 0) + by);
  const unexpected: string[] = [];
  let granted = 0;

  // two nodes in each session to begin with, so that releases race with the additions
  const seeded: Array<[string, string]> = [];
  for (const ssid of sessions) {
    const got = await server.get('/Node/get', { ...alpha, ssid, count: 2 });
    expect(got.status).toBe(200);
    for (const host of (got.json as { hosts: string[] }).hosts) {
      bump(ssid, host, 1);
      seeded.push([ssid, host]);
    }
  }

  const release = async (ssid: string, host: string) => {
    const done = await server.get('/Node/done', { ...alpha, ssid, node: host });
    if (done.status === 200 && done.text === '"Done"') bump(ssid, host, -1);
    else unexpected.push(`/Node/done ${host}: ${done.status} ${done.text}`);
  };
  const add = async (ssid: string, count: number, releaseOne: boolean) => {
    const got = await server.get('/Node/get', { ...alpha, ssid, count });
    if (got.status === 200) {
      granted++;
      const body = got.json as { hosts: string[]; ssid: string };
      if (body.ssid !== ssid || body.hosts.length !== count) unexpected.push(`/Node/get count=${count}: ${got.text}`);
      for (const host of body.hosts) bump(ssid, host, 1);
      if (releaseOne) await release(ssid, body.hosts[0]!);
    } else if (got.status !== 503 || got.text !== 'Insufficient Nodes in READY State') {
      unexpected.push(`/Node/get count=${count}: ${got.status} ${got.text}`);
    }
  };

  const work: Array<Promise<void>> = [];
  for (let i = 0; i < 100; i++) {
    const ssid = sessions[Math.floor(next() * sessions.length)]!;
    work.push(add(ssid, 1 + Math.floor(next() * 3), next() < 0.5));
    if (i % 5 === 0) {
      const [owner, host] = seeded[i / 5]!;
      work.push(release(owner, host));
    }
  }
  await Promise.all(work);
  expect(unexpected).toEqual([]);
  expect(granted).toBeGreaterThan(10);
  await server.server.reclaim.idle();

  // what the replies say each session holds
  const expected = new Map<string, string[]>(sessions.map((s) => [s, []]));
  for (const [pair, count] of balance) {
    expect(count === 0 || count === 1).toBe(true);
    const [ssid, host] = pair.split(' ') as [string, string];
    if (count === 1) expected.get(ssid)!.push(host);
  }

  // what the server says: no host in two sessions, and each session holds what the replies say
  const inSessions: string[] = [];
  for (const ssid of sessions) {
    const shown = (await server.get('/Session/show', { ...alpha, ssid })).json as { state: string; hosts: Array<{ hostname: string; state: string }> };
    expect(shown.state).toBe('active');
    const hosts = shown.hosts.map((h) => h.hostname);
    expect([...hosts].sort()).toEqual([...expected.get(ssid)!].sort());
    for (const h of shown.hosts) expect(h.state).toBe('deployed');
    inSessions.push(...hosts);
  }
  expect(new Set(inSessions).size).toBe(inSessions.length);

  // and the database: a node is deployed exactly when it is in one of these sessions, else ready
  await waitFor('released nodes ready again', async () => (await nodeRows()).every((r) => r.sessionId !== null || r.state === 'ready'));
  const rows = await nodeRows();
  expect(rows).toHaveLength(50);
  const member = new Set(inSessions);
  for (const row of rows) {
    if (member.has(row.hostname)) {
      expect(row.state).toBe('deployed');
      expect(sessions).toContain(row.ssid);
    } else {
      expect(row.state).toBe('ready');
      expect(row.sessionId).toBeNull();
    }
  }
  const pairs = (await server.get('/Inventory', alpha)).json as Array<[string, string]>;
  expect(pairs.map(([h]) => h).sort()).toEqual([...inSessions].sort());
});
