/**
 * Model-based test (issue 15): fast-check draws sequences of calls from two projects (open a
 * session, get nodes, add nodes, drop one, hold for debugging, end, extend, let time pass through
 * the injectable clock, reload) against the real server on loopback with a real database, and
 * after every step compares the database with a small reference model: each node in exactly one
 * state and at most one session, the sessions and their hosts as the model expects, quotas never
 * exceeded, no node lost, sessions expiring exactly when the model says. On a failure fast-check
 * shrinks the sequence to a minimal one and prints it with its seed.
 *
 * CI runs a fixed seed and a bounded number of runs; CINODE_MODEL_RUNS and CINODE_MODEL_SEED run
 * longer or other sequences by hand.
 */
import fc from 'fast-check';
import { hostnameOf, KEYS, removeDir, startTestServer, type ConfigSpec, type PoolSpec, type TestServer } from './support/server.js';

const POOL: PoolSpec = { name: 'c7', ver: '7', arch: 'x86_64', nodes: 6 };
const HOSTS = Array.from({ length: POOL.nodes }, (_, i) => hostnameOf(POOL, i));
const QUOTA = 3;
const SPEC: ConfigSpec = {
  pools: [POOL],
  projects: { alpha: { 'node-quota': QUOTA }, beta: { 'node-quota': QUOTA } },
};
const HOUR = 3_600_000;
/** A step of time that never lands on an expiry (lifetimes are whole hours, 67 min divides none). */
const TIME_STEP = 67 * 60_000;
const LEGACY_LIFETIME = 6 * HOUR;
const FAIL_HOLD = 12 * HOUR;
const RUNS = Number(process.env.CINODE_MODEL_RUNS ?? 30);
const SEED = Number(process.env.CINODE_MODEL_SEED ?? 20261129);

type ProjectName = 'alpha' | 'beta';

interface ModelSession {
  project: ProjectName;
  hosts: Set<string>;
  expiresAt: number;
  /** The hosts kept for debugging by a hold (`/Node/fail` without `node=`); the others are deployed. */
  held: Set<string>;
}

interface Model {
  now: number;
  sessions: Map<string, ModelSession>;
}

interface Real {
  server: TestServer;
  clock: { now: number };
}

function heldBy(model: Model, project: ProjectName): number {
  let count = 0;
  for (const s of model.sessions.values()) if (s.project === project) count += s.hosts.size;
  return count;
}

/** The nth active session of a project in the model (commands name sessions by index, shrinkable). */
function pick(model: Model, project: ProjectName, index: number): [string, ModelSession] | undefined {
  const own = [...model.sessions.entries()].filter(([, s]) => s.project === project);
  return own.length === 0 ? undefined : own[index % own.length];
}

async function call(real: Real, path: string, query: Record<string, string | number>): Promise<{ status: number; json: unknown }> {
  const reply = await real.server.get(path, query);
  expect(reply.status).toBeLessThan(500);
  return reply;
}

/** The database against the model: states, sessions, hosts, quotas, nothing lost. */
async function check(model: Model, real: Real): Promise<void> {
  const db = real.server.server.store.db;
  const nodes = await db.selectFrom('nodes').select(['hostname', 'state', 'session_id']).orderBy('hostname').execute();
  const sessions = await db
    .selectFrom('sessions as s')
    .innerJoin('projects as p', 'p.id', 's.project_id')
    .select(['s.id', 's.ssid', 's.state', 'p.name as project'])
    .execute();
  // nothing lost, each node in one valid state, in a session exactly when deployed or held
  expect(nodes.map((n) => n.hostname).sort()).toEqual([...HOSTS].sort());
  for (const node of nodes) {
    expect(['ready', 'deployed', 'held']).toContain(node.state);
    expect({ host: node.hostname, inSession: node.session_id !== null }).toEqual({ host: node.hostname, inSession: node.state !== 'ready' });
  }
  // the active sessions are the model's, each with the model's hosts
  const active = sessions.filter((s) => s.state === 'active');
  expect(active.map((s) => s.ssid).sort()).toEqual([...model.sessions.keys()].sort());
  for (const session of active) {
    const hosts = nodes.filter((n) => n.session_id === session.id).map((n) => n.hostname).sort();
    const expected = model.sessions.get(session.ssid)!;
    expect({ ssid: session.ssid, project: session.project, hosts }).toEqual({ ssid: session.ssid, project: expected.project, hosts: [...expected.hosts].sort() });
    for (const host of hosts) expect({ host, state: nodes.find((n) => n.hostname === host)!.state }).toEqual({ host, state: expected.held.has(host) ? 'held' : 'deployed' });
  }
  // no node in a session that ended; quotas kept
  const activeIds = new Set(active.map((s) => s.id));
  for (const node of nodes) if (node.session_id !== null) expect(activeIds.has(node.session_id)).toBe(true);
  for (const project of ['alpha', 'beta'] as const) expect(heldBy(model, project)).toBeLessThanOrEqual(QUOTA);
}

class NodeGet implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly project: ProjectName,
    readonly count: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const reply = await call(real, '/Node/get', { key: KEYS[this.project], count: this.count });
    const free = HOSTS.length - [...model.sessions.values()].reduce((n, s) => n + s.hosts.size, 0);
    if (heldBy(model, this.project) + this.count > QUOTA) expect(reply.status).toBe(403);
    else if (this.count > free) expect(reply.status).toBe(503);
    else {
      expect(reply.status).toBe(200);
      const { hosts, ssid } = reply.json as { hosts: string[]; ssid: string };
      expect(hosts).toHaveLength(this.count);
      model.sessions.set(ssid, { project: this.project, hosts: new Set(hosts), expiresAt: model.now + LEGACY_LIFETIME, held: new Set() });
    }
    await check(model, real);
  }
  toString = () => `NodeGet(${this.project}, ${this.count})`;
}

