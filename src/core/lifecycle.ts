/**
 * The node lifecycle: for each event that moves a node, the states it may start from, the state it
 * leads to for each kind of aftercare its pool gives, and what it clears. This table is the one
 * place that decides where a node goes next (docs/api.md, "Lifecycle"); the store applies the
 * moves it describes and never decides. docs/architecture.md walks through it.
 */
import type { NodeState } from '../api/states.js';

/**
 * What a node needs after a project used it, decided by its pool and by the node itself:
 * - `none`: a static pool without a reclaim command, and no project keys on the node: it is ready
 *   again at once;
 * - `reclaim`: a static pool's reclaim command resets it (and any project keys are taken off);
 * - `deprovision`: a command pool's node is never reused: its machine is destroyed.
 */
export type Aftercare = 'none' | 'reclaim' | 'deprovision';
export const AFTERCARES: readonly Aftercare[] = ['none', 'reclaim', 'deprovision'];

/** What a node carries besides its state, which a move may clear. */
export type NodeMark =
  /** its session (the node leaves it) */
  | 'session'
  /** a reclaim or deprovision claim: its owner and lease */
  | 'claim'
  /** the end of a debugging hold */
  | 'hold'
  /** failed deprovision attempts in a row */
  | 'attempts'
  /** the project that reported it broken (counted against that project while quarantined) */
  | 'reporter'
  /** the flag saying a project's SSH keys are on it */
  | 'keys'
  /** a node-attach hook that the request which put it into its session is running */
  | 'attach'
  /** a node-detach hook that is due: the session it left, and the state it goes to after */
  | 'detach';

/**
 * Where a node waits for its detach hook: it has left its session and is not ready, so it shows as
 * being reset (docs/api.md, "Session isolation"). A node being attached shows as `deployed`.
 */
export const DETACHING: NodeState = 'reclaiming';

/** A target that is not one state: the state a node's detach was recorded to lead to. */
export type Target = NodeState | 'as-recorded';

export interface NodeTransition {
  /** The states the event applies to; a node in another state is left alone. */
  from: readonly NodeState[];
  /** Where the node goes, by the aftercare it needs. */
  to: Readonly<Record<Aftercare, Target>>;
  clears: readonly NodeMark[];
  /** The node was used: its used count grows by one where it lands in `ready`. */
  countsUse: boolean;
  /** A failed attempt: the count of attempts in a row grows by one. */
  countsAttempt?: true;
  /** The machine is gone: the node leaves the inventory for good, its record kept for the history. */
  retires?: true;
}

export type NodeEvent =
  | 'allocated'
  | 'allocation-undone'
  | 'released'
  | 'session-ended'
  | 'reported-broken'
  | 'keys-failed'
  | 'held'
  | 'hold-ended'
  | 'reclaim-succeeded'
  | 'reclaim-failed'
  | 'deprovision-succeeded'
  | 'deprovision-failed'
  | 'deprovision-abandoned'
  | 'returned-to-service'
  | 'disabled'
  | 'ready-too-long'
  | 'attached'
  | 'attach-failed'
  | 'detached'
  | 'detach-failed';

/** The same state whatever the aftercare. */
function always(state: Target): Record<Aftercare, Target> {
  return { none: state, reclaim: state, deprovision: state };
}

/** A node leaving its session after use: ready at once, reclaimed, or destroyed. */
const AFTER_USE: Record<Aftercare, NodeState> = { none: 'ready', reclaim: 'reclaiming', deprovision: 'reclaiming' };
/** A node found broken: quarantined for an operator; a command pool's is destroyed instead. */
const QUARANTINE: Record<Aftercare, NodeState> = { none: 'failed', reclaim: 'failed', deprovision: 'reclaiming' };
const LEAVING: readonly NodeMark[] = ['session', 'claim', 'hold', 'attempts', 'reporter'];

