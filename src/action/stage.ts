/**
 * What the three stages share: connecting the client with logged retries, and describing errors.
 */
import { refusalHint } from '../client/notes.js';
import type { RetryInfo } from '../client/retry.js';
import type { Connection } from './inputs.js';
import type { ActionClient, ActionDeps } from './ports.js';

/** The API client of one stage, plus what its retries have seen (the caller resets it per call). */
export interface StageClient {
  client: ActionClient;
  retries: RetryInfo[];
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

export function connect(deps: ActionDeps, connection: Connection, timeoutMs = connection.timeoutMs): StageClient {
  const retries: RetryInfo[] = [];
  const client = deps.createClient({
    url: connection.url,
    key: connection.key,
    keyInQuery: connection.keyInQuery,
    timeoutMs,
    signal: deps.signal,
    onRetry: (info) => {
      retries.push(info);
      const call = info.error.call ? `${info.error.call}: ` : '';
      // Waiting for capacity is the normal case of a busy pool: say so plainly, with the wait.
      deps.core.info(`${call}${info.error.message} (attempt ${info.attempt}); retrying in ${seconds(info.waitMs)}`);
    },
  });
  return { client, retries };
}

/** The `kind` of a CinodeApiError (or of a test's fake error), else undefined. */
export function errorKind(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'kind' in error) {
    const { kind } = error as { kind: unknown };
    return typeof kind === 'string' ? kind : undefined;
  }
  return undefined;
}

/** The error's message, with what to check when the server refused the key or the session. */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const hint = refusalHint(errorKind(error), 'action');
  return hint === undefined ? message : `${message} (${hint})`;
}

export function elapsed(deps: ActionDeps, since: number): string {
  return seconds(Math.max(0, deps.clock() - since));
}
