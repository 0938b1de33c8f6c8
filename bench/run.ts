/**
 * `npm run bench`: measures cinode against the targets of issues 4 and 16 and against the HTTP stack's own
 * limit (a no-op server on the same Fastify + pino setup, driven by the same load generator).
 *
 * Scenarios, each on a fresh database and its own cinode process (SQLite in a temporary folder;
 * PostgreSQL too when CINODE_BENCH_POSTGRES_URL names a server):
 *   1. the full session cycle, sequentially: /Session/get, /Node/get ssid= count=1,
 *      /Node/done ssid= node=, /Session/done;
 *   2. requests per second at 1, 16 and 64 clients, each client repeating /Node/get count=1 +
 *      /Node/done ssid=, and the no-op server under the same load: 3 runs of 5 s per point, the
 *      two servers taking turns, medians with their min-max;
 *   3. /Node/get latency with 100, 10,000 and 100,000 nodes in the inventory, and startup time;
 *   4. the time the reaper takes to end 10,000 expired sessions (without nodes; holding a node each);
 *   5. the peak memory (VmHWM) of the server in each scenario;
 *   6. `/Admin/usage` over a year of history (a million node stays) and a `/metrics` scrape with
 *      100,000 nodes (bench/usage.ts).
 * Prints a table, how each figure moved against the last committed results (bench/compare.ts), and
 * writes bench/results/<date>-<engine>.json and bench/results/latest.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import SQLite from 'better-sqlite3';
import { comparison, loadBaseline, type Baseline } from './compare.js';
import { postgresDatabases, redact, sqliteDatabases, type Databases, type Engine } from './databases.js';
import { closedLoop, HttpTarget, json, summary, tally, type Cycle, type LoadResult } from './load.js';
import { BENCH_PROJECT, configYaml, REAP_PROJECTS, REPO_ROOT, ServerProcess, type Project } from './processes.js';
import { usageScenario, type UsageResult } from './usage.js';
import { databaseFloor, type FloorResult } from './floor.js';
import { queueScenario, type QueueResult } from './queue.js';
import { runSoak } from './soak.js';

// ---- sizes: together about two minutes on a small machine ----
const CYCLE_WARMUP = 300;
const CYCLES = 2000;
/** 16 and 64 clients are issue 16's points; 1 shows a client alone. */
const CONCURRENCIES = [1, 16, 64];
const LOAD_WARMUP_MS = 1000;
/** Each throughput point: LOAD_REPEATS runs of LOAD_DURATION_MS, cinode and the no-op server taking turns. */
const LOAD_DURATION_MS = 5000;
const LOAD_REPEATS = 3;
const LOAD_MAX_REQUESTS = 200_000;
/** Nodes of the pool in scenarios 1 and 2: more than 64 clients ever hold at once. */
const MAIN_POOL = 256;
const INVENTORY_SIZES = [100, 10_000, 100_000];
const NODE_GET_WARMUP = 200;
/** Samples per inventory size, taken in rounds that visit every size in turn (other load on the machine then hits all alike). */
const NODE_GET_ROUNDS = 5;
const NODE_GET_SAMPLES_PER_ROUND = 500;
const NODE_GET_SAMPLES = NODE_GET_ROUNDS * NODE_GET_SAMPLES_PER_ROUND;
const REAP_SESSIONS = 10_000;
const REAP_CREATE_CLIENTS = 16;

/** Duffy v3's create-and-retire cycle on this kind of machine (issue 4). */
const DUFFY_V3_CYCLE_MS = 380;

const PLACEHOLDER_SSID = '00000000-0000-4000-8000-000000000000';

const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);

// ---------------------------------------------------------------------------------------------

