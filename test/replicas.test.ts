/**
 * Scale-out on PostgreSQL (issue 4, "Multi-replica test"): two server processes (the compiled
 * lib/cli/main.js) on one PostgreSQL database, 64 client loops churning sessions against them
 * (open, add nodes, drop some, end) until at least 20,000 nodes were handed out, and one replica
 * SIGKILLed halfway while the clients carry on against the other.
 *
 * Checked all along, from the acknowledged answers: no answer hands out a host that an earlier
 * answer gave to a session which, as far as the clients can know, still holds it. Checked at the
 * end, from the database: no node was ever in two sessions (per node, the [added_at, released_at)
 * intervals of session_nodes never overlap), every node is in exactly one valid state, the count
 * of nodes is unchanged, and every node is ready again once every session is done.
 *
 * The churn needs PostgreSQL (two processes on one SQLite file is not a configuration cinode
 * supports): it is registered only when CINODE_TEST_DATABASE=postgres, never skipped. The client
 * loop and its bookkeeping are also run against a small in-memory fake, in both passes.
 */
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../src/store/open.js';
import { testDatabaseKind } from './support/database.js';
import { requireBuiltLib, startServerProcess, type ServerProcess } from './support/process.js';
import { hostnameOf, KEYS, rawQuery, removeDir, waitFor, type ConfigSpec, type PoolSpec } from './support/server.js';
import { seededRandom as random } from './support/random.js';

const CAPACITY = 'Insufficient Nodes in READY State';
const DONE = '"Done"';

type ProjectName = keyof typeof KEYS;
const PROJECTS: readonly ProjectName[] = ['alpha', 'beta', 'never'];

interface Answer {
  status: number;
  text: string;
  json: unknown;
}

/** The request got no answer: the connection was refused, reset or timed out. */
class TransportError extends Error {}

/** Sends one GET to a replica; throws TransportError when no answer came back. */
type Send = (replica: number, path: string, query: Record<string, string | number>) => Promise<Answer>;

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

interface ReplicaFigures {
  requests: number;
  answered: number;
  allocations: number;
  transportErrors: number;
}

/**
 * What every client loop saw, shared by all of them, and the continuous check.
 *
 * A host is "held" by a session from the answer that handed it out until the request that
 * releases it is *sent* (not answered): once a release is on its way the server may already have
 * done it, and another client may get the host before the releasing client gets its answer. A
 * release whose answer is lost therefore never leaves a stale holding behind. An answer handing
 * out a host that is held is a double hand-out, whichever session got it first (see the proof in
 * `allocated`).
 */
class Ledger {
  /** host -> ssid, while held in the sense above. */
  readonly holder = new Map<string, string>();
  /** Every acknowledged allocation, as [ssid, host]. */
  readonly acked: Array<[string, string]> = [];
  readonly violations: string[] = [];
  readonly unexpected: string[] = [];
  readonly replicas: ReplicaFigures[];
  allocations = 0;
  capacityRefusals = 0;
  sessionsOpened = 0;
  sessionsEnded = 0;
  /** Sessions whose end was not acknowledged: left to the final sweep. */
  abandoned = 0;
  switches = 0;
  /** Requests each replica answered after the kill, and allocations it made then. */
  readonly afterKill: Array<{ answered: number; allocations: number }>;
  killed = false;

  constructor(replicas: number) {
    this.replicas = Array.from({ length: replicas }, () => ({ requests: 0, answered: 0, allocations: 0, transportErrors: 0 }));
    this.afterKill = Array.from({ length: replicas }, () => ({ answered: 0, allocations: 0 }));
  }

  get requests(): number {
    return this.replicas.reduce((sum, r) => sum + r.requests, 0);
  }

  get answered(): number {
    return this.replicas.reduce((sum, r) => sum + r.answered, 0);
  }

  /**
   * An answer of `replica` handed `hosts` to `ssid`. Were a host held by session T (its answer
   * came, its release not sent) when this answer arrives, the server really gave it out twice: if
   * this allocation committed after T's, it did so while T held it (T's release commits after it
   * is sent, which is after now); if before, T's allocation committed while this session held it
   * (this client cannot have sent a release for a host it had not yet been told about).
   */
  allocated(replica: number, ssid: string, hosts: readonly string[]): void {
    for (const host of hosts) {
      const other = this.holder.get(host);
      if (other !== undefined) this.violations.push(`${host} handed to session ${ssid} by replica ${replica} while session ${other} still held it`);
      this.holder.set(host, ssid);
      this.acked.push([ssid, host]);
    }
    this.allocations += hosts.length;
    this.replicas[replica]!.allocations += hosts.length;
    if (this.killed) this.afterKill[replica]!.allocations += hosts.length;
  }

