/**
 * What the server runs on, as one immutable value: the configuration, the catalog of projects
 * and pools it describes, the pools by name, how nodes are contextualized, and which workers a
 * request may leave work for. Built by one function at start and at each reload, and swapped
 * whole: nothing reads half of an old configuration and half of a new one.
 */
import { Catalog } from '../core/catalog.js';
import type { Contextualizer, Pool } from '../core/model.js';
import type { CinodeConfig } from '../config/config.js';
import { sshContextualizer } from '../machines/ssh.js';
import type { Storage } from '../core/storage.js';

/** Which workers a request may leave work for. */
export interface BackgroundWork {
  /** A reclaim command, a command pool to deprovision, or keys to take off. */
  reclaim: boolean;
  /** A command pool to top up. */
  fill: boolean;
}

export interface Snapshot {
  readonly config: CinodeConfig;
  readonly catalog: Catalog;
  readonly pools: ReadonlyMap<string, Pool>;
  /** Null when the configuration does not contextualize. */
  readonly contextualizer: Contextualizer | null;
  readonly work: BackgroundWork;
}

/**
 * Brings the database's projects and nodes in line with `config` (one transaction: on failure
 * nothing changed), then describes it. `sshRuns` receives the kill function of each ssh run in
 * flight, so that a shutdown stops them.
 */
export async function buildSnapshot(store: Storage, config: CinodeConfig, now: number, sshRuns: Set<() => void>): Promise<Snapshot> {
  const catalog = await syncCatalog(store, config, now);
  return Object.freeze({
    config,
    catalog,
    pools: new Map(config.pools.map((p) => [p.name, p])),
    contextualizer: config.contextualize ? sshContextualizer(config.contextualize, sshRuns) : null,
    work: backgroundWork(config),
  });
}

/** Brings the database's projects and nodes in line with the configuration. */
async function syncCatalog(store: Storage, config: CinodeConfig, now: number): Promise<Catalog> {
  const ids = await store.transaction(async (tx) => {
    const projectIds = await tx.catalog.syncProjects(config.projects.map((p) => ({ name: p.name, keyHash: p.keyHash, policy: JSON.stringify(p.policy) })));
    await tx.catalog.syncNodes(
      config.pools.flatMap((p) => p.nodes),
      now,
    );
    return projectIds;
  });
  const projects = config.projects.map((p) => ({ id: ids.get(p.name)!, name: p.name, keyHash: p.keyHash, policy: p.policy, sshKeys: p.sshKeys }));
  return new Catalog(projects, config.pools, config.defaults, config.isolation !== null);
}

/**
 * Without a reclaim command, a command pool or keys to take off, released nodes are ready in the
 * same commit; neither worker is woken on the request path when it has nothing to do.
 */
function backgroundWork(config: CinodeConfig): BackgroundWork {
  const commandPools = config.pools.some((p) => p.command);
  return { reclaim: commandPools || config.contextualize !== null || config.pools.some((p) => p.reclaim), fill: commandPools };
}
