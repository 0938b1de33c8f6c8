/**
 * The waiting queue across two replicas of one PostgreSQL database (docs/api.md, "Waiting for
 * capacity"), as separate processes (the compiled lib/cli/main.js): requests wait on replica B
 * while replica A releases nodes; each release goes to the next request in fair order, answered
 * within 1 s (LISTEN/NOTIFY wakes B). Then B is SIGKILLed with requests waiting: they get no
 * answer, and once their lease lapses nothing is kept for them; no node is lost, every node is in
 * one valid state, no node was ever in two sessions, and every node is ready once all is done.
 *
 * Two processes on one SQLite file is not a configuration cinode supports: registered only when
 * CINODE_TEST_DATABASE=postgres, never skipped.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveOrder, servableNow } from '../src/core/queue-order.js';
import { openStore } from '../src/store/open.js';
import { testDatabaseKind } from './support/database.js';
import { requireBuiltLib, startServerProcess, type ServerProcess } from './support/process.js';
import { hostnameOf, KEYS, rawQuery, removeDir, send, waitFor, type ConfigSpec, type PoolSpec, type Reply } from './support/server.js';

/**
 * The order the two-replica test expects, from the queue's own order function: five requests of
 * one node arriving beta, beta, beta, never, alpha while alpha holds 6 nodes, served one release
 * of alpha's at a time (registered on both databases: it needs none).
 */
test('the fair order the two-replica test expects is the one the queue computes', () => {
  const held = new Map([
    [1, 6],
    [2, 0],
    [3, 0],
  ]);
  let waiting = [2, 2, 2, 3, 1].map((projectId, id) => ({ id, projectId, count: 1, held: 0, poolSet: 'q' }));
  const served: number[] = [];
  while (waiting.length > 0) {
    const [next] = servableNow(serveOrder(waiting.map((w) => ({ ...w, held: held.get(w.projectId)! }))));
    served.push(next!.id);
    held.set(1, held.get(1)! - 1);
    held.set(next!.projectId, held.get(next!.projectId)! + 1);
    waiting = waiting.filter((w) => w.id !== next!.id);
  }
  expect(served).toEqual(FAIR_ORDER);
});

/** Indexes of the arrivals in the order releases serve them. */
const FAIR_ORDER = [0, 3, 1, 2, 4];

const describePostgres = (name: string, body: () => void): void => {
  if (testDatabaseKind() === 'postgres') describe(name, body);
};

interface Got {
  hosts: string[];
  ssid: string;
}

const get = (proc: ServerProcess, path: string, query: Record<string, string | number>): Promise<Reply> => send(`${proc.url}${path}?${rawQuery(query)}`);

/** Every node as stored: one valid state, in a session iff deployed or held (and then an active one); stays never overlap. */
async function checkInvariants(databaseUrl: string, allHosts: readonly string[]): Promise<Map<string, number>> {
  const store = await openStore(databaseUrl, { poolSize: 2 });
  try {
    const nodes = await store.db.selectFrom('nodes').select(['id', 'hostname', 'state', 'session_id']).execute();
    const sessions = new Map((await store.db.selectFrom('sessions').select(['id', 'state']).execute()).map((s) => [Number(s.id), s.state]));
    const stays = await store.db.selectFrom('session_nodes').select(['node_id', 'session_id', 'added_at', 'released_at']).orderBy('added_at').execute();
    expect(nodes.map((n) => n.hostname).sort()).toEqual([...allHosts].sort());
    const bad: string[] = [];
    for (const node of nodes) {
      if (!['ready', 'deployed', 'reclaiming', 'failed', 'held', 'disabled'].includes(node.state)) bad.push(`${node.hostname}: ${node.state}`);
      const inSession = node.state === 'deployed' || node.state === 'held';
      if (inSession !== (node.session_id !== null)) bad.push(`${node.hostname}: ${node.state} with session ${node.session_id}`);
      if (node.session_id !== null && sessions.get(Number(node.session_id)) !== 'active') bad.push(`${node.hostname}: in a session that ended`);
    }
    const lastRelease = new Map<number, number | null>();
    for (const stay of stays) {
      const before = lastRelease.get(Number(stay.node_id));
      if (before === null || (before !== undefined && before > Number(stay.added_at))) bad.push(`node ${stay.node_id}: stays overlap`);
      lastRelease.set(Number(stay.node_id), stay.released_at === null ? null : Number(stay.released_at));
    }
    expect(bad).toEqual([]);
    const states = new Map<string, number>();
    for (const n of nodes) states.set(n.state, (states.get(n.state) ?? 0) + 1);
    return states;
  } finally {
    await store.close();
  }
}