  /** A request releasing `hosts` of `ssid` is about to be sent. */
  releasing(ssid: string, hosts: Iterable<string>): void {
    for (const host of hosts) if (this.holder.get(host) === ssid) this.holder.delete(host);
  }
}

interface ClientOptions {
  index: number;
  project: ProjectName;
  replicas: number;
  send: Send;
  ledger: Ledger;
  next: () => number;
  maxCycles: number;
  /** Most hosts a session of this client holds at once. */
  maxHeld: number;
  /** How long to wait after a capacity refusal (503) before the next request; 0 for none. */
  capacityBackoffMs: number;
  /** Asked before each new session: true ends the loop. */
  stop: () => boolean;
  /** Told after each answer (the test kills a replica from here). */
  onAnswer?: () => void;
}

/**
 * One client: session after session, each opened (legacy `/Node/get` with count=1..3, or
 * `/Session/get alias=`), grown (`/Node/get ssid= count=1..3`) and shrunk (`/Node/done node=`)
 * a few times, then ended (`/Session/done`, or the legacy `/Node/done` without node=). It prefers
 * replica `index % replicas` and moves to the next one when a request gets no answer. A session
 * touched by a request whose answer was lost may hold nodes the client does not know of (or no
 * longer hold one it does), so it is ended at once; a session whose end got no answer is left
 * for the final sweep. After a capacity refusal it waits a moment, as a real client would (the
 * server asks for Retry-After seconds), so that refusals do not crowd out the work that frees
 * nodes. Returns how many sessions it completed.
 */
async function runClient(o: ClientOptions): Promise<number> {
  const { ledger, next } = o;
  const key = KEYS[o.project];
  let replica = o.index % o.replicas;
  let completed = 0;

  const call = async (path: string, query: Record<string, string | number>): Promise<{ answer: Answer; replica: number } | undefined> => {
    const to = replica;
    ledger.replicas[to]!.requests++;
    try {
      const answer = await o.send(to, path, { key, ...query });
      ledger.replicas[to]!.answered++;
      if (ledger.killed) ledger.afterKill[to]!.answered++;
      o.onAnswer?.();
      return { answer, replica: to };
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
      ledger.replicas[to]!.transportErrors++;
      if (replica === to) {
        replica = (to + 1) % o.replicas;
        ledger.switches++;
      }
      return undefined;
    }
  };
  const refused = async () => {
    ledger.capacityRefusals++;
    if (o.capacityBackoffMs > 0) await new Promise((resolve) => setTimeout(resolve, o.capacityBackoffMs * (0.5 + next())));
  };
  const unexpected = (what: string, answer: Answer) => ledger.unexpected.push(`client ${o.index} ${what}: ${answer.status} ${answer.text}`);

  /** Books a 200 answer of /Node/get; undefined when its body is not what was asked for. */
  const took = (got: { answer: Answer; replica: number }, count: number, ssid: string | undefined, held: Set<string>): string | undefined => {
    const body = got.answer.json as { hosts?: unknown; ssid?: unknown } | undefined;
    const hosts = body?.hosts;
    if (!Array.isArray(hosts) || hosts.length !== count || typeof body?.ssid !== 'string' || (ssid !== undefined && body.ssid !== ssid)) {
      unexpected(`/Node/get count=${count}${ssid ? ` ssid=${ssid}` : ''}`, got.answer);
      return undefined;
    }
    ledger.allocated(got.replica, body.ssid, hosts as string[]);
    for (const host of hosts as string[]) held.add(host);
    return body.ssid;
  };

  for (let cycle = 0; cycle < o.maxCycles && !o.stop(); cycle++) {
    // ---- open
    const held = new Set<string>();
    let ssid: string | undefined;
    if (next() < 0.5) {
      const count = 1 + Math.floor(next() * Math.min(3, o.maxHeld));
      const got = await call('/Node/get', { count });
      if (!got) continue; // a session with nodes may exist now: the final sweep ends it
      if (got.answer.status === 200) ssid = took(got, count, undefined, held);
      else if (got.answer.status === 503 && got.answer.text === CAPACITY) await refused();
      else unexpected('/Node/get', got.answer);
    } else {
      const alias = `client-${o.index}.${cycle}`;
      const got = await call('/Session/get', { alias });
      if (!got) continue;
      const body = got.answer.json as { ssid?: unknown; alias?: unknown; hosts?: unknown; created?: unknown } | undefined;
      if (got.answer.status === 200 && body?.created === true && body.alias === alias && Array.isArray(body.hosts) && body.hosts.length === 0 && typeof body.ssid === 'string') {
        ssid = body.ssid;
      } else unexpected(`/Session/get alias=${alias}`, got.answer);
    }
    if (ssid === undefined) continue;
    ledger.sessionsOpened++;

    // ---- add and drop nodes
    let tainted = false;
    const steps = 1 + Math.floor(next() * 4);
    for (let step = 0; step < steps && !tainted; step++) {
      if (held.size > 0 && (next() < 0.35 || held.size >= o.maxHeld)) {
        const hosts = [...held];
        const host = hosts[Math.floor(next() * hosts.length)]!;
        ledger.releasing(ssid, [host]);
        held.delete(host);
        const got = await call('/Node/done', { ssid, node: host });
        if (!got) tainted = true;
        else if (got.answer.status !== 200 || got.answer.text !== DONE) unexpected(`/Node/done node=${host}`, got.answer);
      } else {
        const count = Math.min(1 + Math.floor(next() * 3), o.maxHeld - held.size);
        const got = await call('/Node/get', { ssid, count });
        if (!got) tainted = true;
        else if (got.answer.status === 200) took(got, count, ssid, held);
        else if (got.answer.status === 503 && got.answer.text === CAPACITY) await refused();
        else unexpected(`/Node/get ssid=${ssid} count=${count}`, got.answer);
      }
    }

    // ---- end
    ledger.releasing(ssid, held);
    const legacy = !tainted && next() < 0.5;
    const got = await call(legacy ? '/Node/done' : '/Session/done', { ssid });
    if (!got) {
      ledger.abandoned++;
      continue;
    }
    if (got.answer.status === 200 && got.answer.text === DONE) {
      ledger.sessionsEnded++;
      completed++;
    } else unexpected(`${legacy ? '/Node/done' : '/Session/done'} ssid=${ssid}`, got.answer);
  }
  return completed;
}

