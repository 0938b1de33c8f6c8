/**
 * SQLite's commit group (src/store/commit-group.ts): transactions that arrive together share one
 * commit, yet each stays all-or-nothing. Runs on a real SQLite file (the group is SQLite's only).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { CommitGroup } from '../src/store/commit-group.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { removeDir } from './support/server.js';

let dir: string;
let store: Store;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cinode-group-'));
  store = await openStore(`sqlite:${join(dir, 'cinode.db')}`);
  await sql`create table marks (name text primary key, project_id integer references projects(id))`.execute(store.db);
});

afterEach(async () => {
  await store.close();
  removeDir(dir);
});

async function marks(): Promise<string[]> {
  const rows = await sql<{ name: string }>`select name from marks order by name`.execute(store.db);
  return rows.rows.map((r) => r.name);
}

test('transactions submitted together commit together; the one that fails leaves nothing and fails alone', async () => {
  const group = new CommitGroup(store.db);
  const outcomes = await Promise.allSettled(
    ['a', 'b', 'fail', 'c'].map((name) =>
      group.run(async (trx) => {
        await sql`insert into marks (name) values (${name})`.execute(trx);
        if (name === 'fail') throw new Error('this request fails after writing');
        return name;
      }),
    ),
  );

  expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
  expect(outcomes[2]).toMatchObject({ status: 'rejected', reason: new Error('this request fails after writing') });
  expect(await marks()).toEqual(['a', 'b', 'c']);
});

test('a later transaction of the group sees what an earlier one wrote (they run one after the other)', async () => {
  const group = new CommitGroup(store.db);
  const seen = await Promise.all(
    ['x', 'y', 'z'].map((name) =>
      group.run(async (trx) => {
        const before = await sql<{ n: number }>`select count(*) as n from marks`.execute(trx);
        await sql`insert into marks (name) values (${name})`.execute(trx);
        return Number(before.rows[0]!.n);
      }),
    ),
  );
  expect(seen).toEqual([0, 1, 2]);
});

test('when the group commit fails, every transaction of it fails and none of their changes stays', async () => {
  const group = new CommitGroup(store.db);
  const outcomes = await Promise.allSettled([
    group.run(async (trx) => {
      await sql`insert into marks (name) values ('kept until the commit')`.execute(trx);
      return 'first';
    }),
    group.run(async (trx) => {
      // A foreign key checked only at COMMIT: the group's commit is refused.
      await sql`pragma defer_foreign_keys = on`.execute(trx);
      await sql`insert into marks (name, project_id) values ('dangling', 999999)`.execute(trx);
      return 'second';
    }),
    group.run(async () => {
      throw new Error('its own failure');
    }),
  ]);

  expect(outcomes[0]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ message: expect.stringMatching(/FOREIGN KEY/) }) });
  expect(outcomes[1]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ message: expect.stringMatching(/FOREIGN KEY/) }) });
  expect(outcomes[2]).toMatchObject({ status: 'rejected', reason: new Error('its own failure') });
  expect(await marks()).toEqual([]);
  // The store is usable again afterwards.
  await group.run(async (trx) => sql`insert into marks (name) values ('after')`.execute(trx));
  expect(await marks()).toEqual(['after']);
});

test('more transactions than one group holds are all committed, in groups, in the order they came', async () => {
  const group = new CommitGroup(store.db);
  const names = Array.from({ length: 150 }, (_, i) => `m${String(i).padStart(3, '0')}`);
  const order: string[] = [];
  await Promise.all(
    names.map((name) =>
      group.run(async (trx) => {
        order.push(name);
        await sql`insert into marks (name) values (${name})`.execute(trx);
      }),
    ),
  );
  expect(order).toEqual(names);
  expect(await marks()).toEqual(names);
});

test('a transaction alone that fails is rolled back whole and fails with its own error', async () => {
  const group = new CommitGroup(store.db);
  await expect(
    group.run(async (trx) => {
      await sql`insert into marks (name) values ('alone')`.execute(trx);
      throw new Error('the lone request fails');
    }),
  ).rejects.toThrow('the lone request fails');
  expect(await marks()).toEqual([]);
  expect(await group.run(async () => 'next')).toBe('next');
});

test("the store's transactions run their hot statements directly on the connection, and stay all-or-nothing in a group", async () => {
  const [projectId] = (await store.transaction((tx) => tx.catalog.syncProjects([{ name: 'alpha', keyHash: 'h', policy: '{}' }]))).values();
  const open = (ssid: string, fail: boolean) =>
    store.transaction(async (tx) => {
      await tx.sessions.insert({ ssid, projectId: projectId!, alias: null, createdAt: 1, expiresAt: null });
      if (fail) throw new Error(`${ssid} fails after writing`);
      return (await tx.sessions.byRef(projectId!, ssid))?.ssid;
    });
  // A read outside the transactions waits for the connection: it never sees a write of the group before its commit.
  let readDuring: number | undefined;
  const outcomes = await Promise.allSettled([
    open('s1', false),
    open('s2', true),
    store
      .read()
      .sessions.active(projectId!)
      .then((s) => (readDuring = s.length)),
    open('s3', false),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  expect(outcomes[0]).toMatchObject({ value: 's1' });
  expect(outcomes[1]).toMatchObject({ reason: new Error('s2 fails after writing') });
  expect([0, 2]).toContain(readDuring);
  expect((await store.read().sessions.active(projectId!)).map((s) => s.ssid).sort()).toEqual(['s1', 's3']);
});

test('with a SQL trace, every statement a transaction runs is appended to the file with its values', async () => {
  const trace = join(dir, 'trace.jsonl');
  const traced = await openStore(`sqlite:${join(dir, 'traced.db')}`, { sqlTrace: trace });
  try {
    await traced.transaction((tx) => tx.catalog.syncProjects([{ name: 'alpha', keyHash: 'hash-of-alpha', policy: '{}' }]));
  } finally {
    await traced.close();
  }
  const statements = readFileSync(trace, 'utf8')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { sql: string; parameters: unknown[] });
  const from = statements.findLastIndex((s) => s.sql === 'begin');
  expect(statements[statements.length - 1]).toEqual({ sql: 'commit', parameters: [] });
  expect(statements.slice(from).some((s) => s.sql.startsWith('insert into "projects"') && s.parameters.includes('hash-of-alpha'))).toBe(true);
});
