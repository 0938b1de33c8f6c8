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
import type { EndReason, Node, NodeState, Session } from '../core/model.js';
import { isRetryableConflict } from './errors.js';
import type { Dialect } from './migrations.js';
import type { Database, NodeRow, SessionRow } from './schema.js';

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
export type NodeRecord = Pick<Node, 'hostname' | 'ip' | 'pool' | 'ver' | 'arch' | 'flavor' | 'chassis' | 'consolePort'>;

/** The queries of one transaction. */
export class StoreTx {
  /** PostgreSQL inside a transaction: rows read in order to change them are locked as they are read. */
  private readonly lockRows: boolean;

  constructor(
    protected readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    inTransaction = true,
    /** Pools without a reclaim command: their released nodes go straight back to `ready`. */
    private readonly poolsWithoutReclaim: readonly string[] = [],
  ) {
    this.lockRows = dialect === 'postgres' && inTransaction;
  }

  /**
   * What a released node becomes: `reclaiming`, for its pool's reclaim command to reset it, or,
   * in a pool without one, `ready` at once with its used count + 1 (no reclaim round trip).
   */
  private releasedState(): { state: RawBuilder<string> | 'reclaiming'; used_count: RawBuilder<number> } {
    const instant = this.poolsWithoutReclaim;
    if (instant.length === 0) return { state: 'reclaiming', used_count: sql<number>`used_count` };
    const isInstant = sql`pool in (${sql.join(instant)})`;
    return {
      state: sql<string>`case when ${isInstant} then 'ready' else 'reclaiming' end`,
      used_count: sql<number>`used_count + case when ${isInstant} then 1 else 0 end`,
    };
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
    return toSession(row);
  }

  async setSessionExpiry(sessionId: number, expiresAt: number | null): Promise<void> {
    await this.db.updateTable('sessions').set({ expires_at: expiresAt }).where('id', '=', sessionId).execute();
  }

  /** Ends a session and sends every node it holds to reclaim. */
  async endSession(sessionId: number, reason: EndReason, now: number): Promise<void> {
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

  async assignNodes(sessionId: number, nodeIds: readonly number[], now: number): Promise<void> {
    for (const ids of chunks(nodeIds)) {
      await this.db
        .updateTable('nodes')
        .set({ state: 'deployed', session_id: sessionId, changed_at: now, reason: null })
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
    await this.leaveSession(sessionId, nodeIds, now, reason, { ...this.releasedState(), failed_by: null });
  }

  /** Takes nodes out of a session into quarantine, remembering who reported them. */
  async quarantineNodes(sessionId: number, nodeIds: readonly number[], now: number, reason: string, failedBy: number): Promise<void> {
    await this.leaveSession(sessionId, nodeIds, now, reason, { state: 'failed', failed_by: failedBy });
  }

  private async leaveSession(
    sessionId: number,
    nodeIds: readonly number[],
    now: number,
    reason: string,
    to: { state: NodeState | RawBuilder<string>; used_count?: RawBuilder<number>; failed_by: number | null },
  ): Promise<void> {
    for (const ids of chunks(nodeIds)) {
      await this.db
        .updateTable('nodes')
        .set({ ...to, session_id: null, changed_at: now, reason, lease_owner: null, lease_until: null })
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
  async holdNodes(sessionId: number, now: number, reason: string): Promise<void> {
    await this.db
      .updateTable('nodes')
      .set({ state: 'held', changed_at: now, reason })
      .where('session_id', '=', sessionId)
      .where('state', '=', 'deployed')
      .execute();
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
      await this.db
        .updateTable('sessions')
        .set({ state: 'done', ended_at: now, end_reason: 'expired' })
        .where('id', 'in', ids)
        .execute();
      await this.db
        .updateTable('nodes')
        .set({ ...this.releasedState(), session_id: null, changed_at: now, reason: 'session expired', failed_by: null })
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

  /** Records the end of a reclaim that `owner` still holds the claim for. */
  async finishReclaim(nodeId: number, owner: string, ok: boolean, now: number, reason: string | null): Promise<boolean> {
    const result = await this.db
      .updateTable('nodes')
      .set((eb) => ({
        state: ok ? 'ready' : 'failed',
        used_count: ok ? eb('used_count', '+', 1) : eb.ref('used_count'),
        changed_at: now,
        reason,
        lease_owner: null,
        lease_until: null,
      }))
      .where('id', '=', nodeId)
      .where('state', '=', 'reclaiming')
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /** Clears every reclaim claim: for a store only this process uses, at start. */
  async clearReclaimLeases(): Promise<void> {
    await this.db.updateTable('nodes').set({ lease_owner: null, lease_until: null }).where('state', '=', 'reclaiming').execute();
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
    const existing = await this.db
      .selectFrom('nodes')
      .select(['id', 'hostname', 'ip', 'pool', 'ver', 'arch', 'flavor', 'chassis', 'console_port', 'retired'])
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
        Number(row.retired) !== 0
      ) {
        await this.db.updateTable('nodes').set(values).where('id', '=', row.id).execute();
      }
    }
    // Many rows a statement (13 values a row: far below SQLite's and PostgreSQL's bound-value limits).
    for (let i = 0; i < added.length; i += 200) await this.db.insertInto('nodes').values(added.slice(i, i + 200)).execute();
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
