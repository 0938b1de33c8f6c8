/**
 * What the allocation domain needs from storage, by concern. The store (src/store) implements it
 * for SQLite and PostgreSQL; core and the workers see only these interfaces. Every call of one
 * `transaction()` is all-or-nothing.
 */
import type { EventView } from '../api/types.js';
import type { NodeMove } from './lifecycle.js';
import type { EndReason, HookName, NodeState } from '../api/states.js';
import type { HookSession, Node, Session } from './model.js';

/** What a state change is about, for the event history. */
export interface Change {
  at: number;
  reason: string;
  /** The command's stderr that goes with it, if any. */
  detail?: string | null;
}

export interface NewSession {
  ssid: string;
  projectId: number;
  alias: string | null;
  createdAt: number;
  expiresAt: number | null;
  /** The session's heartbeat in milliseconds, or null for none. */
  heartbeatMs?: number | null;
}

/** A node with the ssid of the session holding it, as listings show it. */
export interface ListedNode extends Node {
  ssid: string | null;
}

/** A line of the event history: as the API shows it, with its id and the time in milliseconds. */
export type HistoryEvent = Omit<EventView, 'at'> & { id: number; at: number };

/** A node as the configuration declares it. */
export type NodeRecord = Pick<Node, 'hostname' | 'ip' | 'pool' | 'ver' | 'arch' | 'flavor' | 'chassis' | 'consolePort' | 'sshPort'>;

/** A project as the configuration declares it, its policy as JSON. */
export interface ProjectRecord {
  name: string;
  keyHash: string;
  policy: string;
}

/** A node a command pool's provision command made. */
export interface ProvisionedNode {
  hostname: string;
  ip: string;
  sshPort: number | null;
  data: unknown;
}

/** How many nodes a command pool has, as the fill worker needs to know. */
export interface PoolCounts {
  ready: number;
  /** Nodes of the pool that exist (any state), plus those being provisioned. */
  total: number;
  provisioning: number;
}

export interface SessionQueries {
  /**
   * Serializes the calls of one project (its quota and rate limit are read, then acted on), until
   * the transaction ends.
   */
  lockProject(projectId: number): Promise<void>;
  /**
   * A session of the project by ssid, else by alias (its active session, else its latest done
   * one). Inside a transaction it stays locked until the end, so nobody ends it meanwhile.
   */
  byRef(projectId: number, ref: string): Promise<Session | undefined>;
  /** The project's active session of that alias (locked like `byRef`). */
  activeByAlias(projectId: number, alias: string): Promise<Session | undefined>;
  insert(session: NewSession): Promise<Session>;
  /** Undoes a session a failed request opened: gone, as if never created. Its nodes left it already. */
  remove(sessionId: number, change: Change): Promise<void>;
  setExpiry(sessionId: number, expiresAt: number | null): Promise<void>;
  /** Ends a session; its nodes leave it by `release` (a `session-ended` move). */
  end(sessionId: number, reason: EndReason, now: number, release: NodeMove): Promise<void>;
  /** Ends up to `limit` sessions whose expiry has passed, each by exactly one caller; returns how many. */
  expire(now: number, limit: number, release: NodeMove): Promise<number>;
  /**
   * A ping: an active session with a heartbeat now ends no earlier than `now` + its heartbeat;
   * other sessions are left alone. Cheap (one UPDATE by primary key): calls that name a session
   * with a heartbeat make it inside their transaction, and so may a request waiting for capacity
   * for that session (docs/api.md, "Heartbeats").
   */
  ping(sessionId: number, now: number): Promise<void>;
  /** Ends up to `limit` sessions whose heartbeat deadline has passed (`heartbeat-lost`); returns how many. */
  loseHeartbeats(now: number, limit: number, release: NodeMove): Promise<number>;
  /** The project's active sessions, newest first. */
  active(projectId: number): Promise<Session[]>;
  /** How many sessions the project created since `since`, and when the oldest of them was. */
  createdSince(projectId: number, since: number): Promise<{ count: number; oldest: number | null }>;
  /** The earliest expiry among active sessions. */
  nextExpiry(): Promise<number | null>;
}

