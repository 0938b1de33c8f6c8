/**
 * The one clock of background work: every `reaper-interval` it runs each periodic task, and once
 * at start. Tasks only start work (reaper pass, reclaim and fill passes) and report their own
 * failures, so a tick never throws and a slow task never delays the others.
 *
 * Why each task ticks: the reaper ends expired sessions and holds; the reclaim worker finds claims
 * that lapsed (another replica died mid-way); the fill worker sees ready nodes age and other
 * replicas allocate from its pools.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly tasks: ReadonlyArray<() => void>,
  ) {}

  /** Runs every task now, then every interval until `stop`. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.tick();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    for (const task of this.tasks) task();
  }
}
