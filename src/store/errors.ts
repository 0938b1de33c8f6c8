/**
 * Which database errors mean "the database cannot be reached or used right now" (503, try again)
 * rather than a bug (500). SQLite reports busy or I/O trouble; PostgreSQL drops connections,
 * refuses them while it starts or stops, or the pool times out waiting for one.
 */

/** Prefixes of SQLite's codes (SQLITE_BUSY_SNAPSHOT is a SQLITE_BUSY) and of Node's socket errors. */
const UNAVAILABLE_CODE_PREFIXES = [
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_IOERR',
  'SQLITE_CANTOPEN',
  'SQLITE_FULL',
  'SQLITE_READONLY',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
];

/**
 * PostgreSQL SQLSTATEs: class 08 (connection exception), 57P01-57P03 (the server is shutting down,
 * crashed, or not accepting connections yet), class 53 (out of connections, memory or disk), and
 * 40001/40P01 (serialization failure, deadlock) once the store's own retries are spent.
 */
const UNAVAILABLE_SQLSTATE = /^(08[0-9A-Z]{3}|57P0[123]|53[0-9A-Z]{3}|40001|40P01)$/;

const UNAVAILABLE_MESSAGES = [
  /Connection terminated/i, // pg: the server or the network closed the connection
  /timeout exceeded when trying to connect/i, // pg.Pool: connectionTimeoutMillis passed
  /is not queryable/i, // pg: a query on a connection that already failed
  /database connection is not open/i, // better-sqlite3 after close
  /driver has already been destroyed/i, // Kysely after the store was closed (a request racing shutdown)
];

export function isDatabaseUnavailable(error: unknown): boolean {
  // Duck-typed, not `instanceof Error`: errors raised by Node's sockets may come from another realm.
  if (typeof error !== 'object' || error === null) return false;
  const { code, message, errors } = error as { code?: unknown; message?: unknown; errors?: unknown };
  // Node reports a refused connection to a name with several addresses as an AggregateError.
  if (Array.isArray(errors) && errors.some(isDatabaseUnavailable)) return true;
  if (typeof code === 'string') {
    if (UNAVAILABLE_SQLSTATE.test(code)) return true;
    if (UNAVAILABLE_CODE_PREFIXES.some((prefix) => code.startsWith(prefix))) return true;
  }
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((pattern) => pattern.test(message));
}

/**
 * PostgreSQL refused a statement prepared before a table it reads changed (another replica's
 * migration added a column under a `select *`). open.ts then prepares every statement anew.
 */
export function isStalePlan(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change result type');
}

/**
 * PostgreSQL aborted the transaction to resolve a lock conflict, or refused a stale prepared
 * statement: running it again is safe.
 */
export function isRetryableConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01' || isStalePlan(error);
}