export interface NodeQueries {
  /** Up to `count` ready nodes of the pools, least used first, none that another caller is taking. */
  pickReady(pools: readonly string[], count: number): Promise<Node[]>;
  /** Puts ready nodes into a session (an `allocated` move). */
  assign(sessionId: number, nodeIds: readonly number[], now: number, allocated: NodeMove): Promise<void>;
  /** Moves nodes out of a session (release, quarantine, undo, disable); nodes not in it are left alone. */
  leave(sessionId: number, nodeIds: readonly number[], moved: NodeMove, change: Change): Promise<void>;
  /** Moves nodes that are in no session. */
  apply(nodeIds: readonly number[], moved: NodeMove, change: Change): Promise<void>;
  /** Keeps a session's deployed nodes for debugging (a `held` move with its end). */
  hold(sessionId: number, moved: NodeMove, change: Change): Promise<void>;
  /** Ends up to `limit` holds that are over (a `hold-ended` move); returns how many. */
  endHolds(now: number, limit: number, ended: NodeMove): Promise<number>;
  ofSession(sessionId: number): Promise<Node[]>;
  /** The nodes of several sessions, by session id. */
  ofSessions(sessionIds: readonly number[]): Promise<Map<number, Node[]>>;
  /** Nodes (deployed or held) in the project's active sessions: what the node quota counts. */
  countInUse(projectId: number): Promise<number>;
  /** The project's held nodes plus the nodes it reported broken that are still quarantined. */
  countFailedAndHeld(projectId: number): Promise<number>;
  /** `[hostname, ssid]` for every node in the project's active sessions. */
  projectInventory(projectId: number): Promise<Array<[string, string]>>;
  /** Nodes in service (not retired), optionally of one state, by id. */
  list(state?: NodeState): Promise<ListedNode[]>;
  /** A node by hostname, retired ones included (locked until the transaction ends). */
  byHostname(hostname: string): Promise<(ListedNode & { retired: boolean }) | undefined>;
  /** The ids of the pool's ready nodes unchanged since `before`, none that another caller is taking. */
  readySince(pool: string, before: number): Promise<number[]>;
}

/** Claims on nodes in `reclaiming`: each is worked on by one owner at a time, under a lease. */
export interface ReclaimQueries {
  /** Claims up to `limit` nodes whose earlier claim (if any) lapsed, for `owner` until `leaseUntil`. */
  claim(owner: string, now: number, leaseUntil: number, limit: number): Promise<Node[]>;
  /** Extends a claim `owner` still holds; false when it lapsed and was taken over. */
  extend(nodeId: number, owner: string, leaseUntil: number): Promise<boolean>;
  /** Applies the outcome of the claimed work; false when `owner` no longer holds the claim. */
  finish(nodeId: number, owner: string, outcome: NodeMove, change: Change): Promise<boolean>;
  /** Records that a node's SSH keys are off it (the rest of its reclaim may still fail). */
  markKeysRemoved(nodeId: number): Promise<void>;
  /**
   * Drops the claims of owners whose name starts with `ownerPrefix`: a replica's earlier lives,
   * at its start (their process is gone, so their work starts over at once).
   */
  dropClaimsOf(ownerPrefix: string): Promise<number>;
  /** Drops every claim and provision claim: for a database only this process uses, at start. */
  clearAll(): Promise<void>;
}

export interface ProvisionQueries {
  /** Serializes the fill decisions of one pool until the transaction ends. */
  lockPool(pool: string): Promise<void>;
  counts(pool: string, now: number): Promise<PoolCounts>;
  /** Claims `count` nodes' worth of provisioning for `owner`; returns the claim's id. */
  start(pool: string, count: number, owner: string, now: number, leaseUntil: number): Promise<number>;
  /**
   * Adds what a provision made as ready nodes of the pool and drops the claim. A hostname a live
   * node has is refused (returned).
   */
  finish(
    claimId: number,
    pool: { name: string; ver: string; arch: string; flavor: string | null },
    made: readonly ProvisionedNode[],
    change: Change,
  ): Promise<{ added: string[]; refused: string[] }>;
  /** Drops a claim whose command made nothing. */
  drop(claimId: number): Promise<void>;
}

export interface EventQueries {
  /** Records something that happened to a pool as a whole, such as a provision that failed. */
  recordPool(pool: string, change: Change): Promise<void>;
  /** Deletes the events older than `before`; returns how many. */
  prune(before: number): Promise<number>;
  /** The latest `limit` events, oldest first: of a node (hostname), of sessions (ssid or alias), or all. */
  list(filter: { hostname?: string; session?: string }, limit: number): Promise<HistoryEvent[]>;
}

