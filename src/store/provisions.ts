/**
 * Command pools' provisioning: claims on provisioning (so a pool's size and `max-parallel` hold
 * across replicas), the pool's counts, and the nodes a provision made.
 */
import type { Change, PoolCounts, ProvisionedNode, ProvisionQueries } from '../core/storage.js';
import type { QueryContext } from './context.js';
import type { History } from './history.js';
import { lockPool } from './locks.js';

export class ProvisionStore implements ProvisionQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly history: History,
  ) {}

  lockPool(pool: string): Promise<void> {
    return lockPool(this.ctx, pool);
  }

  /**
   * A command pool's ready nodes, all its nodes, and the nodes being provisioned (live claims
   * only), read in one statement: on PostgreSQL each statement sees the commits made before it
   * began, and a provision that finished between two statements (its claim gone, its nodes added)
   * would be in neither count, so the pool would provision past max-nodes.
   */
  async counts(pool: string, now: number): Promise<PoolCounts> {
    const row = await this.ctx.db
      .selectNoFrom((eb) => [
        eb.selectFrom('nodes').select(eb.fn.countAll<number>().as('n')).where('pool', '=', pool).where('retired', '=', 0).as('existing'),
        eb.selectFrom('nodes').select(eb.fn.countAll<number>().as('n')).where('pool', '=', pool).where('retired', '=', 0).where('state', '=', 'ready').as('ready'),
        eb.selectFrom('provisions').select((p) => p.fn.sum<number>('count').as('n')).where('pool', '=', pool).where('lease_until', '>', now).as('provisioning'),
      ])
      .executeTakeFirstOrThrow();
    const inFlight = Number(row.provisioning ?? 0);
    return { ready: Number(row.ready ?? 0), total: Number(row.existing ?? 0) + inFlight, provisioning: inFlight };
  }

  async start(pool: string, count: number, owner: string, now: number, leaseUntil: number): Promise<number> {
    const row = await this.ctx.db
      .insertInto('provisions')
      .values({ pool, count, owner, started_at: now, lease_until: leaseUntil })
      .returning('id')
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  /**
   * A hostname that an earlier, deprovisioned node of a command pool had takes over that row; one
   * that a live node has is refused.
   */
  async finish(
    claimId: number,
    pool: { name: string; ver: string; arch: string; flavor: string | null },
    made: readonly ProvisionedNode[],
    change: Change,
  ): Promise<{ added: string[]; refused: string[] }> {
    await this.drop(claimId);
    const added: Array<{ id: number; hostname: string; pool: string }> = [];
    const refused: string[] = [];
    for (const node of made) {
      const values = {
        ip: node.ip,
        pool: pool.name,
        ver: pool.ver,
        arch: pool.arch,
        flavor: pool.flavor,
        chassis: null,
        console_port: null,
        ssh_port: node.sshPort,
        data: node.data === undefined ? null : JSON.stringify(node.data),
        state: 'ready' as const,
        session_id: null,
        used_count: 0,
        retired: 0,
        provisioned: 1,
        contextualized: 0,
        attempts: 0,
        hold_until: null,
        failed_by: null,
        lease_owner: null,
        lease_until: null,
        changed_at: change.at,
        reason: change.reason,
      };
      const earlier = await this.ctx.db.selectFrom('nodes').select(['id', 'retired', 'provisioned']).where('hostname', '=', node.hostname).executeTakeFirst();
      if (earlier && !(Number(earlier.retired) === 1 && Number(earlier.provisioned) === 1)) {
        refused.push(node.hostname);
        continue;
      }
      if (earlier) {
        await this.ctx.db.updateTable('nodes').set(values).where('id', '=', earlier.id).execute();
        added.push({ id: Number(earlier.id), hostname: node.hostname, pool: pool.name });
      } else {
        const row = await this.ctx.db
          .insertInto('nodes')
          .values({ ...values, hostname: node.hostname })
          .returning(['id', 'hostname', 'pool'])
          .executeTakeFirstOrThrow();
        added.push(row);
      }
    }
    await this.history.nodesAdded(added, change);
    return { added: added.map((n) => n.hostname), refused };
  }

  async drop(claimId: number): Promise<void> {
    await this.ctx.db.deleteFrom('provisions').where('id', '=', claimId).execute();
  }
}
