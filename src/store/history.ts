/**
 * The event history: every state change of a node or a session, and each pool command that failed,
 * written in the same transaction as the change it records (so it can never disagree with it).
 */
import { sql } from 'kysely';
import type { NodeMove } from '../core/lifecycle.js';
import type { Change, EventQueries, HistoryEvent } from '../core/storage.js';
import type { NodeState } from '../api/states.js';
import { run } from './compiled.js';
import { chunks, type QueryContext } from './context.js';
import { moveKey, targetState } from './moves.js';

/** Which nodes a coming change is about. */
export interface NodeSelection {
  /** These nodes (else every node of `sessions`). */
  ids?: readonly number[];
  /** Nodes in these sessions; with `joining`, the session they are about to join instead. */
  sessions?: readonly number[];
  joining?: number;
  /** Only nodes in these states (the move's `from`). */
  states?: readonly NodeState[];
}

export class History implements EventQueries {
  constructor(private readonly ctx: QueryContext) {}

  /**
   * Records the coming change of the selected nodes by `moved`, one event per node with its state
   * now, the state the move leads it to, its session, project and alias. Runs before the change.
   */
  async nodesChanging(selection: NodeSelection, moved: NodeMove, change: Change): Promise<void> {
    const { ids, sessions, joining, states } = selection;
    const to = targetState(moved);
    for (const chunk of ids ? chunks(ids) : [undefined]) {
      const values = { at: change.at, reason: change.reason, detail: change.detail ?? null, ids: chunk, sessions, joining, states };
      await run(this.ctx, `history.nodesChanging ${moveKey(moved)}`, values, (v) =>
        this.ctx.db
          .insertInto('events')
          .columns(['at', 'subject', 'node_id', 'hostname', 'pool', 'session_id', 'ssid', 'project', 'alias', 'from_state', 'to_state', 'reason', 'detail'])
          .expression((eb) =>
            eb
              .selectFrom('nodes')
              .leftJoin('sessions', (join) =>
                v.joining === undefined ? join.onRef('sessions.id', '=', 'nodes.session_id') : join.on('sessions.id', '=', v.joining),
              )
              .leftJoin('projects', 'projects.id', 'sessions.project_id')
              .select([
                sql<number>`cast(${v.at} as bigint)`.as('at'),
                sql<string>`'node'`.as('subject'),
                'nodes.id',
                'nodes.hostname',
                'nodes.pool',
                'sessions.id as session_id',
                'sessions.ssid',
                'projects.name',
                'sessions.alias',
                'nodes.state',
                to.as('to_state'),
                sql<string>`cast(${v.reason} as text)`.as('reason'),
                sql<string | null>`cast(${v.detail} as text)`.as('detail'),
              ])
              .$if(v.ids !== undefined, (q) => q.where('nodes.id', 'in', v.ids!))
              .$if(v.sessions !== undefined && v.joining === undefined, (q) => q.where('nodes.session_id', 'in', v.sessions!))
              .$if(v.states !== undefined, (q) => q.where('nodes.state', 'in', v.states!)),
          ),
      );
    }
  }

  /** Records the coming change of the sessions `ids` from `from` (null: new) to `to`. */
  async sessionsChanging(ids: readonly number[], from: string | null, to: string, change: Change): Promise<void> {
    for (const chunk of chunks(ids)) {
      await run(this.ctx, 'history.sessionsChanging', { at: change.at, from, to, reason: change.reason, ids: chunk }, (v) =>
        this.ctx.db
          .insertInto('events')
          .columns(['at', 'subject', 'session_id', 'ssid', 'project', 'alias', 'from_state', 'to_state', 'reason'])
          .expression((eb) =>
            eb
              .selectFrom('sessions')
              .innerJoin('projects', 'projects.id', 'sessions.project_id')
              .select([
                sql<number>`cast(${v.at} as bigint)`.as('at'),
                sql<string>`'session'`.as('subject'),
                'sessions.id',
                'sessions.ssid',
                'projects.name',
                'sessions.alias',
                sql<string | null>`cast(${v.from} as text)`.as('from_state'),
                sql<string>`cast(${v.to} as text)`.as('to_state'),
                sql<string>`cast(${v.reason} as text)`.as('reason'),
              ])
              .where('sessions.id', 'in', v.ids),
          ),
      );
    }
  }

  /** Records nodes that just came into being (from no state to `ready`). */
  async nodesAdded(rows: ReadonlyArray<{ id: number; hostname: string; pool: string }>, change: Change): Promise<void> {
    if (rows.length === 0) return;
    await this.ctx.db
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

  async recordPool(pool: string, change: Change): Promise<void> {
    await this.ctx.db
      .insertInto('events')
      .values({ at: change.at, subject: 'pool', pool, reason: change.reason, detail: change.detail ?? null })
      .execute();
  }

  async prune(before: number): Promise<number> {
    const result = await this.ctx.db.deleteFrom('events').where('at', '<', before).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  async list(filter: { hostname?: string; session?: string }, limit: number): Promise<HistoryEvent[]> {
    const rows = await this.ctx.db
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
      subject: r.subject as HistoryEvent['subject'],
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
}
