/**
 * What can go wrong in a call, as the allocation domain sees it. The server maps each kind to the
 * status and legacy body of docs/api.md; the core never speaks HTTP.
 */
import { INVALID_KEY_MESSAGE, INVALID_SESSION_MESSAGE } from '../api/messages.js';

export type CinodeErrorKind =
  | 'invalid-key' // 403 Invalid duffy key
  | 'bad-request' // 400, a malformed parameter
  | 'invalid-session' // 403 Invalid session ID
  | 'not-active' // 409 Session S is not active
  | 'node-not-in-session' // 400 Node H is not in session S
  | 'policy' // 403, a policy or quota forbids it
  | 'no-pool' // 400 No pool serves ...
  | 'count-too-large' // 400 count N exceeds ...
  | 'rate-limit' // 429 with Retry-After
  | 'capacity' // 503 Insufficient Nodes in READY State, with Retry-After
  | 'no-node' // 404, an operator named a node cinode does not have
  | 'wrong-state' // 409, an operator's change does not apply to the node's state
  | 'unavailable' // 503, the database cannot be reached
  | 'setup-failed'; // 503 Session setup failed: <last line of its stderr>

export class CinodeError extends Error {
  constructor(
    readonly kind: CinodeErrorKind,
    message: string,
    /** Seconds the caller should wait before trying again (rate limit, capacity). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'CinodeError';
  }
}

export function badRequest(message: string): CinodeError {
  return new CinodeError('bad-request', message);
}
export function invalidKey(): CinodeError {
  return new CinodeError('invalid-key', INVALID_KEY_MESSAGE);
}
export function invalidSession(): CinodeError {
  return new CinodeError('invalid-session', INVALID_SESSION_MESSAGE);
}
export function notActive(ssid: string): CinodeError {
  return new CinodeError('not-active', `Session ${ssid} is not active`);
}
