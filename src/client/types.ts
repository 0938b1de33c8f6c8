/**
 * The typed shapes of the cinode API as a client sees them (docs/api.md), and the errors a call can
 * end with. Shared by the GitHub Action and the `cinode` command; nothing here imports the server.
 */

export type { HostView, PublicInventoryRow, KeyedInventoryRow, NodeGetResult, SessionGetResult, SessionView } from '../api/types.js';

export interface NodeGetParams {
  ver?: string;
  arch?: string;
  flavor?: string;
  count?: number;
  /** Adds the nodes to this live session (ssid or alias) instead of opening a new one. */
  ssid?: string;
  /**
   * How long the server may keep the request in its queue when too few nodes are ready (`wait=`,
   * a duration such as `10m`); the client waits for its answer that long (docs/api.md, "Waiting").
   */
  wait?: string;
}

export interface SessionGetParams {
  alias?: string;
  /** A duration such as `6h`, or `never`. */
  lifetime?: string;
  /** The session ends unless it hears from its client at least this often (`5m`; 10s to 1h). */
  heartbeat?: string;
}

/**
 * How a call failed. `transport` means no answer came (connection refused, reset, timed out);
 * the others are the server's answers of docs/api.md's error table.
 */
export type ApiErrorKind =
  | 'invalid-key' // 403 Invalid duffy key
  | 'invalid-session' // 403 Invalid session ID
  | 'bad-request' // 400: malformed parameter, no pool, count too large, node not in session
  | 'not-active' // 409 session is done
  | 'policy' // 403: quota, failed-node limit, lifetime=never not allowed
  | 'rate-limit' // 429
  | 'capacity' // 503 text/plain Insufficient Nodes in READY State
  | 'server' // other 5xx (database unavailable, internal error)
  | 'transport'; // no answer
