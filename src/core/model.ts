/**
 * The allocation domain's vocabulary: projects, pools, sessions and nodes, with the node states of
 * docs/api.md ("Node states" and "Lifecycle") and their legacy names in the unkeyed inventory.
 */
import type { Lifetime } from '../api/duration.js';
import type { EndReason, HookName, NodeState, SessionState } from '../api/states.js';
import type { TeardownState } from '../api/types.js';

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
  /** The longest a `/Node/get` waits for capacity, whatever its `wait=` (docs/api.md, "Waiting for capacity"). */
  maxWaitMs: number;
  /** How long a `/Node/get` without `wait=` waits; 0: it answers at once. */
  defaultWaitMs: number;
  admin: boolean;
}

export interface Project {
  id: number;
  name: string;
  policy: ProjectPolicy;
  /** OpenSSH public keys put on each node the project is handed (contextualization); often none. */
  sshKeys: readonly string[];
}

/** How a `command` pool makes and destroys its machines, and how big it keeps itself. */
export interface CommandPoolSettings {
  /** argv asked for `CINODE_COUNT` new nodes; prints one JSON object per node on stdout. */
  provision: string[];
  /** argv that destroys one node, given the node's JSON on stdin. */
  deprovision: string[];
  commandTimeoutMs: number;
  /** The warm pool: how many ready nodes the pool keeps. */
  readyMin: number;
  /** The most nodes the pool holds in all, whatever their state. */
  maxNodes: number;
  /** The most nodes being provisioned at once. */
  maxParallel: number;
  /** Ready nodes older than this are replaced; null: kept however old. */
  maxReadyAgeMs: number | null;
}

export interface Pool {
  name: string;
  ver: string;
  arch: string;
  flavor: string | null;
  /** argv of the command that reinstalls or resets a released node; none: straight back to ready. */
  reclaim: string[] | null;
  reclaimTimeoutMs: number;
  /** The most nodes the pool can ever hold: the listed nodes (static), or `max-nodes` (command). */
  capacity: number;
  /**
   * The settings of a command pool (`mechanism: command`: nodes made and destroyed by commands,
   * never reused); null for a static one (listed nodes, reused after reclaim).
   */
  command: CommandPoolSettings | null;
}

/** The session a hook runs for: who holds it and what its setup said. */
export interface HookSession {
  ssid: string;
  project: string;
  alias: string | null;
  /** What session-setup printed; undefined for session-setup itself. */
  data?: Record<string, unknown>;
}

/** How a hook run ended; `data` is what session-setup printed last (setup only). */
export interface HookOutcome {
  ok: boolean;
  /** Why it failed: the last line of its stderr, a timeout, or output that is no JSON object. */
  reason: string | null;
  stderr: string;
  data?: Record<string, unknown>;
}

/** Runs the configured hooks (machines/hooks.ts); a hook that is not configured succeeds at once. */
export interface HookRunner {
  run(hook: HookName, session: HookSession, node?: Node): Promise<HookOutcome>;
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
  /** What session-setup printed; null for a session opened without isolation hooks. */
  isolation: Record<string, unknown> | null;
  /** Where session-teardown is; null without isolation hooks. */
  teardown: TeardownState | null;
  /** Milliseconds within which the session must hear from its client, or null (docs/api.md, "Heartbeats"). */
  heartbeatMs: number | null;
  /** When it ends unless pinged before; null without a heartbeat. */
  heartbeatDeadline: number | null;
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
  /** The port contextualization logs in on, when the node does not use the configured one. */
  sshPort: number | null;
  /** What the provision command said of the node (command pools), passed back to deprovision. */
  data: unknown;
  /** Whether a project's SSH keys were put on the node, so release must remove them first. */
  contextualized: boolean;
  /** Failed deprovision attempts in a row. */
  attempts: number;
}

/** What a step done to a machine came to: ok, or why not (with the command's stderr). */
export interface MachineOutcome {
  ok: boolean;
  reason: string | null;
  stderr?: string;
}

/** Puts a project's SSH keys on a node and takes them off again (over SSH, in the pools layer). */
export interface Contextualizer {
  install(node: Node, keys: readonly string[]): Promise<MachineOutcome>;
  remove(node: Node): Promise<MachineOutcome>;
  /** How long one install or removal may take at most. */
  timeoutMs: number;
}
