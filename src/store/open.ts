/**
 * Opens the database named by the configuration's `database:` and brings its schema up to date.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { DirectExecutor } from './context.js';
import { isStalePlan } from './errors.js';
import { PostgresQueueChannel } from './notify.js';
import { migrationProvider } from './migrations.js';
import { aliasPrefix, SQLITE_ALIAS_PREFIX } from './reports.js';
import type { Database } from './schema.js';
import { Store } from './store.js';

const SQLITE_PREFIX = 'sqlite:';
const POSTGRES_URL = /^postgres(ql)?:\/\//;

/** PostgreSQL's type oid of BIGINT (int8), which `count(*)`, `min()` of a bigint and our times are. */
const INT8_OID = 20;

export interface OpenOptions {
  /**
   * Told about a PostgreSQL connection that broke while idle in the pool (the database restarted
   * or the network dropped it). The pool has already thrown that connection away and opens a new
   * one on the next query, so this is for the log only. By default a line on stderr.
   */
  onConnectionError?: (error: Error) => void;
  /** PostgreSQL: the most connections this process keeps open (default 10). */
  poolSize?: number;
  /** PostgreSQL: how long a query waits for a connection before failing with 503 (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * SQLite: a file to which every statement run is appended with its parameters, one JSON line
   * each (`{"sql": ..., "parameters": [...]}`). The benchmark replays it on SQLite alone to measure
   * the database's own share of a request (bench/floor.ts). It slows every statement.
   */
  sqlTrace?: string;
}

export async function openStore(url: string, options: OpenOptions = {}): Promise<Store> {
  if (url.startsWith(SQLITE_PREFIX)) return openSqliteStore(url.slice(SQLITE_PREFIX.length), options.sqlTrace);
  if (POSTGRES_URL.test(url)) return openPostgresStore(url, options);
  throw new Error(`database: ${JSON.stringify(url)} is not supported; use sqlite:PATH or postgres://USER@HOST/DB`);
}

/** A SQLite connection set up as the store uses it (the bench's replay opens its file the same way). */
export function openSqlite(path: string): SQLite.Database {
  const sqlite = new SQLite(path);
  // WAL lets readers run beside the writer; NORMAL sync is durable across a process crash,
  // which is the failure a CI lending service meets (a power cut may lose the last commits).
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  // Usage by alias prefix splits aliases at '/', which SQLite's SQL cannot (reports.ts).
  sqlite.function(SQLITE_ALIAS_PREFIX, { deterministic: true }, (alias: unknown, depth: unknown) =>
    aliasPrefix(typeof alias === 'string' ? alias : null, Number(depth)),
  );
  return sqlite;
}

async function openSqliteStore(path: string, sqlTrace?: string): Promise<Store> {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = openSqlite(path);
  const cached = withStatementCache(sqlite);
  const statements = sqlTrace ? tracing(cached, sqlTrace) : cached;
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: statements }) });
  try {
    await migrate(db, 'sqlite');
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return new Store(db, 'sqlite', null, directExecutor(statements));
}

type Statements = Pick<SQLite.Database, 'prepare' | 'close'>;

/** Prepared statements kept: every query cinode runs, with room for the lengths of id lists. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew, and preparing costs more than running the small queries
 * cinode makes. Kysely runs one query at a time on the connection, so a statement can be reused.
 */
function withStatementCache(sqlite: SQLite.Database): Statements {
  const cache = new Map<string, SQLite.Statement>();
  return {
    prepare(source: string) {
      let statement = cache.get(source);
      if (statement === undefined) {
        statement = sqlite.prepare(source);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value!);
        cache.set(source, statement);
      }
      return statement;
    },
    close() {
      cache.clear();
      return sqlite.close();
    },
  } as Statements;
}

/** The statements of `statements`, each run appended to the file `path` (OpenOptions.sqlTrace). */
function tracing(statements: Statements, path: string): Statements {
  const fd = openSync(path, 'a');
  const record = (sql: string, parameters: unknown[]) => writeSync(fd, `${JSON.stringify({ sql, parameters })}\n`);
  return {
    prepare(source: string) {
      const statement = statements.prepare(source);
      return {
        get reader() {
          return statement.reader;
        },
        all(parameters: unknown[]) {
          record(source, parameters);
          return statement.all(parameters);
        },
        run(parameters: unknown[]) {
          record(source, parameters);
          return statement.run(parameters);
        },
      };
    },
    close() {
      closeSync(fd);
      return statements.close();
    },
  } as Statements;
}

