/** Rows as the domain sees them: numbers for PostgreSQL's bigints, booleans for 0/1 flags. */
import type { Node, Session } from '../core/model.js';
import type { NodeRow, SessionRow } from './schema.js';

export function toSession(row: SessionRow): Session {
  return {
    id: Number(row.id),
    ssid: row.ssid,
    projectId: Number(row.project_id),
    alias: row.alias,
    state: row.state === 'active' ? 'active' : 'done',
    createdAt: Number(row.created_at),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    endedAt: row.ended_at === null ? null : Number(row.ended_at),
    endReason: row.end_reason,
    isolation: row.isolation === null ? null : (JSON.parse(row.isolation) as Record<string, unknown>),
    teardown: row.teardown,
    heartbeatMs: row.heartbeat_ms === null ? null : Number(row.heartbeat_ms),
    heartbeatDeadline: row.heartbeat_deadline === null ? null : Number(row.heartbeat_deadline),
  };
}

export function toNode(row: NodeRow): Node {
  return {
    id: Number(row.id),
    hostname: row.hostname,
    ip: row.ip,
    pool: row.pool,
    ver: row.ver,
    arch: row.arch,
    flavor: row.flavor,
    chassis: row.chassis,
    consolePort: row.console_port === null ? null : Number(row.console_port),
    state: row.state,
    sessionId: row.session_id === null ? null : Number(row.session_id),
    usedCount: Number(row.used_count),
    changedAt: Number(row.changed_at),
    reason: row.reason,
    sshPort: row.ssh_port === null ? null : Number(row.ssh_port),
    data: row.data === null ? null : (JSON.parse(row.data) as unknown),
    contextualized: Number(row.contextualized) === 1,
    attempts: Number(row.attempts),
  };
}
