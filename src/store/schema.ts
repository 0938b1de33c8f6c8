/**
 * Table shapes as Kysely sees them. Times are integer milliseconds since the epoch and flags are
 * 0/1 integers, so that SQLite and PostgreSQL store them the same way.
 */
import type { Generated, Selectable } from 'kysely';

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
  state: string;
  created_at: number;
  expires_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
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
  state: string;
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
}

export type ProjectRow = Selectable<ProjectTable>;
export type SessionRow = Selectable<SessionTable>;
export type NodeRow = Selectable<NodeTable>;