// ---------------------------------------------------------------------------------------------
// The client loop against an in-memory fake: runs in both passes (it needs no database).

/**
 * Two "replicas" over one in-memory allocator. A request that reaches a replica that is down is
 * refused; one that a replica had taken in when it went down is carried out and its answer lost
 * (like requests in flight at a SIGKILL). `doubleEvery` > 0 makes every n-th allocation hand out a
 * host some session holds: a broken allocator the ledger must catch.
 */
class FakeCinode {
  readonly hosts: string[];
  /** host -> ssid, the truth. */
  readonly holder = new Map<string, string>();
  readonly sessions = new Map<string, { project: string; active: boolean; hosts: Set<string> }>();
  readonly down = new Set<number>();
  doubleEvery = 0;
  /** Allocations whose answers reached the client, as "ssid host". */
  readonly delivered: string[] = [];
  /** Requests carried out whose answers were lost, and requests refused. */
  lostAnswers = 0;
  refused = 0;
  private allocationsMade = 0;
  private ids = 0;

  constructor(nodes: number) {
    this.hosts = Array.from({ length: nodes }, (_, i) => `fake-${i + 1}.test.example`);
  }

  readonly send: Send = async (replica, path, query) => {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.down.has(replica)) {
      this.refused++;
      throw new TransportError('connect ECONNREFUSED 127.0.0.1');
    }
    const { answer, allocated } = this.handle(path, query);
    // The answer travels back: other clients run meanwhile.
    await new Promise((resolve) => setImmediate(resolve));
    if (this.down.has(replica)) {
      this.lostAnswers++;
      throw new TransportError('socket hang up');
    }
    this.delivered.push(...allocated);
    return answer;
  };

  private handle(path: string, query: Record<string, string | number>): { answer: Answer; allocated: string[] } {
    const reply = (status: number, body: unknown, text = JSON.stringify(body)) => ({ status, text, json: parse(text) });
    const project = String(query.key);
    const ref = query.ssid === undefined ? undefined : String(query.ssid);
    const session = ref === undefined ? undefined : this.sessions.get(ref);
    if (ref !== undefined && (!session || session.project !== project)) return { answer: reply(403, { msg: 'Invalid session ID' }), allocated: [] };
    const release = (ssid: string, hosts: Iterable<string>) => {
      for (const host of [...hosts]) {
        this.sessions.get(ssid)!.hosts.delete(host);
        if (this.holder.get(host) === ssid) this.holder.delete(host);
      }
    };
    switch (path) {
      case '/Node/get': {
        if (session && !session.active) return { answer: reply(409, { msg: `Session ${ref} is not active` }), allocated: [] };
        const count = Number(query.count ?? 1);
        const free = this.hosts.filter((h) => !this.holder.has(h));
        if (free.length < count) return { answer: { status: 503, text: CAPACITY, json: undefined }, allocated: [] };
        const ssid = ref ?? `fake-session-${++this.ids}`;
        if (!session) this.sessions.set(ssid, { project, active: true, hosts: new Set() });
        const picked = free.slice(0, count);
        if (this.doubleEvery > 0 && this.holder.size > 0 && ++this.allocationsMade % this.doubleEvery === 0) {
          picked[0] = [...this.holder.keys()][0]!; // the bug: a held host handed out again
        }
        for (const host of picked) {
          this.holder.set(host, ssid);
          this.sessions.get(ssid)!.hosts.add(host);
        }
        return { answer: reply(200, { hosts: picked, ssid }), allocated: picked.map((h) => `${ssid} ${h}`) };
      }
      case '/Session/get': {
        const ssid = `fake-session-${++this.ids}`;
        this.sessions.set(ssid, { project, active: true, hosts: new Set() });
        return { answer: reply(200, { ssid, alias: query.alias, hosts: [], expires_at: null, created: true }), allocated: [] };
      }
      case '/Node/done':
      case '/Session/done': {
        if (!session || ref === undefined) return { answer: reply(403, { msg: 'Invalid session ID' }), allocated: [] };
        if (query.node !== undefined) {
          const host = String(query.node);
          if (!session.active) return { answer: reply(409, { msg: `Session ${ref} is not active` }), allocated: [] };
          if (!session.hosts.has(host)) return { answer: reply(400, { msg: `Node ${host} is not in session ${ref}` }), allocated: [] };
          release(ref, [host]);
          return { answer: reply(200, 'Done'), allocated: [] };
        }
        if (!session.active && path === '/Node/done') return { answer: reply(200, { msg: 'Session not in Prod' }), allocated: [] };
        session.active = false;
        release(ref, session.hosts);
        return { answer: reply(200, 'Done'), allocated: [] };
      }
      default:
        return { answer: reply(404, { msg: 'no such endpoint' }), allocated: [] };
    }
  }
}

