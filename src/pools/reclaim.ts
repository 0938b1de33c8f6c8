/**
 * The reclaim worker: a released node is reinstalled or reset by its pool's `reclaim` command,
 * a bounded number at once. Exit 0 returns it to `ready` (used count + 1); anything else, or a
 * timeout, quarantines it as `failed` with the reason. A pool without a command returns its
 * nodes to `ready` at once. Work is claimed with a lease, so a crash mid-reclaim is picked up
 * again (at the next start, or by another replica once the lease lapses).
 */
import type { Node, Pool } from '../core/model.js';
import type { Store } from '../store/store.js';
import { runCommand } from './command.js';

/**
 * How long a claim holds: long enough to record an outcome at once. Before a pool's command runs,
 * the claim is extended to the command's timeout plus this, so each node's claim fits its own pool.
 */
const LEASE_GRACE_MS = 60_000;

export interface ReclaimDeps {
  store: Store;
  clock: () => number;
  pools: () => ReadonlyMap<string, Pool>;
  /** Who claims the work: unique per process. */
  owner: string;
  parallel: number;
  onError: (error: unknown) => void;
  onReclaimed?: (node: Node, ok: boolean, reason: string | null) => void;
}

export class ReclaimWorker {
  private active = 0;
  private draining: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly killers = new Set<() => void>();

  constructor(private readonly deps: ReclaimDeps) {}

  /** Looks for nodes to reclaim now (after a release, and on every reaper tick). */
  kick(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain()
      .catch((error: unknown) => this.deps.onError(error))
      .finally(() => {
        this.draining = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Resolves when no reclaim is running or waiting to be claimed by this worker. */
  async idle(): Promise<void> {
    while (this.draining || this.inFlight.size > 0) {
      await this.draining;
      await Promise.all([...this.inFlight]);
    }
  }

  /**
   * Stops claiming work and waits up to `graceMs` for running commands; those still running are
   * killed and their nodes stay `reclaiming`, to be picked up again at the next start.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    const settled = Promise.all([this.draining, ...this.inFlight]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    if ((await Promise.race([settled, timeout])) === 'timeout') for (const kill of this.killers) kill();
    clearTimeout(timer);
  }

  private async drain(): Promise<void> {
    while (!this.stopped && this.active < this.deps.parallel) {
      const now = this.deps.clock();
      const claimed = await this.deps.store.transaction((tx) =>
        tx.claimReclaim(this.deps.owner, now, now + LEASE_GRACE_MS, this.deps.parallel - this.active),
      );
      if (claimed.length === 0) return;
      for (const node of claimed) {
        this.active++;
        const work = this.reclaim(node)
          .catch((error: unknown) => this.deps.onError(error))
          .finally(() => {
            this.active--;
            this.inFlight.delete(work);
            this.kick();
          });
        this.inFlight.add(work);
      }
    }
  }

  private async reclaim(node: Node): Promise<void> {
    const pool = this.deps.pools().get(node.pool);
    let ok = true;
    let reason: string | null = null;
    if (!pool) {
      // Its pool left the configuration, and with it the reclaim command: the machine cannot be
      // reset, so it must not reach the next user. An operator returns it to service.
      ok = false;
      reason = `pool ${node.pool} is no longer configured, so the node could not be reclaimed`;
    } else if (pool.reclaim) {
      const until = this.deps.clock() + pool.reclaimTimeoutMs + LEASE_GRACE_MS;
      const stillOurs = await this.deps.store.transaction((tx) => tx.extendReclaimLease(node.id, this.deps.owner, until));
      if (!stillOurs) return;
      const result = await runCommand(
        {
          label: 'reclaim',
          argv: pool.reclaim,
          env: { CINODE_HOSTNAME: node.hostname, CINODE_IP: node.ip ?? '', CINODE_POOL: node.pool },
          timeoutMs: pool.reclaimTimeoutMs,
        },
        this.killers,
      );
      ok = result.ok;
      reason = result.reason;
    }
    if (this.stopped && !ok) return; // killed by shutdown: leave it for the next start
    const now = this.deps.clock();
    const recorded = await this.deps.store.transaction((tx) => tx.finishReclaim(node.id, this.deps.owner, ok, now, reason ?? 'reclaimed'));
    if (recorded) this.deps.onReclaimed?.(node, ok, reason);
  }
}
