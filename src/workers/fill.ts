/**
 * The fill worker of command pools: keeps each one at its warm size by running its `provision`
 * command. A pool is topped up to `ready-min` ready nodes (plus what callers found missing
 * lately), never past `max-nodes` nodes in all, with at most `max-parallel` nodes being
 * provisioned at once; ready nodes older than `max-ready-age` are sent to be deprovisioned and
 * replaced. A provision that fails is recorded with its reason and stderr, and the pool pauses
 * before the next try, longer after each failure in a row, instead of looping on a broken cloud.
 */
import type { CommandPoolSettings, Pool } from '../core/model.js';
import { runCommand, stderrDetail } from '../machines/command.js';
import { parseProvisionOutput } from '../machines/provision-output.js';
import { COMMAND_ENV } from '../api/env.js';
import { move } from '../core/lifecycle.js';
import type { Storage } from '../core/storage.js';
import { BackgroundWorker } from './worker.js';

/** The pause after the first failed provision; it doubles after each further one, up to the cap. */
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 5 * 60_000;
/** How long a caller's unmet request keeps asking for nodes beyond `ready-min`, if not met before. */
const DEMAND_TTL_MS = 2 * 60_000;
/** A claim on provisioning outlives its command by this, then stops counting (its replica died). */
const CLAIM_GRACE_MS = 60_000;

export interface FillDeps {
  store: Storage;
  clock: () => number;
  pools: () => ReadonlyMap<string, Pool>;
  owner: string;
  onError: (error: unknown) => void;
  /** Told after nodes were sent to deprovision (stale ready nodes), so the reclaim worker starts. */
  onRetire: () => void;
  onProvisioned?: (pool: string, added: string[], problem: string | null) => void;
}

interface PoolState {
  failures: number;
  pausedUntil: number;
  /** Nodes a request found missing, not yet turned into `target`. */
  missing: number;
  /**
   * The ready nodes that unmet requests want (0: none): the ready count when a request came up
   * short plus what it missed, so a request larger than what is ready is met however many nodes
   * an earlier demand left. Dropped once reached: the nodes then wait for the caller's retry.
   */
  target: number;
  demandUntil: number;
}

export class FillWorker extends BackgroundWorker {
  private readonly state = new Map<string, PoolState>();

  constructor(private readonly deps: FillDeps) {
    super(deps.onError);
  }

  /** A request found `missing` nodes too few in these pools: provision for it beyond `ready-min`. */
  demand(pools: readonly Pool[], missing: number): void {
    const commandPools = pools.filter((p) => p.command);
    if (commandPools.length === 0) return;
    // Spread over the pools that could serve it, the first ones taking the remainder. Requests
    // are alternatives (mostly one caller retrying), so the largest counts, not their sum.
    commandPools.forEach((pool, i) => {
      const share = Math.floor(missing / commandPools.length) + (i < missing % commandPools.length ? 1 : 0);
      const state = this.stateOf(pool.name);
      state.missing = Math.max(state.missing, share);
      state.demandUntil = this.deps.clock() + DEMAND_TTL_MS;
    });
    this.kick();
  }

  private stateOf(pool: string): PoolState {
    let state = this.state.get(pool);
    if (!state) {
      state = { failures: 0, pausedUntil: 0, missing: 0, target: 0, demandUntil: 0 };
      this.state.set(pool, state);
    }
    return state;
  }

  /** Looks at every command pool (at start, after allocations and releases, at each tick). */
  protected async pass(): Promise<void> {
    for (const pool of this.deps.pools().values()) {
      if (this.stopped) return;
      if (pool.command) await this.check(pool, pool.command);
    }
  }

