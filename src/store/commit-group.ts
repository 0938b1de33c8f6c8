/**
 * SQLite: transactions that arrive together share one commit. SQLite runs one write transaction
 * at a time, and a commit's cost is mostly writing the changed pages to the WAL file; requests in
 * flight at once change the same few pages (the nodes, sessions and events tables and their
 * indexes), so committing them together writes those pages once instead of once each (issue 16).
 *
 * Each transaction of the group runs alone, in order, in a savepoint of its own: one that fails is
 * rolled back to its savepoint and fails alone, as if it had run by itself; the others keep their
 * changes. Nobody is answered before the commit that holds their changes succeeded; when that
 * commit fails, every transaction of the group fails with it and none of their changes stays. So
 * each call is still one all-or-nothing transaction, and the order they ran in is an order they
 * could have run in one by one.
 */
import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.js';

/** The most transactions one commit holds, so a long queue is answered in steps. */
const MAX_GROUP = 64;

const SAVEPOINT = CompiledQuery.raw('savepoint request');
const RELEASE = CompiledQuery.raw('release savepoint request');
const ROLLBACK_TO = CompiledQuery.raw('rollback to savepoint request');

interface Pending {
  work: (trx: Transaction<Database>) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class CommitGroup {
  private readonly queue: Pending[] = [];
  private scheduled = false;

  constructor(private readonly db: Kysely<Database>) {}

  run<T>(work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /**
   * The group starts once the I/O the event loop has in hand was read (setImmediate), so the
   * requests that arrived together are in it; one alone waits no longer than that.
   */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.commitNext());
  }

  private async commitNext(): Promise<void> {
    const group = this.queue.splice(0, MAX_GROUP);
    const outcomes: Outcome[] = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        // Alone, a transaction needs no savepoint: if it fails, the whole transaction is rolled back.
        if (group.length === 1) outcomes.push({ ok: true, value: await group[0]!.work(trx) });
        else for (const pending of group) outcomes.push(await inSavepoint(trx, pending.work));
      });
      group.forEach((pending, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) pending.resolve(outcome.value);
        else pending.reject(outcome.error);
      });
    } catch (error) {
      // The group's transaction failed (begin, a savepoint, or the commit): nothing of it stays.
      group.forEach((pending, i) => {
        const outcome = outcomes[i];
        pending.reject(outcome && !outcome.ok ? outcome.error : error);
      });
    } finally {
      this.scheduled = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}

async function inSavepoint(trx: Transaction<Database>, work: (trx: Transaction<Database>) => Promise<unknown>): Promise<Outcome> {
  await trx.executeQuery(SAVEPOINT);
  try {
    const value = await work(trx);
    await trx.executeQuery(RELEASE);
    return { ok: true, value };
  } catch (error) {
    await trx.executeQuery(ROLLBACK_TO);
    await trx.executeQuery(RELEASE);
    return { ok: false, error };
  }
}