describe('the replica test client loop (against an in-memory fake)', () => {
  /**
   * Runs `loops` clients on `fake` until `target` allocations; replica 0 goes down at `killAt`.
   * After every answer, the ledger's holdings are compared with the fake's truth.
   */
  async function churn(fake: FakeCinode, loops: number, target: number, killAt: number): Promise<{ ledger: Ledger; stale: string[] }> {
    const ledger = new Ledger(2);
    const stale: string[] = [];
    await Promise.all(
      Array.from({ length: loops }, (_, index) =>
        runClient({
          index,
          project: PROJECTS[index % PROJECTS.length]!,
          replicas: 2,
          send: fake.send,
          ledger,
          next: random(index + 1),
          maxCycles: 10_000,
          maxHeld: 3,
          capacityBackoffMs: 0,
          stop: () => ledger.allocations >= target,
          onAnswer: () => {
            for (const [host, ssid] of ledger.holder) if (fake.holder.get(host) !== ssid) stale.push(`${host}: ledger ${ssid}, fake ${fake.holder.get(host)}`);
            if (!ledger.killed && ledger.allocations >= killAt) {
              ledger.killed = true;
              fake.down.add(0);
            }
          },
        }),
      ),
    );
    return { ledger, stale };
  }

  test('counts what was acknowledged, moves to the other replica when one dies, and never holds a host it may have lost', async () => {
    // 8 hosts for 6 clients: hosts go from session to session all the time.
    const fake = new FakeCinode(8);
    const { ledger, stale } = await churn(fake, 6, 400, 200);

    expect(ledger.violations).toEqual([]);
    expect(ledger.unexpected).toEqual([]);
    // Whenever the ledger says a session holds a host, it really does (releases in flight and
    // requests whose answers were lost leave nothing stale behind).
    expect(stale).toEqual([]);
    expect(ledger.allocations).toBeGreaterThanOrEqual(400);
    // Exactly the allocations whose answers arrived are counted, each under the session it went to.
    expect(ledger.acked.map(([ssid, host]) => `${ssid} ${host}`)).toEqual(fake.delivered);
    expect(ledger.allocations).toBe(fake.delivered.length);
    expect(ledger.replicas[0]!.allocations + ledger.replicas[1]!.allocations).toBe(ledger.allocations);
    // The dead replica answered nothing after the kill. Each of the 3 clients that were on it met
    // it dead once (an answer lost, or a refusal) and moved over for good; the survivor never failed.
    expect(ledger.afterKill[0]).toEqual({ answered: 0, allocations: 0 });
    expect(ledger.afterKill[1]!.allocations).toBeGreaterThanOrEqual(400 - 200 - 3);
    expect([ledger.switches, ledger.replicas[0]!.transportErrors, ledger.replicas[1]!.transportErrors]).toEqual([3, 3, 0]);
    expect(fake.lostAnswers + fake.refused).toBe(3);
    expect(fake.lostAnswers).toBeGreaterThan(0);
    expect(ledger.requests).toBe(ledger.answered + 3);
    // Sessions whose end was acknowledged are done; those left active are the lost answers' only.
    expect(ledger.sessionsEnded).toBeGreaterThan(50);
    expect(ledger.holder.size).toBe(0);
    expect([...fake.sessions.values()].filter((s) => s.active).length).toBeLessThanOrEqual(fake.lostAnswers);
  });

  test('flags an allocator that hands out a host another session still holds', async () => {
    const fake = new FakeCinode(8);
    fake.doubleEvery = 25;
    const { ledger } = await churn(fake, 4, 200, Infinity);
    expect(ledger.violations.length).toBeGreaterThan(0);
    expect(ledger.violations[0]).toMatch(/^fake-\d+\.test\.example handed to session fake-session-\d+ by replica [01] while session fake-session-\d+ still held it$/);
  });
});

