/**
 * Scenario 7 (`CINODE_BENCH_ONLY=queue`): the server-side waiting queue (docs/api.md, "Waiting
 * for capacity"), through a cinode process over HTTP:
 *
 *   1. hand-off latency: one node, one request waiting for it; from sending the holder's
 *      `/Node/done node=` to the waiting request's answer (the release's own round trip included);
 *   2. time to node under contention: N clients for M nodes, each holding its node a fixed time,
 *      three ways in the same run: waiting server-side (`wait=`), retrying on the 503 every 10 s as
 *      cico does, and retrying with the backoff of our client (src/client/retry.ts: full jitter,
 *      1 s doubling to 30 s);
 *   3. fairness: three projects with unequal demand (12, 4 and 2 clients) looping on a pool of 3
 *      nodes for a fixed time; Jain's index of the nodes each project was served.
 */
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { backoffDelay } from '../src/client/retry.js';
import type { Databases } from './databases.js';
import { HttpTarget, summary } from './load.js';
import type { Project, ServerProcess } from './processes.js';

const HANDOFF_SAMPLES = 200;
const CONTENTION_CLIENTS = 12;
const CONTENTION_NODES = 3;
const CONTENTION_HOLD_MS = 3_000;
/** cico's `node get` sleeps this long between tries (not scaled down). */
const CICO_RETRY_MS = 10_000;
const FAIRNESS_DEMAND = [12, 4, 2];
const FAIRNESS_NODES = 3;
const FAIRNESS_HOLD_MS = 200;
const FAIRNESS_RUN_MS = 20_000;

const PROJECTS: Project[] = [1, 2, 3].map((i) => ({ name: `queue${i}`, key: `queue${i}-key-0123456789abcdef` }));

export type WaitMode = 'server-side wait' | 'cico: retry every 10 s' | 'our client: backoff with jitter';

export interface ContentionRow {
  mode: WaitMode;
  /** Time to node per client, ms. */
  p50Ms: number;
  p90Ms: number;
  maxMs: number;
  /** From the first request to the last node handed out, ms. */
  makespanMs: number;
  /** Requests sent in all (the waiting ones count once). */
  requests: number;
  /** Share of the node-time in the makespan that nodes were held. */
  utilization: number;
}

export interface QueueResult {
  handoff: { samples: number; p50Ms: number; p99Ms: number; maxMs: number; releaseP50Ms: number; releaseP99Ms: number };
  contention: { clients: number; nodes: number; holdMs: number; rows: ContentionRow[] };
  fairness: { demand: number[]; nodes: number; holdMs: number; runMs: number; served: number[]; jain: number };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Jain's fairness index of the allocations: 1 when all are equal, 1/n when one gets everything. */
export function jainIndex(xs: readonly number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? 1 : (sum * sum) / (xs.length * squares);
}

interface Got {
  hosts: string[];
  ssid: string;
}

async function getNode(target: HttpTarget, key: string, wait: string): Promise<Got | undefined> {
  const answer = await target.get(`/Node/get?key=${key}&wait=${wait}`);
  if (answer.status === 200) return JSON.parse(answer.body) as Got;
  if (answer.status === 503) return undefined;
  throw new Error(`/Node/get answered ${answer.status}: ${answer.body.slice(0, 200)}`);
}

async function done(target: HttpTarget, key: string, got: Got): Promise<void> {
  const answer = await target.get(`/Node/done?key=${key}&ssid=${got.ssid}`);
  if (answer.status !== 200) throw new Error(`/Node/done answered ${answer.status}: ${answer.body.slice(0, 200)}`);
}

async function waitUntilQueued(target: HttpTarget, key: string, count: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const answer = await target.get(`/Queue?key=${key}`);
    if ((JSON.parse(answer.body) as unknown[]).length >= count) return;
    await sleep(2);
  }
  throw new Error('the request did not show in /Queue within 10 s');
}

/** 1. One node passed back and forth between two projects, each time to a request already waiting. */
async function handoff(server: ServerProcess): Promise<QueueResult['handoff']> {
  const target = new HttpTarget(server.port, 4);
  const samples: number[] = [];
  const releases: number[] = [];
  try {
    const [a, b] = PROJECTS as [Project, Project];
    let holder = { project: a, got: (await getNode(target, a.key, '0'))! };
    let waiter = b;
    for (let i = 0; i < HANDOFF_SAMPLES; i++) {
      const waiting = getNode(target, waiter.key, '1m');
      await waitUntilQueued(target, waiter.key, 1);
      const t0 = performance.now();
      const release = target.get(`/Node/done?key=${holder.project.key}&ssid=${holder.got.ssid}&node=${holder.got.hosts[0]}`).then(() => releases.push(performance.now() - t0));
      const got = await waiting;
      samples.push(performance.now() - t0);
      await release;
      if (!got) throw new Error('the waiting request was not served');
      await done(target, holder.project.key, holder.got);
      [holder, waiter] = [{ project: waiter, got }, holder.project];
    }
    await done(target, holder.project.key, holder.got);
  } finally {
    target.close();
  }
  const s = summary(samples);
  const r = summary(releases);
  return { samples: s.n, p50Ms: round(s.p50, 2), p99Ms: round(s.p99, 2), maxMs: round(s.max, 2), releaseP50Ms: round(r.p50, 2), releaseP99Ms: round(r.p99, 2) };
}

