/**
 * A running cinode server: configuration, store, allocation service, HTTP app and workers wired
 * together, with reload (SIGHUP) and graceful close (SIGTERM).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { AdminService } from '../core/admin.js';
import { Catalog } from '../core/catalog.js';
import type { Contextualizer, Pool } from '../core/model.js';
import { Reaper } from '../core/reaper.js';
import { AllocationService } from '../core/service.js';
import { checkConfigFiles, loadConfig, type CinodeConfig } from '../config/config.js';
import { FillWorker } from '../pools/provision.js';
import { ReclaimWorker } from '../pools/reclaim.js';
import { sshContextualizer } from '../pools/ssh.js';
import { isDatabaseUnavailable } from '../store/errors.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { buildApp } from './app.js';

/** How long a shutdown waits for running reclaim commands before leaving them to the next start. */
const SHUTDOWN_GRACE_MS = 5_000;

export interface ServerOptions {
  configPath: string;
  env?: Record<string, string | undefined>;
  logger: FastifyBaseLogger;
  /** Overrides the configuration's `listen` (tests use port 0). */
  listen?: { host: string; port: number };
  clock?: () => number;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  store: Store;
  service: AllocationService;
  reaper: Reaper;
  reclaim: ReclaimWorker;
  fill: FillWorker;
  /** Reads the configuration again and syncs projects and inventory; a bad file changes nothing. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/** Brings the database's projects and nodes in line with the configuration. */
async function syncCatalog(store: Store, config: CinodeConfig, now: number): Promise<Catalog> {
  const ids = await store.transaction(async (tx) => {
    const projectIds = await tx.catalog.syncProjects(config.projects.map((p) => ({ name: p.name, keyHash: p.keyHash, policy: JSON.stringify(p.policy) })));
    await tx.catalog.syncNodes(
      config.pools.flatMap((p) => p.nodes),
      now,
    );
    return projectIds;
  });
  const projects = config.projects.map((p) => ({ id: ids.get(p.name)!, name: p.name, keyHash: p.keyHash, policy: p.policy, sshKeys: p.sshKeys }));
  return new Catalog(projects, config.pools, config.defaults);
}

function poolMap(config: CinodeConfig): Map<string, Pool> {
  return new Map(config.pools.map((p) => [p.name, p]));
}

function contextualizerOf(config: CinodeConfig): Contextualizer | null {
  return config.contextualize ? sshContextualizer(config.contextualize) : null;
}

/**
 * Which workers a request may leave work for. Reclaim: a reclaim command, a command pool to
 * deprovision, or keys to take off (without any, released nodes are ready in the same commit).
 * Fill: a command pool to top up. Neither is woken on the request path when it has nothing to do.
 */
function backgroundWork(config: CinodeConfig): { reclaim: boolean; fill: boolean } {
  const commandPools = config.pools.some((p) => p.command);
  return { reclaim: commandPools || config.contextualize !== null || config.pools.some((p) => p.reclaim), fill: commandPools };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.logger;
  const env = options.env ?? process.env;
  const clock = options.clock ?? Date.now;
  let config = loadConfig(options.configPath, env);
  checkConfigFiles(config, options.configPath);
  const store = await openStore(config.database);
  if (store.exclusive) {
    // Only this process uses the file: reclaims that a crash interrupted start over now. On
    // PostgreSQL other replicas hold live claims: a dead replica's claims are taken once they lapse.
    await store.read().reclaims.clearAll();
  }
  let catalog = await syncCatalog(store, config, clock());
  let pools = poolMap(config);
  let work = backgroundWork(config);
  let contextualizer = contextualizerOf(config);
  const owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

  const onError = (error: unknown) => log.error({ err: error }, 'background work failed');
  const reclaim = new ReclaimWorker({
    store,
    clock,
    pools: () => pools,
    contextualizer: () => contextualizer,
    owner,
    parallel: config.reclaimParallel,
    onError,
    onReclaimed: (node, ok, reason) => log.info({ node: node.hostname, pool: node.pool, ok, reason }, ok ? 'node reclaimed' : 'node quarantined'),
  });
  const fill = new FillWorker({
    store,
    clock,
    pools: () => pools,
    owner,
    onError,
    onRetire: () => reclaim.kick(),
    onProvisioned: (pool, added, problem) =>
      problem === null ? log.info({ pool, added }, 'nodes provisioned') : log.warn({ pool, added, problem }, 'provision failed'),
  });
  const service = new AllocationService({
    store,
    catalog: () => catalog,
    clock,
    newSsid: randomUUID,
    // Released nodes of pools without a command are ready already: no reclaim to look for (the
    // reaper tick still looks, for nodes a reload left waiting).
    onRelease: () => {
      if (work.reclaim) reclaim.kick();
      if (work.fill) fill.kick();
    },
    contextualizer: () => contextualizer,
    onDemand: (demanded, missing) => fill.demand(demanded, missing),
    onAllocated: () => {
      if (work.fill) fill.kick();
    },
  });
  const admin = new AdminService({ store, catalog: () => catalog, clock, onRelease: () => reclaim.kick() });
  const reaper = new Reaper({
    store,
    catalog: () => catalog,
    clock,
    intervalMs: config.reaperIntervalMs,
    eventRetention: () => config.eventRetentionMs,
    onRelease: () => reclaim.kick(),
    onError,
  });
  // Every reaper tick also looks for reclaims whose claim lapsed (another replica died mid-way),
  // and at the command pools' sizes (ready nodes age, other replicas allocate).
  const reaperTick = setInterval(() => {
    reclaim.kick();
    fill.kick();
  }, config.reaperIntervalMs);

  const app = await buildApp({
    service,
    admin,
    logger: log,
    publicInventory: () => config.publicInventory,
    databaseUnavailable: isDatabaseUnavailable,
    healthCheck: async () => {
      await store.read().sessions.nextExpiry();
    },
  });
  const listen = options.listen ?? config.listen;
  await app.listen({ host: listen.host, port: listen.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const url = `http://${host}:${port}`;
  log.info({ url, database: config.database.replace(/\/\/[^@/]*@/, '//***@') }, `cinode listening on ${url}`);

  reaper.start();
  reclaim.kick();
  fill.kick();

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    store,
    service,
    reaper,
    reclaim,
    fill,
    async reload() {
      let next: CinodeConfig;
      try {
        next = loadConfig(options.configPath, env);
        checkConfigFiles(next, options.configPath);
      } catch (error) {
        log.error({ err: error }, 'configuration reload failed; keeping the running configuration');
        return;
      }
      if (next.database !== config.database || next.listen.port !== config.listen.port || next.listen.host !== config.listen.host) {
        log.warn('listen and database changes take effect at the next start only');
      }
      catalog = await syncCatalog(store, next, clock());
      pools = poolMap(next);
      work = backgroundWork(next);
      contextualizer = contextualizerOf(next);
      config = next;
      log.info({ projects: next.projects.length, pools: next.pools.length }, 'configuration reloaded');
      reclaim.kick();
      fill.kick();
    },
    close() {
      closing ??= (async () => {
        clearInterval(reaperTick);
        await app.close(); // finishes requests in flight
        await reaper.stop();
        await Promise.all([reclaim.stop(SHUTDOWN_GRACE_MS), fill.stop(SHUTDOWN_GRACE_MS)]);
        await store.close();
        log.info('cinode stopped');
      })();
      return closing;
    },
  };
}
