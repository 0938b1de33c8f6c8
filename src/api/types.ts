/**
 * The wire contract of docs/api.md: the success bodies of the API, as the server writes them and the
 * client reads them. Types only, so both sides share them without sharing code.
 */
import type { SessionState } from './states.js';

export interface NodeGetResult {
  hosts: string[];
  ssid: string;
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
  state: SessionState;
  created_at: string;
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  hosts: HostView[];
  /** What session-setup printed (docs/api.md, "Session isolation"); null without isolation hooks. */
  isolation?: Record<string, unknown> | null;
  /** Where session-teardown is; null without isolation hooks. */
  teardown?: TeardownState | null;
  /** The session's `/Node/get ssid=` requests waiting for capacity; only while there is one. */
  waiting?: WaitingView[];
  /** The session's heartbeat as a duration (`5m`), or null (docs/api.md, "Heartbeats"). */
  heartbeat: string | null;
  /** When an active session with a heartbeat ends unless it hears from its client before. */
  heartbeat_deadline: string | null;
}

/** A `/Node/get` waiting for capacity (docs/api.md, "Waiting for capacity"). */
export interface WaitingView {
  count: number;
  /** When it started waiting (ISO 8601). */
  since: string;
  /** Its place in the order the queue would serve now: 1 is served next. */
  position: number;
}

/** A `/Queue` entry: with the session it adds to (null: it opens one), and to an admin key its project. */
export interface QueueEntryView extends WaitingView {
  ssid: string | null;
  project?: string;
}

/** `pending`: running or to be retried; `failed`: given up after a day; `done`. */
export type TeardownState = 'pending' | 'failed' | 'done';

/** A keyed `/Inventory` row: `[hostname, ssid]`. */
export type KeyedInventoryRow = [hostname: string, ssid: string];

/** An unkeyed (public) `/Inventory` row: the 14 legacy fields. */
export type PublicInventoryRow = [
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

/** A node as `/Admin/nodes` and the `/Admin/node/*` calls show it to an operator. */
export interface AdminNodeView {
  hostname: string;
  ip: string | null;
  pool: string;
  state: string;
  /** The ssid of the session holding it, if any. */
  ssid: string | null;
  ver: string;
  arch: string;
  flavor: string | null;
  used_count: number;
  changed_at: string;
  /** Why it is in its state: the reason of its last change. */
  reason: string | null;
}

/** A line of `/Admin/events`: a state change of a node or session, or a pool's failed command. */
export interface EventView {
  at: string;
  subject: 'node' | 'session' | 'pool' | 'hook';
  hostname: string | null;
  pool: string | null;
  ssid: string | null;
  project: string | null;
  alias: string | null;
  from: string | null;
  to: string | null;
  reason: string | null;
  /** A command's stderr that goes with the event. */
  detail: string | null;
}

/** A row of `/Admin/usage`: node time within the range, per project, project and alias, or pool. */
export interface UsageView {
  /** Left out when grouped by pool. */
  project?: string;
  /** Grouped by alias only: the alias, or its first `depth` parts; null for sessions without one. */
  alias?: string | null;
  /** Grouped by pool only. */
  pool?: string;
  sessions: number;
  /** Distinct nodes. */
  nodes: number;
  /** Not rounded. */
  node_hours: number;
}

/** An active session of any project, as `/Admin/sessions` shows it to an operator. */
export interface AdminSessionView {
  project: string;
  ssid: string;
  alias: string | null;
  created_at: string;
  expires_at: string | null;
  hosts: string[];
}

/** `/Admin/session/teardown`: the session whose teardown runs again, and where it is now. */
export interface TeardownView {
  ssid: string;
  teardown: TeardownState;
}
