/**
 * The allocation domain's vocabulary: projects, pools, sessions and nodes, with the node states of
 * SPEC.md section 4 and their legacy names in the unkeyed inventory.
 */
import type { Lifetime } from './duration.js';

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

export type SessionState = 'active' | 'done';
export type EndReason = 'done' | 'expired';

/** A project's limits and policy, resolved from the configuration's defaults and overrides. */
export interface ProjectPolicy {
  nodeQuota: number;
  sessionLifetimeMs: Lifetime;
  sessionLifetimeMaxMs: Lifetime;
  neverExpire: boolean;
  failHoldMs: number;
  maxFailedNodes: number;
  rateLimit: { sessions: number; windowMs: number };
  maxCount: number;
  admin: boolean;
}

export interface Project {
  id: number;
  name: string;
  policy: ProjectPolicy;
}

export interface Pool {
  name: string;
  ver: string;
  arch: string;
  flavor: string | null;
  /** argv of the command that reinstalls or resets a released node; none: straight back to ready. */
  reclaim: string[] | null;
  reclaimTimeoutMs: number;
  /** How many nodes the configuration lists for the pool: the most it can ever hold. */
  capacity: number;
}

export interface Session {
  id: number;
  ssid: string;
  projectId: number;
  alias: string | null;
  state: SessionState;
  createdAt: number;
  expiresAt: number | null;
  endedAt: number | null;
  endReason: EndReason | null;
}

export interface Node {
  id: number;
  hostname: string;
  ip: string | null;
  pool: string;
  ver: string;
  arch: string;
  flavor: string | null;
  chassis: string | null;
  consolePort: number | null;
  state: NodeState;
  sessionId: number | null;
  usedCount: number;
  changedAt: number;
  reason: string | null;
}
