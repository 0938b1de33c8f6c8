/**
 * The store: every query cinode runs, behind one class that serves SQLite and PostgreSQL alike.
 * The core calls these methods inside `transaction()`, so each API call is all-or-nothing.
 *
 * Concurrency. SQLite runs one write transaction at a time, so a single process is serialized by
 * the database itself. On PostgreSQL several replicas share the database, and cinode uses READ
 * COMMITTED transactions with row locks, not SERIALIZABLE transactions with retry:
 *
 * - Allocation takes ready nodes with `SELECT ... FOR UPDATE SKIP LOCKED`. Every allocator wants
 *   the same rows (the least-used ready nodes of a pool); under SERIALIZABLE all but one of them
 *   would fail with a serialization error and run again, so retries (and latency) grow with the
 *   number of concurrent clients, right when the service is busiest. With SKIP LOCKED each
 *   transaction takes nodes no other one holds, without waiting or aborting: no node is handed
 *   out twice, and a request that cannot get all `count` nodes fails as a whole (capacity).
 * - The calls of one project (quota and rate-limit checks, then inserts) queue on the project's
 *   row (`lockProject`, `SELECT ... FOR UPDATE`), and a session being changed is locked as it is
 *   read (`sessionByRef`), so a check and the write that relies on it cannot interleave with
 *   another replica's. Calls of different projects do not wait on each other.
 * - The reaper and the reclaim workers run on every replica and take their work with
 *   `FOR UPDATE SKIP LOCKED` too: each expired session is ended, and each node to reclaim is
 *   claimed, by exactly one replica; the others skip those rows and take the next ones.
 * - Under READ COMMITTED, a row that another transaction changed while we waited for its lock is
 *   checked against our WHERE again (a node no longer ready, a session already ended drop out).
 *
 * Locks are taken in one order (project, then session, then nodes), and the rare deadlock or
 * serialization failure PostgreSQL still reports is handled by running the transaction again.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import type { EventView } from '../api/types.js';
import type { EndReason, NodeState } from '../api/states.js';
import type { Node, Session } from '../core/model.js';
import { isRetryableConflict } from './errors.js';
import type { Dialect } from './migrations.js';
import type { Database, NodeRow, SessionRow } from './schema.js';

/** Where a node reported broken, or unreachable, goes: quarantine; a command pool's is destroyed instead. */
const QUARANTINED = sql<string>`case when nodes.dynamic = 1 then 'reclaiming' else 'failed' end`;

/** SQLite allows up to 32766 bound values a statement; stay far below for long id lists. */
const ID_CHUNK = 500;

/** How many times a transaction runs when PostgreSQL aborts it for a deadlock or serialization failure. */
const CONFLICT_ATTEMPTS = 4;

/** The PostgreSQL advisory lock that serializes configuration syncs of replicas starting together. */
const CATALOG_LOCK = 0x63696e6f6465; // "cinode"

export function toSession(row: SessionRow): Session {
  return {
    id: Number(row.id),
    ssid: row.ssid,
    projectId: Number(row.project_id),
    alias: row.alias,
    state: row.state === 'active' ? 'active' : 'done',
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
    endReason: row.end_reason as EndReason | null,
  };
}

export function toNode(row: NodeRow): Node {
  return {
    id: Number(row.id),
    hostname: row.hostname,
    ip: row.ip,
    pool: row.pool,
    ver: row.ver,
    arch: row.arch,
    flavor: row.flavor,
    chassis: row.chassis,
    consolePort: row.console_port === null ? null : Number(row.console_port),
    state: row.state as NodeState,
    sessionId: row.session_id === null ? null : Number(row.session_id),
    usedCount: Number(row.used_count),
    changedAt: Number(row.changed_at),
    reason: row.reason,
    sshPort: row.ssh_port === null ? null : Number(row.ssh_port),
    data: row.data === null ? null : (JSON.parse(row.data) as unknown),
    contextualized: Number(row.contextualized) === 1,
    attempts: Number(row.attempts),
  };
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += ID_CHUNK) out.push(items.slice(i, i + ID_CHUNK));
  return out;
}

export interface NewSession {
  ssid: string;
  projectId: number;
  alias: string | null;
  createdAt: number;
  expiresAt: number | null;
}

export interface InventoryRow extends Node {
  ssid: string | null;
}

export interface ProjectRecord {
  name: string;
  keyHash: string;
  policy: string;
}

/** A node as the configuration declares it. */
export type NodeRecord = Pick<Node, 'hostname' | 'ip' | 'pool' | 'ver' | 'arch' | 'flavor' | 'chassis' | 'consolePort' | 'sshPort'>;

/** A node a command pool's provision command made. */
export interface ProvisionedNode {
  hostname: string;
  ip: string;
  sshPort: number | null;
  data: unknown;
}

/** What a state change is about, for the event history. */
export interface Change {
  at: number;
  reason: string;
  /** The command's stderr that goes with it, if any. */
  detail?: string | null;
}

/** A line of the event history: as the API shows it, with its id and the time in milliseconds. */
export type NodeEvent = Omit<EventView, 'at'> & { id: number; at: number };

/** How many nodes a pool has, by what the fill worker needs to know. */
export interface PoolCounts {
  ready: number;
  /** Nodes of the pool that exist (any state), plus those being provisioned. */
  total: number;
  provisioning: number;
}

