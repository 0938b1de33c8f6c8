/**
 * PostgreSQL: the store's statements are prepared by name once per connection (src/store/open.ts,
 * prepareByName), and a table changed under a prepared statement by another replica's migration
 * costs one retry, not an error. Runs in the PostgreSQL pass (CINODE_TEST_DATABASE=postgres);
 * in the SQLite pass only the classification of the error runs.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { isRetryableConflict, isStalePlan } from '../src/store/errors.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { testDatabaseKind, testDatabaseUrl } from './support/database.js';
import { removeDir } from './support/server.js';

test("PostgreSQL's refusal of a stale prepared statement is told apart, and is run again like a conflict", () => {
  const stale = Object.assign(new Error('cached plan must not change result type'), { code: '0A000' });
  expect(isStalePlan(stale)).toBe(true);
  expect(isRetryableConflict(stale)).toBe(true);
  // The same SQLSTATE for another unsupported feature is a bug to report, not something to retry.
  expect(isRetryableConflict(Object.assign(new Error('cannot use a window function here'), { code: '0A000' }))).toBe(false);
});

const describePostgres = (name: string, body: () => void): void => {
  if (testDatabaseKind() === 'postgres') describe(name, body);
};

describePostgres('statements prepared by name', () => {
  let dir: string;
  let url: string;
  let store: Store;
  let projectId: number;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cinode-prepared-'));
    url = testDatabaseUrl(dir);
    // One connection: every query below, the view of prepared statements included, runs on it.
    store = await openStore(url, { poolSize: 1 });
    [projectId] = [...(await store.transaction((tx) => tx.catalog.syncProjects([{ name: 'alpha', keyHash: 'h', policy: '{}' }]))).values()] as [number];
  });

  afterEach(async () => {
    await store.close();
    removeDir(dir);
  });

  const prepared = async () =>
    (await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements order by name`.execute(store.db)).rows;

  const openSession = (ssid: string) =>
    store.transaction(async (tx) => {
      await tx.sessions.insert({ ssid, projectId, alias: null, createdAt: 1, expiresAt: null });
      return tx.sessions.byRef(projectId, ssid);
    });

  test('a statement run twice is prepared once, under one name; transaction control and schema changes are not', async () => {
    await openSession('s1');
    const once = await prepared();
    await openSession('s2');
    expect(await prepared()).toEqual(once);
    const bySsid = once.filter((p) => p.statement.startsWith('select * from "sessions" where') && /"ssid" = \$\d+/.test(p.statement));
    expect(bySsid).toHaveLength(1);
    expect(bySsid[0]!.name).toMatch(/^cinode_0_\d+$/);
    expect(once.some((p) => /^(begin|commit|create|alter)/i.test(p.statement))).toBe(false);
  });

  test("a column added by another replica's migration under a prepared select *: the call is run again and succeeds", async () => {
    expect((await openSession('before'))?.ssid).toBe('before');
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      await other.query('alter table sessions add column added_by_a_newer_replica integer');
    } finally {
      await other.end();
    }
    // Without the retry and the new names, this fails with "cached plan must not change result type".
    expect((await openSession('after'))?.ssid).toBe('after');
    expect((await prepared()).some((p) => p.name.startsWith('cinode_1_'))).toBe(true);
  });
});
