/**
 * The order of the waiting queue (docs/api.md, "Waiting for capacity"), without a database:
 * within a project first come, first served; across projects fair share, the waiting project
 * holding the fewest nodes first (ties: the one whose next request waits longest).
 */

/** What the order needs of a waiting request. */
export interface Queued {
  id: number;
  projectId: number;
  count: number;
  /** Nodes the project holds now. */
  held: number;
  poolSet: string;
}

/** The set of pools that can serve a request, as the queue stores and compares it. */
export function waiterPoolSet(pools: readonly string[]): string {
  return [...pools].sort().join(',');
}

/** Whether two requests compete for nodes: some pool could serve either. */
export function sharePools(a: string, b: string): boolean {
  if (a === b) return true;
  const names = new Set(a.split(','));
  return b.split(',').some((name) => names.has(name));
}

/**
 * The requests in the order the queue would serve them now: position 1 first. Each step takes the
 * next request of the project holding the fewest nodes, counting the nodes the requests placed
 * before it will have given it; ids grow with arrival, so the smaller id waited longer.
 */
export function serveOrder<T extends Queued>(waiters: readonly T[]): T[] {
  const queues = new Map<number, T[]>();
  const held = new Map<number, number>();
  for (const waiter of [...waiters].sort((a, b) => a.id - b.id)) {
    const queue = queues.get(waiter.projectId);
    if (queue) queue.push(waiter);
    else queues.set(waiter.projectId, [waiter]);
    held.set(waiter.projectId, waiter.held);
  }
  const order: T[] = [];
  while (order.length < waiters.length) {
    let next: T | undefined;
    for (const [projectId, queue] of queues) {
      const head = queue[0];
      if (head === undefined) continue;
      if (next === undefined) {
        next = head;
        continue;
      }
      const [mine, best] = [held.get(projectId)!, held.get(next.projectId)!];
      if (mine < best || (mine === best && head.id < next.id)) next = head;
    }
    queues.get(next!.projectId)!.shift();
    held.set(next!.projectId, held.get(next!.projectId)! + next!.count);
    order.push(next!);
  }
  return order;
}

/**
 * Which requests may be tried now: a request is never served before an earlier one in the order
 * that shares a pool with it (the head is never overtaken; nodes freed while it needs more wait
 * for it), so each one behind a request that shares its pools is left out.
 */
export function servableNow<T extends Queued>(order: readonly T[]): T[] {
  const ahead: string[] = [];
  const servable: T[] = [];
  for (const waiter of order) {
    if (!ahead.some((poolSet) => sharePools(poolSet, waiter.poolSet))) servable.push(waiter);
    ahead.push(waiter.poolSet);
  }
  return servable;
}
