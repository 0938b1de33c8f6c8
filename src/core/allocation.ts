/**
 * The allocation domain: every call of docs/api.md as a method, each one transaction. It speaks in
 * projects, sessions and nodes; the server turns its results and CinodeErrors into HTTP.
 */
import type { HostView, PublicInventoryRow, QueueEntryView, SessionGetResult, SessionView, WaitingView } from '../api/types.js';
import type { Catalog } from './catalog.js';
import { formatDuration, NEVER, type Lifetime } from '../api/duration.js';
import { CAPACITY_MESSAGE, FAILED_NODE_LIMIT_MESSAGE } from '../api/messages.js';
import { LEGACY_STATE_NAMES } from '../api/states.js';
import { badRequest, CinodeError, invalidKey, invalidSession, notActive } from './errors.js';
import { type Contextualizer, type Node, type Pool, type Project, type ProjectPolicy, type Session } from './model.js';
import type { Storage, StorageTx, Waiter } from './storage.js';
import { CAPACITY_RETRY_AFTER_SECONDS, hookSessionOf, type SessionIsolation } from './isolation.js';
import { waiterPoolSet } from './queue-order.js';
import type { WaitingQueue } from './queue.js';


export interface ServiceDeps {
  store: Storage;
  catalog: () => Catalog;
  /** Milliseconds since the epoch. */
  clock: () => number;
  newSsid: () => string;
  /** Called after a commit that sent nodes to reclaim, so reclaim starts at once. */
  wakeReclaim: () => void;
  /** How nodes get a project's SSH keys; null when the configuration does not contextualize. */
  contextualizer?: () => Contextualizer | null;
  /** Told when a request found too few ready nodes (command pools provision for it) or was served. */
  onDemand?: (pools: readonly Pool[], missing: number) => void;
  /** Called after nodes were handed out, so command pools refill their warm pool. */
  onAllocated?: () => void;
  /**
   * Told of the nodes a `/Node/get` handed out and when the call began (by `clock`), for the
   * time-to-node metric; waiting for capacity falls between the two.
   */
  onHandedOut?: (nodes: readonly Node[], requestedAt: number) => void;
  /** The waiting queue; without it every request answers at once. */
  queue?: WaitingQueue;
  /** Runs the isolation hooks of requests, when the configuration has any (docs/api.md, "Session isolation"). */
  isolation?: SessionIsolation;
}


/** Nodes one `/Node/get` put into a session, before they are handed over. */
interface Allocation {
  sessionId: number;
  ssid: string;
  /** Whether the request opened the session, so undoing it removes the session too. */
  created: boolean;
  session: Session;
  nodes: Node[];
  pools: string[];
}

export interface NodeGetRequest {
  ver?: string;
  arch?: string;
  flavor?: string;
  count?: number;
  ssid?: string;
  /** How long the request may wait for capacity, in milliseconds (0: not at all); else the project's `default-wait`. */
  wait?: number;
}

/**
 * The capacity answer of a request the ready nodes cannot serve now: what the queue needs to let
 * it wait for them.
 */
class Shortfall extends CinodeError {
  constructor(
    readonly pools: Pool[],
    readonly missing: number,
    readonly poolSet: string,
    readonly sessionId: number | null,
  ) {
    super('capacity', CAPACITY_MESSAGE, CAPACITY_RETRY_AFTER_SECONDS);
  }
}

export interface SessionGetRequest {
  alias?: string;
  lifetime?: Lifetime;
  /** Milliseconds within which the session must hear from its client (docs/api.md, "Heartbeats"). */
  heartbeatMs?: number;
}

/**
 * The session a call named, once found: when the call is refused (its transaction undone, ping
 * included), the session still heard from its client, so the ping is made again on its own.
 */
