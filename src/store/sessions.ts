/** Sessions: looking them up by ssid or alias, opening, ending and expiring them. */
import { sql } from 'kysely';
import type { NodeMove } from '../core/lifecycle.js';
import type { EndReason } from '../api/states.js';
import type { Session } from '../core/model.js';
import type { Change, NewSession, SessionQueries } from '../core/storage.js';
import { chunks, type QueryContext } from './context.js';
import type { History } from './history.js';
import { forChange, lockProject, takeUnclaimed } from './locks.js';
import type { NodeStore } from './nodes.js';
import { toSession } from './rows.js';

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
    const bySsid = await forChange(this.ctx, this.ctx.db.selectFrom('sessions').selectAll().where('project_id', '=', projectId).where('ssid', '=', ref)).executeTakeFirst();
    if (bySsid) return toSession(bySsid);
    const byAlias = this.ctx.db
      .selectFrom('sessions')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('alias', '=', ref)
      .orderBy(sql`case when state = 'active' then 0 else 1 end`)
      .orderBy('id', 'desc')
      .limit(1);
    const row = await forChange(this.ctx, byAlias).executeTakeFirst();
    return row ? toSession(row) : undefined;
  }

  async activeByAlias(projectId: number, alias: string): Promise<Session | undefined> {
    const query = this.ctx.db.selectFrom('sessions').selectAll().where('project_id', '=', projectId).where('alias', '=', alias).where('state', '=', 'active');
    const row = await forChange(this.ctx, query).executeTakeFirst();
    return row ? toSession(row) : undefined;
  }

  async insert(session: NewSession): Promise<Session> {
    const row = await this.ctx.db
      .insertInto('sessions')
      .values({
        ssid: session.ssid,
        project_id: session.projectId,
        alias: session.alias,
        state: 'active',
        created_at: session.createdAt,
        expires_at: session.expiresAt,
        heartbeat_ms: session.heartbeatMs ?? null,
        heartbeat_deadline: session.heartbeatMs ? session.createdAt + session.heartbeatMs : null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
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
    const expired = (await takeUnclaimed(this.ctx, query).execute()).map((s) => Number(s.id));
    for (const ids of chunks(expired)) await this.endAll(ids, 'expired', now, release);
    return expired.length;
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
    const lost = (await takeUnclaimed(this.ctx, query).execute()).map((s) => Number(s.id));
    for (const ids of chunks(lost)) await this.endAll(ids, 'heartbeat-lost', now, release);
    return lost.length;
  }

  /** Ends sessions and moves every node they hold out of them. */
  private async endAll(sessionIds: readonly number[], reason: EndReason, now: number, release: NodeMove): Promise<void> {
    const change = { at: now, reason: `session ${reason}` };
    await this.history.sessionsChanging(sessionIds, 'active', 'done', change);
    await this.ctx.db.updateTable('sessions').set({ state: 'done', ended_at: now, end_reason: reason }).where('id', 'in', sessionIds).execute();
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
    const row = await this.ctx.db
      .selectFrom('sessions')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('created_at').as('oldest')])
      .where('project_id', '=', projectId)
      .where('created_at', '>', since)
      .executeTakeFirstOrThrow();
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
