/**
 * The `cinode` command's exit codes: the one place that says which failure gets which code, and
 * the table `--help` prints.
 */
import type { ApiErrorKind } from '../client/index.js';

export const EXIT = {
  ok: { code: 0, meaning: 'success', kinds: [] },
  internal: { code: 1, meaning: 'an unexpected error in cinode itself', kinds: [] },
  badInput: {
    code: 2,
    meaning:
      'bad input: a usage error, a malformed parameter (bad-request), a session that is no longer active (not-active), or a hostname that names no node (admin, 404)',
    kinds: ['bad-request', 'not-active'],
  },
  auth: {
    code: 3,
    meaning:
      "refused: an invalid key (invalid-key), an unknown session (invalid-session), or policy (quota, fail-node limit, lifetime; admin: a key without admin: true, a node whose state does not allow the action)",
    kinds: ['invalid-key', 'invalid-session', 'policy'],
  },
  capacity: {
    code: 4,
    meaning: 'no capacity: not enough ready nodes, or the rate limit, still so when the --timeout retry budget ran out',
    kinds: ['capacity', 'rate-limit'],
  },
  transport: {
    code: 5,
    meaning: 'no answer from the backend, or a server error (5xx), still so when the --timeout retry budget ran out',
    kinds: ['transport', 'server'],
  },
} as const satisfies Record<string, { code: number; meaning: string; kinds: readonly ApiErrorKind[] }>;

/** The exit code of a call that failed with `kind`. */
export function exitCodeFor(kind: ApiErrorKind): number {
  for (const entry of Object.values(EXIT)) {
    if ((entry.kinds as readonly ApiErrorKind[]).includes(kind)) return entry.code;
  }
  return EXIT.internal.code;
}

/** The `Exit codes:` section of `--help`. */
export function exitCodeHelp(): string {
  const lines = Object.values(EXIT).map((entry) => `  ${entry.code}  ${entry.meaning}`);
  return `\nExit codes:\n${lines.join('\n')}\n`;
}