/** 2. Every client wants one node once, all at the same moment, and holds it for a while. */
async function contention(server: ServerProcess, mode: WaitMode): Promise<ContentionRow> {
  const target = new HttpTarget(server.port, CONTENTION_CLIENTS * 2);
  const key = PROJECTS[0]!.key;
  let requests = 0;
  const start = performance.now();
  let lastHandOut = start;
  try {
    const times = await Promise.all(
      Array.from({ length: CONTENTION_CLIENTS }, async () => {
        const asked = performance.now();
        for (let attempt = 1; ; attempt++) {
          requests++;
          const got = await getNode(target, key, mode === 'server-side wait' ? '10m' : '0');
          if (got) {
            const now = performance.now();
            lastHandOut = Math.max(lastHandOut, now);
            await sleep(CONTENTION_HOLD_MS);
            await done(target, key, got);
            return now - asked;
          }
          await sleep(mode === 'cico: retry every 10 s' ? CICO_RETRY_MS : backoffDelay(attempt, Math.random));
        }
      }),
    );
    const s = summary(times);
    const makespan = lastHandOut - start;
    const utilization = (CONTENTION_CLIENTS * CONTENTION_HOLD_MS) / (CONTENTION_NODES * (makespan + CONTENTION_HOLD_MS));
    return { mode, p50Ms: round(s.p50, 0), p90Ms: round(s.p90, 0), maxMs: round(s.max, 0), makespanMs: round(makespan, 0), requests, utilization: round(utilization, 3) };
  } finally {
    target.close();
  }
}

/** 3. Three projects loop on the same pool for a fixed time, with 12, 4 and 2 clients. */
async function fairness(server: ServerProcess): Promise<QueueResult['fairness']> {
  const target = new HttpTarget(server.port, FAIRNESS_DEMAND.reduce((a, b) => a + b, 0) * 2);
  const served = FAIRNESS_DEMAND.map(() => 0);
  const end = performance.now() + FAIRNESS_RUN_MS;
  try {
    await Promise.all(
      FAIRNESS_DEMAND.flatMap((clients, p) =>
        Array.from({ length: clients }, async () => {
          while (performance.now() < end) {
            const got = await getNode(target, PROJECTS[p]!.key, '1m');
            if (!got) continue;
            if (performance.now() < end) served[p]!++;
            await sleep(FAIRNESS_HOLD_MS);
            await done(target, PROJECTS[p]!.key, got);
          }
        }),
      ),
    );
  } finally {
    target.close();
  }
  return { demand: FAIRNESS_DEMAND, nodes: FAIRNESS_NODES, holdMs: FAIRNESS_HOLD_MS, runMs: FAIRNESS_RUN_MS, served, jain: round(jainIndex(served), 3) };
}

export async function queueScenario(
  db: Databases,
  startCinode: (label: string, database: string, nodes: number, projects: Project[]) => Promise<ServerProcess>,
): Promise<QueueResult> {
  const run = async <T>(label: string, nodes: number, work: (server: ServerProcess) => Promise<T>): Promise<T> => {
    const server = await startCinode(label, await db.create(label), nodes, PROJECTS);
    try {
      return await work(server);
    } finally {
      await server.stop();
    }
  };
  const handoffResult = await run('queue-handoff', 1, handoff);
  const rows: ContentionRow[] = [];
  for (const mode of ['server-side wait', 'cico: retry every 10 s', 'our client: backoff with jitter'] as const) {
    rows.push(await run(`queue-contention-${rows.length + 1}`, CONTENTION_NODES, (server) => contention(server, mode)));
  }
  const fair = await run('queue-fairness', FAIRNESS_NODES, fairness);
  const result: QueueResult = {
    handoff: handoffResult,
    contention: { clients: CONTENTION_CLIENTS, nodes: CONTENTION_NODES, holdMs: CONTENTION_HOLD_MS, rows },
    fairness: fair,
  };
  printQueue(db.engine, result);
  return result;
}

function printQueue(engine: string, r: QueueResult): void {
  const lines = [
    ``,
    `waiting queue (${engine}):`,
    `  hand-off, release sent -> waiting request answered (${r.handoff.samples} samples): p50 ${r.handoff.p50Ms} ms, p99 ${r.handoff.p99Ms} ms, max ${r.handoff.maxMs} ms (target p99 <= 50 ms: ${r.handoff.p99Ms <= 50 ? 'met' : 'MISSED'}); the release's own round trip in the same run: p50 ${r.handoff.releaseP50Ms} ms, p99 ${r.handoff.releaseP99Ms} ms; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores`,
    `  time to node, ${r.contention.clients} clients for ${r.contention.nodes} nodes, each held ${r.contention.holdMs / 1000} s (cico's 10 s retry not scaled):`,
    ...r.contention.rows.map(
      (row) =>
        `    ${row.mode.padEnd(32)} p50 ${(row.p50Ms / 1000).toFixed(2)} s, p90 ${(row.p90Ms / 1000).toFixed(2)} s, max ${(row.maxMs / 1000).toFixed(2)} s, last node at ${(row.makespanMs / 1000).toFixed(2)} s, ${row.requests} requests, node utilization ${(row.utilization * 100).toFixed(0)}%`,
    ),
    `  fairness, clients ${r.fairness.demand.join(' / ')} in three projects on ${r.fairness.nodes} nodes, ${r.fairness.holdMs} ms holds, ${r.fairness.runMs / 1000} s: served ${r.fairness.served.join(' / ')}, Jain's index ${r.fairness.jain} (target >= 0.95: ${r.fairness.jain >= 0.95 ? 'met' : 'MISSED'})`,
    ``,
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}
