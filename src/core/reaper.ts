/**
 * The reaper: ends sessions whose expiry has passed (end reason `expired`) and sends their nodes
 * to reclaim, and sends held nodes to reclaim when their hold ends (`fail-hold` after the
 * `/Node/fail`), whatever their session's lifetime, and drops events older than the event
 * retention. It looks every `intervalMs`; sessions that never expire are never reaped by time.
 */
import type { Catalog } from './catalog.js';
import type { Storage } from './storage.js';
import { NEVER, type Lifetime } from '../api/duration.js';

/** Sessions ended per transaction: big enough to reap thousands fast, small enough to keep locks short. */
const REAP_BATCH = 1000;

export interface ReaperDeps {
  store: Storage;
  catalog: () => Catalog;
  clock: () => number;
  intervalMs: number;
  /** How long events are kept (the configuration's `event-retention`). */
  eventRetention: () => Lifetime;
  /** Called after sessions were ended, so their nodes' reclaim starts at once. */
  onRelease: () => void;
  onError: (error: unknown) => void;
}

export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(private readonly deps: ReaperDeps) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs);
    void this.tick();
  }

  /** Stops looking, and waits for a pass under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    try {
      await this.reapOnce();
    } catch (error) {
      this.deps.onError(error);
    }
  }

  /** Ends every session expired by now; returns how many. */
  reapOnce(): Promise<number> {
    if (this.running) return this.running;
    this.running = this.reapAll().finally(() => {
      this.running = undefined;
    });
    return this.running;
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
    let released = 0;
    for (;;) {
      const ended = await this.deps.store.transaction((tx) => tx.nodes.endHolds(now, REAP_BATCH, this.deps.catalog().move('hold-ended')));
      released += ended;
      if (ended < REAP_BATCH) break;
    }
    if (total + released > 0) this.deps.onRelease();
    const retention = this.deps.eventRetention();
    if (retention !== NEVER) await this.deps.store.transaction((tx) => tx.events.prune(now - retention));
    return total;
  }
}
