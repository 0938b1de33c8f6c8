/**
 * The waiting queue's rows (docs/api.md, "Waiting for capacity"). Each waiting `/Node/get` is one
 * row owned by the server process holding its request, under a lease that process renews; every
 * read skips rows whose lease lapsed (their process died), and those are deleted later.
 */
import type { NewWaiter, QueueQueries, Waiter } from '../core/storage.js';
import { first } from './compiled.js';
import type { QueryContext } from './context.js';

export class QueueStore implements QueueQueries {
  constructor(private readonly ctx: QueryContext) {}

  async add(waiter: NewWaiter): Promise<number> {
    const row = await this.ctx.db
      .insertInto('waiters')
      .values({
        project_id: waiter.projectId,
        session_id: waiter.sessionId,
        pool_set: waiter.poolSet,
        count: waiter.count,
        since: waiter.since,
        owner: waiter.owner,
        lease_until: waiter.leaseUntil,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  async remove(waiterId: number): Promise<void> {
    await this.ctx.db.deleteFrom('waiters').where('id', '=', waiterId).execute();
  }

  async list(now: number): Promise<Waiter[]> {
    const rows = await this.ctx.db
      .selectFrom('waiters')
      .innerJoin('projects', 'projects.id', 'waiters.project_id')
      .leftJoin('sessions', 'sessions.id', 'waiters.session_id')
      .select((eb) => [
        'waiters.id',
        'waiters.project_id',
        'projects.name as project',
        'sessions.ssid',
        'waiters.pool_set',
        'waiters.count',
        'waiters.since',
        'waiters.owner',
        // What the node quota counts: nodes in the project's active sessions.
        eb
          .selectFrom('nodes')
          .innerJoin('sessions as held_in', 'held_in.id', 'nodes.session_id')
          .select((inner) => inner.fn.countAll<number>().as('n'))
          .whereRef('held_in.project_id', '=', 'waiters.project_id')
          .where('held_in.state', '=', 'active')
          .as('held'),
      ])
      .where('waiters.lease_until', '>=', now)
      .orderBy('waiters.id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      projectId: r.project_id,
      project: r.project,
      ssid: r.ssid,
      poolSet: r.pool_set,
      count: r.count,
      since: r.since,
      owner: r.owner,
      held: Number(r.held ?? 0),
    }));
  }

  /** Run by every /Node/get that is served at once: built once (compiled.ts). */
  async waitingFor(poolSet: string, now: number): Promise<boolean> {
    const row = await first(this.ctx, 'queue.waitingFor', { poolSet, now }, (v) =>
      this.ctx.db.selectFrom('waiters').select('id').where('pool_set', '=', v.poolSet).where('lease_until', '>=', v.now).limit(1),
    );
    return row !== undefined;
  }

  async renew(owner: string, leaseUntil: number): Promise<void> {
    await this.ctx.db.updateTable('waiters').set({ lease_until: leaseUntil }).where('owner', '=', owner).execute();
  }

  async pruneLapsed(now: number): Promise<number> {
    const result = await this.ctx.db.deleteFrom('waiters').where('lease_until', '<', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async dropOf(ownerPrefix: string): Promise<number> {
    const result = await this.ctx.db
      .deleteFrom('waiters')
      .where((eb) => eb(eb.fn('substr', ['owner', eb.val(1), eb.val(ownerPrefix.length)]), '=', ownerPrefix))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async clearAll(): Promise<number> {
    const result = await this.ctx.db.deleteFrom('waiters').executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async sessionsWithWaiters(now: number): Promise<string[]> {
    const rows = await this.ctx.db
      .selectFrom('waiters')
      .innerJoin('sessions', 'sessions.id', 'waiters.session_id')
      .select('sessions.ssid')
      .distinct()
      .where('waiters.lease_until', '>=', now)
      .execute();
    return rows.map((r) => r.ssid);
  }
}
