/**
 * What the reclaim and fill workers share: a pass over the database that a kick starts (a kick
 * during a pass asks for one more after it), commands running beside the passes, wake-ups at the
 * end of a pause, and a stop that gives running commands a grace period, then kills them.
 */
export abstract class BackgroundWorker {
  protected stopped = false;
  /** Kill functions of the commands running now: runCommand adds and removes its own. */
  protected readonly killers = new Set<() => void>();
  private passing: Promise<void> | undefined;
  private again = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly wakeups = new Map<string, NodeJS.Timeout>();

  constructor(private readonly reportError: (error: unknown) => void) {}

  /** One look at the work to start; what it starts runs through `track`. */
  protected abstract pass(): Promise<void>;

  /** Looks for work now. */
  kick(): void {
    if (this.stopped) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.pass()
      .catch((error: unknown) => this.reportError(error))
      .finally(() => {
        this.passing = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Resolves when no pass and no tracked work is running. */
  async idle(): Promise<void> {
    while (this.passing || this.inFlight.size > 0) {
      await this.passing;
      await Promise.all([...this.inFlight]);
    }
  }

  /**
   * Stops starting work and waits up to `graceMs` for what runs; commands still running then are
   * killed, and their work is left for the next start (or for another replica).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    for (const timer of this.wakeups.values()) clearTimeout(timer);
    const settled = Promise.all([this.passing, ...this.inFlight]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    if ((await Promise.race([settled, timeout])) === 'timeout') for (const kill of this.killers) kill();
    clearTimeout(timer);
  }

  /** Runs `work` beside the passes; when it ends, `after` runs and another pass is asked for. */
  protected track(work: Promise<void>, after?: () => void): void {
    const tracked = work
      .catch((error: unknown) => this.reportError(error))
      .finally(() => {
        after?.();
        this.inFlight.delete(tracked);
        this.kick();
      });
    this.inFlight.add(tracked);
  }

  /** Kicks after `delayMs`; at most one wake-up is pending per `key`, however often it is asked. */
  protected wakeAfter(key: string, delayMs: number): void {
    if (this.wakeups.has(key)) return;
    const timer = setTimeout(() => {
      this.wakeups.delete(key);
      this.kick();
    }, delayMs);
    this.wakeups.set(key, timer);
  }
}
