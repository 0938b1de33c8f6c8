/**
 * The waiting queue of one server process (docs/api.md, "Waiting for capacity"). Requests wait as
 * rows in the database (any replica sees them, in one order); this process holds the HTTP
 * requests of its own rows, renews their lease, and serves them when their turn comes.
 *
 * It serves on a wake: in-process when nodes become ready here (release, reclaim, fill, a request
 * leaving the queue), from the other replicas through the store's queue channel, and by a slow
 * poll that also renews the leases. Each pass reads the queue once, computes its order
 * (queue-order.ts) and tries the requests that may be served now; another replica's turn is
 * told over the channel.
 */
import { CinodeError } from './errors.js';
import { serveOrder, servableNow } from './queue-order.js';
import type { NewWaiter, Storage, Waiter } from './storage.js';

/** How long a row stays live without its owner renewing it: a dead process's rows lapse then. */
const DEFAULT_LEASE_MS = 15_000;
/** The slow poll: lease renewal, and a pass in case a wake-up was missed. */
const DEFAULT_POLL_MS = 3_000;

export interface QueueDeps {
  store: Storage;
  /** This process's name as owner of its rows; its replica's earlier lives share its prefix. */
  owner: string;
  /**
   * The real time, in milliseconds: leases are about processes being alive, so they follow the
   * wall clock, not the clock the allocation decisions read (which tests drive).
   */
  wallClock?: () => number;
  leaseMs?: number;
  pollMs?: number;
  onError: (error: unknown) => void;
  /**
   * Called at each poll for every session with a request waiting here: a waiting `/Node/get ssid=`
   * keeps its session alive (docs/api.md, "Heartbeats").
   */
  onStillWaiting?: (sessionId: number) => void;
}

/** What a waiting request tries when its turn may have come. */
export type Attempt<T> = (waiterId: number) => Promise<T>;

interface LocalWaiter {
  id: number;
  /** The session it adds to, null when it opens one. */
  sessionId: number | null;
  /** Tries to serve it; true when it left the queue (served or refused). */
  attempt(): Promise<boolean>;
}

export class WaitingQueue {
  private readonly local = new Map<number, LocalWaiter>();
  private readonly wallClock: () => number;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private poll: NodeJS.Timeout | undefined;
  private scheduled = false;
  private running: Promise<void> | undefined;
  private again = false;
  private tellOthers = false;
  private closed = false;
  private readonly ending = new Set<() => void>();
  /** Waits that ended and are taking their row out before they answer. */
  private readonly answering = new Set<Promise<void>>();

  constructor(private readonly deps: QueueDeps) {
    this.wallClock = deps.wallClock ?? Date.now;
    this.leaseMs = deps.leaseMs ?? DEFAULT_LEASE_MS;
    this.pollMs = deps.pollMs ?? DEFAULT_POLL_MS;
  }

  /** This process's name on its rows. */
  get owner(): string {
    return this.deps.owner;
  }

  /** The lease a row gets now. */
  leaseFromNow(): number {
    return this.wallClock() + this.leaseMs;
  }

  /** What "live" means for a row now. */
  now(): number {
    return this.wallClock();
  }

