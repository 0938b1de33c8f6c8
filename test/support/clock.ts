/**
 * Test support: a clock the test drives. The server reads every time it decides on (session
 * expiry, fail holds, event retention, reclaim leases) from the clock it is given, so a test moves
 * this one on instead of waiting: time stands still until the test advances it.
 */
export class DrivenClock {
  private current: number;

  /** Starts at the real time by default, so dates in replies stay plausible. */
  constructor(start: number = Date.now()) {
    this.current = start;
  }

  /** The clock itself, to hand to the server (`startTestServer(spec, clock.now)`). */
  readonly now = (): number => this.current;

  /** Moves time on by `ms`. */
  advance(ms: number): void {
    if (ms < 0) throw new Error(`a driven clock only moves forward (asked for ${ms} ms)`);
    this.current += ms;
  }

  /** Moves time on to `at` (milliseconds since the epoch), which must not be in the past. */
  advanceTo(at: number): void {
    this.advance(at - this.current);
  }
}

/** What `reapNow` needs of a running test server. */
interface Reaped {
  server: { reaper: { reapOnce(): Promise<number> } };
}

/** Makes a reaper pass that reads the clock now (reapOnce starts one after any pass under way); returns how many sessions it ended. */
export async function reapNow(s: Reaped): Promise<number> {
  return s.server.reaper.reapOnce();
}
