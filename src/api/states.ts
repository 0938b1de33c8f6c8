/**
 * The states of nodes and sessions as the API names them (docs/api.md, "Node states"), with the
 * names the legacy unkeyed `/Inventory` used for node states.
 */

export const NODE_STATES = ['ready', 'deployed', 'reclaiming', 'failed', 'held', 'disabled'] as const;
export type NodeState = (typeof NODE_STATES)[number];

/** The names the legacy admin.ci inventory used for each state. */
export const LEGACY_STATE_NAMES: Record<NodeState, string> = {
  ready: 'Ready',
  deployed: 'Deployed',
  reclaiming: 'Deprovision',
  held: 'Fail',
  failed: 'Failed',
  disabled: 'Reserved',
};

export const SESSION_STATES = ['active', 'done'] as const;
export type SessionState = (typeof SESSION_STATES)[number];

/**
 * Why a session ended: its project ended it (`/Session/done`), its lifetime ran out, or its client
 * stopped pinging within its heartbeat (docs/api.md, "Heartbeats").
 */
export const END_REASONS = ['done', 'expired', 'heartbeat-lost'] as const;
export type EndReason = (typeof END_REASONS)[number];

/** The four moments an operator may hook, as events and metrics name them (docs/api.md, "Session isolation"). */
export type HookName = 'session-setup' | 'session-teardown' | 'node-attach' | 'node-detach';
