/**
 * Test support: which database a test server uses. By default a SQLite file in the test's
 * folder. With CINODE_TEST_DATABASE=postgres, a fresh PostgreSQL database per test folder,
 * created on the server CINODE_TEST_POSTGRES_URL names (`scripts/postgres.sh` starts one) and
 * dropped when the test server closes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export type TestDatabaseKind = 'sqlite' | 'postgres';

/** The repository root (this file is test/support/database.ts). */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The file in a test folder that remembers its PostgreSQL database, so a restart finds the same one. */
const MARKER = 'postgres-database';

/** The database the suite runs against (CINODE_TEST_DATABASE=postgres, else SQLite). */
export function testDatabaseKind(): TestDatabaseKind {
  return process.env.CINODE_TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite';
}

/** The PostgreSQL server tests create their databases on; a clear error when it is not set. */
export function postgresAdminUrl(): string {
  const url = process.env.CINODE_TEST_POSTGRES_URL;
  if (!url) {
    throw new Error(
      'CINODE_TEST_DATABASE=postgres needs CINODE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres (a user that may CREATE DATABASE); ' +
        'start a throwaway server with: eval "$(bash scripts/postgres.sh)"',
    );
  }
  return url;
}

/** `url` with its database replaced by `database`. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/**
 * Runs SQL on the admin database in a separate node process, so that the caller can stay
 * synchronous (configYaml is). Throws with the server's message when it fails.
 */
function adminSqlSync(statement: string): void {
  const script = `
    const pg = require('pg');
    const client = new pg.Client({ connectionString: process.env.ADMIN_URL, connectionTimeoutMillis: 10000 });
    client.connect()
      .then(() => client.query(process.env.STATEMENT))
      .then(() => client.end())
      .catch((error) => { console.error(error.message); process.exit(1); });
  `;
  const result = spawnSync(process.execPath, ['-e', script], {
    cwd: REPO_ROOT,
    env: { ...process.env, ADMIN_URL: postgresAdminUrl(), STATEMENT: statement },
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (result.status !== 0) {
    throw new Error(`${statement} on ${redact(postgresAdminUrl())} failed: ${result.stderr.trim() || result.error?.message || `exit ${result.status}`}`);
  }
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}

/** A new empty PostgreSQL database on the test server; returns its name. */
export function createPostgresDatabaseSync(): string {
  const name = `cinode_test_${randomBytes(6).toString('hex')}`;
  adminSqlSync(`CREATE DATABASE ${name}`);
  return name;
}

/** Drops a database made by `createPostgresDatabaseSync`, even while connections remain. */
export async function dropPostgresDatabase(name: string): Promise<void> {
  assertTestDatabase(name);
  const client = new pg.Client({ connectionString: postgresAdminUrl(), connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

function assertTestDatabase(name: string): void {
  if (!/^cinode_test_[0-9a-f]+$/.test(name)) throw new Error(`refusing to drop ${JSON.stringify(name)}: not a test database`);
}

/**
 * The `database:` URL of the test folder `dir`: `sqlite:DIR/cinode.db`, or under
 * CINODE_TEST_DATABASE=postgres a PostgreSQL database made for this folder on the first call
 * (later calls, such as a restart on the same folder, get the same database).
 */
export function testDatabaseUrl(dir: string): string {
  if (testDatabaseKind() === 'sqlite') return `sqlite:${join(dir, 'cinode.db')}`;
  const marker = join(dir, MARKER);
  let name: string;
  if (existsSync(marker)) {
    name = readFileSync(marker, 'utf8').trim();
  } else {
    name = createPostgresDatabaseSync();
    writeFileSync(marker, `${name}\n`);
  }
  return withDatabase(postgresAdminUrl(), name);
}

/**
 * Drops the PostgreSQL database of the test folder `dir`, if it has one (a SQLite file goes with
 * the folder). Synchronous, for `removeDir`; connections still open to it are ended.
 */
export function dropTestDatabaseSync(dir: string): void {
  const marker = join(dir, MARKER);
  if (!existsSync(marker)) return;
  const name = readFileSync(marker, 'utf8').trim();
  assertTestDatabase(name);
  adminSqlSync(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  rmSync(marker, { force: true });
}