describePostgres('the waiting queue on two replicas of one PostgreSQL database', () => {
  let dir: string | undefined;
  const procs: ServerProcess[] = [];

  beforeAll(() => requireBuiltLib());

  afterAll(async () => {
    for (const proc of procs) await proc.kill('SIGKILL');
    if (dir) removeDir(dir);
  });

  test('releases on A serve the requests waiting on B in fair order, each within 1 s; a SIGKILLed B loses no node', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cinode-queue-replicas-'));
    const pool: PoolSpec = { name: 'q', ver: '7', nodes: 6 };
    const allHosts = Array.from({ length: 6 }, (_, i) => hostnameOf(pool, i));
    const spec: ConfigSpec = { pools: [pool], defaults: { 'rate-limit': '1000/5m' }, projects: { beta: { admin: true } } };
    const [a, b] = (await Promise.all([startServerProcess({ dir, spec }), startServerProcess({ dir, spec })])) as [ServerProcess, ServerProcess];
    procs.push(a, b);
    const queue = async (): Promise<Array<{ project: string; position: number }>> => (await get(a, '/Queue', { key: KEYS.beta })).json as Array<{ project: string; position: number }>;

    const held = (await get(a, '/Node/get', { key: KEYS.alpha, ver: 7, count: 6 })).json as Got;
    expect(held.hosts).toHaveLength(6);
    // Waiting on B, in this order of arrival; alpha holds 6, beta and never none.
    const arrivals = ['beta', 'beta', 'beta', 'never', 'alpha'] as const;
    const replies = new Map<number, Promise<Reply>>();
    for (const [i, project] of arrivals.entries()) {
      replies.set(i, get(b, '/Node/get', { key: KEYS[project], ver: 7, wait: '2m' }));
      await waitFor(`request ${i} to wait`, async () => (await queue()).length === i + 1);
    }
    // Fair share: beta and never hold none (beta's came first), then never, then beta (1) before
    // alpha (3), then beta and alpha hold 2 each: beta's waited longer; alpha last.
    const served: number[] = [];
    for (const [step, host] of held.hosts.slice(0, 5).entries()) {
      const pending = [...replies.entries()];
      const released = Date.now();
      expect((await get(a, '/Node/done', { key: KEYS.alpha, ssid: held.ssid, node: host })).status).toBe(200);
      const index = await Promise.race(pending.map(([i, reply]) => reply.then(() => i)));
      const latency = Date.now() - released;
      const reply = await replies.get(index)!;
      expect(reply.status).toBe(200);
      expect((reply.json as Got).hosts).toEqual([host]);
      expect(latency).toBeLessThan(1_000);
      process.stdout.write(`[queue-replicas] release ${step + 1} on A served request ${index} (${arrivals[index]}) on B in ${latency} ms\n`);
      replies.delete(index);
      served.push(index);
    }
    expect(served).toEqual(FAIR_ORDER);

    // Two more wait on B; B dies.
    const orphans = [get(b, '/Node/get', { key: KEYS.never, ver: 7, wait: '2m' }).catch(() => 'no answer'), get(b, '/Node/get', { key: KEYS.beta, ver: 7, wait: '2m' }).catch(() => 'no answer')];
    await waitFor('both to wait', async () => (await queue()).length === 2);
    await b.kill('SIGKILL');
    expect(await Promise.all(orphans)).toEqual(['no answer', 'no answer']);
    // Their rows lapse with their lease: nothing is kept for them, the last node goes to A's caller.
    await waitFor('the dead replica\'s requests to lapse', async () => (await queue()).length === 0, 30_000);
    expect((await get(a, '/Node/done', { key: KEYS.alpha, ssid: held.ssid, node: held.hosts[5]! })).status).toBe(200);
    const last = await get(a, '/Node/get', { key: KEYS.never, ver: 7 });
    expect(last.status).toBe(200);
    expect((last.json as Got).hosts).toEqual([held.hosts[5]]);
    const during = await checkInvariants(a.databaseUrl, allHosts);
    expect(during.get('deployed')).toBe(6);

    // Everything ends: every node is ready again.
    for (const project of ['alpha', 'beta', 'never'] as const) {
      const sessions = (await get(a, '/Session/list', { key: KEYS[project] })).json as Array<{ ssid: string }>;
      for (const { ssid } of sessions) expect((await get(a, '/Session/done', { key: KEYS[project], ssid })).status).toBe(200);
    }
    const after = await checkInvariants(a.databaseUrl, allHosts);
    expect(Object.fromEntries(after)).toEqual({ ready: 6 });
  }, 120_000);
});