interface Named {
  session?: Session;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function hostView(node: Node): HostView {
  return { hostname: node.hostname, ip: node.ip, state: node.state, ver: node.ver, arch: node.arch, flavor: node.flavor };
}

function sessionView(session: Session, nodes: readonly Node[]): SessionView {
  return {
    ssid: session.ssid,
    alias: session.alias,
    state: session.state,
    created_at: iso(session.createdAt)!,
    expires_at: iso(session.expiresAt),
    ended_at: iso(session.endedAt),
    end_reason: session.endReason,
    hosts: nodes.map(hostView),
    isolation: session.isolation,
    teardown: session.teardown,
    heartbeat: session.heartbeatMs === null ? null : formatDuration(session.heartbeatMs),
    heartbeat_deadline: session.state === 'active' ? iso(session.heartbeatDeadline) : null,
  };
}

export class AllocationService {
  constructor(private readonly deps: ServiceDeps) {}

  private contextualizerFor(project: Project): Contextualizer | null {
    return project.sshKeys.length > 0 ? (this.deps.contextualizer?.() ?? null) : null;
  }

  /** The project of an API key; an empty or unknown key is refused alike. */
  authenticate(key: string | undefined): Project {
    const project = key ? this.deps.catalog().projectForKey(key) : undefined;
    if (!project) throw invalidKey();
    return project;
  }

  /**
   * `/Node/get`: a new session with `count` nodes, or `count` more nodes in a live session. When
   * the ready nodes fall short and the request may wait (`wait`, else the project's
   * `default-wait`, capped by its `max-wait`), it waits in the queue (docs/api.md, "Waiting for
   * capacity") until served, refused, `signal` aborts (the client left) or the wait ends (503).
   */
  async getNodes(project: Project, request: NodeGetRequest, signal?: AbortSignal): Promise<{ hosts: string[]; ssid: string }> {
    const requestedAt = this.deps.clock();
    const count = request.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > project.policy.maxCount) {
      throw badRequest(`count: ${count} is out of range; accepted: a whole number from 1 to ${project.policy.maxCount}`);
    }
    const contextualizer = this.contextualizerFor(project);
    let allocation: Allocation;
    try {
      allocation = await this.allocate(project, request, count, contextualizer !== null);
    } catch (error) {
      const waitMs = Math.min(request.wait ?? project.policy.defaultWaitMs, project.policy.maxWaitMs);
      const { queue } = this.deps;
      if (!(error instanceof Shortfall) || waitMs <= 0 || !queue) throw error;
      const waiter = { projectId: project.id, sessionId: error.sessionId, poolSet: error.poolSet, count, since: requestedAt };
      const attempt = (waiterId: number) => this.allocate(project, request, count, contextualizer !== null, waiterId);
      const served = await queue.wait(waiter, request.ssid ?? null, waitMs, signal, attempt);
      if (served === undefined) throw error;
      if (signal?.aborted) {
        // Served as its client left: nobody will hear of these nodes, so they go back at once.
        await this.giveBack(served);
        throw error;
      }
      allocation = served;
    }
    this.deps.onAllocated?.();
    const isolation = this.deps.catalog().isolated ? this.deps.isolation : undefined;
    if (isolation) {
      const pending = { ...allocation, session: hookSessionOf(project, allocation.session) };
      allocation.nodes = await isolation.attach(pending, allocation.created ? allocation.session : undefined);
    }
    const nodes = contextualizer ? await this.contextualize(project, contextualizer, allocation) : allocation.nodes;
    this.deps.onHandedOut?.(nodes, requestedAt);
    return { hosts: nodes.map((n) => n.hostname), ssid: allocation.ssid };
  }

