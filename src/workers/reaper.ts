/**
 * The reaper: ends sessions whose expiry has passed (end reason `expired`) and sends their nodes
 * to reclaim, ends sessions whose heartbeat deadline passed unpinged (`heartbeat-lost`, whatever
 * their expiry), and sends held nodes to reclaim when their hold ends (`fail-hold` after the
 * `/Node/fail`), whatever their session's lifetime, and drops events older than the event
 * retention. The ticker (ticker.ts) runs it every `reaper-interval`; sessions that never expire
 * are never reaped by time.
 */
import { NEVER, type Lifetime } from '../api/duration.js';
import type { Catalog } from '../core/catalog.js';
import type { Storage } from '../core/storage.js';

/** Sessions ended per transaction: big enough to reap thousands fast, small enough to keep locks short. */
const REAP_BATCH = 1000;

export interface ReaperDeps {
  store: Storage;
  /** The configuration in force: which pools' released nodes are ready at once. */
  catalog: () => Catalog;
  clock: () => number;
  /** How long events are kept (the configuration's `event-retention`). */
  eventRetention: () => Lifetime;
  /** Called after sessions were ended, so their nodes' reclaim starts at once. */
  wakeReclaim: () => void;
  onError: (error: unknown) => void;
}

export class Reaper {
  private running: Promise<number> | undefined;
  /** The pass asked for while another was under way. */
  private followUp: Promise<number> | undefined;
  private stopped = false;

  constructor(private readonly deps: ReaperDeps) {}

  /** Starts a pass unless one is under way; a failure goes to `onError`. */
  kick(): void {
    if (this.stopped || this.running) return;
    this.reapOnce().catch((error: unknown) => this.deps.onError(error));
  }

  /** Starts no more passes, and waits for one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
  }

  /**
   * Ends every session expired by now; returns how many. A pass under way read the clock before
   * this call, so a new pass follows it (callers asking meanwhile share that one).
   */
  reapOnce(): Promise<number> {
    if (!this.running) return this.startPass();
    this.followUp ??= this.running
      .catch(() => 0)
      .then(() => {
        this.followUp = undefined;
        if (this.stopped) return 0;
        return this.running ?? this.startPass();
      });
    return this.followUp;
  }

  private startPass(): Promise<number> {
    const pass: Promise<number> = this.reapAll().finally(() => {
      if (this.running === pass) this.running = undefined;
    });
    this.running = pass;
    return pass;
  }

  /** Ends expired sessions, then holds that are over; returns how many sessions it ended. */
  private async reapAll(): Promise<number> {
    const now = this.deps.clock();
    let total = 0;
    for (;;) {
      const ended = await this.deps.store.transaction((tx) => tx.sessions.expire(now, REAP_BATCH, this.deps.catalog().move('session-ended')));
      total += ended;
      if (ended < REAP_BATCH) break;
    }
    for (;;) {
      const lost = await this.deps.store.transaction((tx) => tx.sessions.loseHeartbeats(now, REAP_BATCH, this.deps.catalog().move('session-ended')));
      total += lost;
      if (lost < REAP_BATCH) break;
    }
    let released = 0;
    for (;;) {
      const ended = await this.deps.store.transaction((tx) => tx.nodes.endHolds(now, REAP_BATCH, this.deps.catalog().move('hold-ended')));
      released += ended;
      if (ended < REAP_BATCH) break;
    }
    if (total + released > 0) this.deps.wakeReclaim();
    const retention = this.deps.eventRetention();
    if (retention !== NEVER) await this.deps.store.transaction((tx) => tx.events.prune(now - retention));
    return total;
  }
}