// ---------------------------------------------------------------------------------------------
// Two server processes on one PostgreSQL database.

const onPostgres = testDatabaseKind() === 'postgres';
if (!onPostgres) {
  // Not registered at all (rather than skipped): the PostgreSQL pass runs it.
  console.info('test/replicas.test.ts: the two-replica churn runs in the PostgreSQL pass only (CINODE_TEST_DATABASE=postgres, npm run test:postgres)');
}
const describePostgres = (name: string, body: () => void): void => {
  if (onPostgres) describe(name, body);
};

const LOOPS = 64;
const NODES = 200;
const TARGET_ALLOCATIONS = 20_000;
const KILL_AT = TARGET_ALLOCATIONS / 2;
const MAX_CYCLES = 2_000;
const MAX_HELD = 4;
const CAPACITY_BACKOFF_MS = 20;
const CHURN_LIMIT_MS = 200_000;
const REQUEST_TIMEOUT_MS = 30_000;
const VALID_STATES = ['ready', 'deployed', 'reclaiming', 'failed', 'held', 'disabled'];

interface NodeRow {
  id: number;
  hostname: string;
  state: string;
  session_id: number | null;
  used_count: number;
  lease_owner: string | null;
}
interface SessionRow {
  id: number;
  ssid: string;
  state: string;
}
interface HistoryRow {
  session_id: number;
  node_id: number;
  added_at: number;
  released_at: number | null;
}
interface Snapshot {
  nodes: NodeRow[];
  sessions: SessionRow[];
  history: HistoryRow[];
}

async function snapshot(databaseUrl: string): Promise<Snapshot> {
  const store = await openStore(databaseUrl, { poolSize: 2 });
  try {
    const db = store.db;
    const nodes = (await db.selectFrom('nodes').select(['id', 'hostname', 'state', 'session_id', 'used_count', 'lease_owner']).orderBy('id').execute()).map((n) => ({
      ...n,
      id: Number(n.id),
      session_id: n.session_id === null ? null : Number(n.session_id),
      used_count: Number(n.used_count),
    }));
    const sessions = (await db.selectFrom('sessions').select(['id', 'ssid', 'state']).orderBy('id').execute()).map((s) => ({ ...s, id: Number(s.id) }));
    const history = (await db.selectFrom('session_nodes').select(['session_id', 'node_id', 'added_at', 'released_at']).execute()).map((h) => ({
      session_id: Number(h.session_id),
      node_id: Number(h.node_id),
      added_at: Number(h.added_at),
      released_at: h.released_at === null ? null : Number(h.released_at),
    }));
    return { nodes, sessions, history };
  } finally {
    await store.close();
  }
}

const say = (line: string) => process.stdout.write(`[replicas] ${line}\n`);

/** docs/api.md, "Lifecycle", as stored; prints what it checked. */
function checkInvariants(label: string, snap: Snapshot, allHosts: readonly string[]): void {
  expect(snap.nodes).toHaveLength(allHosts.length);
  expect(snap.nodes.map((n) => n.hostname).sort()).toEqual([...allHosts].sort());
  const sessionById = new Map(snap.sessions.map((s) => [s.id, s]));
  const bad: string[] = [];
  for (const node of snap.nodes) {
    if (!VALID_STATES.includes(node.state)) bad.push(`${node.hostname}: state ${node.state}`);
    const inSession = node.state === 'deployed' || node.state === 'held';
    if (inSession !== (node.session_id !== null)) bad.push(`${node.hostname}: ${node.state} with session ${node.session_id}`);
    if (node.session_id !== null && sessionById.get(node.session_id)?.state !== 'active') {
      bad.push(`${node.hostname}: in session ${node.session_id}, which is ${sessionById.get(node.session_id)?.state ?? 'missing'}`);
    }
  }
  expect(bad).toEqual([]);
  // The accounting history agrees: one open entry for each node in a session, and no other.
  const open = snap.history
    .filter((h) => h.released_at === null)
    .map((h) => `${h.session_id} ${h.node_id}`)
    .sort();
  expect(open).toEqual(
    snap.nodes
      .filter((n) => n.session_id !== null)
      .map((n) => `${n.session_id} ${n.id}`)
      .sort(),
  );
  const states = new Map<string, number>();
  for (const n of snap.nodes) states.set(n.state, (states.get(n.state) ?? 0) + 1);
  say(
    `invariants (${label}): ${snap.nodes.length} nodes (= pool size ${allHosts.length}), each in one valid state ` +
      `{${[...states].map(([s, n]) => `${s}: ${n}`).join(', ')}}; session_id set iff deployed/held, and then the session is active; ` +
      `${open.length} open history entries = nodes in sessions: OK`,
  );
}

