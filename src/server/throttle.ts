/**
 * Failed-key throttling per client address (docs/api.md, "General rules"): an address that has
 * sent `failures` wrong keys within `windowMs` gets 429 with `Retry-After` for each further wrong
 * key until the oldest of them leaves the window. Only failures are counted and only failures are
 * refused, so a valid key is never slowed, even from an address that also sends wrong ones.
 */
export interface FailedKeyLimits {
  failures: number;
  windowMs: number;
}

export const DEFAULT_FAILED_KEY_LIMITS: FailedKeyLimits = { failures: 30, windowMs: 60_000 };

/** Addresses remembered at most; past it the least recently failing one is forgotten. */
const MAX_ADDRESSES = 10_000;

export class FailedKeyThrottle {
  /** Per address, the times of its failures within the window, oldest first. */
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limits: FailedKeyLimits,
    private readonly clock: () => number,
  ) {}

  /**
   * Records one failed key from `address`; returns the seconds to wait when the address is past
   * its allowance (the failure is then not counted: a throttled client cannot extend its own wait
   * beyond one window), else undefined.
   */
  fail(address: string): number | undefined {
    const now = this.clock();
    const since = now - this.limits.windowMs;
    const times = (this.failures.get(address) ?? []).filter((t) => t > since && t <= now);
    this.failures.delete(address); // re-inserted last: the Map's order is the eviction order
    if (times.length >= this.limits.failures) {
      this.failures.set(address, times);
      return Math.max(1, Math.ceil((times[0]! + this.limits.windowMs - now) / 1000));
    }
    times.push(now);
    this.failures.set(address, times);
    if (this.failures.size > MAX_ADDRESSES) this.failures.delete(this.failures.keys().next().value!);
    return undefined;
  }
}
