/**
 * Waiting for capacity (docs/api.md, "Waiting for capacity"), against the real server on
 * loopback, on SQLite or PostgreSQL: only the shortfall waits; first come, first served within a
 * project; fair share across projects; the head is never overtaken; a wait that ends unserved is
 * the legacy 503; a client that leaves is out of the queue at once; `default-wait`, `max-wait`;
 * `/Queue` and `waiting` in `/Session/show`; and a request whose session ended meanwhile gets 409.
 * Waits are real but short; every condition is polled with a deadline.
 */
import type { QueueEntryView, SessionView } from '../src/api/types.js';
import { CICO_USER_AGENT } from '../src/api/messages.js';
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor, type ConfigSpec, type Reply, type TestServer } from './support/server.js';

interface Got {
  hosts: string[];
  ssid: string;
}

const alpha = { key: KEYS.alpha };
const beta = { key: KEYS.beta };
const never = { key: KEYS.never };
const POOL = { name: 'c7', ver: '7', nodes: 3 };
const OTHER = { name: 'c9s', ver: '9-stream', nodes: 1 };

let server: TestServer | undefined;
let scripts: ScriptDir | undefined;

afterEach(async () => {
  await server?.close();
  if (server) removeDir(server.dir);
  scripts?.remove();
  server = scripts = undefined;
});

/** Three c7 nodes and one c9s node; beta is the operators' project (its key sees every project's queue). */
async function launch(spec: ConfigSpec = {}): Promise<TestServer> {
  server = await startTestServer({
    defaults: { 'rate-limit': '1000/5m' },
    projects: { beta: { admin: true } },
    pools: [POOL, OTHER],
    ...spec,
  });
  return server;
}

async function take(s: TestServer, who: { key: string }, count = 1): Promise<Got> {
  const reply = await s.get('/Node/get', { ...who, ver: 7, count });
  expect(reply.status).toBe(200);
  return reply.json as Got;
}

async function queue(s: TestServer, who: { key: string } = beta): Promise<QueueEntryView[]> {
  const reply = await s.get('/Queue', who);
  expect(reply.status).toBe(200);
  return reply.json as QueueEntryView[];
}

/**
 * Sends a waiting `/Node/get` and returns once the queue shows it (so the order of arrival is
 * known), with its reply to come (wrapped: an async function would wait for a returned promise).
 */
async function enqueue(s: TestServer, query: Record<string, string | number | undefined>, headers: Record<string, string> = {}): Promise<{ reply: Promise<Reply> }> {
  const before = (await queue(s)).length;
  const reply = s.get('/Node/get', { ver: 7, wait: '30s', ...query }, headers);
  await waitFor('the request to wait in the queue', async () => (await queue(s)).length > before);
  return { reply };
}

async function release(s: TestServer, who: { key: string }, got: Got, host = got.hosts[0]!): Promise<void> {
  const reply = await s.get('/Node/done', { ...who, ssid: got.ssid, node: host });
  expect(reply.status).toBe(200);
}

/** Resolves with the first of the replies to settle, by its index. */
async function first(replies: ReadonlyArray<Promise<Reply>>): Promise<number> {
  return Promise.race(replies.map((r, i) => r.then(() => i)));
}