/** The queries of one transaction. */
export class StoreTx {
  /** PostgreSQL inside a transaction: rows read in order to change them are locked as they are read. */
  private readonly lockRows: boolean;

  constructor(
    protected readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    inTransaction = true,
    /** Static pools without a reclaim command: their released nodes go straight back to `ready`. */
    private readonly poolsWithoutReclaim: readonly string[] = [],
  ) {
    this.lockRows = dialect === 'postgres' && inTransaction;
  }

  /**
   * What a released node becomes: `reclaiming`, for its pool's reclaim command to reset it, or,
   * in a pool without one, `ready` at once with its used count + 1 (no reclaim round trip).
   */
  private releasedState(): { state: RawBuilder<string>; used_count: RawBuilder<number> } {
    const instant = this.poolsWithoutReclaim;
    if (instant.length === 0) return { state: sql<string>`'reclaiming'`, used_count: sql<number>`nodes.used_count` };
    // A node that carries a project's SSH keys goes through reclaim, which takes them off.
    const isInstant = sql`nodes.pool in (${sql.join(instant)}) and nodes.contextualized = 0`;
    return {
      state: sql<string>`case when ${isInstant} then 'ready' else 'reclaiming' end`,
      used_count: sql<number>`nodes.used_count + case when ${isInstant} then 1 else 0 end`,
    };
  }

  // ---- the event history ----

  /**
   * Records the coming change of the nodes `ids` to `to` (a state, or an expression over the
   * node's columns), one event per node with its state now, its session, project and alias. Runs
   * before the change. `joining` names the session of nodes that are not in it yet; `leaving`
   * leaves out the nodes that are not (or no longer) in that session.
   */
  private async recordNodeChanges(
    ids: readonly number[],
    to: string | RawBuilder<string>,
    change: Change,
    session?: { joining: number } | { leaving: number },
  ): Promise<void> {
    const joining = session && 'joining' in session ? session.joining : undefined;
    const leaving = session && 'leaving' in session ? session.leaving : undefined;
    const toState = typeof to === 'string' ? sql<string>`cast(${to} as text)` : to;
    for (const chunk of chunks(ids)) {
      await this.db
        .insertInto('events')
        .columns(['at', 'subject', 'node_id', 'hostname', 'pool', 'session_id', 'ssid', 'project', 'alias', 'from_state', 'to_state', 'reason', 'detail'])
        .expression((eb) =>
          eb
            .selectFrom('nodes')
            .leftJoin('sessions', (join) =>
              joining === undefined ? join.onRef('sessions.id', '=', 'nodes.session_id') : join.on('sessions.id', '=', joining),
            )
            .leftJoin('projects', 'projects.id', 'sessions.project_id')
            .select([
              sql<number>`cast(${change.at} as bigint)`.as('at'),
              sql<string>`'node'`.as('subject'),
              'nodes.id',
              'nodes.hostname',
              'nodes.pool',
              'sessions.id as session_id',
              'sessions.ssid',
              'projects.name',
              'sessions.alias',
              'nodes.state',
              toState.as('to_state'),
              sql<string>`cast(${change.reason} as text)`.as('reason'),
              sql<string | null>`cast(${change.detail ?? null} as text)`.as('detail'),
            ])
            .where('nodes.id', 'in', chunk)
            .$if(leaving !== undefined, (q) => q.where('nodes.session_id', '=', leaving!)),
        )
        .execute();
    }
  }

  /** Records the coming change of the sessions `ids` from `from` (null: new) to `to`. */
  private async recordSessionChanges(ids: readonly number[], from: string | null, to: string, change: Change): Promise<void> {
    for (const chunk of chunks(ids)) {
      await this.db
        .insertInto('events')
        .columns(['at', 'subject', 'session_id', 'ssid', 'project', 'alias', 'from_state', 'to_state', 'reason'])
        .expression((eb) =>
          eb
            .selectFrom('sessions')
            .innerJoin('projects', 'projects.id', 'sessions.project_id')
            .select([
              sql<number>`cast(${change.at} as bigint)`.as('at'),
              sql<string>`'session'`.as('subject'),
              'sessions.id',
              'sessions.ssid',
              'projects.name',
              'sessions.alias',
              sql<string | null>`cast(${from} as text)`.as('from_state'),
              sql<string>`cast(${to} as text)`.as('to_state'),
              sql<string>`cast(${change.reason} as text)`.as('reason'),
            ])
            .where('sessions.id', 'in', chunk),
        )
        .execute();
    }
  }

  /** Records something that happened to a pool as a whole, such as a provision that failed. */
  async recordPoolEvent(pool: string, change: Change): Promise<void> {
    await this.db
      .insertInto('events')
      .values({ at: change.at, subject: 'pool', pool, reason: change.reason, detail: change.detail ?? null })
      .execute();
  }

