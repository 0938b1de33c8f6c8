/**
 * A fresh, empty database for each server the benchmark starts: a SQLite file in a temporary
 * folder, or (when CINODE_BENCH_POSTGRES_URL names a server) a new PostgreSQL database created
 * on that server and dropped at the end.
 */
import { join } from 'node:path';
import pg from 'pg';

export type Engine = 'sqlite' | 'postgres';

export interface Databases {
  engine: Engine;
  /** Server version, for the report. */
  version(): Promise<string>;
  /** A `database:` value naming a new, empty database. */
  create(label: string): Promise<string>;
  /** Drops what `create` made (SQLite: the folder is removed by the caller). */
  cleanup(): Promise<void>;
}

export function sqliteDatabases(dir: string, sqliteVersion: string): Databases {
  return {
    engine: 'sqlite',
    version: async () => sqliteVersion,
    create: async (label) => `sqlite:${join(dir, `${label}.db`)}`,
    cleanup: async () => {},
  };
}

/** Hides the password of a URL for printing. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export function postgresDatabases(baseUrl: string): Databases {
  const created: string[] = [];
  const run = `cinode_bench_${Date.now().toString(36)}_${process.pid}`;
  const admin = async <T>(work: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: baseUrl });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };
  return {
    engine: 'postgres',
    version: () => admin(async (c) => String((await c.query<{ server_version: string }>('show server_version')).rows[0]?.server_version)),
    async create(label) {
      const name = `${run}_${label}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      await admin((c) => c.query(`create database "${name}"`));
      created.push(name);
      const url = new URL(baseUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async cleanup() {
      await admin(async (c) => {
        for (const name of created.splice(0)) {
          await c.query(`drop database if exists "${name}" with (force)`).catch(() => c.query(`drop database if exists "${name}"`));
        }
      });
    },
  };
}
