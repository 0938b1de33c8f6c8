/**
 * Statements built once (src/store/compiled.ts): a cached statement gives each call its own values,
 * whatever the shape (lists of any length, null and undefined values), on a real SQLite store.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { first, rows } from '../src/store/compiled.js';
import type { QueryContext } from '../src/store/context.js';
import { openStore } from '../src/store/open.js';
import type { Store } from '../src/store/store.js';
import { removeDir } from './support/server.js';

let dir: string;
let store: Store;
let ctx: QueryContext;
let items: Kysely<{ items: { id: number; label: string | null } }>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cinode-compiled-'));
  store = await openStore(`sqlite:${join(dir, 'cinode.db')}`);
  ctx = { db: store.db, dialect: 'sqlite', lockRows: false };
  items = store.db as unknown as typeof items;
  await sql`create table items (id integer primary key, label text)`.execute(store.db);
  for (let id = 1; id <= 20; id++) await sql`insert into items (id, label) values (${id}, ${id % 2 === 0 ? `even ${id}` : null})`.execute(store.db);
});

afterAll(async () => {
  await store.close();
  removeDir(dir);
});

/** Items by id, optionally only those whose label is (or, with null, is not) given. */
function byIds(ids: readonly number[], label?: string | null) {
  return rows(ctx, 'test.byIds', { ids, label }, (v) =>
    items
      .selectFrom('items')
      .select('id')
      .where('id', 'in', v.ids)
      .$if(v.label === null, (q) => q.where('label', 'is', null))
      .$if(v.label !== undefined && v.label !== null, (q) => q.where('label', '=', v.label!))
      .orderBy('id'),
  );
}

test('each call of a cached statement runs with its own values', async () => {
  expect((await byIds([1, 2, 3])).map((r) => r.id)).toEqual([1, 2, 3]);
  expect((await byIds([4, 5, 6])).map((r) => r.id)).toEqual([4, 5, 6]);
  expect((await byIds([7])).map((r) => r.id)).toEqual([7]);
});

test('null and undefined values and long lists each get their own statement', async () => {
  expect((await byIds([1, 2, 3, 4], null)).map((r) => r.id)).toEqual([1, 3]);
  expect((await byIds([1, 2, 3, 4], 'even 4')).map((r) => r.id)).toEqual([4]);
  expect((await byIds([1, 2, 3, 4], 'even 2')).map((r) => r.id)).toEqual([2]);
  const many = Array.from({ length: 15 }, (_, i) => i + 1);
  expect((await byIds(many)).map((r) => r.id)).toEqual(many);
  expect((await byIds(many.slice(2))).map((r) => r.id)).toEqual(many.slice(2));
});

test('many shapes: the oldest are forgotten, and every call still gets its own answer', async () => {
  for (let n = 0; n < 600; n++) {
    const row = await first(ctx, `test.shape ${n}`, { id: (n % 20) + 1 }, (v) =>
      items.selectFrom('items').select(['id', sql.lit(n).as('shape')]).where('id', '=', v.id),
    );
    expect(row).toEqual({ id: (n % 20) + 1, shape: n });
  }
  const again = await first(ctx, 'test.shape 0', { id: 3 }, (v) => items.selectFrom('items').select(['id', sql.lit(0).as('shape')]).where('id', '=', v.id));
  expect(again).toEqual({ id: 3, shape: 0 });
});