/** How usage is grouped: per project, per project and alias, or per pool over all projects. */
export type UsageGrouping = 'project' | 'alias' | 'pool';

export interface UsageQuery {
  /** The range, in milliseconds: each node stay is clipped to it. */
  from: number;
  to: number;
  by: UsageGrouping;
  /** `by: 'alias'`: group aliases by their first `depth` `/`-separated parts (all of the alias when left out). */
  depth?: number;
  /** Where a stay that is still going ends for now. */
  now: number;
}

/** One group of node stays: its project, alias (prefix) or pool as the grouping has them. */
export interface UsageRow {
  project: string | null;
  alias: string | null;
  pool: string | null;
  sessions: number;
  /** Distinct nodes. */
  nodes: number;
  /** The stays' time within the range, in milliseconds. */
  nodeMs: number;
}

/** What operators' reports read: the state of things now, and node use over time. */
export interface ReportQueries {
  /** Nodes in service by pool and state (states without nodes left out). */
  nodeCounts(): Promise<Array<{ pool: string; state: NodeState; count: number }>>;
  /** Active sessions by project (projects without one left out). */
  activeSessionCounts(): Promise<Array<{ project: string; count: number }>>;
  /** Node time within a range from the sessions' node stays, grouped as asked. */
  usage(query: UsageQuery): Promise<UsageRow[]>;
  /** The active sessions of every project, newest first, with their project's name. */
  allActiveSessions(): Promise<Array<Session & { project: string }>>;
}

/** Bringing the database in line with the configuration. */
export interface CatalogQueries {
  /** Makes the projects match; returns name -> id. */
  syncProjects(projects: readonly ProjectRecord[]): Promise<Map<string, number>>;
  /** Makes the static nodes match: new ones ready, those that left retired (kept by a live session). */
  syncNodes(nodes: readonly NodeRecord[], now: number): Promise<void>;
}

/** A node whose node-detach is due, claimed, with the session it left. */
export interface DueDetach {
  node: Node;
  session: HookSession;
  /** The state it goes to once detached. */
  then: NodeState;
}

/** A session whose session-teardown is due, claimed: after its end and every node's detach. */
export interface DueTeardown {
  id: number;
  session: HookSession;
  /** Failed runs so far. */
  attempts: number;
  /** When it ended (or its setup failed): retries stop a day after. */
  endedAt: number;
}

/** One run of a hook, for the event history. */
export interface HookRun {
  at: number;
  hook: HookName;
  session: HookSession;
  node?: Node;
  ok: boolean;
  /** The exit status, a signal name, or null when it did not start. */
  exitStatus: number | string | null;
  durationMs: number;
  reason: string | null;
  stderrTail: string | null;
}

/**
 * Session isolation (docs/api.md, "Session isolation"): the states a hook run leaves while it runs
 * outside the transaction, and claims under leases so that each due hook has one runner.
 */
export interface IsolationQueries {
  /** A session whose session-setup runs now (hidden from every listing), under `owner`'s lease. */
  openForSetup(session: NewSession, owner: string, leaseUntil: number): Promise<Session>;
  /** Whether a session of the project with this alias is being set up now (its setup's lease holds). */
  aliasInSetup(projectId: number, alias: string, now: number): Promise<boolean>;
  extendSetup(sessionId: number, owner: string, leaseUntil: number): Promise<void>;
  extendAttach(nodeIds: readonly number[], owner: string, leaseUntil: number): Promise<void>;
  /** The setup succeeded: the session is active with its data; false when its lease lapsed and it was undone. */
  finishSetup(sessionId: number, owner: string, data: Record<string, unknown>, now: number): Promise<boolean>;
  /** A setup that failed or a request that opened it undone: its nodes leave by `undone`, and it waits for its teardown, then goes. */
  abandon(sessionId: number, undone: NodeMove, change: Change): Promise<void>;
  /** node-attach succeeded for those nodes `owner` still attaches; returns how many. */
  confirmAttached(nodeIds: readonly number[], owner: string, attached: NodeMove, change: Change): Promise<number>;
  /** Undoes the setups and attaches whose request's lease lapsed (its process died); returns how many. */
  recoverLapsed(now: number, undone: NodeMove): Promise<number>;
  claimDetaches(owner: string, now: number, leaseUntil: number, limit: number): Promise<DueDetach[]>;
  /** Applies the detach's outcome; false when `owner` no longer holds the claim. */
  finishDetach(nodeId: number, owner: string, outcome: NodeMove, change: Change): Promise<boolean>;
  claimTeardowns(owner: string, now: number, leaseUntil: number, limit: number): Promise<DueTeardown[]>;
  /** Done (a void session is deleted), retried at `retryAt`, or given up (`retryAt` null); false when the claim lapsed. */
  finishTeardown(sessionId: number, owner: string, outcome: { ok: boolean; retryAt: number | null }, change: Change): Promise<boolean>;
  /** An operator asks for the teardown of a done session again: due now. `active`: not ended yet; `not-isolated`: never set up. */
  retryTeardown(ssid: string, now: number): Promise<Session | 'active' | 'not-isolated' | undefined>;
  recordHook(run: HookRun): Promise<void>;
  /** Makes the leases of owners starting with `ownerPrefix` (null: every owner) lapse now: their process is gone. */
  dropLeasesOf(ownerPrefix: string | null): Promise<void>;
}

