/**
 * The deprovision of a command pool's node: such a node is never reused. Its pool's `deprovision`
 * command destroys the machine and the node is retired, its record kept for the history. A
 * deprovision that fails is tried again after a growing pause, and after repeated failures the
 * node is left `failed` for an operator.
 *
 * The reclaim worker claims these nodes together with static pools' ones (one lease, one store
 * call) and hands each here with what its claim gives.
 */
import type { CommandPoolSettings, Node } from '../core/model.js';
import { runCommand, stderrDetail } from '../machines/command.js';
import { COMMAND_ENV } from '../api/env.js';
import { move, type NodeEvent } from '../core/lifecycle.js';
import type { Storage } from '../core/storage.js';

/** Deprovision attempts before a node is left `failed` for an operator. */
const DEPROVISION_ATTEMPTS = 5;
/** The pause after the first failed deprovision; it doubles after each further one. */
const DEPROVISION_BACKOFF_MS = 2_000;
/** A wake-up comes this long after the pause ends, so the node is claimable by then. */
const WAKE_MARGIN_MS = 50;

/** What the work on one claimed node gets from the worker that claimed it. */
export interface ClaimedWork {
  store: Storage;
  clock: () => number;
  /** Who holds the claim. */
  owner: string;
  /** Kill functions of the commands running now; the worker kills them when its stop's grace ends. */
  killers: Set<() => void>;
  /** Whether the worker is stopping: a command that failed then was most likely killed by it. */
  stopping(): boolean;
  /** Extends the claim on the node by a lease from now (its worker renews it while the work runs); false when the claim was lost. */
  extendClaim(node: Node): Promise<boolean>;
  /** Looks for work again after `delayMs` (at most one pending wake-up per key). */
  wakeAfter(key: string, delayMs: number): void;
  onDone?: (node: Node, outcome: NodeEvent, reason: string | null) => void;
}

/** Destroys a command pool's node; a failure is tried again after a pause, a few times. */
export async function deprovision(node: Node, settings: CommandPoolSettings, work: ClaimedWork): Promise<void> {
  if (!(await work.extendClaim(node))) return;
  const result = await runCommand(
    {
      label: 'deprovision',
      argv: settings.deprovision,
      env: { [COMMAND_ENV.Hostname]: node.hostname, [COMMAND_ENV.Ip]: node.ip ?? '', [COMMAND_ENV.Pool]: node.pool },
      stdin: `${JSON.stringify({ hostname: node.hostname, ip: node.ip, data: node.data })}\n`,
      timeoutMs: settings.commandTimeoutMs,
    },
    work.killers,
  );
  if (work.stopping() && !result.ok) return; // killed by shutdown: left for the next start
  const now = work.clock();
  const detail = stderrDetail(result);
  if (result.ok) {
    const change = { at: now, reason: `deprovisioned (${node.reason ?? 'released'})`, detail };
    const recorded = await work.store.transaction((tx) => tx.reclaims.finish(node.id, work.owner, move('deprovision-succeeded'), change));
    if (recorded) work.onDone?.(node, 'deprovision-succeeded', change.reason);
    return;
  }
  const attempt = node.attempts + 1;
  const giveUp = attempt >= DEPROVISION_ATTEMPTS;
  const pauseMs = DEPROVISION_BACKOFF_MS * 2 ** (attempt - 1);
  const reason = giveUp
    ? `deprovision failed ${attempt} times, left for an operator: ${result.reason}`
    : `deprovision attempt ${attempt} of ${DEPROVISION_ATTEMPTS} failed, next in ${pauseMs / 1000}s: ${result.reason}`;
  const recorded = await work.store.transaction((tx) =>
    tx.reclaims.finish(
      node.id,
      work.owner,
      giveUp ? move('deprovision-abandoned') : move('deprovision-failed', [], { retryAt: now + pauseMs }),
      { at: now, reason, detail },
    ),
  );
  if (recorded && giveUp) work.onDone?.(node, 'deprovision-abandoned', reason);
  if (recorded && !giveUp) work.wakeAfter(`deprovision ${node.id}`, pauseMs + WAKE_MARGIN_MS);
}
