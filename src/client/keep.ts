/**
 * Keeping a session with a heartbeat alive (docs/api.md, "Heartbeats"): ping it every third of its
 * heartbeat (or as often as asked) until stopped. `cinode session keep` and the GitHub Action's
 * keeper both run this loop. A ping that gets no answer, or a server error, is retried at the next
 * round (the session survives two missed rounds); a session that ended or is unknown ends the loop.
 */
import { parseDuration } from '../api/duration.js';
import { CinodeApiError } from './errors.js';
import type { SessionView } from './types.js';

/** Failures worth another try: the backend may be back by the next round. */
const TRANSIENT = new Set(['transport', 'server', 'rate-limit', 'capacity']);

export interface KeepOptions {
  ping: (ssid: string) => Promise<SessionView>;
  ssid: string;
  /** Milliseconds between pings; by default a third of the session's heartbeat. */
  everyMs?: number;
  /** Stops the loop: it then resolves at once, even during a ping. */
  signal: AbortSignal;
  /** Checked before every ping: false stops the loop (the action's keeper watches its runner). */
  stillWanted?: () => boolean;
  /** Told of each ping's answer, and of each transient failure (retried at the next round). */
  onPing?: (view: SessionView) => void;
  onTransientError?: (error: CinodeApiError) => void;
}

/** Why the loop stopped when it did not fail: the signal, or `stillWanted` said no more. */
export type KeepEnd = 'stopped' | 'unwanted';

/** How often to ping a session: a third of its heartbeat. */
export function pingInterval(view: SessionView): number | undefined {
  const heartbeat = view.heartbeat === null ? undefined : parseDuration(view.heartbeat);
  return heartbeat === undefined ? undefined : Math.floor(heartbeat / 3);
}

/**
 * Pings until stopped. Rejects with a CinodeApiError when the session ended (`not-active`, naming
 * its end reason), is unknown or the key refused, or has no heartbeat and no `everyMs` was given.
 */
export async function keepSession(options: KeepOptions): Promise<KeepEnd> {
  const { signal, ssid } = options;
  let everyMs = options.everyMs;
  while (!signal.aborted) {
    if (options.stillWanted && !options.stillWanted()) return 'unwanted';
    let view: SessionView | undefined;
    try {
      view = await untilAborted(options.ping(ssid), signal);
    } catch (error) {
      if (signal.aborted) break;
      if (!(error instanceof CinodeApiError) || !TRANSIENT.has(error.kind)) throw error;
      options.onTransientError?.(error);
    }
    if (view) {
      if (view.state !== 'active') {
        throw new CinodeApiError('not-active', `session ${view.ssid} ended (${view.end_reason ?? 'done'} at ${view.ended_at ?? 'an unknown time'}); nothing to keep alive`, {
          call: '/Session/ping',
        });
      }
      options.onPing?.(view);
      everyMs ??= pingInterval(view);
      if (everyMs === undefined) {
        throw new CinodeApiError('bad-request', `session ${view.ssid} has no heartbeat, so nothing ends it for silence; open it with a heartbeat, or give how often to ping`, {
          call: '/Session/ping',
        });
      }
    }
    // Before the first answer the interval is unknown: try again soon.
    await sleep(everyMs ?? 1_000, signal);
  }
  return 'stopped';
}

/** The promise, or nothing once `signal` aborts (the ping's answer no longer matters). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