/** Per node, the stays in sessions ([added_at, released_at)) one after the other, never overlapping. */
function overlaps(history: readonly HistoryRow[]): string[] {
  const byNode = new Map<number, HistoryRow[]>();
  for (const h of history) byNode.set(h.node_id, [...(byNode.get(h.node_id) ?? []), h]);
  const out: string[] = [];
  for (const [node, stays] of byNode) {
    stays.sort((a, b) => a.added_at - b.added_at || (a.released_at ?? Infinity) - (b.released_at ?? Infinity));
    for (let i = 1; i < stays.length; i++) {
      const [before, after] = [stays[i - 1]!, stays[i]!];
      if (before.released_at === null || before.released_at > after.added_at) {
        out.push(
          `node ${node}: session ${before.session_id} [${before.added_at}, ${before.released_at ?? 'open'}) overlaps session ${after.session_id} [${after.added_at}, ${after.released_at ?? 'open'})` +
            (before.released_at === null ? '' : ` by ${before.released_at - after.added_at} ms`),
        );
      }
    }
  }
  return out;
}

function httpSend(urls: readonly string[], agents: readonly http.Agent[]): Send {
  return (replica, path, query) =>
    new Promise<Answer>((resolve, reject) => {
      const request = http.get(`${urls[replica]}${path}?${rawQuery(query)}`, { agent: agents[replica] }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => reject(new TransportError(error.message)));
        response.on('aborted', () => reject(new TransportError('response aborted')));
        response.on('end', () => {
          if (!response.complete) return reject(new TransportError('response cut short'));
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, text, json: parse(text) });
        });
      });
      request.setTimeout(REQUEST_TIMEOUT_MS, () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      request.on('error', (error: NodeJS.ErrnoException) => reject(new TransportError(`${error.code ?? ''} ${error.message}`.trim())));
    });
}

