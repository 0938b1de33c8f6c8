/**
 * Session isolation (docs/api.md, "Session isolation"): the states in between that a hook run
 * leaves in the database while it runs outside any transaction, and the claims that give each due
 * hook one runner. A session being set up is `setup` under its request's lease; a session whose
 * setup failed is `void` until its teardown ran, then deleted; a node being attached carries the
 * `attach` mark under its request's lease; a node detaching carries `detach` with the session it
 * left. A lease that lapsed (its process died) is recovered: the setup or attach is undone through
 * teardown and detach, which run again until they are known to have finished.
 */
import { sql } from 'kysely';
import type { NodeMove } from '../core/lifecycle.js';
import type { HookSession, Session } from '../core/model.js';
import type { Change, DueDetach, DueTeardown, HookRun, IsolationQueries, NewSession } from '../core/storage.js';
import type { QueryContext } from './context.js';
import type { History } from './history.js';
import type { NodeStore } from './nodes.js';
import { forChange, takeUnclaimed } from './locks.js';
import { toNode, toSession } from './rows.js';

/** The session columns a hook's environment is made of. */
function hookSession(row: { ssid: string; project: string; alias: string | null; isolation: string | null }): HookSession {
  return { ssid: row.ssid, project: row.project, alias: row.alias, data: row.isolation === null ? {} : (JSON.parse(row.isolation) as Record<string, unknown>) };
}