/** A statement run as Kysely's SQLite connection runs it, with the same result, but synchronously. */
function directExecutor(statements: Pick<SQLite.Database, 'prepare'>): DirectExecutor {
  return (query) => {
    const statement = statements.prepare(query.sql);
    if (statement.reader) return { rows: statement.all(query.parameters as unknown[]) };
    const { changes, lastInsertRowid } = statement.run(query.parameters as unknown[]);
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
  };
}

function logConnectionError(error: Error): void {
  process.stderr.write(`cinode: a PostgreSQL connection failed and was dropped from the pool: ${error.message}\n`);
}

/** BIGINT as a JS number: our bigints are counts and millisecond times, far below 2^53. */
function parseInt8(value: string): number {
  return Number(value);
}

/**
 * A pool of connections to PostgreSQL. Several replicas can open the same database at once:
 * Kysely's migrator holds an advisory lock while it migrates, so one of them migrates and the
 * others wait and find the schema up to date.
 */
async function openPostgresStore(url: string, options: OpenOptions = {}): Promise<Store> {
  const onConnectionError = options.onConnectionError ?? logConnectionError;
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    // Finds connections the network silently dropped, instead of waiting on them forever.
    keepAlive: true,
    application_name: 'cinode',
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // A connection that breaks while idle in the pool is reported here; without a listener the
  // 'error' event would end the process. The pool has already discarded that connection.
  pool.on('error', onConnectionError);
  // A connection checked out by a query reports its failure to that query (which answers 503),
  // and emits 'error' too: a listener must exist then as well, or the process ends. The pool
  // discards the connection when it comes back, and opens fresh ones when the database returns.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  prepareByName(pool);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db, 'postgres');
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return new Store(db, 'postgres', new PostgresQueueChannel(db, url));
}

/**
 * Statement texts prepared by name in a process (each connection keeps a plan for each on the
 * server); any beyond run unnamed. A request's statements are a few dozen texts.
 */
const MAX_PREPARED = 128;
/** What is worth preparing: queries and changes, not transaction control or schema changes. */
const PREPARABLE = /^(select|insert|update|delete|with) /;
/** Statements with more values are bulk work with id lists, whose every length is a text of its own. */
const MAX_PREPARED_VALUES = 16;

/**
 * PostgreSQL parses and plans an unnamed statement on every run, and a named one once per
 * connection. The store runs few statements, always the same texts (compiled.ts), so each text
 * gets a name the first time it is seen, up to MAX_PREPARED texts; `pg` prepares a name on a
 * connection the first time that connection runs it (issue 16: PostgreSQL shares the machine).
 *
 * A statement prepared before another replica's migration changed its table is refused
 * (errors.ts, isStalePlan). Every name is then given up: the next generation of names is prepared
 * anew on each connection, and the store runs the refused transaction again.
 */
function prepareByName(pool: pg.Pool): void {
  let generation = 0;
  let names = new Map<string, string>();
  const nameOf = (text: string, values: readonly unknown[]): string | undefined => {
    let name = names.get(text);
    if (name === undefined && names.size < MAX_PREPARED && values.length <= MAX_PREPARED_VALUES && PREPARABLE.test(text)) {
      names.set(text, (name = `cinode_${generation}_${names.size}`));
    }
    return name;
  };
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    client.query = ((...args: unknown[]) => {
      const [text, values] = args;
      const name = typeof text === 'string' && Array.isArray(values) && args.length === 2 ? nameOf(text, values) : undefined;
      if (name === undefined) return query(...args);
      return (query({ name, text, values }) as Promise<unknown>).catch((error: unknown) => {
        if (isStalePlan(error) && names.get(text as string) === name) {
          generation++;
          names = new Map();
        }
        throw error;
      });
    }) as typeof client.query;
  });
}

async function migrate(db: Kysely<Database>, dialect: 'sqlite' | 'postgres'): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider(dialect) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    if (!failed) throw error; // the database could not be reached, or the migration lock not taken
    throw new Error(`database migration ${failed.migrationName} failed: ${String(error)}`);
  }
}