  /**
   * One try at a `/Node/get`, one transaction: every check a new request gets, then the ready
   * nodes, all or none. Too few ready nodes, or a request waiting for the same pools that this
   * one must not overtake, is a `Shortfall`. `waiterId`: the try of a request waiting in the
   * queue, whose turn the queue decided; served, it leaves the queue in the same commit.
   */
  private async allocate(project: Project, request: NodeGetRequest, count: number, withKeys: boolean, waiterId?: number): Promise<Allocation> {
    const catalog = this.deps.catalog();
    const ver = request.ver ?? catalog.defaults.ver;
    const arch = request.arch ?? catalog.defaults.arch;
    const isolation = catalog.isolated ? this.deps.isolation : undefined;
    let shortfall: Shortfall | undefined;
    const named: Named = {};
    return this.deps.store.transaction(async (tx): Promise<Allocation> => {
      shortfall = undefined;
      await tx.sessions.lockProject(project.id);
      // Read after the lock: the rate limit counts what committed before this request's turn.
      const now = this.deps.clock();
      let session: Session | undefined;
      if (request.ssid !== undefined) session = await this.activeSession(tx, project, request.ssid, named);
      await this.checkQuota(tx, project.policy, count, project.id);
      const pools = catalog.poolsFor(ver, arch, request.flavor);
      if (pools.length === 0) {
        throw new CinodeError('no-pool', `No pool serves ver=${ver} arch=${arch} flavor=${request.flavor ?? 'none'}`);
      }
      const capacity = pools.reduce((sum, p) => sum + p.capacity, 0);
      if (count > capacity) {
        const names = pools.map((p) => p.name).join(', ');
        throw new CinodeError('count-too-large', `count ${count} exceeds the ${capacity} nodes ${pools.length > 1 ? 'pools' : 'pool'} ${names} can hold`);
      }
      if (!session) await this.checkRateLimit(tx, project, now);
      const poolNames = pools.map((p) => p.name);
      const poolSet = waiterPoolSet(poolNames);
      // The one check an immediate request pays for the queue: ready nodes of pools that a
      // waiting request needs are kept for it.
      const queued = waiterId === undefined && this.deps.queue !== undefined && (await tx.queue.waitingFor(poolSet, this.deps.queue.now()));
      const nodes = queued ? [] : await tx.nodes.pickReady(poolNames, count);
      if (nodes.length < count) {
        shortfall = new Shortfall(pools, count - nodes.length, poolSet, session?.id ?? null);
        throw shortfall;
      }
      if (waiterId !== undefined) await tx.queue.remove(waiterId);
      // Stamped once the nodes are picked: a node's new stay in the history must start after its
      // last one ended, and that release may have committed while this request waited.
      const assignedAt = this.deps.clock();
      const created = session === undefined;
      if (!session) {
        const opened = { ssid: this.deps.newSsid(), projectId: project.id, alias: null, createdAt: assignedAt, expiresAt: this.expiryFor(project, undefined, assignedAt) };
        session = isolation ? await tx.isolation.openForSetup(opened, isolation.owner, isolation.leaseUntil()) : await tx.sessions.insert(opened);
      }
      const attachLease = isolation ? { attachLease: { owner: isolation.owner, until: isolation.leaseUntil() } } : {};
      await tx.nodes.assign(
        session.id,
        nodes.map((n) => n.id),
        assignedAt,
        catalog.move('allocated', { withKeys, ...attachLease }),
      );
      return { sessionId: session.id, ssid: session.ssid, created, session, nodes, pools: poolNames };
    }).catch(async (error: unknown) => {
      if (shortfall) this.deps.onDemand?.(shortfall.pools, shortfall.missing);
      await this.pingRefused(named, error);
      throw error;
    });
  }

  /**
   * Puts the project's SSH keys on the nodes of an allocation. A node that cannot take them is
   * quarantined and another ready node tried in its place, so the caller never sees a broken one.
   * When no node is left, the request is undone as a whole (all-or-nothing): the nodes already
   * prepared have their keys taken off and are ready again, the session it opened is gone, and
   * the caller gets the capacity answer.
   */
  private async contextualize(project: Project, contextualizer: Contextualizer, allocation: Allocation): Promise<Node[]> {
    const catalog = this.deps.catalog();
    const prepared: Node[] = [];
    let trying = allocation.nodes;
    while (trying.length > 0) {
      const outcomes = await Promise.all(trying.map(async (node) => ({ node, result: await contextualizer.install(node, project.sshKeys) })));
      prepared.push(...outcomes.filter((o) => o.result.ok).map((o) => o.node));
      const broken = outcomes.filter((o) => !o.result.ok);
      if (broken.length === 0) break;
      trying = await this.deps.store.transaction(async (tx) => {
        const now = this.deps.clock();
        for (const { node, result } of broken) {
          const reason = `could not be contextualized for project ${project.name}: ${result.reason}`;
          await tx.nodes.leave(allocation.sessionId, [node.id], catalog.move('keys-failed'), { at: now, reason, detail: result.stderr });
        }
        // With isolation hooks a replacement would need its attach first: the request is undone instead.
        const spare = catalog.isolated ? [] : await tx.nodes.pickReady(allocation.pools, broken.length);
        if (spare.length < broken.length) return [];
        await tx.nodes.assign(
          allocation.sessionId,
          spare.map((n) => n.id),
          now,
          catalog.move('allocated', { withKeys: true }),
        );
        return spare;
      });
      this.deps.wakeReclaim(); // the broken nodes of command pools are deprovisioned
      if (trying.length === 0) {
        await this.undoAllocation(project, contextualizer, allocation, prepared);
        throw new CinodeError('capacity', CAPACITY_MESSAGE, CAPACITY_RETRY_AFTER_SECONDS);
      }
    }
    // In the order the caller asked for them: the replacements come last.
    return prepared;
  }