interface Stats {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

function stats(samples: number[]): Stats {
  const s = summary(samples);
  return { p50Ms: round(s.p50, 3), p90Ms: round(s.p90, 3), p99Ms: round(s.p99, 3), maxMs: round(s.max, 3), meanMs: round(s.mean, 3) };
}

interface CycleResult extends Stats {
  cycles: number;
  steps: Record<string, Stats>;
  startupMs: number;
}

/** The median of a point's repeated runs, and their spread. */
interface Spread {
  min: number;
  max: number;
}

interface ThroughputRow {
  concurrency: number;
  /** How many runs of LOAD_DURATION_MS each figure below is the median of. */
  repeats: number;
  cinodeRps: number;
  noopRps: number;
  ratio: number;
  cinodeRpsSpread: Spread;
  noopRpsSpread: Spread;
  /** cinode req/s / the no-op server's, run by run (the two taking turns). */
  ratioSpread: Spread;
  cinodeRequests: number;
  noopRequests: number;
  cinodeErrors: number;
  errorSample?: string;
  cinodeCycleP50Ms: number;
  cinodeCycleP99Ms: number;
  /** Server CPU time per request: a figure that other load on the machine disturbs less than req/s. */
  cinodeCpuUsPerRequest: number;
  noopCpuUsPerRequest: number;
  /** no-op CPU per request / cinode CPU per request. */
  cpuRatio: number;
  /** cinode CPU per request / the no-op server's (issue 16's "x"), run by run. */
  cpuFactor: number;
  cpuFactorSpread: Spread;
}

interface NodeGetRow extends Stats {
  nodes: number;
  samples: number;
  startupMs: number;
  startupPeakMiB: number;
  peakMiB: number;
}

interface ReapResult {
  /** Sessions without nodes, or each holding one node (which the reaper sends to reclaim). */
  variant: ReapVariant;
  sessions: number;
  createMs: number;
  /** From the restarted server's "listening" line (its reaper pass has begun) to the last session seen done. */
  passMs: number;
  firstStartupMs: number;
  restartStartupMs: number;
  /** From the restart (spawn) to the last session seen done. */
  restartToDoneMs: number;
  polls: number;
  leftActive: number;
  peakMiB: number;
}

interface Target {
  target: string;
  measured: string;
  pass: boolean | null;
}

interface EngineResult {
  engine: Engine;
  measured: boolean;
  reason?: string;
  databaseVersion?: string;
  cycle?: CycleResult;
  throughput?: ThroughputRow[];
  /** SQLite: the statements of a request replayed on SQLite alone (bench/floor.ts). */
  floor?: FloorResult;
  nodeGet?: NodeGetRow[];
  reap?: ReapResult[];
  reapMethod?: string;
  usage?: UsageResult;
  queue?: QueueResult;
  /** Peak resident memory of the server per scenario, MiB. */
  peakMemoryMiB?: Record<string, number>;
  errors: Record<string, string>;
  targets?: Target[];
}

// ---------------------------------------------------------------------------------------------

class Workspace {
  readonly dir = mkdtempSync(join(tmpdir(), 'cinode-bench-'));
  private n = 0;

  file(name: string): string {
    return join(this.dir, name);
  }

