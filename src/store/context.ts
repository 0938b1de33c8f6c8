/**
 * What every query module of the store shares: the database (or the transaction), its dialect,
 * and the event history that records each change in the same transaction.
 */
import type { CompiledQuery, Kysely, QueryResult } from 'kysely';
import type { Dialect } from './migrations.js';
import type { Database } from './schema.js';

export interface QueryContext {
  db: Kysely<Database>;
  dialect: Dialect;
  /** PostgreSQL inside a transaction: rows read in order to change them are locked as they are read. */
  lockRows: boolean;
  /**
   * SQLite inside a transaction of the store: runs a built statement at once, on the connection
   * that transaction holds (compiled.ts uses it for the hot statements).
   */
  direct?: DirectExecutor;
}

/**
 * Runs a statement synchronously. better-sqlite3 is synchronous, and Kysely's way to it costs
 * several promise hops a statement; a request runs a dozen statements (issue 16). Only for a
 * transaction that holds the connection (Kysely's mutex keeps every other query out until it ends).
 */
export type DirectExecutor = (query: CompiledQuery) => QueryResult<unknown>;

/** SQLite allows up to 32766 bound values a statement; stay far below for long id lists. */
const ID_CHUNK = 500;

export function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += ID_CHUNK) out.push(items.slice(i, i + ID_CHUNK));
  return out;
}
