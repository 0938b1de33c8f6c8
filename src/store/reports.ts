/**
 * What operators' reports read: node and session counts for the metrics (read at scrape time, so
 * every replica reports the same truth), every active session for the dashboard, and node usage
 * from the sessions' node stays (`session_nodes`, the accounting history).
 */
import { sql, type RawBuilder } from 'kysely';
import type { NodeState } from '../api/states.js';
import type { Session } from '../core/model.js';
import type { ReportQueries, UsageQuery, UsageRow } from '../core/storage.js';
import type { QueryContext } from './context.js';
import { toSession } from './rows.js';

/** The SQLite function open.ts registers for `aliasPrefix` (SQLite has no string splitting). */
export const SQLITE_ALIAS_PREFIX = 'cinode_alias_prefix';

/** The first `depth` `/`-separated parts of an alias: what SQLite's cinode_alias_prefix computes. */
export function aliasPrefix(alias: string | null, depth: number): string | null {
  return alias === null ? null : alias.split('/').slice(0, depth).join('/');
}

export class ReportStore implements ReportQueries {
  constructor(private readonly ctx: QueryContext) {}

  async nodeCounts(): Promise<Array<{ pool: string; state: NodeState; count: number }>> {
    const rows = await this.ctx.db
      .selectFrom('nodes')
      .select(['pool', 'state', (eb) => eb.fn.countAll<number>().as('count')])
      .where('retired', '=', 0)
      .groupBy(['pool', 'state'])
      .execute();
    return rows.map((r) => ({ pool: r.pool, state: r.state, count: Number(r.count) }));
  }

  async activeSessionCounts(): Promise<Array<{ project: string; count: number }>> {
    const rows = await this.ctx.db
      .selectFrom('sessions')
      .innerJoin('projects', 'projects.id', 'sessions.project_id')
      .select(['projects.name', (eb) => eb.fn.countAll<number>().as('count')])
      .where('sessions.state', '=', 'active')
      .groupBy('projects.name')
      .execute();
    return rows.map((r) => ({ project: r.name, count: Number(r.count) }));
  }

  async allActiveSessions(): Promise<Array<Session & { project: string }>> {
    const rows = await this.ctx.db
      .selectFrom('sessions')
      .innerJoin('projects', 'projects.id', 'sessions.project_id')
      .selectAll('sessions')
      .select('projects.name as project')
      .where('sessions.state', '=', 'active')
      .orderBy('sessions.id', 'desc')
      .execute();
    return rows.map((r) => ({ ...toSession(r), project: r.project }));
  }

  /**
   * One aggregate over the stays that overlap the range (an open stay ends `now`), each clipped
   * to it. The `session_nodes_released` index finds the stays still going or released after
   * `from`, so a report on the last month reads only that month's stays of a year of history.
   */
  async usage(query: UsageQuery): Promise<UsageRow[]> {
    const { from, to, by, depth, now } = query;
    const end = sql<number>`coalesce(sn.released_at, ${now})`;
    const clippedEnd = sql<number>`case when ${end} < ${to} then ${end} else ${to} end`;
    const clippedStart = sql<number>`case when sn.added_at > ${from} then sn.added_at else ${from} end`;
    const alias = depth === undefined ? sql<string | null>`s.alias` : this.aliasPrefix(depth);
    const group: Record<UsageQuery['by'], Array<RawBuilder<string | null>>> = {
      project: [sql`p.name`],
      alias: [sql`p.name`, alias],
      pool: [sql`n.pool`],
    };
    const keys = group[by];
    const rows = await sql<{ k1: string | null; k2: string | null; sessions: number; nodes: number; node_ms: number }>`
      select ${keys[0]} as k1, ${keys[1] ?? sql`null`} as k2,
        count(distinct sn.session_id) as sessions, count(distinct sn.node_id) as nodes,
        sum(${clippedEnd} - ${clippedStart}) as node_ms
      from session_nodes sn
      join sessions s on s.id = sn.session_id
      join projects p on p.id = s.project_id
      ${by === 'pool' ? sql`join nodes n on n.id = sn.node_id` : sql``}
      where (sn.released_at > ${from} or sn.released_at is null) and sn.added_at < ${to} and ${end} > ${from}
      group by ${sql.join(keys)}
      order by ${sql.join(keys)}`.execute(this.ctx.db);
    return rows.rows.map((r) => ({
      project: by === 'pool' ? null : r.k1,
      alias: by === 'alias' ? r.k2 : null,
      pool: by === 'pool' ? r.k1 : null,
      sessions: Number(r.sessions),
      nodes: Number(r.nodes),
      nodeMs: Number(r.node_ms),
    }));
  }

  /** The first `depth` parts of `s.alias` in SQL: PostgreSQL slices an array, SQLite calls our function. */
  private aliasPrefix(depth: number): RawBuilder<string | null> {
    if (this.ctx.dialect === 'postgres') return sql`array_to_string((string_to_array(s.alias, '/'))[1:${sql.lit(depth)}], '/')`;
    return sql`${sql.raw(SQLITE_ALIAS_PREFIX)}(s.alias, ${sql.lit(depth)})`;
  }
}