class SessionGet implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly project: ProjectName,
    readonly hours: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const reply = await call(real, '/Session/get', { key: KEYS[this.project], lifetime: `${this.hours}h` });
    expect(reply.status).toBe(200);
    const { ssid } = reply.json as { ssid: string };
    model.sessions.set(ssid, { project: this.project, hosts: new Set(), expiresAt: model.now + this.hours * HOUR, held: new Set() });
    await check(model, real);
  }
  toString = () => `SessionGet(${this.project}, ${this.hours}h)`;
}

/** A call on one of the project's active sessions (nothing happens when it has none). */
abstract class OnSession implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly project: ProjectName,
    readonly index: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    const picked = pick(model, this.project, this.index);
    if (picked) await this.on(model, real, picked[0], picked[1]);
    await check(model, real);
  }
  abstract on(model: Model, real: Real, ssid: string, session: ModelSession): Promise<void>;
  toString = () => `${this.constructor.name}(${this.project}, #${this.index})`;
}

class AddNodes extends OnSession {
  async on(model: Model, real: Real, ssid: string, session: ModelSession): Promise<void> {
    const reply = await call(real, '/Node/get', { key: KEYS[this.project], ssid, count: 1 });
    const free = HOSTS.length - [...model.sessions.values()].reduce((n, s) => n + s.hosts.size, 0);
    if (heldBy(model, this.project) + 1 > QUOTA) expect(reply.status).toBe(403);
    else if (free < 1) expect(reply.status).toBe(503);
    else {
      expect(reply.status).toBe(200);
      for (const host of (reply.json as { hosts: string[] }).hosts) session.hosts.add(host);
    }
  }
}

class DropNode extends OnSession {
  async on(_model: Model, real: Real, ssid: string, session: ModelSession): Promise<void> {
    const host = [...session.hosts].find((h) => !session.held.has(h));
    if (host === undefined) return;
    const reply = await call(real, '/Node/done', { key: KEYS[this.project], ssid, node: host });
    expect(reply.status).toBe(200);
    session.hosts.delete(host);
  }
}

class Hold extends OnSession {
  async on(model: Model, real: Real, ssid: string, session: ModelSession): Promise<void> {
    const reply = await call(real, '/Node/fail', { key: KEYS[this.project], ssid });
    if (reply.status !== 200) return; // e.g. past max-failed-nodes: refused, and nothing changed (check)
    for (const host of session.hosts) session.held.add(host);
    session.expiresAt = Math.max(session.expiresAt, model.now + FAIL_HOLD);
  }
}

class EndSession extends OnSession {
  async on(model: Model, real: Real, ssid: string): Promise<void> {
    const reply = await call(real, '/Session/done', { key: KEYS[this.project], ssid });
    expect(reply.status).toBe(200);
    model.sessions.delete(ssid);
  }
}

class Extend extends OnSession {
  async on(model: Model, real: Real, ssid: string, session: ModelSession): Promise<void> {
    const reply = await call(real, '/Session/extend', { key: KEYS[this.project], ssid, lifetime: '2h' });
    expect(reply.status).toBe(200);
    session.expiresAt = Math.max(session.expiresAt, model.now + 2 * HOUR); // an extend never shortens
  }
}

class TimePasses implements fc.AsyncCommand<Model, Real> {
  constructor(readonly steps: number) {}
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    model.now += this.steps * TIME_STEP;
    real.clock.now = model.now;
    while ((await real.server.server.reaper.reapOnce()) > 0);
    for (const [ssid, session] of model.sessions) if (session.expiresAt <= model.now) model.sessions.delete(ssid);
    await check(model, real);
  }
  toString = () => `TimePasses(${this.steps} x 67m)`;
}

class Reload implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(model: Model, real: Real): Promise<void> {
    await real.server.server.reload();
    await check(model, real);
  }
  toString = () => 'Reload';
}

const project = fc.constantFrom<ProjectName>('alpha', 'beta');
const index = fc.nat(3);
const commands = fc.commands(
  [
    fc.tuple(project, fc.integer({ min: 1, max: 4 })).map(([p, n]) => new NodeGet(p, n)),
    fc.tuple(project, fc.integer({ min: 1, max: 3 })).map(([p, h]) => new SessionGet(p, h)),
    fc.tuple(project, index).map(([p, i]) => new AddNodes(p, i)),
    fc.tuple(project, index).map(([p, i]) => new DropNode(p, i)),
    fc.tuple(project, index).map(([p, i]) => new Hold(p, i)),
    fc.tuple(project, index).map(([p, i]) => new EndSession(p, i)),
    fc.tuple(project, index).map(([p, i]) => new Extend(p, i)),
    fc.integer({ min: 1, max: 8 }).map((n) => new TimePasses(n)),
    fc.constant(new Reload()),
  ],
  { maxCommands: 30, size: 'large' },
);

test('random call sequences of two projects keep the database equal to the model', async () => {
  await fc.assert(
    fc.asyncProperty(commands, async (cmds) => {
      const start = Date.parse('2026-03-02T08:00:00Z');
      const clock = { now: start };
      const server = await startTestServer(SPEC, () => clock.now);
      try {
        await fc.asyncModelRun(() => ({ model: { now: start, sessions: new Map() }, real: { server, clock } }), cmds);
      } finally {
        await server.close();
        removeDir(server.dir);
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: process.env.CI === 'true' },
  );
}, 300_000);
