/**
 * The waiting queue's wake-up across replicas of one PostgreSQL database: NOTIFY on a channel
 * when nodes may serve a queued request, LISTEN on a dedicated connection (a pooled one would
 * miss notices while it serves queries). A listener that loses its connection reconnects after a
 * pause; meanwhile the queue's slow poll serves (docs/api.md, "Waiting for capacity").
 */
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { QueueChannel } from '../core/storage.js';
import type { Database } from './schema.js';

const CHANNEL = 'cinode_queue';
const RECONNECT_MS = 1_000;

export class PostgresQueueChannel implements QueueChannel {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly url: string,
  ) {}

  async notify(): Promise<void> {
    await sql`select pg_notify(${CHANNEL}, '')`.execute(this.db);
  }

  async listen(onNotify: () => void, onError: (error: unknown) => void): Promise<() => Promise<void>> {
    let stopped = false;
    let client: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    const connect = async (): Promise<void> => {
      const next = new pg.Client({ connectionString: this.url, application_name: 'cinode-queue', keepAlive: true });
      const lost = (error?: unknown) => {
        if (error) onError(error);
        if (client !== next) return;
        client = undefined;
        next.removeAllListeners('end');
        void next.end().catch(() => undefined);
        if (!stopped) retry = setTimeout(() => void connect().catch(lost), RECONNECT_MS);
      };
      next.on('error', lost);
      next.on('end', () => lost());
      next.on('notification', () => onNotify());
      client = next;
      await next.connect();
      await next.query(`LISTEN ${CHANNEL}`);
      // Notices sent while this connection was down are lost: look at the queue once now.
      onNotify();
    };
    await connect();
    return async () => {
      stopped = true;
      clearTimeout(retry);
      const last = client;
      client = undefined;
      if (last) {
        last.removeAllListeners('end');
        await last.end().catch(() => undefined);
      }
    };
  }
}
