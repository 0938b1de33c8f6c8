/**
 * The store: core's storage interfaces (src/core/storage.ts) over a Kysely database, SQLite or
 * PostgreSQL alike, split by concern: sessions, nodes and allocation, reclaim claims, provisions,
 * the event history and the configuration sync. Where the two engines differ is in locks.ts.
 */
import type { Kysely, Transaction } from 'kysely';
import type { QueueChannel, Storage, StorageTx } from '../core/storage.js';
import { CatalogStore } from './catalog-sync.js';
import { CommitGroup } from './commit-group.js';
import type { DirectExecutor, QueryContext } from './context.js';
import { isRetryableConflict } from './errors.js';
import { History } from './history.js';
import { IsolationStore } from './isolation.js';
import type { Dialect } from './migrations.js';
import { NodeStore } from './nodes.js';
import { ProvisionStore } from './provisions.js';
import { QueueStore } from './queue.js';
import { ReclaimStore } from './reclaims.js';
import { ReportStore } from './reports.js';
import type { Database } from './schema.js';
import { SessionStore } from './sessions.js';

/** How many times a transaction runs when PostgreSQL aborts it for a deadlock or serialization failure. */
const CONFLICT_ATTEMPTS = 4;

/** The queries of one transaction (or of reads outside one), by concern. */
function queries(ctx: QueryContext): StorageTx {
  const history = new History(ctx);
  const nodes = new NodeStore(ctx, history);
  return {
    sessions: new SessionStore(ctx, history, nodes),
    nodes,
    reclaims: new ReclaimStore(ctx, nodes),
    provisions: new ProvisionStore(ctx, history),
    events: history,
    catalog: new CatalogStore(ctx, history),
    reports: new ReportStore(ctx),
    isolation: new IsolationStore(ctx, history, nodes),
    queue: new QueueStore(ctx),
  };
}

/** A store: a Kysely database of one dialect. */
export class Store implements Storage {
  readonly exclusive: boolean;
  /** SQLite: transactions that arrive together commit together (commit-group.ts). */
  private readonly group: CommitGroup | undefined;

  /**
   * @param direct SQLite: runs a statement on the connection at once, for the transactions of the
   *   commit group (context.ts, DirectExecutor).
   */
  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    readonly queueChannel: QueueChannel | null = null,
    private readonly direct?: DirectExecutor,
  ) {
    this.exclusive = dialect === 'sqlite';
    this.group = dialect === 'sqlite' ? new CommitGroup(db) : undefined;
  }

  /**
   * When PostgreSQL aborts the transaction to break a deadlock (or for a serialization failure),
   * nothing was kept and it runs again, a few times.
   */
  async transaction<T>(work: (tx: StorageTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.runOnce(work);
      } catch (error) {
        if (!isRetryableConflict(error) || attempt >= CONFLICT_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
      }
    }
  }

  private runOnce<T>(work: (tx: StorageTx) => Promise<T>): Promise<T> {
    if (this.group) return this.group.run((trx) => work(queries({ db: trx, dialect: this.dialect, lockRows: false, direct: this.direct })));
    return this.db
      .transaction()
      .execute((trx: Transaction<Database>) => work(queries({ db: trx, dialect: this.dialect, lockRows: this.dialect === 'postgres' })));
  }

  read(): StorageTx {
    return queries({ db: this.db, dialect: this.dialect, lockRows: false });
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
