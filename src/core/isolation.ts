/**
 * The request side of session isolation (docs/api.md, "Session isolation"): session-setup before
 * the call that creates a session answers, node-attach for every node joining before the call
 * answers. Hooks take seconds, so they run between transactions: the session waits in `setup` and
 * each node carries the `attach` mark, both under this process's lease, which it renews before
 * each run; if the process dies, the lease lapses and the isolation worker undoes what was half
 * done (teardown, detach). Detach and teardown themselves are the worker's (workers/isolation.ts).
 */
import { CAPACITY_MESSAGE } from '../api/messages.js';
import type { Catalog } from './catalog.js';
import { CinodeError } from './errors.js';
import type { HookRunner, HookSession, Node, Project, Session } from './model.js';
import type { Storage } from './storage.js';

/** Seconds a caller is told to wait when no node is ready. */
export const CAPACITY_RETRY_AFTER_SECONDS = 10;

/** How far past a hook's timeout its request's lease reaches: the time to record the outcome. */
const LEASE_MARGIN_MS = 30_000;

export interface IsolationDeps {
  store: Storage;
  catalog: () => Catalog;
  clock: () => number;
  hooks: HookRunner;
  /** Who holds the leases of this process's requests: unique per process. */
  owner: string;
  /** The hooks' timeout now (a reload may change it). */
  timeoutMs: () => number;
  /** Told after nodes went to detach or a session to teardown, so the worker starts at once. */
  wake: () => void;
}

/** Nodes a request put into a session, with what the attach needs to know. */
export interface PendingAttach {
  sessionId: number;
  session: HookSession;
  /** The request opened the session (it is in `setup` until the attach is confirmed). */
  created: boolean;
  nodes: Node[];
  pools: string[];
}

export class SessionIsolation {
  constructor(private readonly deps: IsolationDeps) {}

  /** Until when a lease taken now holds: one hook run and the time to record it. */
  leaseUntil(): number {
    return this.deps.clock() + this.deps.timeoutMs() + LEASE_MARGIN_MS;
  }

  get owner(): string {
    return this.deps.owner;
  }

  /**
   * Runs session-setup for a session opened in `setup`; returns what it printed. On failure the
   * session is undone (its nodes, if any, detached) and left for its teardown, and the caller gets
   * 503 with the hook's last line of stderr.
   */
  async setUp(session: Session, hookSession: HookSession): Promise<Record<string, unknown>> {
    const outcome = await this.deps.hooks.run('session-setup', hookSession);
    if (outcome.ok) return outcome.data ?? {};
    await this.abandon(session.id, `session-setup failed: ${outcome.reason}`);
    throw new CinodeError('setup-failed', `Session setup failed: ${outcome.reason}`);
  }

  /** Makes a session that was being set up `void`: its nodes detach, then its teardown cleans up. */
  private async abandon(sessionId: number, reason: string): Promise<void> {
    await this.deps.store.transaction(async (tx) =>
      tx.isolation.abandon(sessionId, this.deps.catalog().move('allocation-undone'), { at: this.deps.clock(), reason }),
    );
    this.deps.wake();
  }

  /** A session `/Session/get` opened, set up: active with its data, or undone and refused. */
  async openSession(session: Session, hookSession: HookSession): Promise<Session> {
    const data = await this.setUp(session, hookSession);
    const finished = await this.deps.store.transaction((tx) => tx.isolation.finishSetup(session.id, this.deps.owner, data, this.deps.clock()));
    if (!finished) throw interrupted();
    return { ...session, state: 'active', isolation: data, teardown: null };
  }

  /**
   * Attaches the nodes of a request (after the setup of the session it opened). A node whose
   * attach fails is quarantined (after its detach) and another ready node tried in its place; when
   * too few are left, every node this request attached is detached, the session it opened is
   * undone, and the caller gets the capacity answer. Returns the nodes handed out.
   */
  async attach(pending: PendingAttach, sessionRow: Session | undefined): Promise<Node[]> {
    let session = pending.session;
    if (pending.created && sessionRow) session = { ...session, data: await this.setUp(sessionRow, session) };
    const attached: Node[] = [];
    let trying = pending.nodes;
    while (trying.length > 0) {
      const ids = trying.map((n) => n.id);
      await this.deps.store.transaction(async (tx) => {
        // The session this request opens stays in `setup` until its nodes are attached.
        if (pending.created) await tx.isolation.extendSetup(pending.sessionId, this.deps.owner, this.leaseUntil());
        await tx.isolation.extendAttach(ids, this.deps.owner, this.leaseUntil());
      });
      const outcomes = await Promise.all(trying.map(async (node) => ({ node, outcome: await this.deps.hooks.run('node-attach', session, node) })));
      attached.push(...outcomes.filter((o) => o.outcome.ok).map((o) => o.node));
      const broken = outcomes.filter((o) => !o.outcome.ok);
      if (broken.length === 0) break;
      trying = await this.deps.store.transaction(async (tx) => {
        const now = this.deps.clock();
        const catalog = this.deps.catalog();
        for (const { node, outcome } of broken) {
          const change = { at: now, reason: `node-attach failed: ${outcome.reason}`, detail: outcome.stderr.trim() || null };
          await tx.nodes.leave(pending.sessionId, [node.id], catalog.move('attach-failed'), change);
        }
        const spare = await tx.nodes.pickReady(pending.pools, broken.length);
        if (spare.length < broken.length) return [];
        await tx.nodes.assign(
          pending.sessionId,
          spare.map((n) => n.id),
          now,
          catalog.move('allocated', { attachLease: { owner: this.deps.owner, until: this.leaseUntil() } }),
        );
        return spare;
      });
      this.deps.wake();
      if (trying.length === 0) {
        await this.undo(pending, attached);
        throw new CinodeError('capacity', CAPACITY_MESSAGE, CAPACITY_RETRY_AFTER_SECONDS);
      }
    }
    const ok = await this.deps.store.transaction(async (tx) => {
      const now = this.deps.clock();
      const confirmed = await tx.isolation.confirmAttached(
        attached.map((n) => n.id),
        this.deps.owner,
        this.deps.catalog().move('attached'),
        { at: now, reason: 'node-attach succeeded' },
      );
      if (confirmed < attached.length) return false;
      return !pending.created || (await tx.isolation.finishSetup(pending.sessionId, this.deps.owner, session.data ?? {}, now));
    });
    if (!ok) throw interrupted();
    return attached;
  }

  /** Gives back what a request that cannot be served attached: detached, then ready again. */
  private async undo(pending: PendingAttach, attached: readonly Node[]): Promise<void> {
    const reason = 'request undone: too few nodes could be attached';
    if (pending.created) {
      await this.abandon(pending.sessionId, reason);
      return;
    }
    await this.deps.store.transaction(async (tx) =>
      tx.nodes.leave(
        pending.sessionId,
        attached.map((n) => n.id),
        this.deps.catalog().move('allocation-undone'),
        { at: this.deps.clock(), reason },
      ),
    );
    this.deps.wake();
  }
}

/** This process's lease lapsed mid-way (it was stalled past the hook timeout) and the work was undone. */
function interrupted(): CinodeError {
  return new CinodeError('setup-failed', 'Session setup failed: interrupted (the server was stalled past the hook timeout); try again');
}

/** The session as hooks see it. */
export function hookSessionOf(project: Project, session: Pick<Session, 'ssid' | 'alias' | 'isolation'>): HookSession {
  return { ssid: session.ssid, project: project.name, alias: session.alias, data: session.isolation ?? {} };
}