  /** Retires the pool's stale ready nodes, then starts the provision that brings it to size, if any. */
  private async check(pool: Pool, settings: CommandPoolSettings): Promise<void> {
    const now = this.deps.clock();
    const state = this.stateOf(pool.name);
    if (state.demandUntil < now) {
      state.missing = 0;
      state.target = 0;
    }
    if (settings.maxReadyAgeMs !== null) {
      const retired = await this.deps.store.transaction(async (tx) => {
        const stale = await tx.nodes.readySince(pool.name, now - settings.maxReadyAgeMs!);
        await tx.nodes.apply(stale, move('ready-too-long'), { at: now, reason: `ready for longer than max-ready-age, replaced` });
        return stale.length;
      });
      if (retired > 0) this.deps.onRetire();
    }
    if (state.pausedUntil > now) {
      this.wakeAfter(pool.name, state.pausedUntil - now);
      return;
    }
    const claim = await this.deps.store.transaction(async (tx) => {
      await tx.provisions.lockPool(pool.name);
      const counts = await tx.provisions.counts(pool.name, now);
      if (state.missing > 0) {
        state.target = Math.max(state.target, counts.ready + state.missing);
        state.missing = 0;
      }
      if (counts.ready >= state.target) state.target = 0;
      const wanted = Math.max(settings.readyMin, state.target) - counts.ready - counts.provisioning;
      const room = settings.maxNodes - counts.total;
      const count = Math.min(wanted, room, settings.maxParallel - counts.provisioning);
      if (count <= 0) return undefined;
      const leaseUntil = now + settings.commandTimeoutMs + CLAIM_GRACE_MS;
      return { id: await tx.provisions.start(pool.name, count, this.deps.owner, now, leaseUntil), count };
    });
    if (!claim) return;
    this.track(this.provision(pool, settings, claim.id, claim.count));
  }

  private async provision(pool: Pool, settings: CommandPoolSettings, claimId: number, count: number): Promise<void> {
    const state = this.stateOf(pool.name);
    const result = await runCommand(
      {
        label: 'provision',
        argv: settings.provision,
        env: {
          [COMMAND_ENV.Count]: String(count),
          [COMMAND_ENV.Pool]: pool.name,
          [COMMAND_ENV.Ver]: pool.ver,
          [COMMAND_ENV.Arch]: pool.arch,
          [COMMAND_ENV.Flavor]: pool.flavor ?? '',
        },
        timeoutMs: settings.commandTimeoutMs,
      },
      this.killers,
    );
    // Whatever it printed is kept, even when it failed: those machines exist and cost money.
    const { nodes, problems } = parseProvisionOutput(result.stdout);
    const now = this.deps.clock();
    const outcome = await this.deps.store.transaction(async (tx) => {
      const made = await tx.provisions.finish(claimId, pool, nodes, { at: now, reason: `provisioned by pool ${pool.name}` });
      const refused = made.refused.map((h) => `${h}: another node already has this hostname`);
      const shortBy = count - made.added.length;
      const problem = !result.ok
        ? result.reason
        : problems.length > 0 || refused.length > 0
          ? `provision printed ${made.added.length} usable node(s) of ${count} asked: ${[...problems, ...refused].join('; ')}`
          : shortBy > 0
            ? `provision printed ${made.added.length} node(s) of ${count} asked`
            : null;
      if (problem !== null) await tx.events.recordPool(pool.name, { at: now, reason: problem, detail: stderrDetail(result) });
      // A demand met is dropped now, before a caller can take the nodes: a later look would find
      // them gone and provision the same number again.
      if (state.target > 0 && (await tx.provisions.counts(pool.name, now)).ready >= state.target) state.target = 0;
      return { added: made.added, problem };
    });
    this.deps.onProvisioned?.(pool.name, outcome.added, outcome.problem);
    if (outcome.problem === null) {
      state.failures = 0;
      state.pausedUntil = 0;
    } else {
      state.failures++;
      const pauseMs = Math.min(BACKOFF_FIRST_MS * 2 ** (state.failures - 1), BACKOFF_MAX_MS);
      state.pausedUntil = now + pauseMs;
    }
  }
}