  /** Undoes an allocation whose keys were never put on: its nodes are ready again, and a session it opened is gone. */
  private async giveBack(allocation: Allocation): Promise<void> {
    const catalog = this.deps.catalog();
    await this.deps.store.transaction(async (tx) => {
      const undone = { at: this.deps.clock(), reason: 'request undone: its client left before it was answered' };
      await tx.nodes.leave(allocation.sessionId, allocation.nodes.map((n) => n.id), catalog.move('allocation-undone'), undone);
      // A session opened for isolation keeps its row until its teardown ran (its setup may have started).
      if (allocation.created && catalog.isolated) await tx.isolation.abandon(allocation.sessionId, catalog.move('allocation-undone'), undone);
      else if (allocation.created) await tx.sessions.remove(allocation.sessionId, undone);
    });
    this.deps.wakeReclaim();
  }

  /** Takes the keys off the prepared nodes and gives them back; a node that keeps them is quarantined. */
  private async undoAllocation(project: Project, contextualizer: Contextualizer, allocation: Allocation, prepared: readonly Node[]): Promise<void> {
    const catalog = this.deps.catalog();
    const outcomes = await Promise.all(prepared.map(async (node) => ({ node, result: await contextualizer.remove(node) })));
    await this.deps.store.transaction(async (tx) => {
      const now = this.deps.clock();
      const cleaned = outcomes.filter((o) => o.result.ok).map((o) => o.node.id);
      const undone = { at: now, reason: 'request undone: too few nodes could be contextualized' };
      await tx.nodes.leave(allocation.sessionId, cleaned, catalog.move('allocation-undone'), undone);
      for (const { node, result } of outcomes.filter((o) => !o.result.ok)) {
        const reason = `could not take the SSH keys of project ${project.name} off again: ${result.reason}`;
        await tx.nodes.leave(allocation.sessionId, [node.id], catalog.move('keys-failed'), { at: now, reason, detail: result.stderr });
      }
      // A session that was set up keeps its row until its teardown cleaned its segment up.
      if (allocation.created && catalog.isolated) await tx.isolation.abandon(allocation.sessionId, catalog.move('allocation-undone'), undone);
      else if (allocation.created) await tx.sessions.remove(allocation.sessionId, undone);
    });
    this.deps.wakeReclaim();
  }

  /**
   * `/Node/done`: without hosts, ends the session (legacy answer when it is already done); with
   * hosts, releases just those and the session stays active.
   */
  async doneNodes(project: Project, ref: string, hostnames?: readonly string[]): Promise<'done' | 'not-in-prod'> {
    const now = this.deps.clock();
    const catalog = this.deps.catalog();
    const named: Named = {};
    const outcome = await this.deps.store.transaction(async (tx) => {
      const session = await this.sessionFor(tx, project, ref, named);
      if (hostnames === undefined) {
        if (session.state !== 'active') return 'not-in-prod' as const;
        await tx.sessions.end(session.id, 'done', now, catalog.move('session-ended'));
        return 'done' as const;
      }
      if (session.state !== 'active') throw notActive(session.ssid);
      const nodes = await this.nodesNamed(tx, session, hostnames);
      await tx.nodes.leave(
        session.id,
        nodes.map((n) => n.id),
        catalog.move('released'),
        { at: now, reason: `released by ${project.name}` },
      );
      return 'done' as const;
    }).catch((error: unknown) => this.pingRefused(named, error).then(() => Promise.reject(error)));
    if (outcome === 'done') this.deps.wakeReclaim();
    return outcome;
  }

