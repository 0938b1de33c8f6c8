/**
 * Opens the database named by the configuration's `database:` and brings its schema up to date.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { DirectExecutor } from './context.js';
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

async function openSqliteStore(path: string, sqlTrace?: string): Promise<Store> {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
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
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db, 'postgres');
  } catch (error) {
    await db.destroy();
    throw error;
  }
  return new Store(db, 'postgres', new PostgresQueueChannel(db, url));
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
