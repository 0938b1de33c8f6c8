/**
 * Retry with exponential backoff and full jitter, bounded by a total time budget. A failed request
 * changes nothing on the server (docs/api.md: every call is one transaction), so an answered failure
 * that may pass (5xx, 429, capacity) is always worth another try; an unanswered request may have
 * been carried out, so it is retried only for calls that are idempotent by design.
 */
import { CinodeAbortError, CinodeApiError } from './errors.js';

/** Sleeps `ms`; rejects (or resolves early) when `signal` aborts. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface RetryInfo {
  /** The attempt that just failed (1 for the first request). */
  attempt: number;
  /** How long the loop now waits before the next attempt. */
  waitMs: number;
  error: CinodeApiError;
}

export interface RetryOptions {
  /** Total budget in milliseconds: no wait ever ends past start + timeoutMs. */
  timeoutMs: number;
  /** The first backoff cap (doubles per attempt); default 1 s. */
  baseDelayMs?: number;
  /** The largest backoff cap; default 30 s. */
  maxDelayMs?: number;
  /** The shortest wait between attempts (so a jitter of 0 never spins); default 100 ms. */
  minDelayMs?: number;
  signal?: AbortSignal;
  onRetry?: (info: RetryInfo) => void;
  sleep?: Sleep;
  /** A number in [0, 1); Math.random by default. */
  random?: () => number;
  /** Milliseconds since the epoch; Date.now by default. */
  now?: () => number;
}

const DEFAULT_BASE_DELAY_MS = 1_000;
const DEFAULT_MAX_DELAY_MS = 30_000;
const DEFAULT_MIN_DELAY_MS = 100;

/** setTimeout as a promise that rejects with a CinodeAbortError when `signal` aborts. */
const defaultSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export function abortError(signal: AbortSignal, what = 'the call'): CinodeAbortError {
  const reason: unknown = signal.reason;
  const detail = reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : '';
  return new CinodeAbortError(`${what} was cancelled${detail}`, reason);
}

/**
 * Whether a failure is worth another try: any answered 5xx, 429 or capacity; an unanswered
 * request (`transport`) only when the call is idempotent and the failure may heal (a refused
 * connection may: the server restarts; a name that does not resolve or a TLS mismatch will not);
 * never any other 4xx or a 2xx whose body made no sense.
 */
export function isRetryable(error: CinodeApiError, idempotent: boolean): boolean {
  switch (error.kind) {
    case 'capacity':
    case 'rate-limit':
      return true;
    case 'server':
      return error.status !== undefined && error.status >= 500;
    case 'transport':
      return idempotent && !error.permanent;
    default:
      return false;
  }
}

/** Full jitter: a uniform wait in [0, min(max, base * 2^(attempt-1))). */
export function backoffDelay(attempt: number, random: () => number, baseDelayMs = DEFAULT_BASE_DELAY_MS, maxDelayMs = DEFAULT_MAX_DELAY_MS): number {
  const cap = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(random() * cap);
}

/** Resolves when `promise` does, rejects with a CinodeAbortError as soon as `signal` aborts. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, what?: string): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined); // its outcome no longer matters
    return Promise.reject(abortError(signal, what));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => undefined); // its outcome no longer matters
      reject(abortError(signal, what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Runs `attempt` until it succeeds, its error is not retryable, or the budget is spent; then
 * throws the last error (a CinodeApiError with `attempts` set). Waits honour the error's
 * `retryAfterMs` (when positive) instead of the backoff, but never past the budget: the last
 * attempt is made when the budget ends. An abort rejects with a CinodeAbortError at once.
 * `attempt` receives the attempt number and the time left in the budget.
 */
export async function withRetry<T>(
  attempt: (n: number, remainingMs: number) => Promise<T>,
  retryable: (error: CinodeApiError) => boolean,
  options: RetryOptions,
): Promise<T> {
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const { signal } = options;
  const deadline = now() + Math.max(0, options.timeoutMs);
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw abortError(signal);
    let error: CinodeApiError;
    try {
      return await attempt(n, Math.max(0, deadline - now()));
    } catch (caught) {
      if (!(caught instanceof CinodeApiError)) throw caught;
      error = caught;
    }
    error.attempts = n;
    const remaining = deadline - now();
    if (!retryable(error) || remaining <= 0) throw error;
    const wanted =
      error.retryAfterMs !== undefined && error.retryAfterMs > 0
        ? error.retryAfterMs
        : backoffDelay(n, random, options.baseDelayMs, options.maxDelayMs);
    const waitMs = Math.min(Math.max(wanted, options.minDelayMs ?? DEFAULT_MIN_DELAY_MS), remaining);
    options.onRetry?.({ attempt: n, waitMs, error });
    if (signal?.aborted) throw abortError(signal);
    await raceAbort(sleep(waitMs, signal), signal, `the call (waiting to retry after: ${error.message})`);
  }
}