  /**
   * `/Node/fail`: without hosts, keeps the session's nodes for debugging until the fail hold
   * ends; with hosts, reports those broken: they leave the session into quarantine.
   */
  async failNodes(project: Project, ref: string, hostnames?: readonly string[]): Promise<void> {
    const now = this.deps.clock();
    const catalog = this.deps.catalog();
    const named: Named = {};
    await this.deps.store.transaction(async (tx) => {
      await tx.sessions.lockProject(project.id);
      const session = await this.activeSession(tx, project, ref, named);
      const inSession = hostnames === undefined ? await tx.nodes.ofSession(session.id) : await this.nodesNamed(tx, session, hostnames);
      const newlyCounted = inSession.filter((n) => n.state === 'deployed').length;
      const counted = await tx.nodes.countFailedAndHeld(project.id);
      if (counted + newlyCounted > project.policy.maxFailedNodes) {
        throw new CinodeError('policy', FAILED_NODE_LIMIT_MESSAGE);
      }
      if (hostnames === undefined) {
        const holdUntil = now + project.policy.failHoldMs;
        const reason = `held for debugging by ${project.name} until ${iso(holdUntil)}`;
        await tx.nodes.hold(session.id, catalog.move('held', { holdUntil }), { at: now, reason });
        if (session.expiresAt !== null && session.expiresAt < holdUntil) await tx.sessions.setExpiry(session.id, holdUntil);
        return;
      }
      const reason = `reported broken by project ${project.name} (alias ${session.alias ?? 'none'}, session ${session.ssid}) at ${iso(now)}`;
      await tx.nodes.leave(
        session.id,
        inSession.map((n) => n.id),
        catalog.move('reported-broken', { reporter: project.id }),
        { at: now, reason },
      );
    }).catch((error: unknown) => this.pingRefused(named, error).then(() => Promise.reject(error)));
  }

  /** `/Inventory` with a key: `[hostname, ssid]` for each node in the project's active sessions. */
  async projectInventory(project: Project): Promise<Array<[string, string]>> {
    return this.deps.store.read().nodes.projectInventory(project.id);
  }

  /** `/Inventory` without a key: every managed node as a 14-element legacy row, by id. */
  async publicInventory(): Promise<PublicInventoryRow[]> {
    const rows = await this.deps.store.read().nodes.list();
    return rows.map((n) => [
      n.id,
      n.hostname,
      n.ip,
      n.chassis,
      n.usedCount,
      LEGACY_STATE_NAMES[n.state],
      n.ssid,
      null,
      null,
      n.ver,
      n.arch,
      n.state === 'failed' || n.state === 'disabled' ? 0 : 1,
      n.consolePort,
      n.flavor,
    ]);
  }

  /** `/Session/get`: a session with no nodes; by alias, the project's active one if it exists. */
  async getSession(project: Project, request: SessionGetRequest): Promise<SessionGetResult> {
    const now = this.deps.clock();
    const isolation = this.deps.catalog().isolated ? this.deps.isolation : undefined;
    const opened = await this.deps.store.transaction(async (tx) => {
      await tx.sessions.lockProject(project.id);
      if (request.alias !== undefined) {
        const existing = await tx.sessions.activeByAlias(project.id, request.alias);
        if (existing) {
          // Asking for it again is hearing from its client; its heartbeat stays as it was opened.
          await this.heard(tx, existing, now);
          const nodes = await tx.nodes.ofSession(existing.id);
          return { ...this.sessionSummary(existing, nodes), created: false as boolean };
        }
        // Another call opens this alias and its session-setup still runs: a second setup would
        // make a second session of one alias, so this call is told to ask again (and then gets it).
        if (isolation && (await tx.isolation.aliasInSetup(project.id, request.alias, now))) {
          throw new CinodeError('unavailable', `Session ${request.alias} is being set up by another call (its session-setup is running); ask again in a moment`, 1);
        }
      }
      const expiresAt = this.expiryFor(project, request.lifetime, now);
      await this.checkRateLimit(tx, project, now);
      const fresh = { ssid: this.deps.newSsid(), projectId: project.id, alias: request.alias ?? null, createdAt: now, expiresAt, heartbeatMs: request.heartbeatMs ?? null };
      const session = isolation ? await tx.isolation.openForSetup(fresh, isolation.owner, isolation.leaseUntil()) : await tx.sessions.insert(fresh);
      return { ...this.sessionSummary(session, []), created: true, session };
    });
    const { session, ...answer } = opened as SessionGetResult & { session?: Session };
    if (isolation && session) await isolation.openSession(session, hookSessionOf(project, session));
    return answer;
  }

