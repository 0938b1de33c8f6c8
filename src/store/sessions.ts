/** Sessions: looking them up by ssid or alias, opening, ending and expiring them. */
import { sql, type SelectQueryBuilder } from 'kysely';
import type { NodeMove } from '../core/lifecycle.js';
import type { EndReason } from '../api/states.js';
import type { Session } from '../core/model.js';
import type { Change, NewSession, SessionQueries } from '../core/storage.js';
import { first, run } from './compiled.js';
import { chunks, type QueryContext } from './context.js';
import type { History } from './history.js';
import { forChange, lockProject, takeUnclaimed } from './locks.js';
import type { NodeStore } from './nodes.js';
import { toSession } from './rows.js';
import type { Database } from './schema.js';

/** Not a session being set up, nor one whose setup failed (until its teardown deletes it): neither exists for its client. */
const VISIBLE_STATES = ['active', 'done'] as const;

export class SessionStore implements SessionQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
    private readonly nodes: NodeStore,
  ) {}

  lockProject(projectId: number): Promise<void> {
    return lockProject(this.ctx, projectId);
  }

  async byRef(projectId: number, ref: string): Promise<Session | undefined> {
    const bySsid = await first(this.ctx, 'sessions.bySsid', { projectId, ref }, (v) => forChange(this.ctx, this.visible(v.projectId).where('ssid', '=', v.ref)));
    if (bySsid) return toSession(bySsid);
    const row = await first(this.ctx, 'sessions.byAlias', { projectId, ref }, (v) =>
      forChange(
        this.ctx,
        this.visible(v.projectId)
          .where('alias', '=', v.ref)
          .orderBy(sql`case when state = 'active' then 0 else 1 end`)
          .orderBy('id', 'desc')
          .limit(1),
      ),
    );
    return row ? toSession(row) : undefined;
  }

  /** The project's sessions its client may know of (VISIBLE_STATES). */
  private visible(projectId: number) {
    return this.ctx.db.selectFrom('sessions').selectAll().where('project_id', '=', projectId).where('state', 'in', VISIBLE_STATES);
  }

  async activeByAlias(projectId: number, alias: string): Promise<Session | undefined> {
    const query = this.ctx.db.selectFrom('sessions').selectAll().where('project_id', '=', projectId).where('alias', '=', alias).where('state', '=', 'active');
    const row = await forChange(this.ctx, query).executeTakeFirst();
    return row ? toSession(row) : undefined;
  }

  async insert(session: NewSession): Promise<Session> {
    const values = {
      ssid: session.ssid,
      projectId: session.projectId,
      alias: session.alias,
      createdAt: session.createdAt,
      expiresAt: session.expiresAt,
      heartbeatMs: session.heartbeatMs ?? null,
      heartbeatDeadline: session.heartbeatMs ? session.createdAt + session.heartbeatMs : null,
    };
    const row = await first(this.ctx, 'sessions.insert', values, (v) =>
      this.ctx.db
        .insertInto('sessions')
        .values({
          ssid: v.ssid,
          project_id: v.projectId,
          alias: v.alias,
          state: 'active',
          created_at: v.createdAt,
          expires_at: v.expiresAt,
          heartbeat_ms: v.heartbeatMs,
          heartbeat_deadline: v.heartbeatDeadline,
        })
        .returningAll(),
    );
    if (!row) throw new Error('the new session was not returned');
    await this.history.sessionsChanging([Number(row.id)], null, 'active', { at: session.createdAt, reason: 'opened' });
    return toSession(row);
  }

  /** Its row and its node history go, so it counts against no rate limit. */
  async remove(sessionId: number, change: Change): Promise<void> {
    await this.history.sessionsChanging([sessionId], 'active', 'deleted', change);
    await this.ctx.db.deleteFrom('session_nodes').where('session_id', '=', sessionId).execute();
    await this.ctx.db.deleteFrom('sessions').where('id', '=', sessionId).execute();
  }

  async setExpiry(sessionId: number, expiresAt: number | null): Promise<void> {
    await this.ctx.db.updateTable('sessions').set({ expires_at: expiresAt }).where('id', '=', sessionId).execute();
  }

  end(sessionId: number, reason: EndReason, now: number, release: NodeMove): Promise<void> {
    return this.endAll([sessionId], reason, now, release);
  }

  /** Skips the sessions another replica's reaper (or a call on the session) holds, on PostgreSQL. */
  async expire(now: number, limit: number, release: NodeMove): Promise<number> {
    const query = this.ctx.db
      .selectFrom('sessions')
      .select('id')
      .where('state', '=', 'active')
      .where('expires_at', '<=', now)
      .orderBy('expires_at')
      .limit(limit);
    return this.endTaken(query, 'expired', now, release);
  }

  async ping(sessionId: number, now: number): Promise<void> {
    await this.ctx.db
      .updateTable('sessions')
      .set({ heartbeat_deadline: sql<number>`${now} + heartbeat_ms` })
      .where('id', '=', sessionId)
      .where('state', '=', 'active')
      .where('heartbeat_ms', 'is not', null)
      .execute();
  }

  /** Like `expire`, for sessions whose client stopped pinging. */
  async loseHeartbeats(now: number, limit: number, release: NodeMove): Promise<number> {
    const query = this.ctx.db
      .selectFrom('sessions')
      .select('id')
      .where('state', '=', 'active')
      .where('heartbeat_deadline', 'is not', null)
      .where('heartbeat_deadline', '<', now)
      .orderBy('heartbeat_deadline')
      .limit(limit);
    return this.endTaken(query, 'heartbeat-lost', now, release);
  }

  /** Ends the sessions `due` selects that no other replica holds; returns how many. */
  private async endTaken(due: SelectQueryBuilder<Database, 'sessions', { id: number }>, reason: EndReason, now: number, release: NodeMove): Promise<number> {
    const ended = (await takeUnclaimed(this.ctx, due).execute()).map((s) => Number(s.id));
    for (const ids of chunks(ended)) await this.endAll(ids, reason, now, release);
    return ended.length;
  }

  /** Ends sessions and moves every node they hold out of them. */
  private async endAll(sessionIds: readonly number[], reason: EndReason, now: number, release: NodeMove): Promise<void> {
    const change = { at: now, reason: `session ${reason}` };
    await this.history.sessionsChanging(sessionIds, 'active', 'done', change);
    await run(this.ctx, 'sessions.end', { now, reason, sessionIds }, (v) =>
      this.ctx.db
        .updateTable('sessions')
        // A session that was set up is torn down once its nodes detached (workers/isolation.ts).
        .set({
          state: 'done',
          ended_at: v.now,
          end_reason: v.reason,
          teardown: sql`case when isolation is not null then 'pending' else teardown end`,
          teardown_at: v.now,
        })
        .where('id', 'in', v.sessionIds),
    );
    await this.nodes.leaveSessions(sessionIds, undefined, release, change);
  }

  async active(projectId: number): Promise<Session[]> {
    const rows = await this.ctx.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('state', '=', 'active')
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return rows.map(toSession);
  }

  async createdSince(projectId: number, since: number): Promise<{ count: number; oldest: number | null }> {
    const row = (await first(this.ctx, 'sessions.createdSince', { projectId, since }, (v) =>
      this.ctx.db
        .selectFrom('sessions')
        .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
        .where('project_id', '=', v.projectId)
        .where('created_at', '>', v.since)
        // A session whose setup failed is no charge (docs/api.md, "Session isolation").
        .where('state', '!=', 'void'),
    ))!;
    return { count: Number(row.n), oldest: row.oldest === null ? null : Number(row.oldest) };
  }

  async nextExpiry(): Promise<number | null> {
    const row = await this.ctx.db
      .selectFrom('sessions')
      .select((eb) => eb.fn.min('expires_at').as('next'))
      .where('state', '=', 'active')
      .executeTakeFirstOrThrow();
    return row.next === null ? null : Number(row.next);
  }
}
