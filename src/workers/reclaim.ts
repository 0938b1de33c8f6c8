/**
 * The reclaim worker: what happens to a node after use, a bounded number at once.
 *
 * - A static pool's node first has the SSH keys of its last project taken off (if it was
 *   contextualized), then is reinstalled or reset by the pool's `reclaim` command. Success returns
 *   it to `ready` (used count + 1); anything else, or a timeout, quarantines it as `failed` with
 *   the reason, so it never reaches the next project in an unknown state.
 * - A command pool's node is claimed the same way and handed to its deprovision (deprovision.ts).
 *
 * Work is claimed with a short lease that the worker renews while the work runs, so a crash
 * mid-reclaim is picked up again: at the next start of the same replica at once, or by any
 * replica once the lease lapses, within about a minute whatever the commands' timeouts.
 */
import type { Contextualizer, MachineOutcome, Node, Pool } from '../core/model.js';
import { runCommand, stderrDetail } from '../machines/command.js';
import { COMMAND_ENV } from '../api/env.js';
import { move, type NodeEvent } from '../core/lifecycle.js';
import type { Change, Storage } from '../core/storage.js';
import { deprovision, type ClaimedWork } from './deprovision.js';
import { BackgroundWorker } from './worker.js';

/**
 * How long a claim holds without renewal: what a dead owner's claims block capacity for. Its
 * owner renews it every third of that while the work runs (the commands' own timeouts end work
 * that hangs), so two renewals may fail in a row before another replica may take the node.
 */
export const LEASE_MS = 60_000;
const RENEW_EVERY_MS = LEASE_MS / 3;

export interface ReclaimDeps {
  store: Storage;
  clock: () => number;
  pools: () => ReadonlyMap<string, Pool>;
  /** How SSH keys are taken off nodes; null when the configuration does not contextualize. */
  contextualizer: () => Contextualizer | null;
  /** Who claims the work: unique per process. */
  owner: string;
  parallel: number;
  onError: (error: unknown) => void;
  /** Told of each node's aftercare that ended: reclaimed, quarantined, deprovisioned, or given up. */
  onFinished?: (node: Node, outcome: NodeEvent, reason: string | null) => void;
}

export class ReclaimWorker extends BackgroundWorker {
  private active = 0;
  /** What a deprovision gets from this worker's claim. */
  private readonly claimed: ClaimedWork;
  /** The nodes this worker holds claims on, renewed while their work runs. */
  private readonly held = new Set<Node>();
  private renewTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ReclaimDeps) {
    super(deps.onError);
    this.claimed = {
      store: deps.store,
      clock: deps.clock,
      owner: deps.owner,
      killers: this.killers,
      stopping: () => this.stopped,
      extendClaim: (node) => this.extendClaim(node),
      wakeAfter: (key, delayMs) => this.wakeAfter(key, delayMs),
      onDone: deps.onFinished,
    };
  }

  /** Claims nodes waiting for reclaim or deprovision, as many as `parallel` allows, and starts their work. */
  protected async pass(): Promise<void> {
    while (!this.stopped && this.active < this.deps.parallel) {
      const now = this.deps.clock();
      const claimed = await this.deps.store.transaction((tx) =>
        tx.reclaims.claim(this.deps.owner, now, now + LEASE_MS, this.deps.parallel - this.active),
      );
      if (claimed.length === 0) return;
      for (const node of claimed) {
        this.active++;
        this.hold(node);
        this.track(this.work(node), () => {
          this.active--;
          this.release(node);
        });
      }
    }
  }

  private hold(node: Node): void {
    this.held.add(node);
    this.renewTimer ??= setInterval(() => void this.renewClaims().catch(this.deps.onError), RENEW_EVERY_MS).unref();
  }

  private release(node: Node): void {
    this.held.delete(node);
    if (this.held.size === 0) {
      clearInterval(this.renewTimer);
      this.renewTimer = undefined;
    }
  }

  /**
   * Renews the lease of every claim this worker holds (run every RENEW_EVERY_MS; tests call it
   * after moving their clock). A claim found lost stays lost: its outcome will not be recorded.
   */
  async renewClaims(): Promise<void> {
    for (const node of [...this.held]) await this.extendClaim(node);
  }

  /** Extends this worker's claim on the node by a lease from now; false when the claim was lost. */
  private async extendClaim(node: Node): Promise<boolean> {
    const until = this.deps.clock() + LEASE_MS;
    return this.deps.store.transaction((tx) => tx.reclaims.extend(node.id, this.deps.owner, until));
  }

  private async work(node: Node): Promise<void> {
    const pool = this.deps.pools().get(node.pool);
    if (!pool) {
      // Its pool left the configuration, and with it the commands: the machine cannot be reset
      // (or destroyed), so it must not reach the next user. An operator returns it to service.
      await this.finish(node, { ok: false, reason: `pool ${node.pool} is no longer configured, so the node could not be reclaimed` });
      return;
    }
    if (pool.command) await deprovision(node, pool.command, this.claimed);
    else await this.reclaim(node, pool);
  }

  /** A static pool's node: the last project's SSH keys off, then the pool's reclaim command. */
  private async reclaim(node: Node, pool: Pool): Promise<void> {
    const contextualizer = node.contextualized ? this.deps.contextualizer() : null;
    if (!(await this.extendClaim(node))) return;
    if (node.contextualized) {
      const removed: MachineOutcome = contextualizer
        ? await contextualizer.remove(node)
        : { ok: false, reason: 'contextualize is no longer configured' };
      if (!removed.ok) {
        await this.finish(node, { ...removed, reason: `could not remove the SSH keys of the last project: ${removed.reason}` });
        return;
      }
      await this.deps.store.transaction((tx) => tx.reclaims.markKeysRemoved(node.id));
    }
    if (!pool.reclaim) {
      await this.finish(node, { ok: true, reason: null });
      return;
    }
    const result = await runCommand(
      {
        label: 'reclaim',
        argv: pool.reclaim,
        env: { [COMMAND_ENV.Hostname]: node.hostname, [COMMAND_ENV.Ip]: node.ip ?? '', [COMMAND_ENV.Pool]: node.pool },
        timeoutMs: pool.reclaimTimeoutMs,
      },
      this.killers,
    );
    await this.finish(node, result);
  }

  /** Records a static node's reclaim: `ready`, or `failed` with the reason. */
  private async finish(node: Node, result: MachineOutcome): Promise<void> {
    if (this.stopped && !result.ok) return; // killed by shutdown: leave it for the next start
    const change: Change = { at: this.deps.clock(), reason: result.reason ?? 'reclaimed', detail: stderrDetail(result) };
    const outcome = result.ok ? 'reclaim-succeeded' : 'reclaim-failed';
    const recorded = await this.deps.store.transaction((tx) => tx.reclaims.finish(node.id, this.deps.owner, move(outcome), change));
    if (recorded) this.deps.onFinished?.(node, outcome, result.reason);
  }
}
