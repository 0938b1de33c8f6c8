/**
 * The composition root of `cinode serve`: configuration, store, allocation service, HTTP app and
 * background workers wired together, with reload (SIGHUP) and graceful close (SIGTERM).
 *
 * Everything that follows the configuration sits in one immutable snapshot (snapshot.ts); a reload
 * builds a new one and swaps it whole, or, when anything fails, logs why and keeps the old one.
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { SERVER_ENV } from '../api/env.js';
import { AdminService } from '../core/admin.js';
import type { NodeEvent } from '../core/lifecycle.js';
import type { Node } from '../core/model.js';
import { AllocationService } from '../core/allocation.js';
import { WaitingQueue } from '../core/queue.js';
import { checkConfigFiles, ConfigError, loadConfig, type CinodeConfig } from '../config/config.js';
import { buildApp } from '../server/app.js';
import { Metrics } from '../server/metrics.js';
import { DEFAULT_HTTP_LIMITS, type HttpLimits } from '../server/http.js';
import type { FailedKeyLimits } from '../server/throttle.js';
import { isDatabaseUnavailable } from '../store/errors.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { FillWorker } from '../workers/fill.js';
import { Reaper } from '../workers/reaper.js';
import { ReclaimWorker } from '../workers/reclaim.js';
import { IsolationWorker } from '../workers/isolation.js';
import { SessionIsolation } from '../core/isolation.js';
import { hookRunner, type HookReport } from '../machines/hooks.js';
import { Ticker } from '../workers/ticker.js';
import { buildSnapshot, type Snapshot } from './snapshot.js';

/** Hook runs (detach, teardown) at once per process: network changes, quick and light. */
const ISOLATION_PARALLEL = 16;
/** The hooks' timeout when `isolation:` left the configuration but hooks are still due. */
const DEFAULT_HOOK_TIMEOUT_MS = 120_000;

/** How long a shutdown waits for running commands before killing them and leaving their work to the next start. */
const SHUTDOWN_GRACE_MS = 5_000;

