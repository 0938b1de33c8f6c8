/**
 * The isolation worker (docs/api.md, "Session isolation"): runs node-detach for every node that
 * left a session, then session-teardown for every session that ended once all its nodes detached,
 * retrying a failed teardown with backoff (10 s, doubling to at most 10 minutes, for at most a
 * day). Each run is claimed under a lease (store/isolation.ts), so two replicas never run the same
 * hook for the same event; a lease outlives the hook's timeout, which kills a hook that hangs.
 * Each pass first undoes the setups and attaches whose request's process died (their lease lapsed).
 */
import { move } from '../core/lifecycle.js';
import type { Catalog } from '../core/catalog.js';
import type { HookRunner, Node } from '../core/model.js';
import type { DueDetach, DueTeardown, Storage } from '../core/storage.js';
import { BackgroundWorker } from './worker.js';

/** The first retry of a failed teardown, doubled each time up to the most. */
export const TEARDOWN_FIRST_RETRY_MS = 10_000;
export const TEARDOWN_MAX_RETRY_MS = 10 * 60_000;
/** How long a failed teardown is retried before it is given up (`teardown: failed`). */
export const TEARDOWN_GIVE_UP_MS = 24 * 3_600_000;
/** How far past the hook timeout a claim reaches: the time to record the outcome. */
const LEASE_MARGIN_MS = 30_000;
/**
 * Without isolation configured nothing new becomes due; hooks left from before `isolation:` was
 * removed are still looked for, but only this often, so the database pays next to nothing.
 */
const IDLE_LOOK_MS = 60_000;

export interface IsolationWorkerDeps {
  store: Storage;
  catalog: () => Catalog;
  clock: () => number;
  hooks: HookRunner;
  timeoutMs: () => number;
  /** Who claims the work: unique per process. */
  owner: string;
  parallel: number;
  onError: (error: unknown) => void;
  /** A node's detach ended (it may now wait for reclaim). */
  onDetached?: (node: Node, ok: boolean) => void;
}

/** When a teardown that failed `attempts` times before (this one included) is tried again; null: given up. */
export function teardownRetryAt(now: number, endedAt: number, attempts: number): number | null {
  if (now - endedAt >= TEARDOWN_GIVE_UP_MS) return null;
  return now + Math.min(TEARDOWN_FIRST_RETRY_MS * 2 ** Math.min(attempts, 16), TEARDOWN_MAX_RETRY_MS);
}

export class IsolationWorker extends BackgroundWorker {
  private active = 0;
  private lastLook: number | undefined;

  constructor(private readonly deps: IsolationWorkerDeps) {
    super(deps.onError);
  }

  protected async pass(): Promise<void> {
    const { store, clock, owner } = this.deps;
    const catalog = this.deps.catalog();
    if (!catalog.isolated && this.lastLook !== undefined && clock() - this.lastLook < IDLE_LOOK_MS) return;
    this.lastLook = clock();
    // Whatever the configuration says now: these nodes were attached, so they detach first.
    const undone = move('allocation-undone', catalog.poolsWithoutAftercare, { isolate: true });
    const recovered = await store.transaction((tx) => tx.isolation.recoverLapsed(clock(), undone));
    while (!this.stopped && this.active < this.deps.parallel) {
      const now = clock();
      const until = now + this.deps.timeoutMs() + LEASE_MARGIN_MS;
      const room = this.deps.parallel - this.active;
      const detaches = await store.transaction((tx) => tx.isolation.claimDetaches(owner, now, until, room));
      const teardowns = detaches.length < room ? await store.transaction((tx) => tx.isolation.claimTeardowns(owner, now, until, room - detaches.length)) : [];
      if (detaches.length === 0 && teardowns.length === 0) break;
      for (const due of detaches) this.start(this.detach(due));
      for (const due of teardowns) this.start(this.teardown(due));
    }
    if (recovered > 0) this.kick();
  }

  private start(work: Promise<void>): void {
    this.active++;
    this.track(work, () => this.active--);
  }

  private async detach({ node, session, then }: DueDetach): Promise<void> {
    const outcome = await this.deps.hooks.run('node-detach', session, node);
    const now = this.deps.clock();
    const catalog = this.deps.catalog();
    const change = outcome.ok
      ? // A node on its way to quarantine keeps the reason it is quarantined for.
        { at: now, reason: then === 'failed' && node.reason ? node.reason : `node-detach succeeded (session ${session.ssid})` }
      : { at: now, reason: `node-detach failed (session ${session.ssid}): ${outcome.reason}`, detail: outcome.stderr.trim() || null };
    const finished = await this.deps.store.transaction((tx) =>
      tx.isolation.finishDetach(node.id, this.deps.owner, catalog.move(outcome.ok ? 'detached' : 'detach-failed'), change),
    );
    if (finished) this.deps.onDetached?.(node, outcome.ok);
  }

  private async teardown(due: DueTeardown): Promise<void> {
    const outcome = await this.deps.hooks.run('session-teardown', due.session);
    const now = this.deps.clock();
    const retryAt = outcome.ok ? null : teardownRetryAt(now, due.endedAt, due.attempts);
    const change = { at: now, reason: outcome.ok ? 'session-teardown succeeded' : `session-teardown failed: ${outcome.reason}` };
    await this.deps.store.transaction((tx) => tx.isolation.finishTeardown(due.id, this.deps.owner, { ok: outcome.ok, retryAt }, change));
    if (retryAt !== null) this.wakeAfter(`teardown-${due.id}`, Math.max(0, retryAt - now) + 50);
  }

  /** Runs a teardown an operator asked for now (`cinode admin session teardown`): a pass claims it. */
  retry(): void {
    this.kick();
  }
}
