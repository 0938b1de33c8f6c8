/**
 * Table shapes as Kysely sees them. Times are integer milliseconds since the epoch and flags are
 * 0/1 integers, so that SQLite and PostgreSQL store them the same way.
 */
import type { Generated, Selectable } from 'kysely';
import type { EndReason, NodeState, SessionState } from '../api/states.js';
import type { TeardownState } from '../api/types.js';

export interface ProjectTable {
  id: Generated<number>;
  name: string;
  key_hash: string;
  /** The resolved policy as JSON: it is configuration, read whole, never queried by field. */
  policy: string;
  retired: number;
}

export interface SessionTable {
  id: Generated<number>;
  ssid: string;
  project_id: number;
  alias: string | null;
  /** `setup` (session-setup running) and `void` (setup failed: torn down, then deleted) are never shown. */
  state: SessionState | 'setup' | 'void';
  created_at: number;
  expires_at: number | null;
  ended_at: number | null;
  end_reason: EndReason | null;
  /** JSON of what session-setup printed; null without isolation hooks. */
  isolation: string | null;
  teardown: TeardownState | null;
  /** Failed teardown runs so far, and when the next may start. */
  teardown_attempts: Generated<number>;
  teardown_at: number | null;
  /** Who runs this session's setup or teardown, and until when its lease holds. */
  hook_owner: string | null;
  hook_until: number | null;
  /** The heartbeat the session was opened with, if any (docs/api.md, "Heartbeats"). */
  heartbeat_ms: number | null;
  /** When the session ends unless pinged: its last ping plus its heartbeat. */
  heartbeat_deadline: number | null;
}

export interface NodeTable {
  id: Generated<number>;
  hostname: string;
  ip: string | null;
  pool: string;
  ver: string;
  arch: string;
  flavor: string | null;
  chassis: string | null;
  console_port: number | null;
  state: NodeState;
  session_id: number | null;
  used_count: number;
  retired: number;
  changed_at: number;
  reason: string | null;
  /** The project that reported the node broken, while it stays quarantined for that. */
  failed_by: number | null;
  /** Which worker is reclaiming the node, and until when its claim holds. */
  lease_owner: string | null;
  lease_until: number | null;
  ssh_port: number | null;
  /** JSON of what the provision command said of the node (command pools). */
  data: string | null;
  /** 1 while a project's SSH keys are on the node: release must remove them before reuse. */
  contextualized: Generated<number>;
  /** 1 for a node a command pool provisioned: the configuration does not list it, and it is never reused. */
  provisioned: Generated<number>;
  /** When a held node's hold ends and it goes to reclaim. */
  hold_until: number | null;
  /** Failed deprovision attempts in a row, for the backoff and the give-up. */
  attempts: Generated<number>;
  /** The isolation hook due for the node (`attach` or `detach`), under the lease columns. */
  hook: 'attach' | 'detach' | null;
  /** The session that hook is for (a detaching node has left it). */
  hook_session: number | null;
  /** The state a detaching node goes to once node-detach ran. */
  hook_to: NodeState | null;
}

/** A `/Node/get` waiting for capacity (docs/api.md, "Waiting for capacity"). */
export interface WaiterTable {
  id: Generated<number>;
  project_id: number;
  session_id: number | null;
  /** The names of the pools that can serve it, sorted, comma-separated. */
  pool_set: string;
  count: number;
  since: number;
  /** The server process holding the request, and until when its lease holds. */
  owner: string;
  lease_until: number;
}

/** Every state change of a node or a session, and each command a pool ran that failed: the event history. */
export interface EventTable {
  id: Generated<number>;
  at: number;
  /** `node`, `session` or `pool` (a pool-wide happening, such as a failed provision). */
  subject: string;
  node_id: number | null;
  hostname: string | null;
  pool: string | null;
  session_id: number | null;
  ssid: string | null;
  project: string | null;
  alias: string | null;
  from_state: string | null;
  to_state: string | null;
  reason: string | null;
  /** Longer text that goes with the event: a command's stderr. */
  detail: string | null;
}

/** Provision commands running now, so the pool's size and `max-parallel` hold across replicas. */
export interface ProvisionTable {
  id: Generated<number>;
  pool: string;
  count: number;
  owner: string;
  started_at: number;
  /** A crashed replica's provision stops counting once this passes. */
  lease_until: number;
}

/** Which nodes a session held and when: the accounting history. */
export interface SessionNodeTable {
  session_id: number;
  node_id: number;
  added_at: number;
  released_at: number | null;
  release_reason: string | null;
}

export interface Database {
  projects: ProjectTable;
  sessions: SessionTable;
  nodes: NodeTable;
  session_nodes: SessionNodeTable;
  events: EventTable;
  provisions: ProvisionTable;
  waiters: WaiterTable;
}

export type SessionRow = Selectable<SessionTable>;
export type NodeRow = Selectable<NodeTable>;
