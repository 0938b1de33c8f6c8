/**
 * Claims on nodes in `reclaiming`: a worker claims a node under a lease, extends the lease while
 * its commands run, and records the outcome only while it still holds the claim. A crash
 * mid-reclaim leaves a claim that lapses within a lease (and is dropped at start where one process
 * owns the database, or by the same replica starting again), so the work is picked up again.
 */
import type { NodeMove } from '../core/lifecycle.js';
import type { Node } from '../core/model.js';
import type { Change, ReclaimQueries } from '../core/storage.js';
import type { QueryContext } from './context.js';
import type { NodeStore } from './nodes.js';
import { forChange, takeUnclaimed } from './locks.js';
import { toNode } from './rows.js';

export class ReclaimStore implements ReclaimQueries {
  constructor(
    private readonly ctx: QueryContext,
    private readonly nodes: NodeStore,
  ) {}

  async claim(owner: string, now: number, leaseUntil: number, limit: number): Promise<Node[]> {
    const query = this.ctx.db
      .selectFrom('nodes')
      .select('id')
      .where('state', '=', 'reclaiming')
      // A node detaching from its session's network waits for that first (workers/isolation.ts).
      .where('hook', 'is', null)
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      // A retired node of a command pool is gone for good; a retired static node is still reset.
      .where((eb) => eb.or([eb('retired', '=', 0), eb('provisioned', '=', 0)]))
      .orderBy('changed_at')
      .orderBy('id')
      .limit(limit);
    const candidates = await takeUnclaimed(this.ctx, query).execute();
    if (candidates.length === 0) return [];
    const rows = await this.ctx.db
      .updateTable('nodes')
      .set({ lease_owner: owner, lease_until: leaseUntil })
      .where(
        'id',
        'in',
        candidates.map((c) => c.id),
      )
      .where('state', '=', 'reclaiming')
      .where('hook', 'is', null)
      .returningAll()
      .execute();
    return rows.map(toNode);
  }

  async extend(nodeId: number, owner: string, leaseUntil: number): Promise<boolean> {
    const result = await this.ctx.db
      .updateTable('nodes')
      .set({ lease_until: leaseUntil })
      .where('id', '=', nodeId)
      .where('state', '=', 'reclaiming')
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async finish(nodeId: number, owner: string, outcome: NodeMove, change: Change): Promise<boolean> {
    if (!(await this.holdsClaim(nodeId, owner))) return false;
    await this.nodes.apply([nodeId], outcome, change);
    return true;
  }

  /** Whether `owner` still holds the claim on the node (locked until commit, on PostgreSQL). */
  private async holdsClaim(nodeId: number, owner: string): Promise<boolean> {
    const query = this.ctx.db.selectFrom('nodes').select('id').where('id', '=', nodeId).where('state', '=', 'reclaiming').where('lease_owner', '=', owner);
    return (await forChange(this.ctx, query).executeTakeFirst()) !== undefined;
  }

  async markKeysRemoved(nodeId: number): Promise<void> {
    await this.ctx.db.updateTable('nodes').set({ contextualized: 0 }).where('id', '=', nodeId).execute();
  }

  async dropClaimsOf(ownerPrefix: string): Promise<number> {
    const result = await this.ctx.db
      .updateTable('nodes')
      .set({ lease_owner: null, lease_until: null })
      .where('state', '=', 'reclaiming')
      .where((eb) => eb(eb.fn('substr', ['lease_owner', eb.val(1), eb.val(ownerPrefix.length)]), '=', ownerPrefix))
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async clearAll(): Promise<void> {
    await this.ctx.db.updateTable('nodes').set({ lease_owner: null, lease_until: null }).where('state', '=', 'reclaiming').execute();
    await this.ctx.db.deleteFrom('provisions').execute();
  }
}