  /** Writes a configuration and starts cinode on it. */
  async cinode(label: string, database: string, nodes: number, projects: Project[], reaperInterval = '1s'): Promise<{ server: ServerProcess; configPath: string }> {
    const configPath = this.file(`${label}-${++this.n}.yaml`);
    writeFileSync(configPath, configYaml({ database, reaperInterval, nodes, projects }));
    return { server: await ServerProcess.cinode(configPath, this.file(`${label}.log`)), configPath };
  }
}

function check(answer: { status: number; body: string }, what: string): void {
  if (answer.status !== 200) throw new Error(`${what} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
}

// ---- scenario 1: the full session cycle, sequentially ----

async function sessionCycles(port: number): Promise<Omit<CycleResult, 'startupMs'>> {
  const target = new HttpTarget(port, 1);
  const key = BENCH_PROJECT.key;
  const steps = { '/Session/get': [] as number[], '/Node/get': [] as number[], '/Node/done': [] as number[], '/Session/done': [] as number[] };
  const whole: number[] = [];
  try {
    for (let i = 0; i < CYCLE_WARMUP + CYCLES; i++) {
      const t0 = performance.now();
      const session = await target.get(`/Session/get?key=${key}`);
      const t1 = performance.now();
      check(session, '/Session/get');
      const ssid = json<{ ssid: string }>(session)!.ssid;
      const got = await target.get(`/Node/get?key=${key}&ssid=${ssid}&count=1`);
      const t2 = performance.now();
      check(got, '/Node/get');
      const host = json<{ hosts: string[] }>(got)!.hosts[0];
      const done = await target.get(`/Node/done?key=${key}&ssid=${ssid}&node=${host}`);
      const t3 = performance.now();
      check(done, '/Node/done');
      const end = await target.get(`/Session/done?key=${key}&ssid=${ssid}`);
      const t4 = performance.now();
      check(end, '/Session/done');
      if (i < CYCLE_WARMUP) continue;
      whole.push(t4 - t0);
      steps['/Session/get'].push(t1 - t0);
      steps['/Node/get'].push(t2 - t1);
      steps['/Node/done'].push(t3 - t2);
      steps['/Session/done'].push(t4 - t3);
    }
  } finally {
    target.close();
  }
  return {
    cycles: whole.length,
    ...stats(whole),
    steps: Object.fromEntries(Object.entries(steps).map(([k, v]) => [k, stats(v)])),
  };
}

// ---- scenario 2: requests per second, cinode and the no-op server ----

/** One client's cycle: a new session with one node, then its end. The no-op server answers `{}` to both. */
const allocationCycle: Cycle = async (target) => {
  const outcome = { requests: 0, errors: 0 } as { requests: number; errors: number; sample?: string };
  const got = await target.get(`/Node/get?key=${BENCH_PROJECT.key}&count=1`);
  tally(outcome, got, '/Node/get');
  const ssid = json<{ ssid?: string }>(got)?.ssid ?? PLACEHOLDER_SSID;
  const done = await target.get(`/Node/done?key=${BENCH_PROJECT.key}&ssid=${ssid}`);
  tally(outcome, done, '/Node/done');
  return outcome;
};

function load(server: ServerProcess, concurrency: number): Promise<LoadResult> {
  return closedLoop(server.port, allocationCycle, {
    concurrency,
    durationMs: LOAD_DURATION_MS,
    maxRequests: LOAD_MAX_REQUESTS,
    warmupMs: LOAD_WARMUP_MS,
    serverCpuMs: () => server.cpuMs(),
  });
}

// ---- scenario 3: /Node/get latency by inventory size ----

/** `count` timed /Node/get count=1, each followed by an untimed /Node/done of its session. */
async function nodeGetSamples(target: HttpTarget, count: number, into: number[] | undefined): Promise<void> {
  const key = BENCH_PROJECT.key;
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const got = await target.get(`/Node/get?key=${key}&count=1`);
    const t1 = performance.now();
    check(got, '/Node/get');
    const done = await target.get(`/Node/done?key=${key}&ssid=${json<{ ssid: string }>(got)!.ssid}`);
    check(done, '/Node/done');
    into?.push(t1 - t0);
  }
}

// ---- scenario 4: reaping 10,000 expired sessions ----

type ReapVariant = 'empty' | 'nodes';

const REAP_METHOD =
  `${REAP_SESSIONS} sessions are created by ${REAP_PROJECTS.length} projects whose sessions live 1s (without nodes: /Session/get; ` +
  `holding one node each: /Node/get count=1 from a pool of ${REAP_SESSIONS} nodes without a reclaim command), by ${REAP_CREATE_CLIENTS} clients, on a ` +
  `server whose reaper-interval is 1h (its only pass ran at start, so it reaps none of them). That server is stopped (SIGTERM) ` +
  `and, once every session has expired, started again on the same database with reaper-interval 1s. Its reaper makes a pass as ` +
  `the server starts, just before the "listening" line, so there is no interval wait to subtract: the figure runs from that line ` +
  `to the moment /Session/show of the session that expired last (the pass ends sessions in expiry order) answers done, polled ` +
  `back to back (slack: up to one poll round trip); /Session/list is then checked to show none. An answer the server cannot ` +
  `give while it is busy (SQLite runs in the server's thread) counts as not yet done: this is the time until clients see it.`;

async function reapScenario(ws: Workspace, db: Databases, variant: ReapVariant): Promise<ReapResult> {
  const label = `reap-${variant}`;
  const database = await db.create(label);
  const nodes = variant === 'nodes' ? REAP_SESSIONS : 100;
  const first = await ws.cinode(label, database, nodes, REAP_PROJECTS, '1h');
  const createPath = (key: string) => (variant === 'nodes' ? `/Node/get?key=${key}&count=1` : `/Session/get?key=${key}`);
  let last = { ssid: '', key: '' };
  let lastCreatedAt = 0;
  const createStart = performance.now();
  try {
    const target = new HttpTarget(first.server.port, REAP_CREATE_CLIENTS);
    let next = 0;
    const client = async (id: number) => {
      const key = REAP_PROJECTS[id % REAP_PROJECTS.length]!.key;
      while (next < REAP_SESSIONS) {
        next++;
        const got = await target.get(createPath(key));
        check(got, variant === 'nodes' ? '/Node/get' : '/Session/get');
        last = { ssid: json<{ ssid: string }>(got)!.ssid, key };
        lastCreatedAt = Date.now();
      }
    };
    await Promise.all(Array.from({ length: REAP_CREATE_CLIENTS }, (_, id) => client(id)));
    target.close();
  } finally {
    await first.server.stop();
  }
  const createMs = performance.now() - createStart;
  // Every session expires 1s after its creation; wait until the last one has, with a margin.
  const wait = lastCreatedAt + 1000 + 250 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));

  const configPath = first.configPath;
  writeFileSync(configPath, configYaml({ database, reaperInterval: '1s', nodes, projects: REAP_PROJECTS }));
  const spawnedAt = performance.now();
  const server = await ServerProcess.cinode(configPath, ws.file(`${label}.log`));
  const target = new HttpTarget(server.port, 1);
  try {
    let polls = 0;
    for (;;) {
      const show = await target.get(`/Session/show?key=${last.key}&ssid=${last.ssid}`);
      polls++;
      check(show, '/Session/show');
      if (json<{ state: string }>(show)!.state === 'done') break;
      if (performance.now() - server.listeningAt > 60_000) throw new Error('the sessions were not reaped within 60 s');
    }
    const doneAt = performance.now();
    let leftActive = 0;
    for (const project of REAP_PROJECTS) {
      const list = await target.get(`/Session/list?key=${project.key}`);
      check(list, '/Session/list');
      leftActive += json<unknown[]>(list)!.length;
    }
    return {
      variant,
      sessions: REAP_SESSIONS,
      createMs: round(createMs, 0),
      passMs: round(doneAt - server.listeningAt, 1),
      firstStartupMs: round(first.server.startupMs, 0),
      restartStartupMs: round(server.startupMs, 0),
      restartToDoneMs: round(doneAt - spawnedAt, 0),
      polls,
      leftActive,
      peakMiB: round(server.peakMiB(), 1),
    };
  } finally {
    target.close();
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function spread(values: readonly number[], digits: number): Spread {
  return { min: round(Math.min(...values), digits), max: round(Math.max(...values), digits) };
}

/**
 * One throughput point: LOAD_REPEATS rounds, each a run on the no-op server then one on cinode,
 * so that other load on the machine falls on both alike; each ratio is taken within its round.
 */
async function throughputPoint(cinodeServer: ServerProcess, noopServer: ServerProcess, concurrency: number): Promise<ThroughputRow> {
  const runs: Array<{ noop: LoadResult; cinode: LoadResult }> = [];
  for (let i = 0; i < LOAD_REPEATS; i++) runs.push({ noop: await load(noopServer, concurrency), cinode: await load(cinodeServer, concurrency) });
  const cpu = (r: LoadResult) => r.serverCpuUsPerRequest ?? NaN;
  const cinodeRps = runs.map((r) => r.cinode.rps);
  const noopRps = runs.map((r) => r.noop.rps);
  const ratios = runs.map((r) => r.cinode.rps / r.noop.rps);
  const factors = runs.map((r) => cpu(r.cinode) / cpu(r.noop));
  const errors = runs.reduce((sum, r) => sum + r.cinode.errors, 0);
  const errorSample = runs.find((r) => r.cinode.errorSample)?.cinode.errorSample;
  return {
    concurrency,
    repeats: LOAD_REPEATS,
    cinodeRps: round(median(cinodeRps), 0),
    noopRps: round(median(noopRps), 0),
    ratio: round(median(ratios), 3),
    cinodeRpsSpread: spread(cinodeRps, 0),
    noopRpsSpread: spread(noopRps, 0),
    ratioSpread: spread(ratios, 3),
    cinodeRequests: runs.reduce((sum, r) => sum + r.cinode.requests, 0),
    noopRequests: runs.reduce((sum, r) => sum + r.noop.requests, 0),
    cinodeErrors: errors,
    ...(errorSample ? { errorSample } : {}),
    cinodeCycleP50Ms: round(median(runs.map((r) => r.cinode.cycleP50Ms)), 3),
    cinodeCycleP99Ms: round(median(runs.map((r) => r.cinode.cycleP99Ms)), 3),
    cinodeCpuUsPerRequest: round(median(runs.map((r) => cpu(r.cinode))), 0),
    noopCpuUsPerRequest: round(median(runs.map((r) => cpu(r.noop))), 0),
    cpuRatio: round(1 / median(factors), 3),
    cpuFactor: round(median(factors), 2),
    cpuFactorSpread: spread(factors, 2),
  };
}

/** CINODE_BENCH_ONLY=cycle,throughput,floor,inventory,reap,usage,queue runs just those scenarios (for working on one). */
const ONLY = process.env.CINODE_BENCH_ONLY?.split(',').map((s) => s.trim());

async function scenario(result: EngineResult, name: string, work: () => Promise<void>, id: string): Promise<void> {
  if (ONLY && !ONLY.includes(id)) return;
  const started = performance.now();
  process.stderr.write(`  ${name}...`);
  try {
    await work();
    process.stderr.write(` ${round((performance.now() - started) / 1000, 1)} s\n`);
  } catch (error) {
    result.errors[name] = error instanceof Error ? error.message : String(error);
    process.stderr.write(` FAILED: ${result.errors[name]}\n`);
  }
}

async function runEngine(ws: Workspace, db: Databases): Promise<EngineResult> {
  const result: EngineResult = { engine: db.engine, measured: true, errors: {}, peakMemoryMiB: {} };
  const peaks = result.peakMemoryMiB!;
  process.stderr.write(`${db.engine}:\n`);
  try {
    result.databaseVersion = await db.version();
  } catch (error) {
    return { engine: db.engine, measured: false, reason: `cannot reach the database: ${String(error)}`, errors: {} };
  }

  // Scenarios 1 and 2 share one server (a database that has seen some use by scenario 2).
  let main: ServerProcess | undefined;
  const mainServer = async () => (main ??= (await ws.cinode(`${db.engine}-main`, await db.create('main'), MAIN_POOL, [BENCH_PROJECT])).server);
  await scenario(
    result,
    'session cycle',
    async () => {
      const server = await mainServer();
      server.resetPeak();
      result.cycle = { ...(await sessionCycles(server.port)), startupMs: round(server.startupMs, 0) };
      peaks['session cycle'] = round(server.peakMiB(), 1);
    },
    'cycle',
  );
  await scenario(result, 'throughput', async () => {
    const server = await mainServer();
    server.resetPeak();
    result.throughput = [];
    const noop = await ServerProcess.noop(ws.file('noop.log'));
    try {
      for (const concurrency of CONCURRENCIES) result.throughput.push(await throughputPoint(server, noop, concurrency));
      peaks['no-op server (same load)'] = round(noop.peakMiB(), 1);
    } finally {
      await noop.stop();
    }
    peaks[`throughput (${CONCURRENCIES.join('/')} clients)`] = round(server.peakMiB(), 1);
  }, 'throughput');
  await main?.stop();
  if (db.engine === 'sqlite') {
    await scenario(
      result,
      "the database's floor (SQLite alone replaying a request's statements)",
      async () => {
        const configPath = ws.file('floor.yaml');
        writeFileSync(configPath, configYaml({ database: `sqlite:${ws.file('floor.db')}`, reaperInterval: '1s', nodes: MAIN_POOL, projects: [BENCH_PROJECT] }));
        result.floor = await databaseFloor(configPath, ws.file('floor.log'), ws.file('floor.trace'), (i) => ws.file(`floor-replay-${i}.db`));
      },
      'floor',
    );
  }

  result.nodeGet = [];
  await scenario(result, `/Node/get with ${INVENTORY_SIZES.join(', ')} nodes`, async () => {
    // One server per size, started one after the other (startup time and memory), then all kept
    // running while the rounds of samples visit them in turn.
    const servers: Array<{ nodes: number; server: ServerProcess; target: HttpTarget; startupPeakMiB: number; samples: number[] }> = [];
    try {
      for (const nodes of INVENTORY_SIZES) {
        const { server } = await ws.cinode(`${db.engine}-inventory-${nodes}`, await db.create(`inv${nodes}`), nodes, [BENCH_PROJECT]);
        servers.push({ nodes, server, target: new HttpTarget(server.port, 1), startupPeakMiB: round(server.peakMiB(), 1), samples: [] });
        server.resetPeak();
      }
      for (const s of servers) await nodeGetSamples(s.target, NODE_GET_WARMUP, undefined);
      for (let pass = 0; pass < NODE_GET_ROUNDS; pass++) {
        for (const s of servers) await nodeGetSamples(s.target, NODE_GET_SAMPLES_PER_ROUND, s.samples);
      }
      for (const s of servers) {
        const peakMiB = round(s.server.peakMiB(), 1);
        result.nodeGet!.push({ nodes: s.nodes, samples: s.samples.length, ...stats(s.samples), startupMs: round(s.server.startupMs, 0), startupPeakMiB: s.startupPeakMiB, peakMiB });
        peaks[`startup with ${s.nodes} nodes`] = s.startupPeakMiB;
        peaks[`/Node/get with ${s.nodes} nodes`] = peakMiB;
      }
    } finally {
      for (const s of servers) {
        s.target.close();
        await s.server.stop();
      }
    }
  }, 'inventory');

  result.reap = [];
  result.reapMethod = REAP_METHOD;
  for (const variant of ['empty', 'nodes'] as const) {
    const what = `reaping ${REAP_SESSIONS} sessions ${variant === 'nodes' ? 'holding a node each' : 'without nodes'}`;
    await scenario(result, what, async () => {
      const reaped = await reapScenario(ws, db, variant);
      result.reap!.push(reaped);
      peaks[what] = reaped.peakMiB;
    }, 'reap');
  }

  await scenario(result, 'usage over a year of history, /metrics with 100,000 nodes', async () => {
    result.usage = await usageScenario(db, async (label, database, nodes, projects) => (await ws.cinode(label, database, nodes, projects)).server);
    peaks['usage and /metrics'] = result.usage.peakMiB;
  }, 'usage');

  await scenario(result, 'the waiting queue: hand-off, time to node under contention, fairness', async () => {
    result.queue = await queueScenario(db, async (label, database, nodes, projects) => (await ws.cinode(label, database, nodes, projects)).server);
  }, 'queue');

  result.targets = targets(result);
  return result;
}

/** The no-op server's CPU per request at one client, and the floor (SQLite alone + that) as a multiple of it. */
function floorVsNoop(r: EngineResult): [string, string] {
  const noop = r.throughput?.find((t) => t.concurrency === 1)?.noopCpuUsPerRequest;
  if (!r.floor || noop === undefined) return ['not measured', 'not measured'];
  const floor = r.floor.sqliteCpuUsPerRequest + noop;
  return [`${noop} us`, `${floor} us = ${round(floor / noop, 1)}x the no-op server's`];
}

/** Issue 16's targets: the hot path against the no-op server on the same stack. */
function hotPathTargets(r: EngineResult): Target[] {
  const out: Target[] = [];
  const sqlite = r.engine === 'sqlite';
  const forSqlite = sqlite ? '' : ' (set for SQLite; for reference)';
  if (r.cycle) {
    const limit = sqlite ? 0.6 : 2.5;
    out.push({ target: `full session cycle p50 <= ${limit} ms, sequential`, measured: `${r.cycle.p50Ms} ms`, pass: r.cycle.p50Ms <= limit });
  }
  for (const t of r.throughput ?? []) {
    if (t.concurrency === 1) continue;
    const spreadText = `${round(t.ratioSpread.min * 100, 1)}-${round(t.ratioSpread.max * 100, 1)}%`;
    out.push({
      target: `${t.concurrency} clients: >= 40% of the no-op server's req/s (stretch 50%)${forSqlite}`,
      measured: `${round(t.ratio * 100, 1)}% (${spreadText}; ${t.cinodeRps} of ${t.noopRps} req/s)`,
      pass: sqlite ? t.ratio >= 0.4 && t.cinodeErrors === 0 : null,
    });
    out.push({
      target: `${t.concurrency} clients: server CPU per request <= 2.5x the no-op server's${forSqlite}`,
      measured: `${t.cpuFactor}x (${t.cpuFactorSpread.min}-${t.cpuFactorSpread.max}x; ${t.cinodeCpuUsPerRequest} vs ${t.noopCpuUsPerRequest} us)`,
      pass: sqlite ? t.cpuFactor <= 2.5 : null,
    });
    if (!sqlite && t.concurrency === 64) {
      out.push({
        target: '64 clients of one project, one replica: >= 2000 req/s',
        measured: `${t.cinodeRps} req/s (${t.cinodeRpsSpread.min}-${t.cinodeRpsSpread.max})`,
        pass: t.cinodeRps >= 2000 && t.cinodeErrors === 0,
      });
    }
  }
  if (r.floor) {
    out.push({
      target: "reference: the database's floor, a request's statements on SQLite alone + the no-op server (2b)",
      measured: floorVsNoop(r)[1],
      pass: null,
    });
  }
  const small = r.nodeGet?.find((n) => n.nodes === 100);
  const large = r.nodeGet?.find((n) => n.nodes === 100_000);
  if (large) {
    out.push({ target: 'peak memory at start with 100,000 nodes <= 300 MiB', measured: `${large.startupPeakMiB} MiB`, pass: large.startupPeakMiB <= 300 });
  }
  if (small && large) {
    const factor = large.p99Ms / small.p99Ms;
    out.push({
      target: '/Node/get p99 with 100,000 nodes <= 1.2x p99 with 100',
      measured: `${large.p99Ms} vs ${small.p99Ms} ms (${round(factor, 2)}x)`,
      pass: factor <= 1.2,
    });
  }
  return out;
}

function targets(r: EngineResult): Target[] {
  const out: Target[] = hotPathTargets(r);
  for (const reaped of r.reap ?? []) {
    out.push({
      target: `${REAP_SESSIONS} expired sessions ${reaped.variant === 'nodes' ? 'holding a node each' : 'without nodes'} reaped in < 2 s`,
      measured: `${reaped.passMs} ms`,
      pass: reaped.passMs < 2000 && reaped.leftActive === 0,
    });
  }
  const monthly = r.usage?.queries.find((q) => q.what === 'last 30 days by project');
  if (r.usage && monthly) {
    out.push({
      target: `/Admin/usage of the last 30 days over ${r.usage.stays.toLocaleString('en')} stays <= 500 ms`,
      measured: `${monthly.p50Ms} ms p50`,
      pass: monthly.p50Ms <= 500,
    });
    out.push({
      target: `/metrics scrape with ${r.usage.nodes.toLocaleString('en')} nodes <= 100 ms`,
      measured: `${r.usage.scrape.p50Ms} ms p50`,
      pass: r.usage.scrape.p50Ms <= 100,
    });
  }
  if (r.cycle) {
    out.push({
      target: `reference: Duffy v3 create-and-retire cycle ~${DUFFY_V3_CYCLE_MS} ms`,
      measured: `cinode ${r.cycle.p50Ms} ms p50 (${round(DUFFY_V3_CYCLE_MS / r.cycle.p50Ms, 0)}x less)`,
      pass: null,
    });
  }
  return out;
}

// ---- report ----

function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

function report(r: EngineResult, baseline: Baseline | undefined): string {
  const out: string[] = [];
  out.push(`== ${r.engine}${r.databaseVersion ? ` ${r.databaseVersion}` : ''} ==`);
  if (!r.measured) {
    out.push(`not measured: ${r.reason}`);
    return out.join('\n');
  }
  if (r.cycle) {
    const c = r.cycle;
    out.push(`\n1. Full session cycle, sequential (${c.cycles} cycles after ${CYCLE_WARMUP} warm-up; server startup ${c.startupMs} ms)`);
    out.push(
      table(
        ['', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        [
          ['whole cycle', c.p50Ms, c.p90Ms, c.p99Ms, c.maxMs],
          ...Object.entries(c.steps).map(([k, s]) => [`  ${k}`, s.p50Ms, s.p90Ms, s.p99Ms, s.maxMs]),
        ],
      ),
    );
  }
  if (r.throughput) {
    out.push(
      `\n2. Requests per second, each client repeating /Node/get count=1 + /Node/done ssid= (${LOAD_REPEATS} runs of ${LOAD_DURATION_MS / 1000} s per point, each after ${LOAD_WARMUP_MS / 1000} s warm-up, ` +
        'cinode and the no-op server taking turns; no-op server: same requests, same client; req/s counts 2xx answers only; medians, min-max in brackets)',
    );
    const range = (x: Spread, unit = '') => `[${x.min}${unit}-${x.max}${unit}]`;
    const percent = (x: number) => round(x * 100, 1);
    out.push(
      table(
        ['clients', 'cinode req/s', 'no-op req/s', 'share of no-op', 'errors', 'cycle p50 ms', 'cycle p99 ms', 'CPU us/req cinode', 'no-op', 'CPU vs no-op'],
        r.throughput.map((t) => [
          t.concurrency,
          `${t.cinodeRps} ${range(t.cinodeRpsSpread)}`,
          `${t.noopRps} ${range(t.noopRpsSpread)}`,
          `${percent(t.ratio)}% ${range({ min: percent(t.ratioSpread.min), max: percent(t.ratioSpread.max) }, '%')}`,
          t.cinodeErrors,
          t.cinodeCycleP50Ms,
          t.cinodeCycleP99Ms,
          t.cinodeCpuUsPerRequest,
          t.noopCpuUsPerRequest,
          `${t.cpuFactor}x ${range(t.cpuFactorSpread, 'x')}`,
        ]),
      ),
    );
    out.push('  CPU us/req: user + system time of the server process per request (/proc/PID/stat), less disturbed by other load than req/s.');
    for (const t of r.throughput) if (t.errorSample) out.push(`  first error at ${t.concurrency} clients: ${t.errorSample}`);
  }
  if (r.floor) {
    const f = r.floor;
    out.push(
      `\n2b. The database's floor: the statements cinode ran for ${f.requests} requests of scenario 2 (one client), replayed on SQLite alone ` +
        `(better-sqlite3, no cinode code; bench/floor.ts)`,
    );
    out.push(
      table(
        ['statements a request', 'SQLite alone: CPU us/req', 'no-op server: CPU us/req (1 client)', 'floor: SQLite + no-op server'],
        [[f.statementsPerRequest, `${f.sqliteCpuUsPerRequest} [${f.sqliteCpuUsSpread.min}-${f.sqliteCpuUsSpread.max}]`, ...floorVsNoop(r)]],
      ),
    );
    if (f.failedStatements > 0) out.push(`  ${f.failedStatements} statements failed in the replay as they did in cinode (handled there).`);
  }
  if (r.nodeGet && r.nodeGet.length > 0) {
    out.push(
      `\n3. /Node/get count=1 latency by inventory size (${NODE_GET_SAMPLES} requests per size after ${NODE_GET_WARMUP} warm-up, each followed by /Node/done; ` +
        `one server per size, sampled in ${NODE_GET_ROUNDS} rounds that visit every size in turn)`,
    );
    out.push(
      table(
        ['nodes', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'startup ms', 'startup peak MiB', 'peak MiB'],
        r.nodeGet.map((n) => [n.nodes, n.p50Ms, n.p90Ms, n.p99Ms, n.maxMs, n.startupMs, n.startupPeakMiB, n.peakMiB]),
      ),
    );
  }
  if (r.reap && r.reap.length > 0) {
    const sessionsOf = (v: ReapVariant) => (v === 'nodes' ? 'holding a node' : 'without nodes');
    out.push(`\n4. Expiring ${REAP_SESSIONS} sessions`);
    out.push(
      table(
        ['sessions', 'listening -> all done ms', 'spawn -> all done ms', 'startup ms (nothing due / 10,000 due)', `creating them (${REAP_CREATE_CLIENTS} clients) ms`, 'polls', 'left active'],
        r.reap.map((p) => [sessionsOf(p.variant), p.passMs, p.restartToDoneMs, `${p.firstStartupMs} / ${p.restartStartupMs}`, p.createMs, p.polls, p.leftActive]),
      ),
    );
    out.push(`  method: ${r.reapMethod}`);
  }
  if (r.usage) {
    const u = r.usage;
    out.push(`\n6. Operations on ${u.stays.toLocaleString('en')} node stays (${u.sessions.toLocaleString('en')} sessions over a year, written in ${u.seedMs} ms) and ${u.nodes.toLocaleString('en')} nodes`);
    out.push(table(['call', 'rows', 'p50 ms', 'max ms'], [...u.queries, u.scrape].map((q) => [q.what, q.rows, q.p50Ms, q.maxMs])));
  }
  if (r.peakMemoryMiB && Object.keys(r.peakMemoryMiB).length > 0) {
    out.push('\n5. Peak memory of the server (VmHWM, reset at the start of each scenario)');
    out.push(table(['scenario', 'MiB'], Object.entries(r.peakMemoryMiB).map(([k, v]) => [k, v])));
  }
  for (const [name, message] of Object.entries(r.errors)) out.push(`\nFAILED ${name}: ${message}`);
  if (r.targets) {
    out.push('\nTargets (issue 16 for the hot path and memory, issue 4 for the rest)');
    out.push(table(['', 'target', 'measured'], r.targets.map((t) => [t.pass === null ? 'INFO' : t.pass ? 'PASS' : 'MISS', t.target, t.measured])));
  }
  out.push(comparison(r, baseline));
  return out.join('\n');
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** The share of all cores busy during one second while this process waits (so: other work). */
async function otherCpuBusy(): Promise<number> {
  const sample = () => {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { total: fields.reduce((a, b) => a + b, 0), idle };
  };
  try {
    const a = sample();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const b = sample();
    return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
  } catch {
    return NaN;
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const sqliteVersion = (() => {
    const db = new SQLite(':memory:');
    try {
      return String((db.prepare('select sqlite_version() as v').get() as { v: string }).v);
    } finally {
      db.close();
    }
  })();
  const commit = git(['rev-parse', '--short', 'HEAD']);
  const dirty = (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '';
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${process.platform} ${release()}`,
    sqlite: sqliteVersion,
    /** Share of all cores busy with other work during one idle second before the run: it skews req/s and latency. */
    otherCpuBusyBefore: round(await otherCpuBusy(), 3),
    loadAverage1mBefore: round(loadavg()[0]!, 2),
  };
  const date = new Date().toISOString();
  process.stderr.write(`cinode benchmark: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, node ${machine.node}\n`);

  const ws = new Workspace();
  const results: EngineResult[] = [];
  try {
    results.push(await runEngine(ws, sqliteDatabases(ws.dir, sqliteVersion)));
    const pgUrl = process.env.CINODE_BENCH_POSTGRES_URL;
    if (pgUrl) {
      const databases = postgresDatabases(pgUrl);
      try {
        results.push(await runEngine(ws, databases));
      } finally {
        await databases.cleanup().catch((error: unknown) => process.stderr.write(`could not drop the benchmark databases: ${String(error)}\n`));
      }
      process.stderr.write(`(PostgreSQL at ${redact(pgUrl)})\n`);
    } else {
      results.push({
        engine: 'postgres',
        measured: false,
        reason:
          'CINODE_BENCH_POSTGRES_URL is not set. To measure PostgreSQL too, point it at a server where the user may create ' +
          'databases (each server of the run gets a fresh one, dropped at the end), e.g. eval "$(bash scripts/postgres.sh)" && ' +
          'CINODE_BENCH_POSTGRES_URL=$CINODE_TEST_POSTGRES_URL npm run bench',
        errors: {},
      });
    }
  } finally {
    if (process.env.CINODE_BENCH_KEEP) process.stderr.write(`kept the configurations, databases and server logs in ${ws.dir}\n`);
    else rmSync(ws.dir, { recursive: true, force: true });
  }

  const totalS = round((performance.now() - started) / 1000, 1);
  const busy = machine.otherCpuBusyBefore > 0.1;
  const header = [
    `cinode benchmark, ${date}${commit ? `, commit ${commit}${dirty ? ' (with uncommitted changes)' : ''}` : ''}`,
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM, ${machine.platform}, node ${machine.node}, SQLite ${machine.sqlite}`,
    'load: one node:http client per connection (keep-alive), closed loop, 127.0.0.1, in the benchmark process',
    `other work on the machine before the run: ${round(machine.otherCpuBusyBefore * 100, 1)}% of all cores busy (1-minute load average ${machine.loadAverage1mBefore})` +
      (busy ? ' -- WARNING: req/s and latencies are worse than on an idle machine; the CPU us/req figures are less affected' : ''),
  ].join('\n');
  const baseline = loadBaseline(REPO_ROOT);
  process.stdout.write(`\n${header}\n\n${results.map((r) => report(r, baseline)).join('\n\n')}\n\ntotal benchmark time: ${totalS} s\n`);

  if (ONLY) {
    process.stdout.write(`CINODE_BENCH_ONLY=${ONLY.join(',')}: a partial run, so bench/results/ was left as it was\n`);
    if (results.some((r) => Object.keys(r.errors).length > 0)) process.exitCode = 1;
    return;
  }
  const resultsDir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const day = date.slice(0, 10);
  const common = { date, command: 'npm run bench', commit: commit ?? null, uncommittedChanges: dirty, machine, totalSeconds: totalS };
  const written: string[] = [];
  for (const r of results) {
    if (!r.measured) continue;
    const file = join(resultsDir, `${day}-${r.engine}.json`);
    writeFileSync(file, `${JSON.stringify({ ...common, result: r }, null, 2)}\n`);
    written.push(file);
  }
  const latest = join(resultsDir, 'latest.json');
  writeFileSync(latest, `${JSON.stringify({ ...common, results }, null, 2)}\n`);
  written.push(latest);
  process.stdout.write(`results: ${written.map((f) => f.slice(REPO_ROOT.length)).join(', ')}\n`);
  if (results.some((r) => Object.keys(r.errors).length > 0)) process.exitCode = 1;
}

// `npm run bench -- soak`: the soak run of bench/soak.ts instead of the scenarios.
if (process.argv[2] === 'soak') await runSoak();
else await main();