export class IsolationStore implements IsolationQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
    private readonly nodes: NodeStore,
  ) {}

  async openForSetup(session: NewSession, owner: string, leaseUntil: number): Promise<Session> {
    const row = await this.ctx.db
      .insertInto('sessions')
      .values({
        ssid: session.ssid,
        project_id: session.projectId,
        alias: session.alias,
        state: 'setup',
        created_at: session.createdAt,
        expires_at: session.expiresAt,
        heartbeat_ms: session.heartbeatMs ?? null,
        heartbeat_deadline: session.heartbeatMs ? session.createdAt + session.heartbeatMs : null,
        hook_owner: owner,
        hook_until: leaseUntil,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await this.history.sessionsChanging([Number(row.id)], null, 'setup', { at: session.createdAt, reason: 'opened: session-setup running' });
    return toSession(row);
  }

  async aliasInSetup(projectId: number, alias: string, now: number): Promise<boolean> {
    const row = await this.ctx.db
      .selectFrom('sessions')
      .select('id')
      .where('project_id', '=', projectId)
      .where('alias', '=', alias)
      .where('state', '=', 'setup')
      .where('hook_until', '>=', now)
      .executeTakeFirst();
    return row !== undefined;
  }

  async extendSetup(sessionId: number, owner: string, leaseUntil: number): Promise<void> {
    await this.ctx.db.updateTable('sessions').set({ hook_until: leaseUntil }).where('id', '=', sessionId).where('state', '=', 'setup').where('hook_owner', '=', owner).execute();
  }

  async extendAttach(nodeIds: readonly number[], owner: string, leaseUntil: number): Promise<void> {
    if (nodeIds.length === 0) return;
    await this.ctx.db.updateTable('nodes').set({ lease_until: leaseUntil }).where('id', 'in', nodeIds).where('hook', '=', 'attach').where('lease_owner', '=', owner).execute();
  }

  async finishSetup(sessionId: number, owner: string, data: Record<string, unknown>, now: number): Promise<boolean> {
    const query = this.ctx.db.selectFrom('sessions').select('id').where('id', '=', sessionId).where('state', '=', 'setup').where('hook_owner', '=', owner);
    if (!(await forChange(this.ctx, query).executeTakeFirst())) return false;
    await this.history.sessionsChanging([sessionId], 'setup', 'active', { at: now, reason: 'session-setup succeeded' });
    await this.ctx.db
      .updateTable('sessions')
      // Its heartbeat counts from now: the client heard nothing while the setup ran.
      .set({
        state: 'active',
        isolation: JSON.stringify(data),
        hook_owner: null,
        hook_until: null,
        heartbeat_deadline: sql`case when heartbeat_ms is null then null else cast(${now} as bigint) + heartbeat_ms end`,
      })
      .where('id', '=', sessionId)
      .execute();
    return true;
  }

  async abandon(sessionId: number, undone: NodeMove, change: Change): Promise<void> {
    const row = await this.ctx.db.selectFrom('sessions').select('state').where('id', '=', sessionId).executeTakeFirstOrThrow();
    await this.nodes.leaveSessions([sessionId], undefined, undone, change);
    await this.history.sessionsChanging([sessionId], row.state, 'void', change);
    await this.ctx.db
      .updateTable('sessions')
      .set({ state: 'void', teardown: 'pending', teardown_at: change.at, ended_at: change.at, hook_owner: null, hook_until: null })
      .where('id', '=', sessionId)
      .execute();
  }

  async confirmAttached(nodeIds: readonly number[], owner: string, attached: NodeMove, change: Change): Promise<number> {
    if (nodeIds.length === 0) return 0;
    const mine = await forChange(
      this.ctx,
      this.ctx.db.selectFrom('nodes').select('id').where('id', 'in', nodeIds).where('hook', '=', 'attach').where('lease_owner', '=', owner),
    ).execute();
    const ids = mine.map((n) => Number(n.id));
    if (ids.length > 0) await this.nodes.apply(ids, attached, change);
    return ids.length;
  }

  async recoverLapsed(now: number, undone: NodeMove): Promise<number> {
    const change = { at: now, reason: 'interrupted while its isolation hook ran: undone' };
    const setups = await takeUnclaimed(
      this.ctx,
      this.ctx.db.selectFrom('sessions').select('id').where('state', '=', 'setup').where((eb) => eb.or([eb('hook_until', 'is', null), eb('hook_until', '<', now)])),
    ).execute();
    for (const s of setups) await this.abandon(Number(s.id), undone, change);
    const attaching = await takeUnclaimed(
      this.ctx,
      this.ctx.db
        .selectFrom('nodes')
        .select(['id', 'session_id'])
        .where('hook', '=', 'attach')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)])),
    ).execute();
    for (const n of attaching) {
      if (n.session_id !== null) await this.nodes.leaveSessions([Number(n.session_id)], [Number(n.id)], undone, change);
    }
    return setups.length + attaching.length;
  }

  async claimDetaches(owner: string, now: number, leaseUntil: number, limit: number): Promise<DueDetach[]> {
    const query = this.ctx.db
      .selectFrom('nodes')
      .select('id')
      .where('hook', '=', 'detach')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .orderBy('changed_at')
      .limit(limit);
    const candidates = (await takeUnclaimed(this.ctx, query).execute()).map((c) => Number(c.id));
    if (candidates.length === 0) return [];
    // The WHERE is checked again on the row as it is now (PostgreSQL waits for a row another
    // replica is updating, then re-reads it): only one claimer gets each node.
    const claimed = await this.ctx.db
      .updateTable('nodes')
      .set({ lease_owner: owner, lease_until: leaseUntil })
      .where('id', 'in', candidates)
      .where('hook', '=', 'detach')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .returningAll()
      .execute();
    if (claimed.length === 0) return [];
    const sessions = await this.sessionsById(claimed.map((n) => Number(n.hook_session)));
    // A session is deleted only after its teardown, which waits for every detach.
    return claimed.map((row) => ({ node: toNode(row), session: sessions.get(Number(row.hook_session))!.session, then: row.hook_to! }));
  }

  async finishDetach(nodeId: number, owner: string, outcome: NodeMove, change: Change): Promise<boolean> {
    const query = this.ctx.db.selectFrom('nodes').select('id').where('id', '=', nodeId).where('hook', '=', 'detach').where('lease_owner', '=', owner);
    if (!(await forChange(this.ctx, query).executeTakeFirst())) return false;
    await this.nodes.apply([nodeId], outcome, change);
    return true;
  }

  async claimTeardowns(owner: string, now: number, leaseUntil: number, limit: number): Promise<DueTeardown[]> {
    const query = this.ctx.db
      .selectFrom('sessions')
      .select('id')
      .where('teardown', '=', 'pending')
      .where('state', 'in', ['done', 'void'])
      .where((eb) => eb.or([eb('teardown_at', 'is', null), eb('teardown_at', '<=', now)]))
      .where((eb) => eb.or([eb('hook_until', 'is', null), eb('hook_until', '<', now)]))
      // Teardown comes after every node of the session detached (docs/api.md).
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('nodes')
              .select('nodes.id')
              .where((eb) => eb.or([eb('nodes.session_id', '=', eb.ref('sessions.id')), eb.and([eb('nodes.hook', '=', 'detach'), eb('nodes.hook_session', '=', eb.ref('sessions.id'))])])),
          ),
        ),
      )
      .orderBy('teardown_at')
      .limit(limit);
    const candidates = (await takeUnclaimed(this.ctx, query).execute()).map((c) => Number(c.id));
    if (candidates.length === 0) return [];
    const claimed = await this.ctx.db
      .updateTable('sessions')
      .set({ hook_owner: owner, hook_until: leaseUntil })
      .where('id', 'in', candidates)
      .where('teardown', '=', 'pending')
      .where((eb) => eb.or([eb('hook_until', 'is', null), eb('hook_until', '<', now)]))
      .returning('id')
      .execute();
    return [...(await this.sessionsById(claimed.map((s) => Number(s.id)))).values()];
  }

  async finishTeardown(sessionId: number, owner: string, outcome: { ok: boolean; retryAt: number | null }, change: Change): Promise<boolean> {
    const query = this.ctx.db.selectFrom('sessions').select(['id', 'state']).where('id', '=', sessionId).where('teardown', '=', 'pending').where('hook_owner', '=', owner);
    const row = await forChange(this.ctx, query).executeTakeFirst();
    if (!row) return false;
    if (outcome.ok && row.state === 'void') {
      // Its setup failed: the session never was, and now nothing of its segment is left either.
      await this.history.sessionsChanging([sessionId], 'void', 'deleted', change);
      await this.ctx.db.deleteFrom('session_nodes').where('session_id', '=', sessionId).execute();
      await this.ctx.db.deleteFrom('sessions').where('id', '=', sessionId).execute();
      return true;
    }
    const teardown = outcome.ok ? 'done' : outcome.retryAt === null ? 'failed' : 'pending';
    await this.ctx.db
      .updateTable('sessions')
      .set({
        teardown,
        teardown_at: outcome.retryAt,
        teardown_attempts: outcome.ok ? sql`teardown_attempts` : sql`teardown_attempts + 1`,
        hook_owner: null,
        hook_until: null,
      })
      .where('id', '=', sessionId)
      .execute();
    return true;
  }

  async retryTeardown(ssid: string, now: number): Promise<Session | 'active' | 'not-isolated' | undefined> {
    const row = await forChange(this.ctx, this.ctx.db.selectFrom('sessions').selectAll().where('ssid', '=', ssid).where('state', 'in', ['active', 'done'])).executeTakeFirst();
    if (!row) return undefined;
    if (row.state === 'active') return 'active';
    if (row.isolation === null) return 'not-isolated';
    await this.ctx.db
      .updateTable('sessions')
      .set({ teardown: 'pending', teardown_at: now, teardown_attempts: 0, ended_at: row.ended_at ?? now })
      .where('id', '=', row.id)
      .execute();
    return toSession({ ...row, teardown: 'pending' });
  }

  async recordHook(run: HookRun): Promise<void> {
    const seconds = (run.durationMs / 1000).toFixed(1);
    const status = run.exitStatus ?? 'none';
    await this.ctx.db
      .insertInto('events')
      .values({
        at: run.at,
        subject: 'hook',
        node_id: run.node?.id ?? null,
        hostname: run.node?.hostname ?? null,
        pool: run.node?.pool ?? null,
        ssid: run.session.ssid,
        project: run.session.project,
        alias: run.session.alias,
        reason: `${run.hook} ${run.ok ? 'succeeded' : 'failed'} (exit status ${status}, ${seconds}s)${run.ok || !run.reason ? '' : `: ${run.reason}`}`,
        detail: run.stderrTail,
      })
      .execute();
  }

  async dropLeasesOf(ownerPrefix: string | null): Promise<void> {
    const mine = (column: 'lease_owner' | 'hook_owner') =>
      sql<boolean>`${ownerPrefix === null ? sql`${sql.ref(column)} is not null` : sql`substr(${sql.ref(column)}, 1, ${ownerPrefix.length}) = ${ownerPrefix}`}`;
    await this.ctx.db.updateTable('sessions').set({ hook_until: 0 }).where(mine('hook_owner')).execute();
    await this.ctx.db.updateTable('nodes').set({ lease_until: 0 }).where('hook', 'is not', null).where(mine('lease_owner')).execute();
  }

  /** The sessions hooks run for, with their project's name and what their setup printed. */
  private async sessionsById(ids: readonly number[]): Promise<Map<number, DueTeardown>> {
    if (ids.length === 0) return new Map();
    const rows = await this.ctx.db
      .selectFrom('sessions')
      .innerJoin('projects', 'projects.id', 'sessions.project_id')
      .select(['sessions.id', 'sessions.ssid', 'projects.name as project', 'sessions.alias', 'sessions.isolation', 'sessions.teardown_attempts', 'sessions.ended_at', 'sessions.created_at'])
      .where('sessions.id', 'in', [...new Set(ids)])
      .execute();
    return new Map(
      rows.map((r) => [Number(r.id), { id: Number(r.id), session: hookSession(r), attempts: Number(r.teardown_attempts), endedAt: Number(r.ended_at ?? r.created_at) }]),
    );
  }
}
