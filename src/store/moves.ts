/**
 * Compiles a move that core decided (src/core/lifecycle.ts) into SQL: the target state as an
 * expression over the node's row (its aftercare told by its pool), and the columns it sets and
 * clears. The store applies moves; it never chooses where a node goes.
 */
import { sql, type RawBuilder } from 'kysely';
import { DETACHING, detachesFirst, type NodeMark, type NodeMove } from '../core/lifecycle.js';
import type { NodeState } from '../api/states.js';
import type { Change } from '../core/storage.js';

/** The columns each mark lives in, and their cleared values. */
const CLEARED: Record<NodeMark, Record<string, null | number>> = {
  session: { session_id: null },
  claim: { lease_owner: null, lease_until: null },
  hold: { hold_until: null },
  attempts: { attempts: 0 },
  reporter: { failed_by: null },
  keys: { contextualized: 0 },
  // The attach runs under the request's lease, in the claim's columns.
  attach: { hook: null, lease_owner: null, lease_until: null },
  detach: { hook: null, hook_session: null, hook_to: null },
};

/** Whether the node needs no aftercare: in a static pool without a reclaim command, and carrying no keys. */
function needsNone(m: NodeMove): RawBuilder<boolean> | null {
  if (m.poolsWithoutAftercare.length === 0) return null;
  return sql<boolean>`(nodes.pool in (${sql.join(m.poolsWithoutAftercare)}) and nodes.contextualized = 0)`;
}

/** A node in a session: one leaving it detaches first (an operator may disable a node in none). */
const inSession = sql<boolean>`nodes.session_id is not null`;

/**
 * The state the move leads each node to, as one expression (a constant when every aftercare
 * agrees). With isolation, a node leaving its session waits in DETACHING first.
 */
export function targetState(m: NodeMove): RawBuilder<NodeState> {
  if (detachesFirst(m)) return sql<NodeState>`case when ${inSession} then ${sql.lit(DETACHING)} else ${eventTarget(m)} end`;
  return eventTarget(m);
}

/** The state the event itself leads to: after the detach, for a node that detaches first. */
function eventTarget(m: NodeMove): RawBuilder<NodeState> {
  const { none, reclaim, deprovision } = m.transition.to;
  if (none === 'as-recorded') return sql<NodeState>`nodes.hook_to`;
  const isNone = needsNone(m);
  const byKind = reclaim === deprovision ? sql.lit(reclaim) : sql`case when nodes.provisioned = 1 then ${sql.lit(deprovision)} else ${sql.lit(reclaim)} end`;
  if (isNone === null || none === reclaim) {
    return reclaim === deprovision ? sql<NodeState>`${sql.lit(reclaim)}` : sql<NodeState>`${byKind}`;
  }
  return sql<NodeState>`case when ${isNone} then ${sql.lit(none)} else ${byKind} end`;
}

/** Column values of the move, `state` included, for an UPDATE of `nodes`. */
export function moveColumns(m: NodeMove, change: Change): Record<string, unknown> {
  const t = m.transition;
  const columns: Record<string, unknown> = { state: targetState(m), changed_at: change.at, reason: change.reason };
  for (const mark of t.clears) Object.assign(columns, CLEARED[mark]);
  if (t.countsUse) {
    const { none, reclaim, deprovision } = t.to;
    const isNone = needsNone(m);
    if (reclaim === 'ready' && deprovision === 'ready') columns.used_count = sql`nodes.used_count + 1`;
    else if (none === 'ready' && isNone !== null) columns.used_count = sql`nodes.used_count + case when ${isNone} then 1 else 0 end`;
  }
  if (t.countsAttempt) columns.attempts = sql`nodes.attempts + 1`;
  if (t.retires) columns.retired = 1;
  if (m.reporter !== undefined) columns.failed_by = m.reporter;
  if (m.holdUntil !== undefined) columns.hold_until = m.holdUntil;
  if (m.retryAt !== undefined) columns.lease_until = m.retryAt;
  if (m.withKeys !== undefined) columns.contextualized = m.withKeys ? 1 : 0;
  if (detachesFirst(m)) {
    // Every column on the right reads the row before the update: the session it is leaving.
    Object.assign(columns, {
      hook: sql`case when ${inSession} then 'detach' else null end`,
      hook_session: sql`nodes.session_id`,
      hook_to: sql`case when ${inSession} then ${eventTarget(m)} else null end`,
    });
  } else if (m.isolate && m.attachLease && m.event === 'allocated') {
    Object.assign(columns, { hook: 'attach', lease_owner: m.attachLease.owner, lease_until: m.attachLease.until });
  }
  return columns;
}

/**
 * What makes two moves compile to the same SQL (compiled.ts): the event (its transition), the
 * pools without aftercare, whether nodes detach first, and the values a move carries (an attach
 * lease's owner and end among them: they are constants of the statement).
 */
export function moveKey(m: NodeMove): string {
  const lease = m.attachLease ? `${m.attachLease.owner}@${m.attachLease.until}` : '';
  return `${m.event}/${m.poolsWithoutAftercare.join(',')}/${m.reporter}/${m.holdUntil}/${m.retryAt}/${m.withKeys}/${m.isolate === true}/${lease}`;
}