describePostgres('two replicas on one PostgreSQL database, one SIGKILLed mid-churn', () => {
  let dir: string | undefined;
  const procs: ServerProcess[] = [];
  const agents: http.Agent[] = [];

  beforeAll(() => {
    requireBuiltLib();
  });

  afterAll(async () => {
    for (const agent of agents) agent.destroy();
    for (const proc of procs) await proc.kill('SIGKILL');
    if (dir) removeDir(dir);
  });

  test(
    `64 clients, ${TARGET_ALLOCATIONS} allocations: no node in two sessions, every node in one state, the node count unchanged`,
    async () => {
      // ---- two replicas, one database: a pool without a reclaim command (released nodes are ready
      // again at once), projects whose quota and rate limit never refuse.
      dir = mkdtempSync(join(tmpdir(), 'cinode-replicas-'));
      const pool: PoolSpec = { name: 'churn', ver: '7', arch: 'x86_64', nodes: NODES };
      const allHosts = Array.from({ length: NODES }, (_, i) => hostnameOf(pool, i));
      const spec: ConfigSpec = {
        pools: [pool],
        defaults: { 'node-quota': 1_000_000, 'rate-limit': '999999/1s', 'max-count': 10 },
        // Reclaim transactions queue for the same PostgreSQL connections as the clients' requests:
        // with a few reclaims at once, most of the pool would sit in `reclaiming` under this load.
        reclaimParallel: 64,
        reaperInterval: '1s',
      };
      const started = await Promise.all([startServerProcess({ dir, spec }), startServerProcess({ dir, spec })]);
      procs.push(...started);
      const [victim, survivor] = started as [ServerProcess, ServerProcess];
      expect(victim.databaseUrl).toBe(survivor.databaseUrl);
      expect(victim.databaseUrl).toMatch(/^postgres(ql)?:\/\//);
      const urls = started.map((p) => p.url);
      for (let i = 0; i < urls.length; i++) agents.push(new http.Agent({ keepAlive: true, maxSockets: LOOPS }));
      say(`replica 0 (to be killed): ${urls[0]} pid ${victim.child.pid}; replica 1: ${urls[1]} pid ${survivor.child.pid}; ${NODES} nodes, ${LOOPS} clients, ${PROJECTS.length} projects`);

      // ---- the churn
      const ledger = new Ledger(2);
      const begin = Date.now();
      const deadline = begin + CHURN_LIMIT_MS;
      let killPoint: { allocations: number; requests: number; answered: number; ms: number } | undefined;
      const onAnswer = () => {
        if (killPoint || ledger.allocations < KILL_AT) return;
        killPoint = { allocations: ledger.allocations, requests: ledger.requests, answered: ledger.answered, ms: Date.now() - begin };
        ledger.killed = true;
        victim.child.kill('SIGKILL');
      };
      const completed = await Promise.all(
        Array.from({ length: LOOPS }, (_, index) =>
          runClient({
            index,
            project: PROJECTS[index % PROJECTS.length]!,
            replicas: 2,
            send: httpSend(urls, agents),
            ledger,
            next: random(4000 + index),
            maxCycles: MAX_CYCLES,
            maxHeld: MAX_HELD,
            capacityBackoffMs: CAPACITY_BACKOFF_MS,
            stop: () => ledger.allocations >= TARGET_ALLOCATIONS || Date.now() > deadline,
            onAnswer,
          }),
        ),
      );
      const churnMs = Date.now() - begin;
      const exit = await victim.exited;

      const r = ledger.replicas;
      say(
        `churn: ${ledger.allocations} allocations in ${(churnMs / 1000).toFixed(1)} s (${Math.round(ledger.allocations / (churnMs / 1000))}/s); ` +
          `${ledger.requests} requests, ${ledger.answered} answered (${Math.round(ledger.answered / (churnMs / 1000))}/s); ` +
          `${ledger.sessionsOpened} sessions opened, ${completed.reduce((a, b) => a + b, 0)} ended and acknowledged, ${ledger.abandoned} left to the final sweep; ` +
          `${ledger.capacityRefusals} capacity refusals (503)`,
      );
      for (let i = 0; i < r.length; i++) {
        say(
          `replica ${i}: ${r[i]!.requests} requests, ${r[i]!.answered} answered, ${r[i]!.allocations} allocations, ${r[i]!.transportErrors} transport errors; ` +
            `after the kill: ${ledger.afterKill[i]!.answered} answered, ${ledger.afterKill[i]!.allocations} allocations`,
        );
      }
      say(
        killPoint
          ? `kill point: replica 0 SIGKILLed at ${killPoint.allocations} allocations, ${killPoint.requests} requests sent, ${killPoint.answered} answered, ${(killPoint.ms / 1000).toFixed(1)} s in; exit ${JSON.stringify(exit)}; ${ledger.switches} clients moved to replica 1`
          : 'kill point: never reached',
      );

      expect(ledger.unexpected.slice(0, 20)).toEqual([]);
      expect(ledger.violations.slice(0, 20)).toEqual([]);
      say(`continuous check: no acknowledged answer handed out a host still held (per acknowledged answers) by another session: OK (${ledger.allocations} hand-outs checked)`);
      expect(killPoint).toBeDefined();
      expect(exit.signal).toBe('SIGKILL');
      expect(ledger.allocations).toBeGreaterThanOrEqual(TARGET_ALLOCATIONS);
      // The clients really carried on against the survivor, and every one of them got there.
      expect(ledger.afterKill[1]!.allocations).toBeGreaterThanOrEqual(TARGET_ALLOCATIONS - killPoint!.allocations - ledger.afterKill[0]!.allocations);
      expect(ledger.switches).toBeGreaterThanOrEqual(LOOPS / 2);
      expect(r[1]!.transportErrors).toBe(0);
      // (a handful of answers may have been on their way when the signal was sent)
      expect(ledger.afterKill[0]!.answered).toBeLessThanOrEqual(LOOPS);

      // ---- the database as the churn left it (sessions of lost answers may still be active)
      const atEnd = await snapshot(survivor.databaseUrl);
      checkInvariants('after the churn', atEnd, allHosts);

      // ---- end every session still active (those whose end, or whose opening, got no answer)
      const survivorGet = async (path: string, query: Record<string, string | number>): Promise<Answer> =>
        httpSend([survivor.url], [agents[1]!])(0, path, query);
      let swept = 0;
      for (const project of PROJECTS) {
        const listed = await survivorGet('/Session/list', { key: KEYS[project] });
        expect(listed.status).toBe(200);
        for (const s of listed.json as Array<{ ssid: string }>) {
          const done = await survivorGet('/Session/done', { key: KEYS[project], ssid: s.ssid });
          expect([done.status, done.text]).toEqual([200, DONE]);
          swept++;
        }
      }
      expect(swept).toBeLessThanOrEqual(ledger.abandoned + LOOPS);

      // The killed replica's reclaim claims lapse only after their lease: the survivor leaves them
      // alone until then, as a live replica might still own them. (The lease is meant to be 60 s
      // for a pool without a command, but ReclaimWorker computes it from the longest
      // reclaim-timeout of all pools, commands or not: 30 min default + 60 s here.) As
      // crash.test.ts does, fast-forward the lease of the dead process's claims (its owner is
      // "hostname:pid:...") instead of waiting; the survivor takes them at its next reaper tick.
      const deadOwner = `${osHostname()}:${victim.child.pid}:`;
      const store = await openStore(survivor.databaseUrl, { poolSize: 2 });
      let deadClaims = 0;
      let leaseSeconds: number[] = [];
      try {
        const claimed = await store.db
          .selectFrom('nodes')
          .select(['id', 'lease_owner', 'lease_until', 'changed_at'])
          .where('state', '=', 'reclaiming')
          .where('lease_owner', 'is not', null)
          .execute();
        const deadRows = claimed.filter((n) => n.lease_owner!.startsWith(deadOwner));
        const dead = deadRows.map((n) => n.id);
        deadClaims = dead.length;
        leaseSeconds = deadRows.map((n) => Math.round((Number(n.lease_until) - Number(n.changed_at)) / 1000));
        if (dead.length > 0) await store.db.updateTable('nodes').set({ lease_until: Date.now() - 1000 }).where('id', 'in', dead).execute();
      } finally {
        await store.close();
      }
      say(
        `final sweep: ${swept} sessions still active were ended; ${deadClaims} reclaim claims of the killed replica fast-forwarded past their lease` +
          (deadClaims > 0 ? ` (leases ran ${Math.min(...leaseSeconds)}-${Math.max(...leaseSeconds)} s past the release)` : ''),
      );

      await waitFor(
        'every node ready and in no session',
        async () => {
          const rows = (await survivorGet('/Inventory', {})).json as unknown[][];
          return rows.length === NODES && rows.every((row) => row[5] === 'Ready' && row[6] === null);
        },
        30_000,
      );
      const final = await snapshot(survivor.databaseUrl);
      checkInvariants('after every session ended', final, allHosts);
      expect(final.nodes.filter((n) => n.state !== 'ready')).toEqual([]);
      expect(final.sessions.filter((s) => s.state !== 'done')).toEqual([]);
      say(`all ${NODES} nodes ready again, ${final.sessions.length} sessions all done: OK`);

      // ---- the history
      expect(final.history.filter((h) => h.released_at === null)).toEqual([]);
      // Every acknowledged allocation is in it, under the session it was acknowledged for.
      const idBySsid = new Map(final.sessions.map((s) => [s.ssid, s.id]));
      const nodeIdByHost = new Map(final.nodes.map((n) => [n.hostname, n.id]));
      const stays = new Map<string, number>();
      for (const h of final.history) stays.set(`${h.session_id} ${h.node_id}`, (stays.get(`${h.session_id} ${h.node_id}`) ?? 0) + 1);
      const missing: string[] = [];
      for (const [ssid, host] of ledger.acked) {
        const k = `${idBySsid.get(ssid)} ${nodeIdByHost.get(host)}`;
        const left = stays.get(k) ?? 0;
        if (left === 0) missing.push(`${host} in ${ssid}`);
        else stays.set(k, left - 1);
      }
      expect(missing.slice(0, 20)).toEqual([]);
      expect(final.history.length).toBeGreaterThanOrEqual(ledger.allocations);
      // Each stay of a node in a session ended in exactly one reclaim of that node: used_count
      // counts a node's reclaims, from 0 on a fresh database. (A node handed to a second session
      // while in a first would leave one of the two stays without its own release and reclaim.)
      const staysOf = new Map<number, number>();
      for (const h of final.history) staysOf.set(h.node_id, (staysOf.get(h.node_id) ?? 0) + 1);
      const miscounted = final.nodes.filter((n) => n.used_count !== (staysOf.get(n.id) ?? 0)).map((n) => `${n.hostname}: ${n.used_count} reclaims, ${staysOf.get(n.id) ?? 0} stays`);
      expect(miscounted.slice(0, 20)).toEqual([]);
      say(
        `history: ${final.history.length} stays of nodes in sessions, all released; the ${ledger.allocations} acknowledged allocations all in it ` +
          `(${final.history.length - ledger.allocations} more whose answers were lost at the kill); per node, reclaims = stays: OK`,
      );

      // No node was ever in two sessions: per node, the stays [added_at, released_at) never overlap.
      const found = overlaps(final.history);
      say(
        found.length === 0
          ? `history: per node, no stay overlaps another (no node was ever in two sessions): OK`
          : `history: ${found.length} overlapping stays, e.g. ${found.slice(0, 3).join('; ')}`,
      );
      expect(found.slice(0, 20)).toEqual([]);

      const stopped = await survivor.kill('SIGTERM');
      expect(stopped.code).toBe(0);
    },
    600_000,
  );
});