/** What `cinode serve` says when the server could not start: every problem of a bad configuration, or the cause. */
export function startFailure(error: unknown): string {
  if (error instanceof ConfigError) return `the configuration has problems; the server did not start:\n${error.message}`;
  return `could not start: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * `cinode config check`: reads and checks the file as a start would (without opening the
 * database or the port): every problem, one a line, or a line saying what it declares.
 */
export function checkConfiguration(path: string, env: Record<string, string | undefined> = process.env): { valid: boolean; report: string } {
  let config: CinodeConfig;
  try {
    config = loadConfig(path, env);
    checkConfigFiles(config, path);
  } catch (error) {
    if (error instanceof ConfigError) return { valid: false, report: error.message };
    throw error;
  }
  const nodes = config.pools.reduce((sum, pool) => sum + pool.nodes.length, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const counts = `${plural(config.pools.length, 'pool')}, ${plural(nodes, 'node')}, ${plural(config.projects.length, 'project')}`;
  return { valid: true, report: `${path}: valid: ${counts}` };
}

/** The configuration's `database:` with any password hidden, for messages and the log. */
export function databaseLabel(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** An error of the database, saying so and naming which one (the driver's own text names neither). */
function databaseError(database: string, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`database ${databaseLabel(database)}: ${message}`, { cause: error });
}

/** The log line of each way a node's aftercare ends. */
const AFTERCARE_LOG: Partial<Record<NodeEvent, string>> = {
  'reclaim-succeeded': 'node reclaimed',
  'reclaim-failed': 'node quarantined',
  'deprovision-succeeded': 'node deprovisioned',
  'deprovision-abandoned': 'node left for an operator after failed deprovisions',
};

/**
 * cico's `node get` reads the unkeyed inventory right after allocating: without it the command
 * fails and the session it opened is left to expire (docs/api.md, "cico").
 */
function warnPrivateInventory(log: FastifyBaseLogger, config: CinodeConfig): void {
  if (!config.publicInventory) {
    log.warn("public-inventory is false: cico's node get fails after allocating (it reads the unkeyed /Inventory), and the session it opened is left to expire");
  }
}

/** The `outcome` label of `cinode_reclaim_duration_seconds` for each way aftercare ends. */
const AFTERCARE_OUTCOME: Partial<Record<NodeEvent, string>> = {
  'reclaim-succeeded': 'reclaimed',
  'reclaim-failed': 'failed',
  'deprovision-succeeded': 'deprovisioned',
  'deprovision-abandoned': 'abandoned',
};

/** `cinode_queue_waiting`: the waiting requests of each project. */
function waitingByProject(order: ReadonlyArray<{ project: string }>): Array<{ project: string; count: number }> {
  const counts = new Map<string, number>();
  for (const { project } of order) counts.set(project, (counts.get(project) ?? 0) + 1);
  return [...counts].map(([project, count]) => ({ project, count }));
}

export interface ServerOptions {
  configPath: string;
  env?: Record<string, string | undefined>;
  logger: FastifyBaseLogger;
  /** Overrides the configuration's `listen` (tests use port 0). */
  listen?: { host: string; port: number };
  clock?: () => number;
  /** HTTP limits other than the defaults (tests use short ones). */
  httpLimits?: Partial<HttpLimits>;
  failedKeyLimits?: FailedKeyLimits;
  /** The waiting queue's lease and slow poll, in milliseconds, other than the defaults (tests use short ones). */
  queueTimings?: { leaseMs?: number; pollMs?: number };
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  store: Store;
  service: AllocationService;
  reaper: Reaper;
  reclaim: ReclaimWorker;
  fill: FillWorker;
  isolation: IsolationWorker;
  metrics: Metrics;
  queue: WaitingQueue;
  /**
   * Reads the configuration again and syncs projects and inventory. Never rejects: a bad file, a
   * sync the database refuses or a database that is down is logged with its reason, and the
   * server keeps serving on the configuration it had.
   */
  reload(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What stays the same when this replica restarts, and differs between replicas: the host, the
 * configuration file and the address it listens on (two replicas on one host listen apart). It
 * starts the owner name of this process's claims, which fits the column's 64 characters.
 */
function replicaName(configPath: string, listen: { host: string; port: number }): string {
  const where = createHash('sha256').update(`${resolve(configPath)}\n${listen.host}:${listen.port}`).digest('hex').slice(0, 8);
  return `${hostname().slice(0, 24)}-${where}`;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const env = options.env ?? process.env;
  const initial = loadConfig(options.configPath, env);
  checkConfigFiles(initial, options.configPath);
  const store = await openStore(initial.database, { sqlTrace: env[SERVER_ENV.SqlTrace] }).catch((error: unknown) => {
    throw databaseError(initial.database, error);
  });
  /** What has been started so far, undone in reverse when the start fails past this point. */
  const opened: Array<() => Promise<void> | void> = [() => store.close()];
  try {
    return await startOnStore(options, initial, store, opened);
  } catch (error) {
    for (const close of opened.reverse()) await Promise.resolve(close()).catch(() => undefined);
    throw isDatabaseUnavailable(error) ? databaseError(initial.database, error) : error;
  }
}

/**
 * The rest of the start, on an open store; each thing it starts is pushed on `opened` so that a
 * failure (a taken port, a database that refuses the sync) closes it again and the process ends.
 */
async function startOnStore(
  options: ServerOptions,
  initial: CinodeConfig,
  store: Store,
  opened: Array<() => Promise<void> | void>,
): Promise<RunningServer> {
  const log = options.logger;
  const env = options.env ?? process.env;
  const clock = options.clock ?? Date.now;
  const listenAt = options.listen ?? initial.listen;
  const replica = replicaName(options.configPath, listenAt);
  if (store.exclusive) {
    // Only this process uses the file: reclaims and hooks that a crash interrupted start over now.
    await store.read().reclaims.clearAll();
    await store.read().isolation.dropLeasesOf(null);
  } else {
    await store.transaction((tx) => tx.isolation.dropLeasesOf(`${replica}:`));
    // On PostgreSQL other replicas hold live claims, which lapse within a lease once their owner
    // is gone; this replica's own earlier lives are gone for sure, so their work starts over now.
    const dropped = await store.transaction((tx) => tx.reclaims.dropClaimsOf(`${replica}:`));
    if (dropped > 0) log.info({ nodes: dropped, replica }, 'claims of this replica before its restart dropped');
  }
  // Requests that waited in an earlier life of this process got no answer and wait no more;
  // another replica's dead requests lapse with their lease.
  const dropped = await store.transaction((tx) => (store.exclusive ? tx.queue.clearAll() : tx.queue.dropOf(`${replica}:`)));
  if (dropped > 0) log.info({ requests: dropped, replica }, 'waiting requests of this replica before its restart dropped');
  /** Kill functions of the ssh runs in flight (contextualization), stopped at shutdown. */
  const sshRuns = new Set<() => void>();
  let current: Snapshot = await buildSnapshot(store, initial, clock(), sshRuns);
  const owner = `${replica}:${process.pid}:${randomUUID().slice(0, 8)}`;

  const onError = (error: unknown) => log.error({ err: error }, 'background work failed');
  const queue = new WaitingQueue({
    store,
    owner,
    onError,
    // A waiting /Node/get ssid= keeps its session's heartbeat (docs/api.md, "Heartbeats").
    onStillWaiting: (sessionId) => void service.keepAlive(sessionId).catch(onError),
    ...options.queueTimings,
  });
  /** Nodes may have become ready (or the queue's order changed): the waiting queue serves what it can. */
  const wakeQueue = () => queue.wake();
  // Read at scrape time (the admin service is made below, before any scrape can come).
  const metrics = new Metrics(async () => ({ ...(await admin.counts()), waiting: waitingByProject(await queue.order()) }));
  const reclaim = new ReclaimWorker({
    store,
    clock,
    pools: () => current.pools,
    contextualizer: () => current.contextualizer,
    owner,
    parallel: initial.reclaimParallel,
    onError,
    onFinished: (node, outcome, reason) => {
      log.info({ node: node.hostname, pool: node.pool, outcome, reason }, AFTERCARE_LOG[outcome] ?? outcome);
      wakeQueue();
      // The claimed node's changed_at is when it was released into aftercare.
      metrics.reclaimDuration.observe({ pool: node.pool, outcome: AFTERCARE_OUTCOME[outcome] ?? outcome }, Math.max(0, clock() - node.changedAt) / 1000);
    },
  });
  /** Kill functions of the hooks running for requests (setup, attach), stopped at shutdown. */
  const requestHooks = new Set<() => void>();
  const hookTimeout = () => current.config.isolation?.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
  /** Every hook run: an event in the history, a metric, a log line (docs/api.md, "Session isolation"). */
  const recordHook = async (run: HookReport<Node>) => {
    metrics.hookRuns.inc({ hook: run.hook, outcome: run.label });
    const { hook, session, node, outcome } = run;
    log.info({ hook, ssid: session.ssid, node: node?.hostname, outcome: run.label, status: run.exitStatus, ms: run.durationMs, reason: outcome.reason }, 'isolation hook ran');
    await store
      .transaction((tx) =>
        tx.isolation.recordHook({ at: clock(), hook, session, node, ok: outcome.ok, exitStatus: run.exitStatus, durationMs: run.durationMs, reason: outcome.reason, stderrTail: run.stderrTail }),
      )
      .catch(onError);
  };
  const hooks = hookRunner<Node>(() => current.config.isolation, recordHook, requestHooks);
  const isolationWorker = new IsolationWorker({
    store,
    catalog: () => current.catalog,
    clock,
    hooks,
    timeoutMs: hookTimeout,
    owner,
    parallel: ISOLATION_PARALLEL,
    onError,
    onDetached: () => {
      reclaim.kick();
      wakeQueue();
    },
  });
  const isolation = new SessionIsolation({ store, catalog: () => current.catalog, clock, hooks, owner, timeoutMs: hookTimeout, wake: () => isolationWorker.kick() });
  const fill = new FillWorker({
    store,
    clock,
    pools: () => current.pools,
    owner,
    onError,
    onRetire: () => reclaim.kick(),
    onProvisioned: (pool, added, problem) => {
      if (problem === null) log.info({ pool, added }, 'nodes provisioned');
      else log.warn({ pool, added, problem }, 'provision failed');
      wakeQueue();
    },
  });
  const service = new AllocationService({
    store,
    catalog: () => current.catalog,
    clock,
    newSsid: randomUUID,
    // Released nodes of pools without a command are ready already: no reclaim to look for (the
    // tick still looks, for nodes a reload left waiting).
    wakeReclaim: () => {
      if (current.work.reclaim) reclaim.kick();
      if (current.work.fill) fill.kick();
      if (current.catalog.isolated) isolationWorker.kick();
      wakeQueue();
    },
    isolation,
    queue,
    contextualizer: () => current.contextualizer,
    onDemand: (demanded, missing) => fill.demand(demanded, missing),
    onAllocated: () => {
      if (current.work.fill) fill.kick();
    },
    onHandedOut: (nodes, requestedAt) => {
      const seconds = Math.max(0, clock() - requestedAt) / 1000;
      for (const pool of new Set(nodes.map((n) => n.pool))) metrics.timeToNode.observe({ pool }, seconds);
    },
  });
  /** Nodes released into aftercare: their reclaim or detach starts, and the queue may serve what is ready. */
  const wakeAftercare = () => {
    reclaim.kick();
    isolationWorker.kick();
    wakeQueue();
  };
  const admin = new AdminService({ store, catalog: () => current.catalog, clock, wakeReclaim: wakeAftercare, wakeTeardown: () => isolationWorker.kick() });
  const reaper = new Reaper({
    store,
    catalog: () => current.catalog,
    clock,
    eventRetention: () => current.config.eventRetentionMs,
    wakeReclaim: wakeAftercare,
    onError,
  });
  // The interval is read once: a reload does not change it (like listen and database).
  const ticker = new Ticker(initial.reaperIntervalMs, [() => reaper.kick(), () => reclaim.kick(), () => fill.kick(), () => isolationWorker.kick()]);

  opened.push(
    () => reaper.stop(),
    () => Promise.all([reclaim.stop(SHUTDOWN_GRACE_MS), fill.stop(SHUTDOWN_GRACE_MS), isolationWorker.stop(SHUTDOWN_GRACE_MS)]).then(() => undefined),
  );

  const app = await buildApp({
    service,
    admin,
    logger: log,
    publicInventory: () => current.config.publicInventory,
    databaseUnavailable: isDatabaseUnavailable,
    metrics,
    metricsKeyRequired: () => current.config.metricsKeyRequired,
    httpLimits: { ...DEFAULT_HTTP_LIMITS, ...options.httpLimits },
    failedKeyLimits: options.failedKeyLimits,
    clock,
    healthCheck: async () => {
      await store.read().sessions.nextExpiry();
    },
  });
  opened.push(() => app.close());
  // Other replicas' releases wake this one's queue; the slow poll covers a lost connection.
  const stopListening = store.queueChannel ? await store.queueChannel.listen(() => queue.wake(false), onError) : async () => undefined;
  opened.push(() => queue.close(), stopListening);
  const listen = listenAt;
  await app.listen({ host: listen.host, port: listen.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  const url = `http://${host}:${port}`;
  log.info({ url, database: databaseLabel(initial.database) }, `cinode listening on ${url}`);
  warnPrivateInventory(log, initial);

  ticker.start();

  /** Reads the file and builds its snapshot; throws on any failure, having changed nothing in use. */
  async function nextSnapshot(): Promise<Snapshot> {
    const next: CinodeConfig = loadConfig(options.configPath, env);
    checkConfigFiles(next, options.configPath);
    if (next.database !== initial.database || next.listen.port !== initial.listen.port || next.listen.host !== initial.listen.host) {
      log.warn('listen and database changes take effect at the next start only');
    }
    return buildSnapshot(store, next, clock(), sshRuns);
  }

  let closing: Promise<void> | undefined;
  /** Reloads run one after another: a slow one never swaps in its snapshot after a later one. */
  let reloading: Promise<void> = Promise.resolve();
  async function reloadOnce(): Promise<void> {
    if (closing) return;
    try {
      current = await nextSnapshot();
    } catch (error) {
      log.error({ err: error }, 'configuration reload failed; keeping the running configuration');
      return;
    }
    log.info({ projects: current.config.projects.length, pools: current.config.pools.length }, 'configuration reloaded');
    warnPrivateInventory(log, current.config);
    reclaim.kick();
    fill.kick();
    isolationWorker.kick();
    wakeQueue();
  }

  return {
    url,
    app,
    store,
    service,
    reaper,
    reclaim,
    fill,
    isolation: isolationWorker,
    metrics,
    queue,
    reload() {
      reloading = reloading.then(reloadOnce).catch((error: unknown) => log.error({ err: error }, 'configuration reload failed'));
      return reloading;
    },
    close() {
      closing ??= (async () => {
        ticker.stop();
        // Waiting requests answer the capacity 503 now (a client may retry on another replica).
        await queue.close();
        await stopListening();
        await app.close(); // finishes requests in flight
        await reaper.stop();
        await Promise.all([reclaim.stop(SHUTDOWN_GRACE_MS), fill.stop(SHUTDOWN_GRACE_MS), isolationWorker.stop(SHUTDOWN_GRACE_MS)]);
        // The workers waited their grace: an ssh run still going now belongs to work they left
        // for the next start, and would outlive the process's database.
        for (const kill of sshRuns) kill();
        for (const kill of requestHooks) kill();
        await store.close();
        log.info('cinode stopped');
      })();
      return closing;
    },
  };
}
