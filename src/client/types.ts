/**
 * The typed shapes of the cinode API as a client sees them (SPEC.md), and the errors a call can
 * end with. Shared by the GitHub Action and the `cinode` command; nothing here imports the server.
 */

export interface NodeGetParams {
  ver?: string;
  arch?: string;
  flavor?: string;
  count?: number;
  /** Adds the nodes to this live session (ssid or alias) instead of opening a new one. */
  ssid?: string;
}

export interface NodeGetResult {
  hosts: string[];
  ssid: string;
}

export interface SessionGetParams {
  alias?: string;
  /** A duration such as `6h`, or `never`. */
  lifetime?: string;
}

export interface SessionGetResult {
  ssid: string;
  alias: string | null;
  hosts: string[];
  expires_at: string | null;
  created: boolean;
}

export interface HostView {
  hostname: string;
  ip: string | null;
  state: string;
  ver: string;
  arch: string;
  flavor: string | null;
}

export interface SessionView {
  ssid: string;
  alias: string | null;
  state: 'active' | 'done';
  created_at: string;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  hosts: HostView[];
}

/** A keyed `/Inventory` row: `[hostname, ssid]`. */
export type KeyedInventoryRow = [hostname: string, ssid: string];

/** An unkeyed `/Inventory` row, the 14 legacy fields. */
export type InventoryRow = [
  id: number,
  hostname: string,
  ip: string | null,
  chassis: string | null,
  used_count: number,
  state: string,
  comment: string | null,
  distro: string | null,
  rel: string | null,
  ver: string,
  arch: string,
  pool: number,
  console_port: number | null,
  flavor: string | null,
];

/**
 * How a call failed. `transport` means no answer came (connection refused, reset, timed out);
 * the others are the server's answers of SPEC.md's error table.
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