export const NODE_LIFECYCLE: Readonly<Record<NodeEvent, NodeTransition>> = {
  /** `/Node/get` puts a ready node into a session. */
  'allocated': { from: ['ready'], to: always('deployed'), clears: [], countsUse: false },
  /** A request that could not be served whole gives back the nodes it took, untouched. */
  'allocation-undone': { from: ['deployed'], to: always('ready'), clears: [...LEAVING, 'keys'], countsUse: false },
  /** `/Node/done node=`, or an operator returning a held node to service. */
  'released': { from: ['deployed', 'held'], to: AFTER_USE, clears: LEAVING, countsUse: true },
  /** `/Node/done`, `/Session/done`, or the reaper: every node of the session leaves it. */
  'session-ended': { from: ['deployed', 'held'], to: AFTER_USE, clears: LEAVING, countsUse: true },
  /** `/Node/fail node=`: the project says the node is broken. */
  'reported-broken': { from: ['deployed', 'held'], to: QUARANTINE, clears: LEAVING, countsUse: false },
  /** A project's SSH keys could not be put on (or taken off) the node. */
  'keys-failed': { from: ['deployed', 'held'], to: QUARANTINE, clears: LEAVING, countsUse: false },
  /** `/Node/fail` without node=: kept in its session for debugging until the fail hold ends (a second one starts it over). */
  'held': { from: ['deployed', 'held'], to: always('held'), clears: [], countsUse: false },
  /** The fail hold is over: the node leaves its session as after any use. */
  'hold-ended': { from: ['held'], to: AFTER_USE, clears: LEAVING, countsUse: true },
  'reclaim-succeeded': { from: ['reclaiming'], to: always('ready'), clears: ['claim', 'attempts', 'keys'], countsUse: true },
  'reclaim-failed': { from: ['reclaiming'], to: always('failed'), clears: ['claim', 'attempts'], countsUse: false },
  /** The machine is gone: the node is retired, its record kept for the history. */
  'deprovision-succeeded': { from: ['reclaiming'], to: always('disabled'), clears: ['claim', 'keys'], countsUse: false, retires: true },
  /** Tried again after a pause (the store is told when); attempts grow by one. */
  'deprovision-failed': { from: ['reclaiming'], to: always('reclaiming'), clears: ['claim', 'reporter'], countsUse: false, countsAttempt: true },
  /** Too many failed deprovisions: left for an operator. */
  'deprovision-abandoned': { from: ['reclaiming'], to: always('failed'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  /** An operator returns a quarantined or disabled node to service, through reclaim. */
  'returned-to-service': { from: ['failed', 'disabled'], to: always('reclaiming'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  /** An operator takes a node out of service (a held node leaves its session). */
  'disabled': { from: ['ready', 'failed', 'held'], to: always('disabled'), clears: LEAVING, countsUse: false },
  /** A command pool's ready node older than `max-ready-age` is replaced. */
  'ready-too-long': { from: ['ready'], to: always('reclaiming'), clears: ['claim', 'attempts', 'reporter'], countsUse: false },
  // Session isolation (docs/api.md, "Session isolation"). With hooks configured, `allocated` marks
  // the node `attach` (its request runs node-attach before answering), and every event that takes
  // a node out of its session sends it to DETACHING marked `detach`, recording the state the event
  // leads to, which it reaches once node-detach ran.
  /** node-attach succeeded: the request hands the node out. */
  'attached': { from: ['deployed'], to: always('deployed'), clears: ['attach'], countsUse: false },
  /** node-attach failed: quarantined with its stderr (after its detach). */
  'attach-failed': { from: ['deployed'], to: QUARANTINE, clears: [...LEAVING, 'attach'], countsUse: false },
  /** node-detach succeeded: on to the state its leaving recorded (ready, reclaiming, failed...). */
  'detached': { from: [DETACHING], to: always('as-recorded'), clears: ['detach', 'claim'], countsUse: false },
  /** node-detach failed: it may still sit in the session's network, so it is quarantined. */
  'detach-failed': { from: [DETACHING], to: always('failed'), clears: ['detach', 'claim'], countsUse: false },
};

/** What a node needs after use (see Aftercare). */
export function aftercareOf(pool: { reclaim: readonly string[] | null; command: unknown } | undefined, node: { contextualized: boolean }): Aftercare {
  if (pool?.command) return 'deprovision';
  // A pool that left the configuration has no command either: reclaim decides what to do with it.
  if (!pool || pool.reclaim !== null || node.contextualized) return 'reclaim';
  return 'none';
}

/** Where `event` takes a node in `state` that needs `aftercare`; undefined when the event does not apply. */
export function nextState(event: NodeEvent, state: NodeState, aftercare: Aftercare): Target | undefined {
  const transition = NODE_LIFECYCLE[event];
  return transition.from.includes(state) ? transition.to[aftercare] : undefined;
}

/**
 * A move the store applies to some nodes, as core decided it: the transition, and how to tell
 * each node's aftercare from its row (by pool, for the bulk moves that the store compiles into
 * one statement).
 */
export interface NodeMove {
  event: NodeEvent;
  transition: NodeTransition;
  /** Static pools without a reclaim command: their unmarked nodes need no aftercare. */
  poolsWithoutAftercare: readonly string[];
  /** `reported-broken`: the reporting project. */
  reporter?: number;
  /** `held`: when the hold ends. */
  holdUntil?: number;
  /** `deprovision-failed`: when it may be claimed again. */
  retryAt?: number;
  /** `allocated`: whether the project's SSH keys are about to be put on the nodes. */
  withKeys?: boolean;
  /**
   * Isolation hooks are configured: a node leaving its session goes to DETACHING first (marked
   * `detach`), and `allocated` marks it `attach` under `attachLease`.
   */
  isolate?: boolean;
  /** `allocated` with isolation: who runs node-attach, and until when its lease holds. */
  attachLease?: { owner: string; until: number };
}

/** Whether the move takes nodes out of their session through DETACHING (isolation hooks configured). */
export function detachesFirst(m: NodeMove): boolean {
  return m.isolate === true && m.transition.clears.includes('session');
}

export function move(event: NodeEvent, poolsWithoutAftercare: readonly string[] = [], extra: Omit<NodeMove, 'event' | 'transition' | 'poolsWithoutAftercare'> = {}): NodeMove {
  return { event, transition: NODE_LIFECYCLE[event], poolsWithoutAftercare, ...extra };
}
