/**
 * Scenario 6: operations on a big history. A year of use, a million node stays (250,000 sessions
 * of 4 nodes each, 30 minutes to 2 hours long, spread evenly over the year) on an inventory of
 * 100,000 nodes, written straight into the database with one INSERT ... SELECT each; then, through
 * a cinode process over HTTP, `/Admin/usage` over the last 30 days and over the whole year, and a
 * `/metrics` scrape (nodes by pool and state are counted from the database at each scrape).
 */
import { performance } from 'node:perf_hooks';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import type { Databases } from './databases.js';
import { HttpTarget, type Answer } from './load.js';
import type { Project, ServerProcess } from './processes.js';

export const USAGE_NODES = 100_000;
export const USAGE_SESSIONS = 250_000;
const NODES_PER_SESSION = 4;
export const USAGE_STAYS = USAGE_SESSIONS * NODES_PER_SESSION;
const SAMPLES = 5;
const SCRAPE_SAMPLES = 20;
const DAY_MS = 86_400_000;

export const USAGE_PROJECT: Project = { name: 'bench', key: 'bench-key-0123456789abcdef', settings: { admin: 'true' } };

export interface UsageRow {
  what: string;
  rows: number;
  p50Ms: number;
  maxMs: number;
}

export interface UsageResult {
  nodes: number;
  sessions: number;
  stays: number;
  seedMs: number;
  queries: UsageRow[];
  scrape: UsageRow;
  peakMiB: number;
}

/** The sessions and their node stays of a year before `now`, as SQL both engines run. */
function seedStatements(now: number): string[] {
  const start = now - 365 * DAY_MS;
  const step = Math.floor((365 * DAY_MS - 3 * 3_600_000) / USAGE_SESSIONS);
  return [
    `with recursive seq(i) as (select cast(0 as bigint) union all select i + 1 from seq where i < ${USAGE_SESSIONS - 1})
     insert into sessions (ssid, project_id, alias, state, created_at, expires_at, ended_at, end_reason)
     select 'usage-' || i, (select id from projects where name = '${USAGE_PROJECT.name}'),
       'org' || (i % 20) || '/repo' || (i % 50) || '/' || i || '/1/job' || (i % 5), 'done',
       ${start} + i * ${step}, null, ${start} + i * ${step} + 1800000 + (i % 7) * 900000, 'done'
     from seq`,
    `insert into session_nodes (session_id, node_id, added_at, released_at, release_reason)
     select s.id, ((s.id * ${NODES_PER_SESSION} + k.k) % ${USAGE_NODES}) + 1, s.created_at, s.ended_at, 'done'
     from sessions s cross join (select 0 as k union all select 1 union all select 2 union all select 3) k
     where s.ssid like 'usage-%'`,
  ];
}

async function seed(database: string, now: number): Promise<void> {
  const statements = seedStatements(now);
  if (database.startsWith('sqlite:')) {
    const db = new SQLite(database.slice('sqlite:'.length));
    try {
      db.transaction(() => statements.forEach((s) => db.exec(s)))();
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    for (const statement of statements) await client.query(statement);
    await client.query('analyze');
  } finally {
    await client.end();
  }
}

async function timed(target: HttpTarget, what: string, path: string, samples: number, count: (answer: Answer) => number): Promise<UsageRow> {
  const durations: number[] = [];
  let rows = 0;
  await target.get(path); // warm-up
  for (let i = 0; i < samples; i++) {
    const begun = performance.now();
    const answer = await target.get(path);
    durations.push(performance.now() - begun);
    if (answer.status !== 200) throw new Error(`${path} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
    rows = count(answer);
  }
  durations.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  return { what, rows, p50Ms: round(durations[Math.floor(durations.length / 2)]!), maxMs: round(durations[durations.length - 1]!) };
}

/**
 * Starts cinode once to create the schema and the 100,000 nodes, stops it, writes the history,
 * and starts it again to measure.
 */
export async function usageScenario(
  db: Databases,
  startCinode: (label: string, database: string, nodes: number, projects: Project[]) => Promise<ServerProcess>,
): Promise<UsageResult> {
  const database = await db.create('usage');
  await (await startCinode('usage-schema', database, USAGE_NODES, [USAGE_PROJECT])).stop();
  const now = Date.now();
  const seedStart = performance.now();
  await seed(database, now);
  const seedMs = Math.round(performance.now() - seedStart);
  const server = await startCinode('usage', database, USAGE_NODES, [USAGE_PROJECT]);
  server.resetPeak(); // the calls' memory, not the startup's (scenario 3 measures that)
  const target = new HttpTarget(server.port, 1);
  try {
    const key = USAGE_PROJECT.key;
    const year = new Date(now - 365 * DAY_MS).toISOString();
    const rowsOf = (answer: Answer) => (JSON.parse(answer.body) as unknown[]).length;
    const queries = [
      await timed(target, 'last 30 days by project', `/Admin/usage?key=${key}`, SAMPLES, rowsOf),
      await timed(target, 'last 30 days by alias, depth 2', `/Admin/usage?key=${key}&by=alias&depth=2`, SAMPLES, rowsOf),
      await timed(target, 'last 30 days by pool', `/Admin/usage?key=${key}&by=pool`, SAMPLES, rowsOf),
      await timed(target, 'the whole year by project', `/Admin/usage?key=${key}&from=${year}`, SAMPLES, rowsOf),
      await timed(target, 'the whole year by alias, depth 2', `/Admin/usage?key=${key}&by=alias&depth=2&from=${year}`, SAMPLES, rowsOf),
    ];
    const scrape = await timed(target, `/metrics with ${USAGE_NODES} nodes`, '/metrics', SCRAPE_SAMPLES, (answer) => answer.body.split('\n').filter((l) => l.startsWith('cinode_nodes{')).length);
    return { nodes: USAGE_NODES, sessions: USAGE_SESSIONS, stays: USAGE_STAYS, seedMs, queries, scrape, peakMiB: Math.round(server.peakMiB() * 10) / 10 };
  } finally {
    target.close();
    await server.stop();
  }
}