/** A `/Node/get` entering the waiting queue. */
export interface NewWaiter {
  projectId: number;
  sessionId: number | null;
  /** The pools that can serve it (`waiterPoolSet`). */
  poolSet: string;
  count: number;
  since: number;
  owner: string;
  leaseUntil: number;
}

/** A waiting `/Node/get` with what the queue's order needs to know of its project. */
export interface Waiter {
  id: number;
  projectId: number;
  project: string;
  ssid: string | null;
  poolSet: string;
  count: number;
  since: number;
  owner: string;
  /** Nodes the project holds now (what the node quota counts): fair share serves the fewest first. */
  held: number;
}

/**
 * The waiting queue (docs/api.md, "Waiting for capacity"): rows of live requests, each owned by a
 * server process under a lease; a row whose lease lapsed belongs to a dead process and counts for
 * nothing.
 */
export interface QueueQueries {
  add(waiter: NewWaiter): Promise<number>;
  /** Takes a request out of the queue (served, refused, gone); nothing when it is gone already. */
  remove(waiterId: number): Promise<void>;
  /** Every live request (lease not lapsed at `now`), by id. */
  list(now: number): Promise<Waiter[]>;
  /** Whether a live request waits for exactly this pool set: an immediate request must not overtake it. */
  waitingFor(poolSet: string, now: number): Promise<boolean>;
  /** Extends the lease of every request `owner` holds. */
  renew(owner: string, leaseUntil: number): Promise<void>;
  /** Deletes the requests whose lease lapsed before `now`; returns how many. */
  pruneLapsed(now: number): Promise<number>;
  /** Deletes the requests of owners whose name starts with `ownerPrefix`: a replica's earlier lives, at its start. */
  dropOf(ownerPrefix: string): Promise<number>;
  /** Deletes every request: for a database only this process uses, at start; returns how many. */
  clearAll(): Promise<number>;
  /** The ssids of the sessions that have a live request waiting (heartbeats count them alive). */
  sessionsWithWaiters(now: number): Promise<string[]>;
}

/** The queries of one transaction (or of a read outside one), by concern. */
export interface StorageTx {
  sessions: SessionQueries;
  nodes: NodeQueries;
  reclaims: ReclaimQueries;
  provisions: ProvisionQueries;
  events: EventQueries;
  catalog: CatalogQueries;
  reports: ReportQueries;
  isolation: IsolationQueries;
  queue: QueueQueries;
}

/** How the processes sharing a database tell each other that queued requests may be served now. */
export interface QueueChannel {
  /** Tells every listening process (this one included). */
  notify(): Promise<void>;
  /** Calls `onNotify` on each notice, over a dedicated connection kept open (reconnected) until the returned stop. */
  listen(onNotify: () => void, onError: (error: unknown) => void): Promise<() => Promise<void>>;
}

export interface Storage {
  /**
   * Runs `work` in one transaction: all it did is kept, or nothing. It may run again when the
   * database aborts it for a lock conflict, so `work` must act on the database only.
   */
  transaction<T>(work: (tx: StorageTx) => Promise<T>): Promise<T>;
  /** Read-only queries outside a transaction (nothing is locked). */
  read(): StorageTx;
  /** Whether only this process uses the database (SQLite), so claims a crash left can be dropped at start. */
  readonly exclusive: boolean;
  /**
   * Wakes the waiting queues of the other processes sharing the database (PostgreSQL NOTIFY);
   * null where one process owns the database.
   */
  readonly queueChannel: QueueChannel | null;
  close(): Promise<void>;
}