  /** `/Session/done`: ends the session; a session already done is fine (teardowns get retried). */
  async endSession(project: Project, ref: string): Promise<void> {
    const now = this.deps.clock();
    const ended = await this.deps.store.transaction(async (tx) => {
      const session = await this.sessionFor(tx, project, ref);
      if (session.state !== 'active') return false;
      await tx.sessions.end(session.id, 'done', now, this.deps.catalog().move('session-ended'));
      return true;
    });
    if (ended) this.deps.wakeReclaim();
  }

  /** `/Session/show`, and `/Session/ping`, which is the same call by another name: both count as a ping. */
  async showSession(project: Project, ref: string): Promise<SessionView> {
    const tx = this.deps.store.read();
    const session = await this.sessionFor(tx, project, ref);
    const view = sessionView(session, await tx.nodes.ofSession(session.id));
    if (session.state !== 'active' || !this.deps.queue) return view;
    const waiting = (await this.queued()).filter((w) => w.projectId === project.id && w.ssid === session.ssid).map(({ view }) => view);
    return waiting.length > 0 ? { ...view, waiting } : view;
  }

  /**
   * `/Queue`: the project's waiting requests in the order the queue would serve them; to an admin
   * project's key, every project's, each naming its project.
   */
  async queue(project: Project): Promise<QueueEntryView[]> {
    const queued = await this.queued();
    if (project.policy.admin) return queued.map((w) => ({ ...w.view, ssid: w.ssid, project: w.project }));
    return queued.filter((w) => w.projectId === project.id).map((w) => ({ ...w.view, ssid: w.ssid }));
  }

  /** Every waiting request with its view, position 1 first. */
  private async queued(): Promise<Array<Waiter & { view: WaitingView }>> {
    const order = this.deps.queue ? await this.deps.queue.order() : [];
    return order.map((w, i) => ({ ...w, view: { count: w.count, since: iso(w.since)!, position: i + 1 } }));
  }

  /**
   * Keeps a session with a heartbeat alive from outside a call: for a `/Node/get ssid=` that waits
   * in the queue (docs/api.md, "Heartbeats": a waiting request keeps its session alive).
   */
  async keepAlive(sessionId: number): Promise<void> {
    await this.deps.store.read().sessions.ping(sessionId, this.deps.clock());
  }

  async listSessions(project: Project): Promise<SessionView[]> {
    const tx = this.deps.store.read();
    const sessions = await tx.sessions.active(project.id);
    const nodes = await tx.nodes.ofSessions(sessions.map((s) => s.id));
    return sessions.map((s) => sessionView(s, nodes.get(s.id) ?? []));
  }

  /**
   * `/Session/extend`: the session now expires `lifetime` from now, capped by the project's
   * maximum, but never earlier than it already did (docs/api.md: an extend never shortens, and a
   * session that never expires stays so).
   */
  async extendSession(project: Project, ref: string, lifetime: Lifetime): Promise<SessionView> {
    const now = this.deps.clock();
    const named: Named = {};
    return this.deps.store.transaction(async (tx) => {
      const session = await this.activeSession(tx, project, ref, named);
      // Checked first: lifetime=never is refused by policy even for a session that never expires.
      const requested = this.expiryFor(project, lifetime, now);
      const expiresAt = session.expiresAt === null || (requested !== null && requested <= session.expiresAt) ? session.expiresAt : requested;
      if (expiresAt !== session.expiresAt) await tx.sessions.setExpiry(session.id, expiresAt);
      return sessionView({ ...session, expiresAt }, await tx.nodes.ofSession(session.id));
    }).catch((error: unknown) => this.pingRefused(named, error).then(() => Promise.reject(error)));
  }

  // ---- rules shared by the calls ----