const settled = async (reply: Promise<Reply>, ms: number): Promise<boolean> =>
  Promise.race([reply.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);

describe('waiting for capacity', () => {
  it('serves the waiting requests of one project first come, first served, as nodes are released', async () => {
    const s = await launch();
    const held = await take(s, beta, 3);
    const { reply: one } = await enqueue(s, { ...alpha });
    const { reply: two } = await enqueue(s, { ...alpha });
    expect((await queue(s, alpha)).map((w) => [w.position, w.ssid])).toEqual([
      [1, null],
      [2, null],
    ]);
    await release(s, beta, held, held.hosts[0]);
    const served = await one;
    expect(served.status).toBe(200);
    expect((served.json as Got).hosts).toEqual([held.hosts[0]]);
    expect(await settled(two, 200)).toBe(false);
    await release(s, beta, held, held.hosts[1]);
    expect((await two).status).toBe(200);
    expect(await queue(s)).toEqual([]);
  });

  it('serves across projects by fair share: the project holding fewest nodes first, ties to the longest waiting', async () => {
    const s = await launch();
    const alphaHeld = await take(s, alpha, 2);
    const betaHeld = await take(s, beta, 1);
    const { reply: fromAlpha } = await enqueue(s, { ...alpha });
    const { reply: fromBeta } = await enqueue(s, { ...beta });
    const { reply: fromNever } = await enqueue(s, { ...never });
    const order = await queue(s, beta);
    expect(order.map((w) => [w.project, w.position])).toEqual([
      ['never', 1],
      ['beta', 2],
      ['alpha', 3],
    ]);
    // never holds none: the first node freed is its.
    await release(s, alpha, alphaHeld, alphaHeld.hosts[0]);
    expect(await first([fromAlpha, fromBeta, fromNever])).toBe(2);
    // alpha and beta hold one each now: alpha waited longer.
    await release(s, alpha, alphaHeld, alphaHeld.hosts[1]);
    expect(await first([fromAlpha, fromBeta])).toBe(0);
    expect(await settled(fromBeta, 200)).toBe(false);
    await release(s, beta, betaHeld);
    expect((await fromBeta).status).toBe(200);
  });

  it('keeps freed nodes for the head until it can be served whole; other pools are served meanwhile', async () => {
    const s = await launch();
    const held = await take(s, beta, 3);
    const { reply: head } = await enqueue(s, { ...alpha, count: 2 });
    await release(s, beta, held, held.hosts[0]);
    // The node is ready, but kept for the head: a later request answers the capacity 503 at once...
    const later = await s.get('/Node/get', { ...never, ver: 7 });
    expect(later.status).toBe(503);
    // ...or waits behind it.
    const { reply: behind } = await enqueue(s, { ...never });
    // A request for another pool does not wait behind it.
    expect((await s.get('/Node/get', { ...never, ver: '9-stream' })).status).toBe(200);
    expect(await settled(head, 200)).toBe(false);
    await release(s, beta, held, held.hosts[1]);
    const served = await head;
    expect(served.status).toBe(200);
    expect((served.json as Got).hosts.sort()).toEqual([held.hosts[0], held.hosts[1]].sort());
    await release(s, beta, held, held.hosts[2]);
    expect((await behind).status).toBe(200);
  });

  it('answers the legacy capacity 503 when the wait ends unserved, and the queue is empty again', async () => {
    const s = await launch();
    await take(s, beta, 3);
    const immediate = await s.get('/Node/get', { ...alpha, ver: 7 });
    const started = Date.now();
    const waited = await s.get('/Node/get', { ...alpha, ver: 7, wait: '1s' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(waited.status).toBe(503);
    expect(waited.text).toBe(immediate.text);
    expect(waited.headers.get('content-type')).toBe(immediate.headers.get('content-type'));
    expect(waited.headers.get('retry-after')).toBe(immediate.headers.get('retry-after'));
    expect(await queue(s)).toEqual([]);
  });

  it('takes a request out of the queue at once when its client disconnects', async () => {
    const s = await launch();
    const held = await take(s, beta, 3);
    const client = new AbortController();
    const gone = fetch(`${s.url}/Node/get?key=${KEYS.alpha}&ver=7&wait=1m`, { signal: client.signal }).catch(() => 'aborted');
    await waitFor('the request to wait', async () => (await queue(s)).length === 1);
    client.abort();
    expect(await gone).toBe('aborted');
    await waitFor('the queue to be empty', async () => (await queue(s)).length === 0, 2_000);
    await release(s, beta, held);
    // The freed node went to nobody.
    expect((await take(s, never)).hosts).toEqual([held.hosts[0]]);
  });

  it('answers every refusal other than the shortfall at once, however long the wait', async () => {
    const s = await launch({ projects: { beta: { admin: true }, alpha: { 'node-quota': 1 } } });
    await take(s, beta, 3);
    const ended = (await s.get('/Session/get', alpha)).json as { ssid: string };
    await s.get('/Session/done', { ...alpha, ssid: ended.ssid });
    const started = Date.now();
    const refusals = await Promise.all([
      s.get('/Node/get', { key: 'wrong-key-0123456789abcdef', ver: 7, wait: '1h' }),
      s.get('/Node/get', { ...alpha, ver: 7, count: 2, wait: '1h' }),
      s.get('/Node/get', { ...never, ver: 7, count: 5, wait: '1h' }),
      s.get('/Node/get', { ...never, ver: 'nope', wait: '1h' }),
      s.get('/Node/get', { ...alpha, ver: 7, ssid: ended.ssid, wait: '1h' }),
      s.get('/Node/get', { ...alpha, ver: 7, wait: 'soon' }),
    ]);
    expect(refusals.map((r) => r.status)).toEqual([403, 403, 400, 400, 409, 400]);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(refusals[5]!.json).toEqual({ msg: expect.stringMatching(/^wait: "soon" is not a duration; accepted: 0 \(answer at once\) or a duration/) });
    expect((await s.get('/Node/get', { ...never, ver: 7, wait: '0' })).status).toBe(503);
  });

  it("waits with the project's default-wait when the request gives none, as cico's node get sends it", async () => {
    const s = await launch({ projects: { beta: { admin: true }, never: { 'never-expire': true, 'default-wait': '30s' } } });
    const held = await take(s, beta, 3);
    const { reply: cico } = await enqueue(s, { key: KEYS.never, ver: 7, wait: undefined }, { 'user-agent': `${CICO_USER_AGENT}0.4.7` });
    await release(s, beta, held);
    const served = await cico;
    expect(served.status).toBe(200);
    expect((served.json as Got).hosts).toEqual([held.hosts[0]]);
    // alpha has no default-wait: it answers at once.
    expect((await s.get('/Node/get', { ...alpha, ver: 7 })).status).toBe(503);
  });

  it("caps a wait at the project's max-wait", async () => {
    const s = await launch({ projects: { beta: { admin: true }, alpha: { 'max-wait': '1s' } } });
    await take(s, beta, 3);
    const started = Date.now();
    const capped = await s.get('/Node/get', { ...alpha, ver: 7, wait: '1h' });
    expect(capped.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("shows a session's waiting request in /Session/show and /Queue, and answers 409 when the session ended meanwhile", async () => {
    const s = await launch();
    const held = await take(s, beta, 3);
    const session = (await s.get('/Session/get', alpha)).json as { ssid: string };
    const showBefore = (await s.get('/Session/show', { ...alpha, ssid: session.ssid })).json as SessionView;
    expect(showBefore).not.toHaveProperty('waiting');
    const { reply: fresh } = await enqueue(s, { ...never });
    const { reply: adding } = await enqueue(s, { ...alpha, ssid: session.ssid, count: 2 });
    const show = (await s.get('/Session/show', { ...alpha, ssid: session.ssid })).json as SessionView;
    // alpha and never hold no node: never's request came first.
    expect(show.waiting).toEqual([{ count: 2, since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), position: 2 }]);
    expect(await queue(s, alpha)).toEqual([{ count: 2, since: show.waiting![0]!.since, position: 2, ssid: session.ssid }]);
    expect(await queue(s, never)).toEqual([{ count: 1, since: expect.any(String), position: 1, ssid: null }]);
    const all = await queue(s, beta);
    expect(all.map((w) => [w.project, w.ssid, w.count, w.position])).toEqual([
      ['never', null, 1, 1],
      ['alpha', session.ssid, 2, 2],
    ]);
    // What heartbeats read: the sessions that have a request waiting.
    expect(await s.server.store.read().queue.sessionsWithWaiters(Date.now())).toEqual([session.ssid]);
    expect((await s.get('/Queue', { key: 'wrong-key-0123456789abcdef' })).status).toBe(403);
    await s.get('/Session/done', { ...alpha, ssid: session.ssid });
    await release(s, beta, held);
    expect((await fresh).status).toBe(200);
    // Its turn came with its session ended: the refusal a new request would get.
    const refused = await adding;
    expect(refused.status).toBe(409);
    expect(await queue(s)).toEqual([]);
  });

  it('hands a node that comes back from reclaim to the waiting request', async () => {
    scripts = new ScriptDir();
    const reclaim = scripts.script('reclaim.sh', 'exit 0');
    const s = await launch({ pools: [{ ...POOL, reclaim: [reclaim] }, OTHER] });
    const held = await take(s, beta, 3);
    const { reply: waiting } = await enqueue(s, { ...alpha });
    await release(s, beta, held);
    const served = await waiting;
    expect(served.status).toBe(200);
    expect((served.json as Got).hosts).toEqual([held.hosts[0]]);
  });

  it('counts waiting requests in cinode_queue_waiting and the wait in cinode_time_to_node_seconds', async () => {
    const s = await launch();
    const held = await take(s, beta, 3);
    const { reply: waiting } = await enqueue(s, { ...alpha });
    expect((await s.get('/metrics')).text).toMatch(/^cinode_queue_waiting\{project="alpha"\} 1$/m);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await release(s, beta, held);
    expect((await waiting).status).toBe(200);
    const metrics = (await s.get('/metrics')).text;
    expect(metrics).not.toMatch(/^cinode_queue_waiting\{/m);
    // Two /Node/get served: one at once, one after a wait of over 0.3 s, which the sum counts.
    expect(metrics).toMatch(/^cinode_time_to_node_seconds_count\{pool="c7"\} 2$/m);
    expect(metrics).toMatch(/^cinode_time_to_node_seconds_bucket\{le="0.1",pool="c7"\} [01]$/m);
    const sum = Number(/^cinode_time_to_node_seconds_sum\{pool="c7"\} (\S+)$/m.exec(metrics)?.[1]);
    expect(sum).toBeGreaterThanOrEqual(0.3);
  });

  it('ignores the requests of a process that died: a lapsed lease at once, its own at its restart', async () => {
    const s = await launch();
    // An earlier life of this replica: its name, another process.
    const owner = `${s.server.queue.owner.split(':')[0]}:1:dead`;
    const add = (leaseUntil: number) =>
      s.server.store.transaction(async (tx) => {
        const project = s.server.service.authenticate(KEYS.alpha);
        return tx.queue.add({ projectId: project.id, sessionId: null, poolSet: 'c7', count: 3, since: Date.now(), owner, leaseUntil });
      });
    await add(Date.now() + 400);
    await waitFor('the lease to lapse', async () => (await queue(s)).length === 0);
    expect((await s.get('/Node/get', { ...never, ver: 7 })).status).toBe(200);
    await add(Date.now() + 3_600_000);
    expect((await s.get('/Node/get', { ...never, ver: 7 })).status).toBe(503);
    // A request of this process waits behind it (the other process's turn comes first).
    expect((await s.get('/Node/get', { ...never, ver: 7, wait: '1s' })).status).toBe(503);
    // A restart drops the rows of the replica's earlier lives (on SQLite, every row: one process owns the file).
    await s.close();
    await s.start();
    expect(await queue(s)).toEqual([]);
    expect((await s.get('/Node/get', { ...never, ver: 7 })).status).toBe(200);
  });

  it('keeps a waiting request live past its lease: the server renews it while the request waits', async () => {
    const s = await launch({ projects: { beta: { admin: true } }, server: { queueTimings: { leaseMs: 400, pollMs: 100 } } });
    const held = await take(s, beta, 3);
    const { reply: waiting } = await enqueue(s, { ...alpha });
    const started = Date.now();
    await waitFor('several leases to pass with the request still waiting', async () => Date.now() - started > 1_500 && (await queue(s)).length === 1, 5_000);
    // Still kept in order: an immediate request does not overtake it.
    expect((await s.get('/Node/get', { ...never, ver: 7 })).status).toBe(503);
    await release(s, beta, held);
    expect((await waiting).status).toBe(200);
  });

  it('ends the waits of a closing server with the capacity answer', async () => {
    const s = await launch();
    await take(s, beta, 3);
    const { reply: waiting } = await enqueue(s, { ...alpha });
    await s.close();
    expect((await waiting).status).toBe(503);
    server = undefined;
    removeDir(s.dir);
  });
});
