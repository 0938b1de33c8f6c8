/**
 * Nodes and allocation: picking ready nodes, moving nodes into and out of sessions and between
 * states (as core's lifecycle decides), holds, and the listings of nodes.
 */
import { DETACHING, type NodeMove } from '../core/lifecycle.js';
import type { NodeState } from '../api/states.js';
import type { Node } from '../core/model.js';
import type { Change, ListedNode, NodeQueries } from '../core/storage.js';
import { first, rows, run } from './compiled.js';
import { chunks, type QueryContext } from './context.js';
import type { History } from './history.js';
import { takeUnclaimed } from './locks.js';
import { moveColumns, moveKey } from './moves.js';
import { toNode } from './rows.js';

export class NodeStore implements NodeQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
  ) {}

  async pickReady(pools: readonly string[], count: number): Promise<Node[]> {
    const picked = await rows(this.ctx, 'nodes.pickReady', { pools, count }, (v) =>
      takeUnclaimed(
        this.ctx,
        this.ctx.db
          .selectFrom('nodes')
          .selectAll()
          .where('pool', 'in', v.pools)
          .where('state', '=', 'ready')
          .where('retired', '=', 0)
          .orderBy('used_count')
          .orderBy('id')
          .limit(v.count),
      ),
    );
    return picked.map(toNode);
  }

  async assign(sessionId: number, nodeIds: readonly number[], now: number, allocated: NodeMove): Promise<void> {
    const { from } = allocated.transition;
    const key = moveKey(allocated);
    for (const ids of chunks(nodeIds)) {
      await this.history.nodesChanging({ ids, joining: sessionId }, allocated, { at: now, reason: 'allocated' });
      await run(this.ctx, `nodes.assign ${key}`, { at: now, sessionId, ids, from }, (v) =>
        this.ctx.db
          .updateTable('nodes')
          .set({ ...moveColumns(allocated, { at: v.at, reason: 'allocated' }), session_id: v.sessionId, reason: null })
          .where('id', 'in', v.ids)
          .where('state', 'in', v.from),
      );
      await run(this.ctx, 'nodes.assign session_nodes', { sessionId, ids, now }, (v) =>
        this.ctx.db.insertInto('session_nodes').values(v.ids.map((id) => ({ session_id: v.sessionId, node_id: id, added_at: v.now }))),
      );
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
    const key = moveKey(moved);
    for (const ids of nodeIds ? chunks(nodeIds) : [undefined]) {
      await this.history.nodesChanging({ ids, sessions: sessionIds, states: from }, moved, change);
      const values = { at: change.at, reason: change.reason, ids, sessionIds, from };
      await run(this.ctx, `nodes.leave ${key}`, values, (v) =>
        this.ctx.db
          .updateTable('nodes')
          .set(moveColumns(moved, { at: v.at, reason: v.reason }))
          .$if(v.ids !== undefined, (q) => q.where('id', 'in', v.ids!))
          .where('session_id', 'in', v.sessionIds)
          .where('state', 'in', v.from),
      );
      if (undone) {
        await run(this.ctx, 'nodes.leave undone', { sessionIds, ids }, (v) =>
          this.ctx.db
            .deleteFrom('session_nodes')
            .where('session_id', 'in', v.sessionIds)
            .$if(v.ids !== undefined, (q) => q.where('node_id', 'in', v.ids!)),
        );
        continue;
      }
      await run(this.ctx, 'nodes.leave released', { at: change.at, reason: change.reason, sessionIds, ids }, (v) =>
        this.ctx.db
          .updateTable('session_nodes')
          .set({ released_at: v.at, release_reason: v.reason })
          .where('session_id', 'in', v.sessionIds)
          .$if(v.ids !== undefined, (q) => q.where('node_id', 'in', v.ids!))
          .where('released_at', 'is', null),
      );
    }
  }

  async apply(nodeIds: readonly number[], moved: NodeMove, change: Change): Promise<void> {
    const { from } = moved.transition;
    for (const ids of chunks(nodeIds)) {
      await this.history.nodesChanging({ ids, states: from }, moved, change);
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
    const found = await rows(this.ctx, 'nodes.ofSession', { sessionId }, (v) =>
      this.ctx.db.selectFrom('nodes').selectAll().where('session_id', '=', v.sessionId).orderBy('id'),
    );
    return found.map(toNode);
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
    // Two counts, each by an index that holds only the sessions it needs (one count of both
    // states with `in` made SQLite read every session the project ever had, on every /Node/get),
    // in one statement: on PostgreSQL, a session whose setup finished between two statements would
    // be in neither count. A session being set up (isolation hooks) holds its nodes already.
    const row = await first(this.ctx, 'nodes.countInUse', { projectId }, (v) => {
      const inState = (state: 'active' | 'setup') =>
        this.ctx.db
          .selectFrom('nodes')
          .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('sessions.project_id', '=', v.projectId)
          .where('sessions.state', '=', state);
      return this.ctx.db.selectNoFrom([inState('active').as('active'), inState('setup').as('setup')]);
    });
    return Number(row!.active) + Number(row!.setup);
  }

  async countFailedAndHeld(projectId: number): Promise<number> {
    const held = await this.ctx.db
      .selectFrom('nodes')
      .innerJoin('sessions', 'sessions.id', 'nodes.session_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('sessions.project_id', '=', projectId)
      .where('nodes.state', '=', 'held')
      .executeTakeFirstOrThrow();
    // A node it reported broken counts from the report on, also while its node-detach runs.
    const failed = await this.ctx.db
      .selectFrom('nodes')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('failed_by', '=', projectId)
      .where((eb) => eb.or([eb('state', '=', 'failed'), eb.and([eb('state', '=', DETACHING), eb('hook', '=', 'detach'), eb('hook_to', '=', 'failed')])]))
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

