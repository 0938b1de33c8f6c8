/**
 * Bringing the database in line with the configuration, at start and on reload: projects, and the
 * nodes of static pools (a command pool's nodes are not in the file: the pool owns them).
 */
import type { CatalogQueries, NodeRecord, ProjectRecord } from '../core/storage.js';
import { chunks, type QueryContext } from './context.js';
import type { History } from './history.js';
import { lockCatalog } from './locks.js';

export class CatalogStore implements CatalogQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
  ) {}

  /** Makes the projects table match the configuration; returns name -> id. */
  async syncProjects(projects: readonly ProjectRecord[]): Promise<Map<string, number>> {
    await lockCatalog(this.ctx);
    const existing = await this.ctx.db.selectFrom('projects').select(['id', 'name']).execute();
    const ids = new Map(existing.map((p) => [p.name, Number(p.id)]));
    for (const p of projects) {
      const id = ids.get(p.name);
      if (id === undefined) {
        const row = await this.ctx.db
          .insertInto('projects')
          .values({ name: p.name, key_hash: p.keyHash, policy: p.policy, retired: 0 })
          .returning('id')
          .executeTakeFirstOrThrow();
        ids.set(p.name, Number(row.id));
      } else {
        await this.ctx.db.updateTable('projects').set({ key_hash: p.keyHash, policy: p.policy, retired: 0 }).where('id', '=', id).execute();
      }
    }
    const wanted = new Set(projects.map((p) => p.name));
    const gone = existing.filter((p) => !wanted.has(p.name)).map((p) => Number(p.id));
    for (const chunk of chunks(gone)) {
      await this.ctx.db.updateTable('projects').set({ retired: 1 }).where('id', 'in', chunk).execute();
    }
    for (const name of ids.keys()) if (!wanted.has(name)) ids.delete(name);
    return ids;
  }

  /**
   * Makes the nodes table match the configured inventory. New nodes start ready; a node that left
   * the file is retired (never handed out again, left out of the inventory) but keeps its state,
   * so a live session that holds it loses nothing and it comes back if the file lists it again.
   */
  async syncNodes(nodes: readonly NodeRecord[], now: number): Promise<void> {
    await lockCatalog(this.ctx);
    // Nodes a command pool made are not in the file: the pool, not the configuration, owns them.
    const existing = await this.ctx.db
      .selectFrom('nodes')
      .select(['id', 'hostname', 'ip', 'pool', 'ver', 'arch', 'flavor', 'chassis', 'console_port', 'ssh_port', 'retired'])
      .where('provisioned', '=', 0)
      .execute();
    const byHostname = new Map(existing.map((n) => [n.hostname, n]));
    const added = [];
    for (const n of nodes) {
      const values = {
        ip: n.ip,
        pool: n.pool,
        ver: n.ver,
        arch: n.arch,
        flavor: n.flavor,
        chassis: n.chassis,
        console_port: n.consolePort,
        ssh_port: n.sshPort,
        retired: 0,
      };
      const row = byHostname.get(n.hostname);
      if (row === undefined) {
        added.push({ ...values, hostname: n.hostname, state: 'ready' as const, used_count: 0, changed_at: now, reason: 'added by configuration' });
      } else if (
        row.ip !== values.ip ||
        row.pool !== values.pool ||
        row.ver !== values.ver ||
        row.arch !== values.arch ||
        row.flavor !== values.flavor ||
        row.chassis !== values.chassis ||
        (row.console_port === null ? null : Number(row.console_port)) !== values.console_port ||
        (row.ssh_port === null ? null : Number(row.ssh_port)) !== values.ssh_port ||
        Number(row.retired) !== 0
      ) {
        await this.ctx.db.updateTable('nodes').set(values).where('id', '=', row.id).execute();
      }
    }
    // Many rows a statement (14 values a row: far below SQLite's and PostgreSQL's bound-value limits).
    for (let i = 0; i < added.length; i += 200) {
      const rows = await this.ctx.db
        .insertInto('nodes')
        .values(added.slice(i, i + 200))
        .returning(['id', 'hostname', 'pool'])
        .execute();
      await this.history.nodesAdded(rows, { at: now, reason: 'added by configuration' });
    }
    const wanted = new Set(nodes.map((n) => n.hostname));
    const gone = existing.filter((n) => !wanted.has(n.hostname)).map((n) => Number(n.id));
    for (const chunk of chunks(gone)) {
      await this.ctx.db.updateTable('nodes').set({ retired: 1 }).where('id', 'in', chunk).execute();
    }
  }
}
