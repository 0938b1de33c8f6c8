/**
 * Nodes and allocation: picking ready nodes, moving nodes into and out of sessions and between
 * states (as core's lifecycle decides), holds, and the listings of nodes.
 */
import type { NodeMove } from '../core/lifecycle.js';
import type { NodeState } from '../api/states.js';
import type { Node } from '../core/model.js';
import type { Change, ListedNode, NodeQueries } from '../core/storage.js';
import { chunks, type QueryContext } from './context.js';
import type { History } from './history.js';
import { takeUnclaimed } from './locks.js';
import { moveColumns, targetState } from './moves.js';
import { toNode } from './rows.js';

export class NodeStore implements NodeQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
  ) {}

  async pickReady(pools: readonly string[], count: number): Promise<Node[]> {
    const query = this.ctx.db
      .selectFrom('nodes')
      .selectAll()
      .where('pool', 'in', pools)
      .where('state', '=', 'ready')
      .where('retired', '=', 0)
      .orderBy('used_count')
      .orderBy('id')
      .limit(count);
    return (await takeUnclaimed(this.ctx, query).execute()).map(toNode);
  }

  async assign(sessionId: number, nodeIds: readonly number[], now: number, allocated: NodeMove): Promise<void> {
    const { from } = allocated.transition;
    for (const ids of chunks(nodeIds)) {
      await this.history.nodesChanging({ ids, joining: sessionId }, targetState(allocated), { at: now, reason: 'allocated' });
      await this.ctx.db
        .updateTable('nodes')
        .set({ ...moveColumns(allocated, { at: now, reason: 'allocated' }), session_id: sessionId, reason: null })
        .where('id', 'in', ids)
        .where('state', 'in', from)
        .execute();
      await this.ctx.db
        .insertInto('session_nodes')
        .values(ids.map((id) => ({ session_id: sessionId, node_id: id, added_at: now })))
        .execute();
    }
  }

  leave(sessionId: number, nodeIds: readonly number[], moved: NodeMove, change: Change): Promise<void> {
    return this.leaveSessions([sessionId], nodeIds, moved, change);
  }

  /**
   * Moves nodes out of sessions: the given ones, or every node of the sessions. The one way a node
   * leaves a session, whether one host is dropped or thousands of sessions expire at once. A
   * request undone takes back the stay from the session's history as well.
   */
  async leaveSessions(sessionIds: readonly number[], nodeIds: readonly number[] | undefined, moved: NodeMove, change: Change): Promise<void> {
    const { from } = moved.transition;
    const undone = moved.event === 'allocation-undone';
    for (const ids of nodeIds ? chunks(nodeIds) : [undefined]) {
      await this.history.nodesChanging({ ids, sessions: sessionIds, states: from }, targetState(moved), change);
      await this.ctx.db
        .updateTable('nodes')
        .set(moveColumns(moved, change))
        .$if(ids !== undefined, (q) => q.where('id', 'in', ids!))
        .where('session_id', 'in', sessionIds)
        .where('state', 'in', from)
        .execute();
      if (undone) {
        await this.ctx.db
          .deleteFrom('session_nodes')
          .where('session_id', 'in', sessionIds)
          .$if(ids !== undefined, (q) => q.where('node_id', 'in', ids!))
          .execute();
        continue;
      }
      await this.ctx.db
        .updateTable('session_nodes')
        .set({ released_at: change.at, release_reason: change.reason })
        .where('session_id', 'in', sessionIds)
        .$if(ids !== undefined, (q) => q.where('node_id', 'in', ids!))
        .where('released_at', 'is', null)
        .execute();
    }
  }

  async apply(nodeIds: readonly number[], moved: NodeMove, change: Change): Promise<void> {
    const { from } = moved.transition;
    for (const ids of chunks(nodeIds)) {
      await this.history.nodesChanging({ ids, states: from }, targetState(moved), change);
      await this.ctx.db.updateTable('nodes').set(moveColumns(moved, change)).where('id', 'in', ids).where('state', 'in', from).execute();
    }
  }

  async hold(sessionId: number, moved: NodeMove, change: Change): Promise<void> {
    const { from } = moved.transition;
    const deployed = await this.ctx.db.selectFrom('nodes').select('id').where('session_id', '=', sessionId).where('state', 'in', from).execute();
    await this.apply(
      deployed.map((n) => Number(n.id)),
      moved,
      change,
    );
  }

  async endHolds(now: number, limit: number, ended: NodeMove): Promise<number> {
    const query = this.ctx.db
      .selectFrom('nodes')
      .select(['id', 'session_id'])
      .where('state', '=', 'held')
      .where('hold_until', '<=', now)
      .orderBy('hold_until')
      .limit(limit);
    const over = await takeUnclaimed(this.ctx, query).execute();
    const bySession = new Map<number, number[]>();
    for (const n of over) {
      const sessionId = Number(n.session_id);
      bySession.set(sessionId, [...(bySession.get(sessionId) ?? []), Number(n.id)]);
    }
    for (const [sessionId, ids] of bySession) await this.leave(sessionId, ids, ended, { at: now, reason: 'hold ended' });
    return over.length;
  }

  async ofSession(sessionId: number): Promise<Node[]> {
    const rows = await this.ctx.db.selectFrom('nodes').selectAll().where('session_id', '=', sessionId).orderBy('id').execute();
    return rows.map(toNode);
  }

  async ofSessions(sessionIds: readonly number[]): Promise<Map<number, Node[]>> {
    const bySession = new Map<number, Node[]>(sessionIds.map((id) => [id, []]));
    for (const ids of chunks(sessionIds)) {
      const rows = await this.ctx.db.selectFrom('nodes').selectAll().where('session_id', 'in', ids).orderBy('id').execute();
      for (const row of rows) bySession.get(Number(row.session_id))?.push(toNode(row));
    }
    return bySession;
  }

  async countInUse(projectId: number): Promise<number> {
    const row = await this.ctx.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sessions.project_id', '=', projectId)
      // A session being set up holds its nodes already.
      .where('sessions.state', 'in', ['active', 'setup'])
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async countFailedAndHeld(projectId: number): Promise<number> {
    const held = await this.ctx.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sessions.project_id', '=', projectId)
      .where('nodes.state', '=', 'held')
      .executeTakeFirstOrThrow();
    const failed = await this.ctx.db
      .selectFrom('nodes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('failed_by', '=', projectId)
      .where('state', '=', 'failed')
      .executeTakeFirstOrThrow();
    return Number(held.n) + Number(failed.n);
  }

  async projectInventory(projectId: number): Promise<Array<[string, string]>> {
    const rows = await this.ctx.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select(['nodes.hostname', 'sessions.ssid'])
      .where('sessions.project_id', '=', projectId)
      .where('sessions.state', '=', 'active')
      .orderBy('nodes.id')
      .execute();
    return rows.map((r) => [r.hostname, r.ssid]);
  }

  async list(state?: NodeState): Promise<ListedNode[]> {
    const rows = await this.ctx.db
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

  async byHostname(hostname: string): Promise<(ListedNode & { retired: boolean }) | undefined> {
    const row = await this.ctx.db
      .selectFrom('nodes')
      .leftJoin('sessions', 'sessions.id', 'nodes.session_id')
      .selectAll('nodes')
      .select('sessions.ssid')
      .where('nodes.hostname', '=', hostname)
      // Only the node's row: PostgreSQL cannot lock the nullable side of an outer join.
      .$if(this.ctx.lockRows, (q) => q.forUpdate('nodes'))
      .executeTakeFirst();
    return row ? { ...toNode(row), retired: Number(row.retired) === 1, ssid: row.ssid } : undefined;
  }

  async readySince(pool: string, before: number): Promise<number[]> {
    const query = this.ctx.db
      .selectFrom('nodes')
      .select('id')
      .where('pool', '=', pool)
      .where('state', '=', 'ready')
      .where('retired', '=', 0)
      .where('changed_at', '<', before);
    return (await takeUnclaimed(this.ctx, query).execute()).map((n) => Number(n.id));
  }
}