  /** Deletes the events older than `before`; returns how many. */
  async pruneEvents(before: number): Promise<number> {
    const result = await this.db.deleteFrom('events').where('at', '<', before).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /**
   * The event history, oldest first, the latest `limit` events: of a node (by hostname), of the
   * sessions with that ssid or alias, or of everything.
   */
  async events(filter: { hostname?: string; session?: string }, limit: number): Promise<NodeEvent[]> {
    const rows = await this.db
      .selectFrom('events')
      .selectAll()
      .$if(filter.hostname !== undefined, (q) => q.where('hostname', '=', filter.hostname!))
      .$if(filter.session !== undefined, (q) => q.where((eb) => eb.or([eb('ssid', '=', filter.session!), eb('alias', '=', filter.session!)])))
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.reverse().map((r) => ({
      id: Number(r.id),
      at: Number(r.at),
      subject: r.subject as NodeEvent['subject'],
      hostname: r.hostname,
      pool: r.pool,
      ssid: r.ssid,
      project: r.project,
      alias: r.alias,
      from: r.from_state,
      to: r.to_state,
      reason: r.reason,
      detail: r.detail,
    }));
  }

  /**
   * Serializes the calls of one project (quota and rate limit are read, then acted on). SQLite
   * already runs one write transaction at a time; PostgreSQL needs the row lock.
   */
  async lockProject(projectId: number): Promise<void> {
    if (this.dialect === 'postgres') {
      await this.db.selectFrom('projects').select('id').where('id', '=', projectId).forUpdate().execute();
    }
  }

  /**
   * A session of the project by ssid, else by alias: its active session, else its latest done one.
   * In a PostgreSQL transaction the row is locked until commit, so the reaper or another replica
   * cannot end the session between this read and what the caller then does to it.
   */
  async sessionByRef(projectId: number, ref: string): Promise<Session | undefined> {
    const bySsid = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('ssid', '=', ref)
      .$if(this.lockRows, (q) => q.forUpdate())
      .executeTakeFirst();
    if (bySsid) return toSession(bySsid);
    const byAlias = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('alias', '=', ref)
      .orderBy(sql`case when state = 'active' then 0 else 1 end`)
      .orderBy('id', 'desc')
      .limit(1)
      .$if(this.lockRows, (q) => q.forUpdate())
      .executeTakeFirst();
    return byAlias ? toSession(byAlias) : undefined;
  }

  /** The project's active session of that alias (locked like `sessionByRef`). */
  async activeSessionByAlias(projectId: number, alias: string): Promise<Session | undefined> {
    const row = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('alias', '=', alias)
      .where('state', '=', 'active')
      .$if(this.lockRows, (q) => q.forUpdate())
      .executeTakeFirst();
    return row ? toSession(row) : undefined;
  }

  async insertSession(session: NewSession): Promise<Session> {
    const row = await this.db
      .insertInto('sessions')
      .values({
        ssid: session.ssid,
        project_id: session.projectId,
        alias: session.alias,
        state: 'active',
        created_at: session.createdAt,
        expires_at: session.expiresAt,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await this.recordSessionChanges([Number(row.id)], null, 'active', { at: session.createdAt, reason: 'opened' });
    return toSession(row);
  }

  /**
   * Undoes a session a failed request opened (all-or-nothing): its row and its node history go,
   * so it counts against no rate limit. Its nodes must have left it already.
   */
  async deleteSession(sessionId: number, change: Change): Promise<void> {
    await this.recordSessionChanges([sessionId], 'active', 'deleted', change);
    await this.db.deleteFrom('session_nodes').where('session_id', '=', sessionId).execute();
    await this.db.deleteFrom('sessions').where('id', '=', sessionId).execute();
  }

  async setSessionExpiry(sessionId: number, expiresAt: number | null): Promise<void> {
    await this.db.updateTable('sessions').set({ expires_at: expiresAt }).where('id', '=', sessionId).execute();
  }

  /** Ends a session and sends every node it holds to reclaim. */
  async endSession(sessionId: number, reason: EndReason, now: number): Promise<void> {
    await this.recordSessionChanges([sessionId], 'active', 'done', { at: now, reason: `session ${reason}` });
    await this.db
      .updateTable('sessions')
      .set({ state: 'done', ended_at: now, end_reason: reason })
      .where('id', '=', sessionId)
      .execute();
    const nodeIds = (await this.nodesOfSession(sessionId)).map((n) => n.id);
    await this.releaseNodes(sessionId, nodeIds, now, `session ${reason}`);
  }

  /** Nodes (deployed or held) in the project's active sessions: what the node quota counts. */
  async countProjectNodes(projectId: number): Promise<number> {
    const row = await this.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sessions.project_id', '=', projectId)
      .where('sessions.state', '=', 'active')
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** The project's held nodes plus the nodes it reported broken that are still quarantined. */
  async countFailedAndHeld(projectId: number): Promise<number> {
    const held = await this.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sessions.project_id', '=', projectId)
      .where('nodes.state', '=', 'held')
      .executeTakeFirstOrThrow();
    const failed = await this.db
      .selectFrom('nodes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('failed_by', '=', projectId)
      .where('state', '=', 'failed')
      .executeTakeFirstOrThrow();
    return Number(held.n) + Number(failed.n);
  }

  /** How many sessions the project created since `since`, and when the oldest of them was. */
  async sessionsCreatedSince(projectId: number, since: number): Promise<{ count: number; oldest: number | null }> {
    const row = await this.db
      .selectFrom('sessions')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
      .where('project_id', '=', projectId)
      .where('created_at', '>', since)
      .executeTakeFirstOrThrow();
    return { count: Number(row.n), oldest: row.oldest === null ? null : Number(row.oldest) };
  }

  /**
   * Up to `count` ready nodes of the pools, least used first. On PostgreSQL the rows are locked
   * and rows another replica is allocating are skipped, so no node is handed out twice.
   */
  async pickReadyNodes(pools: readonly string[], count: number): Promise<Node[]> {
    let query = this.db
      .selectFrom('nodes')
      .selectAll()
      .where('pool', 'in', pools)
      .where('state', '=', 'ready')
      .where('retired', '=', 0)
      .orderBy('used_count')
      .orderBy('id')
      .limit(count);
    if (this.dialect === 'postgres') query = query.forUpdate().skipLocked();
    return (await query.execute()).map(toNode);
  }

  /**
   * Puts ready nodes into a session. `contextualized`: the project's SSH keys are about to be put
   * on them, so their release goes through reclaim to take the keys off again.
   */
  async assignNodes(sessionId: number, nodeIds: readonly number[], now: number, contextualized = false): Promise<void> {
    for (const ids of chunks(nodeIds)) {
      await this.recordNodeChanges(ids, 'deployed', { at: now, reason: 'allocated' }, { joining: sessionId });
      await this.db
        .updateTable('nodes')
        .set({ state: 'deployed', session_id: sessionId, changed_at: now, reason: null, contextualized: contextualized ? 1 : 0 })
        .where('id', 'in', ids)
        .where('state', '=', 'ready')
        .execute();
      await this.db
        .insertInto('session_nodes')
        .values(ids.map((id) => ({ session_id: sessionId, node_id: id, added_at: now })))
        .execute();
    }
  }

  async nodesOfSession(sessionId: number): Promise<Node[]> {
    const rows = await this.db.selectFrom('nodes').selectAll().where('session_id', '=', sessionId).orderBy('id').execute();
    return rows.map(toNode);
  }

  /** Takes nodes out of a session and sends them to reclaim. */
  async releaseNodes(sessionId: number, nodeIds: readonly number[], now: number, reason: string): Promise<void> {
    await this.leaveSession(sessionId, nodeIds, { at: now, reason }, { ...this.releasedState(), failed_by: null });
  }

  /** Takes nodes out of a session into quarantine, remembering who reported them. */
  async quarantineNodes(
    sessionId: number,
    nodeIds: readonly number[],
    now: number,
    reason: string,
    failedBy: number | null,
    detail?: string | null,
  ): Promise<void> {
    await this.leaveSession(sessionId, nodeIds, { at: now, reason, detail }, { state: QUARANTINED, failed_by: failedBy });
  }

  /**
   * Takes nodes a request had prepared back out of its session, untouched by anyone: they are
   * ready again at once, their stay in the session's history undone.
   */
  async unassignNodes(sessionId: number, nodeIds: readonly number[], now: number, reason: string): Promise<void> {
    await this.leaveSession(sessionId, nodeIds, { at: now, reason }, { state: sql<string>`'ready'`, failed_by: null, contextualized: 0 });
    for (const ids of chunks(nodeIds)) {
      await this.db.deleteFrom('session_nodes').where('session_id', '=', sessionId).where('node_id', 'in', ids).execute();
    }
  }

  private async leaveSession(
    sessionId: number,
    nodeIds: readonly number[],
    change: Change,
    to: { state: RawBuilder<string>; used_count?: RawBuilder<number>; failed_by: number | null; contextualized?: number },
  ): Promise<void> {
    for (const ids of chunks(nodeIds)) {
      await this.recordNodeChanges(ids, to.state, change, { leaving: sessionId });
      const { at: now, reason } = change;
      await this.db
        .updateTable('nodes')
        .set({ ...to, session_id: null, changed_at: now, reason, lease_owner: null, lease_until: null, hold_until: null, attempts: 0 })
        .where('id', 'in', ids)
        .where('session_id', '=', sessionId)
        .execute();
      await this.db
        .updateTable('session_nodes')
        .set({ released_at: now, release_reason: reason })
        .where('session_id', '=', sessionId)
        .where('node_id', 'in', ids)
        .where('released_at', 'is', null)
        .execute();
    }
  }

  /** Keeps a session's deployed nodes for debugging (legacy `/Node/fail`). */
  async holdNodes(sessionId: number, now: number, reason: string, holdUntil: number): Promise<void> {
    const deployed = await this.db.selectFrom('nodes').select('id').where('session_id', '=', sessionId).where('state', '=', 'deployed').execute();
    const ids = deployed.map((n) => Number(n.id));
    if (ids.length === 0) return;
    await this.recordNodeChanges(ids, 'held', { at: now, reason });
    for (const chunk of chunks(ids)) {
      await this.db.updateTable('nodes').set({ state: 'held', changed_at: now, reason, hold_until: holdUntil }).where('id', 'in', chunk).execute();
    }
  }

  /**
   * Ends up to `limit` holds that are over: those nodes leave their sessions for reclaim. Returns
   * how many. Skips nodes another replica is handling, on PostgreSQL.
   */
  async endHolds(now: number, limit: number): Promise<number> {
    const over = await this.db
      .selectFrom('nodes')
      .select(['id', 'session_id'])
      .where('state', '=', 'held')
      .where('hold_until', '<=', now)
      .orderBy('hold_until')
      .limit(limit)
      .$if(this.dialect === 'postgres', (q) => q.forUpdate().skipLocked())
      .execute();
    const bySession = new Map<number, number[]>();
    for (const n of over) {
      const sessionId = Number(n.session_id);
      bySession.set(sessionId, [...(bySession.get(sessionId) ?? []), Number(n.id)]);
    }
    for (const [sessionId, ids] of bySession) await this.releaseNodes(sessionId, ids, now, 'hold ended');
    return over.length;
  }

  /** The project's active sessions, newest first. */
  async activeSessions(projectId: number): Promise<Session[]> {
    const rows = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('state', '=', 'active')
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return rows.map(toSession);
  }

  /** The nodes of several sessions at once, grouped by session id. */
  async nodesOfSessions(sessionIds: readonly number[]): Promise<Map<number, Node[]>> {
    const bySession = new Map<number, Node[]>(sessionIds.map((id) => [id, []]));
    for (const ids of chunks(sessionIds)) {
      const rows = await this.db.selectFrom('nodes').selectAll().where('session_id', 'in', ids).orderBy('id').execute();
      for (const row of rows) bySession.get(Number(row.session_id))?.push(toNode(row));
    }
    return bySession;
  }

  /** `[hostname, ssid]` for every node in the project's active sessions. */
  async projectInventory(projectId: number): Promise<Array<[string, string]>> {
    const rows = await this.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select(['nodes.hostname', 'sessions.ssid'])
      .where('sessions.project_id', '=', projectId)
      .where('sessions.state', '=', 'active')
      .orderBy('nodes.id')
      .execute();
    return rows.map((r) => [r.hostname, r.ssid]);
  }

  /** Every node cinode manages (retired ones left out), with the ssid of its session. */
  async inventory(): Promise<InventoryRow[]> {
    const rows = await this.db
      .selectFrom('nodes')
      .leftJoin('sessions', 'sessions.id', 'nodes.session_id')
      .selectAll('nodes')
      .select('sessions.ssid')
      .where('nodes.retired', '=', 0)
      .orderBy('nodes.id')
      .execute();
    return rows.map((r) => ({ ...toNode(r), ssid: r.ssid }));
  }

  /**
   * Ends up to `limit` sessions whose expiry has passed; returns how many. On PostgreSQL the
   * sessions are locked and those another replica's reaper (or a call on the session) holds are
   * skipped, so each expired session is ended by exactly one replica.
   */
  async expireSessions(now: number, limit: number): Promise<number> {
    const expired = await this.db
      .selectFrom('sessions')
      .select('id')
      .where('state', '=', 'active')
      .where('expires_at', '<=', now)
      .orderBy('expires_at')
      .limit(limit)
      .$if(this.dialect === 'postgres', (q) => q.forUpdate().skipLocked())
      .execute();
    const sessionIds = expired.map((s) => Number(s.id));
    for (const ids of chunks(sessionIds)) {
      const change = { at: now, reason: 'session expired' };
      await this.recordSessionChanges(ids, 'active', 'done', change);
      const nodes = await this.db.selectFrom('nodes').select('id').where('session_id', 'in', ids).execute();
      await this.recordNodeChanges(
        nodes.map((n) => Number(n.id)),
        this.releasedState().state,
        change,
      );
      await this.db
        .updateTable('sessions')
        .set({ state: 'done', ended_at: now, end_reason: 'expired' })
        .where('id', 'in', ids)
        .execute();
      await this.db
        .updateTable('nodes')
        .set({ ...this.releasedState(), session_id: null, changed_at: now, reason: 'session expired', failed_by: null, hold_until: null })
        .where('session_id', 'in', ids)
        .execute();
      await this.db
        .updateTable('session_nodes')
        .set({ released_at: now, release_reason: 'session expired' })
        .where('session_id', 'in', ids)
        .where('released_at', 'is', null)
        .execute();
    }
    return sessionIds.length;
  }

  /** The earliest expiry among active sessions, so the reaper knows when to look next. */
  async nextExpiry(): Promise<number | null> {
    const row = await this.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.min('expires_at').as('next'))
      .where('state', '=', 'active')
      .executeTakeFirstOrThrow();
    return row.next === null ? null : Number(row.next);
  }

  /**
   * Claims up to `limit` nodes waiting for reclaim whose earlier claim (if any) has lapsed, for
   * `owner` until `leaseUntil`. On PostgreSQL the candidates are locked and rows another replica
   * is claiming are skipped, so each claim has one owner. A crash mid-reclaim leaves a claim that
   * lapses (and is cleared at start on SQLite, which only one process uses).
   */
  async claimReclaim(owner: string, now: number, leaseUntil: number, limit: number): Promise<Node[]> {
    const candidates = await this.db
      .selectFrom('nodes')
      .select('id')
      .where('state', '=', 'reclaiming')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .where((eb) => eb.or([eb('retired', '=', 0), eb('dynamic', '=', 0)]))
      .orderBy('changed_at')
      .orderBy('id')
      .limit(limit)
      .$if(this.dialect === 'postgres', (q) => q.forUpdate().skipLocked())
      .execute();
    if (candidates.length === 0) return [];
    const rows = await this.db
      .updateTable('nodes')
      .set({ lease_owner: owner, lease_until: leaseUntil })
      .where(
        'id',
        'in',
        candidates.map((c) => c.id),
      )
      .where('state', '=', 'reclaiming')
      .returningAll()
      .execute();
    return rows.map(toNode);
  }

  /** Extends a claim that `owner` still holds; false when it lapsed and was taken over. */
  async extendReclaimLease(nodeId: number, owner: string, leaseUntil: number): Promise<boolean> {
    const result = await this.db
      .updateTable('nodes')
      .set({ lease_until: leaseUntil })
      .where('id', '=', nodeId)
      .where('state', '=', 'reclaiming')
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /**
   * Records the end of a reclaim that `owner` still holds the claim for: `ready` (used count + 1,
   * keys gone), or `failed` with the reason. False when the claim was lost.
   */
  async finishReclaim(nodeId: number, owner: string, ok: boolean, change: Change): Promise<boolean> {
    const to = ok ? 'ready' : 'failed';
    if (!(await this.holdsClaim(nodeId, owner))) return false;
    await this.recordNodeChanges([nodeId], to, change);
    await this.db
      .updateTable('nodes')
      .set((eb) => ({
        state: to,
        used_count: ok ? eb('used_count', '+', 1) : eb.ref('used_count'),
        contextualized: ok ? 0 : eb.ref('contextualized'),
        changed_at: change.at,
        reason: change.reason,
        lease_owner: null,
        lease_until: null,
        attempts: 0,
      }))
      .where('id', '=', nodeId)
      .execute();
    return true;
  }

  /** Records that a node's SSH keys are off it (the rest of its reclaim may still fail). */
  async markDecontextualized(nodeId: number): Promise<void> {
    await this.db.updateTable('nodes').set({ contextualized: 0 }).where('id', '=', nodeId).execute();
  }

  /**
   * Records a deprovision: the machine is gone, so the node is retired (kept, with the reason, for
   * the history) and, being `disabled`, is never claimed or handed out again.
   */
  async finishDeprovision(nodeId: number, owner: string, change: Change): Promise<boolean> {
    if (!(await this.holdsClaim(nodeId, owner))) return false;
    await this.recordNodeChanges([nodeId], 'disabled', change);
    await this.db
      .updateTable('nodes')
      .set({ state: 'disabled', retired: 1, changed_at: change.at, reason: change.reason, lease_owner: null, lease_until: null, contextualized: 0 })
      .where('id', '=', nodeId)
      .execute();
    return true;
  }

  /**
   * Records a failed deprovision: the node stays `reclaiming`, claimable again after `retryAt`
   * (the backoff), or, when `giveUp`, is left `failed` for an operator.
   */
  async failDeprovision(nodeId: number, owner: string, change: Change, retryAt: number | null): Promise<boolean> {
    if (!(await this.holdsClaim(nodeId, owner))) return false;
    const to = retryAt === null ? 'failed' : 'reclaiming';
    await this.recordNodeChanges([nodeId], to, change);
    await this.db
      .updateTable('nodes')
      .set((eb) => ({
        state: to,
        attempts: retryAt === null ? 0 : eb('attempts', '+', 1),
        failed_by: null,
        changed_at: change.at,
        reason: change.reason,
        lease_owner: null,
        lease_until: retryAt,
      }))
      .where('id', '=', nodeId)
      .execute();
    return true;
  }

  /** Whether `owner` still holds the reclaim claim on the node (locked until commit, on PostgreSQL). */
  private async holdsClaim(nodeId: number, owner: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('nodes')
      .select('id')
      .where('id', '=', nodeId)
      .where('state', '=', 'reclaiming')
      .where('lease_owner', '=', owner)
      .$if(this.lockRows, (q) => q.forUpdate())
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Clears every reclaim claim: for a store only this process uses, at start. */
  async clearReclaimLeases(): Promise<void> {
    await this.db.updateTable('nodes').set({ lease_owner: null, lease_until: null }).where('state', '=', 'reclaiming').execute();
    await this.db.deleteFrom('provisions').execute();
  }

  /** Records nodes that just came into being (from no state to `ready`). */
  private async recordNewNodes(rows: ReadonlyArray<{ id: number; hostname: string; pool: string }>, change: Change): Promise<void> {
    if (rows.length === 0) return;
    await this.db
      .insertInto('events')
      .values(
        rows.map((r) => ({
          at: change.at,
          subject: 'node',
          node_id: Number(r.id),
          hostname: r.hostname,
          pool: r.pool,
          to_state: 'ready',
          reason: change.reason,
          detail: change.detail ?? null,
        })),
      )
      .execute();
  }

  // ---- command pools ----

  /**
   * PostgreSQL: serializes the fill decisions of one pool across replicas until commit, so two
   * replicas never both start the provision that brings the pool to its size.
   */
  async lockPool(pool: string): Promise<void> {
    if (this.dialect === 'postgres') await sql`select pg_advisory_xact_lock(hashtextextended(${`cinode pool ${pool}`}, 0))`.execute(this.db);
  }

  /** A command pool's ready nodes, all its nodes, and the nodes being provisioned (live claims only). */
  async poolCounts(pool: string, now: number): Promise<PoolCounts> {
    const byState = await this.db
      .selectFrom('nodes')
      .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
      .where('pool', '=', pool)
      .where('retired', '=', 0)
      .groupBy('state')
      .execute();
    const provisioning = await this.db
      .selectFrom('provisions')
      .select((eb) => eb.fn.sum<number>('count').as('n'))
      .where('pool', '=', pool)
      .where('lease_until', '>', now)
      .executeTakeFirstOrThrow();
    const inFlight = Number(provisioning.n ?? 0);
    const existing = byState.reduce((sum, row) => sum + Number(row.n), 0);
    const ready = Number(byState.find((row) => row.state === 'ready')?.n ?? 0);
    return { ready, total: existing + inFlight, provisioning: inFlight };
  }

  /** Claims `count` nodes' worth of provisioning for `owner`; returns the claim's id. */
  async startProvision(pool: string, count: number, owner: string, now: number, leaseUntil: number): Promise<number> {
    const row = await this.db
      .insertInto('provisions')
      .values({ pool, count, owner, started_at: now, lease_until: leaseUntil })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  /**
   * Adds what a provision command made as ready nodes of `pool`, and drops the claim. A hostname
   * that an earlier, deprovisioned node of a command pool had takes over that row; one that a
   * live node has is refused (returned, for the history and the operator).
   */
  async finishProvision(
    claimId: number,
    pool: { name: string; ver: string; arch: string; flavor: string | null },
    made: readonly ProvisionedNode[],
    change: Change,
  ): Promise<{ added: string[]; refused: string[] }> {
    await this.db.deleteFrom('provisions').where('id', '=', claimId).execute();
    const added: Array<{ id: number; hostname: string; pool: string }> = [];
    const refused: string[] = [];
    for (const node of made) {
      const values = {
        ip: node.ip,
        pool: pool.name,
        ver: pool.ver,
        arch: pool.arch,
        flavor: pool.flavor,
        chassis: null,
        console_port: null,
        ssh_port: node.sshPort,
        data: node.data === undefined ? null : JSON.stringify(node.data),
        state: 'ready',
        session_id: null,
        used_count: 0,
        retired: 0,
        dynamic: 1,
        contextualized: 0,
        attempts: 0,
        hold_until: null,
        failed_by: null,
        lease_owner: null,
        lease_until: null,
        changed_at: change.at,
        reason: change.reason,
      };
      const earlier = await this.db.selectFrom('nodes').select(['id', 'retired', 'dynamic']).where('hostname', '=', node.hostname).executeTakeFirst();
      if (earlier && !(Number(earlier.retired) === 1 && Number(earlier.dynamic) === 1)) {
        refused.push(node.hostname);
        continue;
      }
      if (earlier) {
        await this.db.updateTable('nodes').set(values).where('id', '=', earlier.id).execute();
        added.push({ id: Number(earlier.id), hostname: node.hostname, pool: pool.name });
      } else {
        const row = await this.db
          .insertInto('nodes')
          .values({ ...values, hostname: node.hostname })
          .returning(['id', 'hostname', 'pool'])
          .executeTakeFirstOrThrow();
        added.push(row);
      }
    }
    await this.recordNewNodes(added, change);
    return { added: added.map((n) => n.hostname), refused };
  }

  /** Drops a provision claim whose command made nothing. */
  async dropProvision(claimId: number): Promise<void> {
    await this.db.deleteFrom('provisions').where('id', '=', claimId).execute();
  }

  /** Sends the pool's ready nodes unchanged since `before` to be deprovisioned; returns how many. */
  async retireStaleReady(pool: string, before: number, change: Change): Promise<number> {
    const stale = await this.db
      .selectFrom('nodes')
      .select('id')
      .where('pool', '=', pool)
      .where('state', '=', 'ready')
      .where('retired', '=', 0)
      .where('changed_at', '<', before)
      .$if(this.dialect === 'postgres', (q) => q.forUpdate().skipLocked())
      .execute();
    const ids = stale.map((n) => Number(n.id));
    await this.setNodeStates(ids, 'reclaiming', change);
    return ids.length;
  }

  // ---- operators ----

  /** A node by hostname, retired ones included (locked until commit, on PostgreSQL). */
  async nodeByHostname(hostname: string): Promise<(Node & { retired: boolean; ssid: string | null }) | undefined> {
    const row = await this.db
      .selectFrom('nodes')
      .leftJoin('sessions', 'sessions.id', 'nodes.session_id')
      .selectAll('nodes')
      .select('sessions.ssid')
      .where('nodes.hostname', '=', hostname)
      // Only the node's row: PostgreSQL cannot lock the nullable side of an outer join.
      .$if(this.lockRows, (q) => q.forUpdate('nodes'))
      .executeTakeFirst();
    return row ? { ...toNode(row), retired: Number(row.retired) === 1, ssid: row.ssid } : undefined;
  }

  /** Nodes in service (not retired), optionally of one state, by id, with their session's ssid. */
  async listNodes(state?: NodeState): Promise<InventoryRow[]> {
    const rows = await this.db
      .selectFrom('nodes')
      .leftJoin('sessions', 'sessions.id', 'nodes.session_id')
      .selectAll('nodes')
      .select('sessions.ssid')
      .where('nodes.retired', '=', 0)
      .$if(state !== undefined, (q) => q.where('nodes.state', '=', state!))
      .orderBy('nodes.id')
      .execute();
    return rows.map((r) => ({ ...toNode(r), ssid: r.ssid }));
  }

  /** Moves nodes that are in no session to `state`, recording why; a node bound for reclaim starts afresh. */
  async setNodeStates(ids: readonly number[], state: NodeState, change: Change): Promise<void> {
    if (ids.length === 0) return;
    await this.recordNodeChanges(ids, state, change);
    for (const chunk of chunks(ids)) {
      await this.db
        .updateTable('nodes')
        .set({ state, changed_at: change.at, reason: change.reason, failed_by: null, attempts: 0, lease_owner: null, lease_until: null })
        .where('id', 'in', chunk)
        .execute();
    }
  }

  /** Takes a held node out of its session to `state` (an operator's release or disable). */
  async takeFromSession(node: Node, state: 'reclaiming' | 'disabled', change: Change): Promise<void> {
    if (node.sessionId === null) return;
    const to = state === 'reclaiming' ? this.releasedState() : { state: sql<string>`'disabled'` };
    await this.leaveSession(node.sessionId, [node.id], change, { ...to, failed_by: null });
  }

  // ---- configuration sync ----

  /**
   * PostgreSQL: waits until no other replica is syncing the configuration, so replicas starting
   * together do not insert the same projects or nodes twice. Held until commit.
   */
  private async lockCatalog(): Promise<void> {
    if (this.dialect === 'postgres') await sql`select pg_advisory_xact_lock(${CATALOG_LOCK})`.execute(this.db);
  }

  /** Makes the projects table match the configuration; returns name -> id. */
  async syncProjects(projects: readonly ProjectRecord[]): Promise<Map<string, number>> {
    await this.lockCatalog();
    const existing = await this.db.selectFrom('projects').select(['id', 'name']).execute();
    const ids = new Map(existing.map((p) => [p.name, Number(p.id)]));
    for (const p of projects) {
      const id = ids.get(p.name);
      if (id === undefined) {
        const row = await this.db
          .insertInto('projects')
          .values({ name: p.name, key_hash: p.keyHash, policy: p.policy, retired: 0 })
          .returning('id')
          .executeTakeFirstOrThrow();
        ids.set(p.name, Number(row.id));
      } else {
        await this.db.updateTable('projects').set({ key_hash: p.keyHash, policy: p.policy, retired: 0 }).where('id', '=', id).execute();
      }
    }
    const wanted = new Set(projects.map((p) => p.name));
    const gone = existing.filter((p) => !wanted.has(p.name)).map((p) => Number(p.id));
    for (const chunk of chunks(gone)) {
      await this.db.updateTable('projects').set({ retired: 1 }).where('id', 'in', chunk).execute();
    }
    for (const name of ids.keys()) if (!wanted.has(name)) ids.delete(name);
    return ids;
  }

  /**
   * Makes the nodes table match the configured inventory. New nodes start ready; a node that left
   * the file is retired (never handed out again, left out of the inventory) but keeps its state,
   * so a live session that holds it loses nothing and it comes back if the file lists it again.
   */
  async syncNodes(nodes: readonly NodeRecord[], now: number): Promise<void> {
    await this.lockCatalog();
    // Nodes a command pool made are not in the file: the pool, not the configuration, owns them.
    const existing = await this.db
      .selectFrom('nodes')
      .select(['id', 'hostname', 'ip', 'pool', 'ver', 'arch', 'flavor', 'chassis', 'console_port', 'ssh_port', 'retired'])
      .where('dynamic', '=', 0)
      .execute();
    const byHostname = new Map(existing.map((n) => [n.hostname, n]));
    const added = [];
    for (const n of nodes) {
      const values = {
        ip: n.ip,
        pool: n.pool,
        ver: n.ver,
        arch: n.arch,
        flavor: n.flavor,
        chassis: n.chassis,
        console_port: n.consolePort,
        ssh_port: n.sshPort,
        retired: 0,
      };
      const row = byHostname.get(n.hostname);
      if (row === undefined) {
        added.push({ ...values, hostname: n.hostname, state: 'ready', used_count: 0, changed_at: now, reason: 'added by configuration' });
      } else if (
        row.ip !== values.ip ||
        row.pool !== values.pool ||
        row.ver !== values.ver ||
        row.arch !== values.arch ||
        row.flavor !== values.flavor ||
        row.chassis !== values.chassis ||
        (row.console_port === null ? null : Number(row.console_port)) !== values.console_port ||
        (row.ssh_port === null ? null : Number(row.ssh_port)) !== values.ssh_port ||
        Number(row.retired) !== 0
      ) {
        await this.db.updateTable('nodes').set(values).where('id', '=', row.id).execute();
      }
    }
    // Many rows a statement (14 values a row: far below SQLite's and PostgreSQL's bound-value limits).
    for (let i = 0; i < added.length; i += 200) {
      const rows = await this.db
        .insertInto('nodes')
        .values(added.slice(i, i + 200))
        .returning(['id', 'hostname', 'pool'])
        .execute();
      await this.recordNewNodes(rows, { at: now, reason: 'added by configuration' });
    }
    const wanted = new Set(nodes.map((n) => n.hostname));
    const gone = existing.filter((n) => !wanted.has(n.hostname)).map((n) => Number(n.id));
    for (const chunk of chunks(gone)) {
      await this.db.updateTable('nodes').set({ retired: 1 }).where('id', 'in', chunk).execute();
    }
  }
}

/** A store: a Kysely database of one dialect. */
export class Store {
  private poolsWithoutReclaim: readonly string[] = [];

  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: Dialect,
  ) {}

  /** Tells the store which pools have no reclaim command (from the configuration, at each load). */
  setPoolsWithoutReclaim(pools: readonly string[]): void {
    this.poolsWithoutReclaim = [...pools];
  }

  /**
   * Runs `work` in one transaction: everything it did is kept, or nothing is. When PostgreSQL
   * aborts it to break a deadlock (or for a serialization failure), nothing was kept and it runs
   * again, a few times; `work` must therefore act on the database only.
   */
  async transaction<T>(work: (tx: StoreTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute((trx: Transaction<Database>) => work(new StoreTx(trx, this.dialect, true, this.poolsWithoutReclaim)));
      } catch (error) {
        if (!isRetryableConflict(error) || attempt >= CONFLICT_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
      }
    }
  }

  /** Runs read-only queries outside an explicit transaction (no row is locked). */
  read(): StoreTx {
    return new StoreTx(this.db, this.dialect, false, this.poolsWithoutReclaim);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