  private sessionSummary(session: Session, nodes: readonly Node[]): Omit<SessionGetResult, 'created'> {
    return { ssid: session.ssid, alias: session.alias, hosts: nodes.map((n) => n.hostname), expires_at: iso(session.expiresAt) };
  }

  /**
   * The caller's session by ssid or alias; another project's is as unknown as a made-up one.
   * Naming it is a ping (docs/api.md, "Heartbeats"), noted in `named` for `pingRefused`.
   */
  private async sessionFor(tx: StorageTx, project: Project, ref: string, named?: Named): Promise<Session> {
    const session = await tx.sessions.byRef(project.id, ref);
    if (!session) throw invalidSession();
    if (named) named.session = session;
    return this.heard(tx, session, this.deps.clock());
  }

  /** A ping, paid for only by active sessions that have a heartbeat: the session as it now is. */
  private async heard(tx: StorageTx, session: Session, now: number): Promise<Session> {
    if (session.heartbeatMs === null || session.state !== 'active') return session;
    await tx.sessions.ping(session.id, now);
    return { ...session, heartbeatDeadline: now + session.heartbeatMs };
  }

  /** A refused call undid its ping with its transaction; the session heard from its client all the same. */
  private async pingRefused(named: Named, error: unknown): Promise<void> {
    if (!(error instanceof CinodeError) || !named.session || named.session.heartbeatMs === null) return;
    await this.deps.store.read().sessions.ping(named.session.id, this.deps.clock());
  }

  private async activeSession(tx: StorageTx, project: Project, ref: string, named?: Named): Promise<Session> {
    const session = await this.sessionFor(tx, project, ref, named);
    if (session.state !== 'active') throw notActive(session.ssid);
    return session;
  }

  /** The session's nodes with those hostnames; any other hostname is refused by name. */
  private async nodesNamed(tx: StorageTx, session: Session, hostnames: readonly string[]): Promise<Node[]> {
    const nodes = await tx.nodes.ofSession(session.id);
    const byHostname = new Map(nodes.map((n) => [n.hostname, n]));
    return hostnames.map((hostname) => {
      const node = byHostname.get(hostname);
      if (!node) throw new CinodeError('node-not-in-session', `Node ${hostname} is not in session ${session.ssid}`);
      return node;
    });
  }

  private async checkQuota(tx: StorageTx, policy: ProjectPolicy, requested: number, projectId: number): Promise<void> {
    const allocated = await tx.nodes.countInUse(projectId);
    if (requested + allocated > policy.nodeQuota) {
      throw new CinodeError('policy', `Quota exceeded: requested ${requested} + allocated ${allocated} > quota ${policy.nodeQuota}`);
    }
  }

  private async checkRateLimit(tx: StorageTx, project: Project, now: number): Promise<void> {
    const { sessions, windowMs } = project.policy.rateLimit;
    const recent = await tx.sessions.createdSince(project.id, now - windowMs);
    if (recent.count >= sessions) {
      const waitMs = (recent.oldest ?? now) + windowMs - now;
      throw new CinodeError(
        'rate-limit',
        `Rate limit exceeded: ${recent.count} sessions in the last ${formatDuration(windowMs)}`,
        Math.max(1, Math.ceil(waitMs / 1000)),
      );
    }
  }

  /**
   * When a session given `requested` (or the project's default lifetime) expires: capped by the
   * project's maximum; `never` only where the project's policy allows it.
   */
  private expiryFor(project: Project, requested: Lifetime | undefined, now: number): number | null {
    const { policy } = project;
    const lifetime = requested ?? policy.sessionLifetimeMs;
    if (lifetime === NEVER) {
      if (!policy.neverExpire) {
        const max = policy.sessionLifetimeMaxMs === NEVER ? '' : ` (at most ${formatDuration(policy.sessionLifetimeMaxMs)})`;
        throw new CinodeError(
          'policy',
          `lifetime=never is not allowed for project ${project.name}: its sessions must expire; give a duration${max}`,
        );
      }
      return null;
    }
    const capped = policy.sessionLifetimeMaxMs === NEVER ? lifetime : Math.min(lifetime, policy.sessionLifetimeMaxMs);
    return now + capped;
  }
}
