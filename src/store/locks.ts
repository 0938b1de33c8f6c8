/**
 * Every lock choice of the store, in one place. SQLite runs one write transaction at a time, so a
 * single process is serialized by the database itself and none of these locks anything there. On
 * PostgreSQL several replicas share the database, and cinode uses READ COMMITTED transactions with
 * row locks, not SERIALIZABLE transactions with retry:
 *
 * - Work that every caller wants (ready nodes to allocate, expired sessions, holds that ended,
 *   nodes to reclaim) is taken with `FOR UPDATE SKIP LOCKED`: each transaction takes rows no other
 *   one holds, without waiting or aborting, so nothing is done twice and contention never turns
 *   into retries right when the service is busiest.
 * - A row read in order to change it (a session, a node an operator acts on) is locked as it is
 *   read (`FOR UPDATE`), so the check and the write that relies on it cannot interleave with
 *   another replica's; under READ COMMITTED a row changed while we waited is checked against our
 *   WHERE again.
 * - The calls of one project queue on the project's row; the fill decisions of one pool and the
 *   configuration syncs of replicas starting together queue on advisory locks.
 *
 * Locks are taken in one order (project, then session, then nodes); the rare deadlock PostgreSQL
 * still reports is handled by running the transaction again (store.ts).
 */
import { sql } from 'kysely';
import { run } from './compiled.js';
import type { QueryContext } from './context.js';

/** The PostgreSQL advisory lock that serializes configuration syncs of replicas starting together. */
const CATALOG_LOCK = 0x63696e6f6465; // "cinode"

interface Lockable<Q> {
  forUpdate(): Q;
}
interface Skippable<Q> extends Lockable<Q> {
  skipLocked(): Q;
}

/** A row read in order to change it: locked until commit (PostgreSQL, in a transaction). */
export function forChange<Q extends Lockable<Q>>(ctx: QueryContext, query: Q): Q {
  return ctx.lockRows ? query.forUpdate() : query;
}

/** Rows of shared work: each taken by one transaction, rows another one holds skipped (PostgreSQL). */
export function takeUnclaimed<Q extends Skippable<Q>>(ctx: QueryContext, query: Q): Q {
  return ctx.dialect === 'postgres' ? query.forUpdate().skipLocked() : query;
}

/** Serializes the calls of one project until commit. */
export async function lockProject(ctx: QueryContext, projectId: number): Promise<void> {
  if (ctx.dialect === 'postgres') {
    await run(ctx, 'locks.project', { projectId }, (v) => ctx.db.selectFrom('projects').select('id').where('id', '=', v.projectId).forUpdate());
  }
}

/** Serializes the fill decisions of one pool across replicas until commit. */
export async function lockPool(ctx: QueryContext, pool: string): Promise<void> {
  if (ctx.dialect === 'postgres') await sql`select pg_advisory_xact_lock(hashtextextended(${`cinode pool ${pool}`}, 0))`.execute(ctx.db);
}

/** Waits until no other replica is syncing the configuration; held until commit. */
export async function lockCatalog(ctx: QueryContext): Promise<void> {
  if (ctx.dialect === 'postgres') await sql`select pg_advisory_xact_lock(${CATALOG_LOCK})`.execute(ctx.db);
}
