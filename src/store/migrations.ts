/**
 * Versioned schema migrations, applied in name order at start. Written with Kysely's schema
 * builder only, so the same list serves SQLite and PostgreSQL. Never edit a migration that has
 * shipped: add the next one.
 */
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export type Dialect = 'sqlite' | 'postgres';

/** An auto-numbered primary key: SQLite's rowid alias, PostgreSQL's serial. */
function withId<T extends string>(table: CreateTableBuilder<T>, dialect: Dialect): CreateTableBuilder<T, 'id'> {
  return dialect === 'sqlite'
    ? table.addColumn('id', 'integer', (c: ColumnDefinitionBuilder) => c.primaryKey().autoIncrement())
    : table.addColumn('id', 'serial', (c: ColumnDefinitionBuilder) => c.primaryKey());
}

const initial = (dialect: Dialect): Migration => ({
  async up(db: Kysely<unknown>) {
    await withId(db.schema.createTable('projects'), dialect)
      .addColumn('name', 'varchar(128)', (c) => c.notNull().unique())
      .addColumn('key_hash', 'varchar(64)', (c) => c.notNull())
      .addColumn('policy', 'text', (c) => c.notNull())
      .addColumn('retired', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('projects_key_hash').on('projects').column('key_hash').execute();

    await withId(db.schema.createTable('sessions'), dialect)
      .addColumn('ssid', 'varchar(36)', (c) => c.notNull().unique())
      .addColumn('project_id', 'integer', (c) => c.notNull().references('projects.id'))
      .addColumn('alias', 'varchar(128)')
      .addColumn('state', 'varchar(16)', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('expires_at', 'bigint')
      .addColumn('ended_at', 'bigint')
      .addColumn('end_reason', 'varchar(16)')
      .execute();
    // An alias names at most one active session of a project; done sessions keep theirs.
    await db.schema
      .createIndex('sessions_active_alias')
      .on('sessions')
      .columns(['project_id', 'alias'])
      .unique()
      .where(sql.ref('state'), '=', 'active')
      .execute();
    await db.schema.createIndex('sessions_project_alias').on('sessions').columns(['project_id', 'alias', 'id']).execute();
    await db.schema.createIndex('sessions_project_created').on('sessions').columns(['project_id', 'created_at']).execute();
    await db.schema.createIndex('sessions_expiry').on('sessions').columns(['state', 'expires_at']).execute();

    await withId(db.schema.createTable('nodes'), dialect)
      .addColumn('hostname', 'varchar(253)', (c) => c.notNull().unique())
      .addColumn('ip', 'varchar(64)')
      .addColumn('pool', 'varchar(128)', (c) => c.notNull())
      .addColumn('ver', 'varchar(64)', (c) => c.notNull())
      .addColumn('arch', 'varchar(64)', (c) => c.notNull())
      .addColumn('flavor', 'varchar(64)')
      .addColumn('chassis', 'varchar(128)')
      .addColumn('console_port', 'integer')
      .addColumn('state', 'varchar(16)', (c) => c.notNull())
      .addColumn('session_id', 'integer', (c) => c.references('sessions.id'))
      .addColumn('used_count', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('retired', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('changed_at', 'bigint', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('failed_by', 'integer', (c) => c.references('projects.id'))
      .addColumn('lease_owner', 'varchar(64)')
      .addColumn('lease_until', 'bigint')
      .execute();
    // Allocation reads ready nodes of a pool, least used first.
    await db.schema.createIndex('nodes_pick').on('nodes').columns(['pool', 'state', 'used_count', 'id']).execute();
    await db.schema.createIndex('nodes_session').on('nodes').column('session_id').execute();
    await db.schema.createIndex('nodes_state').on('nodes').columns(['state', 'lease_until']).execute();

    await db.schema
      .createTable('session_nodes')
      .addColumn('session_id', 'integer', (c) => c.notNull().references('sessions.id'))
      .addColumn('node_id', 'integer', (c) => c.notNull().references('nodes.id'))
      .addColumn('added_at', 'bigint', (c) => c.notNull())
      .addColumn('released_at', 'bigint')
      .addColumn('release_reason', 'text')
      .execute();
    await db.schema.createIndex('session_nodes_session').on('session_nodes').columns(['session_id', 'node_id']).execute();
  },
});

/** Issue 5: command pools, contextualization, holds that end, and the event history. */
const machines = (dialect: Dialect): Migration => ({
  async up(db: Kysely<unknown>) {
    const nodes = () => db.schema.alterTable('nodes');
    await nodes().addColumn('ssh_port', 'integer').execute();
    await nodes().addColumn('data', 'text').execute();
    await nodes().addColumn('contextualized', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await nodes().addColumn('dynamic', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await nodes().addColumn('hold_until', 'bigint').execute();
    await nodes().addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.createIndex('nodes_hold').on('nodes').columns(['state', 'hold_until']).execute();

    await withId(db.schema.createTable('events'), dialect)
      .addColumn('at', 'bigint', (c) => c.notNull())
      .addColumn('subject', 'varchar(16)', (c) => c.notNull())
      .addColumn('node_id', 'integer')
      .addColumn('hostname', 'varchar(253)')
      .addColumn('pool', 'varchar(128)')
      .addColumn('session_id', 'integer')
      .addColumn('ssid', 'varchar(36)')
      .addColumn('project', 'varchar(128)')
      .addColumn('alias', 'varchar(128)')
      .addColumn('from_state', 'varchar(16)')
      .addColumn('to_state', 'varchar(16)')
      .addColumn('reason', 'text')
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('events_hostname').on('events').columns(['hostname', 'id']).execute();
    await db.schema.createIndex('events_ssid').on('events').columns(['ssid', 'id']).execute();
    await db.schema.createIndex('events_alias').on('events').columns(['alias', 'id']).execute();
    await db.schema.createIndex('events_at').on('events').column('at').execute();

    await withId(db.schema.createTable('provisions'), dialect)
      .addColumn('pool', 'varchar(128)', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addColumn('owner', 'varchar(64)', (c) => c.notNull())
      .addColumn('started_at', 'bigint', (c) => c.notNull())
      .addColumn('lease_until', 'bigint', (c) => c.notNull())
      .execute();
  },
});

/** Issue 9: one word per concept: a node a command pool made is `provisioned` (it was `dynamic`). */
const words: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('nodes').renameColumn('dynamic', 'provisioned').execute();
  },
};

/** Issue 12: usage reports read the node stays that overlap a range: those still going or released after its start. */
const usage: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.createIndex('session_nodes_released').on('session_nodes').columns(['released_at', 'added_at']).execute();
  },
};

/**
 * Issue 10: the waiting queue. One row per waiting `/Node/get`, owned by the server process that
 * holds its request under a lease it renews; a row whose lease lapsed is a dead server's and is
 * ignored, then deleted.
 */
const queue = (dialect: Dialect): Migration => ({
  async up(db: Kysely<unknown>) {
    await withId(db.schema.createTable('waiters'), dialect)
      .addColumn('project_id', 'integer', (c) => c.notNull().references('projects.id'))
      .addColumn('session_id', 'integer', (c) => c.references('sessions.id'))
      .addColumn('pool_set', 'varchar(1024)', (c) => c.notNull())
      .addColumn('count', 'integer', (c) => c.notNull())
      .addColumn('since', 'bigint', (c) => c.notNull())
      .addColumn('owner', 'varchar(64)', (c) => c.notNull())
      .addColumn('lease_until', 'bigint', (c) => c.notNull())
      .execute();
    // An immediate /Node/get asks whether anyone waits for its pools: one probe of this index.
    await db.schema.createIndex('waiters_pool_set').on('waiters').columns(['pool_set', 'lease_until']).execute();
  },
});

/**
 * Issue 11: session isolation hooks. A session keeps what its setup printed and where its teardown
 * is (with a lease, attempts and the next try); a node keeps the hook due for it (`attach` or
 * `detach`), the session that hook is for, and the state it goes to after its detach.
 */
const isolation: Migration = {
  async up(db: Kysely<unknown>) {
    const sessions = () => db.schema.alterTable('sessions');
    await sessions().addColumn('isolation', 'text').execute();
    await sessions().addColumn('teardown', 'varchar(8)').execute();
    await sessions().addColumn('teardown_attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await sessions().addColumn('teardown_at', 'bigint').execute();
    await sessions().addColumn('hook_owner', 'varchar(64)').execute();
    await sessions().addColumn('hook_until', 'bigint').execute();
    await db.schema.createIndex('sessions_teardown').on('sessions').columns(['teardown', 'teardown_at']).execute();
    const nodes = () => db.schema.alterTable('nodes');
    await nodes().addColumn('hook', 'varchar(8)').execute();
    await nodes().addColumn('hook_session', 'integer').execute();
    await nodes().addColumn('hook_to', 'varchar(16)').execute();
    await db.schema.createIndex('nodes_hook').on('nodes').columns(['hook', 'lease_until']).execute();
    await db.schema.createIndex('nodes_hook_session').on('nodes').column('hook_session').execute();
  },
};

/**
 * Issue 10: heartbeats. A session with a heartbeat ends when its deadline passes unpinged; the
 * reaper finds those by the index, which holds only the few sessions that have one.
 */
const heartbeat: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('sessions').addColumn('heartbeat_ms', 'bigint').execute();
    await db.schema.alterTable('sessions').addColumn('heartbeat_deadline', 'bigint').execute();
    await db.schema.createIndex('sessions_heartbeat').on('sessions').columns(['state', 'heartbeat_deadline']).where(sql.ref('heartbeat_deadline'), 'is not', null).execute();
  },
};

/**
 * Issue 16: indexes that hold only the rows their queries look for. Every index a write touches is
 * a page SQLite writes to its WAL at commit, and most rows leave these columns empty: a session
 * event has no hostname, most sessions no alias and no teardown, most nodes no hold and no hook.
 * Each query of these indexes compares the column with a value, which tells both engines that it
 * is not null, so the partial index still serves it. A session cycle (/Node/get and /Node/done)
 * writes 37 WAL pages instead of 48. On a database with a long history, rebuilding the event
 * indexes takes a few seconds at the first start.
 */
const PARTIAL_INDEXES: Array<{ name: string; table: string; columns: string[]; present: string }> = [
  { name: 'events_hostname', table: 'events', columns: ['hostname', 'id'], present: 'hostname' },
  { name: 'events_ssid', table: 'events', columns: ['ssid', 'id'], present: 'ssid' },
  { name: 'events_alias', table: 'events', columns: ['alias', 'id'], present: 'alias' },
  { name: 'sessions_project_alias', table: 'sessions', columns: ['project_id', 'alias', 'id'], present: 'alias' },
  { name: 'sessions_teardown', table: 'sessions', columns: ['teardown', 'teardown_at'], present: 'teardown' },
  { name: 'nodes_hold', table: 'nodes', columns: ['state', 'hold_until'], present: 'hold_until' },
  { name: 'nodes_hook', table: 'nodes', columns: ['hook', 'lease_until'], present: 'hook' },
  { name: 'nodes_hook_session', table: 'nodes', columns: ['hook_session'], present: 'hook_session' },
];

const leanIndexes: Migration = {
  async up(db: Kysely<unknown>) {
    for (const index of PARTIAL_INDEXES) {
      await db.schema.dropIndex(index.name).execute();
      await db.schema.createIndex(index.name).on(index.table).columns(index.columns).where(sql.ref(index.present), 'is not', null).execute();
    }
  },
};

export function migrationProvider(dialect: Dialect): MigrationProvider {
  return {
    getMigrations: async () => ({
      '0001_initial': initial(dialect),
      '0002_machines': machines(dialect),
      '0003_words': words,
      '0004_usage': usage,
      '0005_queue': queue(dialect),
      '0006_heartbeat': heartbeat,
      '0007_isolation': isolation,
      '0008_lean_indexes': leanIndexes,
    }),
  };
}
