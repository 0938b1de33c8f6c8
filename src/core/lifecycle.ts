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
  | 'keys';

export interface NodeTransition {
  /** The states the event applies to; a node in another state is left alone. */
  from: readonly NodeState[];
  /** Where the node goes, by the aftercare it needs. */
  to: Readonly<Record<Aftercare, NodeState>>;
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
  | 'ready-too-long';

/** The same state whatever the aftercare. */
function always(state: NodeState): Record<Aftercare, NodeState> {
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
};

/** What a node needs after use (see Aftercare). */
export function aftercareOf(pool: { reclaim: readonly string[] | null; command: unknown } | undefined, node: { contextualized: boolean }): Aftercare {
  if (pool?.command) return 'deprovision';
  // A pool that left the configuration has no command either: reclaim decides what to do with it.
  if (!pool || pool.reclaim !== null || node.contextualized) return 'reclaim';
  return 'none';
}

/** Where `event` takes a node in `state` that needs `aftercare`; undefined when the event does not apply. */
export function nextState(event: NodeEvent, state: NodeState, aftercare: Aftercare): NodeState | undefined {
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
}

export function move(event: NodeEvent, poolsWithoutAftercare: readonly string[] = [], extra: Omit<NodeMove, 'event' | 'transition' | 'poolsWithoutAftercare'> = {}): NodeMove {
  return { event, transition: NODE_LIFECYCLE[event], poolsWithoutAftercare, ...extra };
}