  /**
   * Nodes may have become ready, or the order changed: serve what can be served. `tellOthers`:
   * the cause is in this process, so other replicas' waiting requests may be served now too.
   */
  wake(tellOthers = true): void {
    if (this.closed) return;
    this.tellOthers ||= tellOthers;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.running = this.passes().finally(() => (this.running = undefined));
    });
  }

  /**
   * Puts a request in the queue and waits until `attempt` serves it (its value), refuses it (its
   * error), or the wait ends (`undefined`): after `waitMs`, when `signal` aborts (the client
   * left), or when the server closes. Its row is gone in every case.
   */
  async wait<T>(entry: Omit<NewWaiter, 'owner' | 'leaseUntil'>, ssid: string | null, waitMs: number, signal: AbortSignal | undefined, attempt: Attempt<T>): Promise<T | undefined> {
    if (this.closed || signal?.aborted) return undefined;
    const id = await this.deps.store.transaction((tx) => tx.queue.add({ ...entry, owner: this.deps.owner, leaseUntil: this.leaseFromNow() }));
    return new Promise<T | undefined>((resolve, reject) => {
      let busy = false;
      let over = false;
      let done = false;
      const finish = (left: boolean, settle: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', end);
        this.ending.delete(end);
        this.local.delete(id);
        if (this.local.size === 0) this.stopPolling();
        // A row still there belongs to a request that was not served: it is taken out before the
        // answer (whoever reads the queue after it sees the request gone), then the requests
        // behind it have their turn.
        const removed = left ? Promise.resolve() : this.deps.store.transaction((tx) => tx.queue.remove(id));
        const answered = removed.catch(this.deps.onError).finally(() => {
          settle();
          this.answering.delete(answered);
          this.wake();
        });
        this.answering.add(answered);
      };
      // The wait is over: unless an attempt is under way (its outcome answers), unserved.
      const end = () => {
        over = true;
        if (!busy) finish(false, () => resolve(undefined));
      };
      const timer = setTimeout(end, waitMs);
      signal?.addEventListener('abort', end, { once: true });
      this.ending.add(end);
      this.local.set(id, {
        id,
        sessionId: entry.sessionId,
        attempt: async () => {
          if (done) return true;
          busy = true;
          try {
            const served = await attempt(id);
            finish(true, () => resolve(served));
            return true;
          } catch (error) {
            if (error instanceof CinodeError && error.kind === 'capacity') return false;
            finish(false, () => reject(error));
            return true;
          } finally {
            busy = false;
            if (over) finish(false, () => resolve(undefined));
          }
        },
      });
      this.startPolling();
      this.wake();
    });
  }

  /** The live requests in the order the queue would serve them now (position 1 first). */
  async order(): Promise<Waiter[]> {
    return serveOrder(await this.deps.store.read().queue.list(this.now()));
  }

  /**
   * Ends every wait of this process unserved (the server is closing; later waits end at once) and
   * resolves once each has its answer, so the HTTP server is closed after they were sent (a
   * keep-alive connection that answers during the close would hold it open).
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const end of [...this.ending]) end();
    this.stopPolling();
    while (this.answering.size > 0) await Promise.all([...this.answering]);
  }

  private async passes(): Promise<void> {
    do {
      this.again = false;
      const tellOthers = this.tellOthers;
      this.tellOthers = false;
      try {
        await this.pass(tellOthers);
      } catch (error) {
        this.deps.onError(error);
      }
    } while (this.again && !this.closed);
  }

  /** Serves the requests of this process that may be served now, in order; tells the others of theirs. */
  private async pass(tellOthers: boolean): Promise<void> {
    const channel = this.deps.store.queueChannel;
    // Nobody waits here, and no other process can: nothing to read.
    if (this.local.size === 0 && (!tellOthers || channel === null)) return;
    for (;;) {
      const servable = servableNow(await this.order());
      let left = false;
      let othersTurn = false;
      for (const waiter of servable) {
        const mine = this.local.get(waiter.id);
        if (!mine) {
          othersTurn = true;
          continue;
        }
        if (await mine.attempt()) {
          left = true;
          break; // the order changed: read it again
        }
      }
      if (othersTurn && tellOthers && channel) {
        tellOthers = false;
        await channel.notify();
      }
      if (!left || this.closed) return;
    }
  }

  private startPolling(): void {
    if (this.poll || this.closed) return;
    this.poll = setInterval(() => void this.renew(), this.pollMs);
    this.poll.unref();
  }

  private stopPolling(): void {
    clearInterval(this.poll);
    this.poll = undefined;
  }

  /** Keeps this process's rows live, deletes the rows of dead ones, and looks at the queue once. */
  private async renew(): Promise<void> {
    try {
      const now = this.now();
      await this.deps.store.transaction(async (tx) => {
        await tx.queue.renew(this.deps.owner, now + this.leaseMs);
        await tx.queue.pruneLapsed(now);
      });
      for (const waiter of this.local.values()) if (waiter.sessionId !== null) this.deps.onStillWaiting?.(waiter.sessionId);
    } catch (error) {
      this.deps.onError(error);
    }
    this.wake(false);
  }
}
