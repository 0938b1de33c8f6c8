/**
 * The database's floor (SQLite): what the statements of a request cost SQLite by itself, with no
 * cinode code around them. Issue 16 asks that a target the hot path misses be explained by a
 * measured cost that cannot be removed; this is that figure for the database's share.
 *
 * cinode runs with CINODE_SQL_TRACE, which appends every statement it runs, with its parameters,
 * to a file (src/store/open.ts). One client sends FLOOR_PAIRS of the throughput scenario's pairs
 * (/Node/get count=1, /Node/done ssid=) after a warm-up. The trace is then replayed from its first
 * line (migrations, the catalog sync, the warm-up) on a new SQLite file opened as cinode opens it,
 * with better-sqlite3 alone: the same statements in the same order with the same values, so every
 * statement finds the state it found in cinode and does the same work. The replayed lines of the
 * measured pairs are timed by the process's CPU time (user + system, as the server's is).
 */
import { readFileSync } from 'node:fs';
import type SQLite from 'better-sqlite3';
import { openSqlite } from '../src/store/open.js';
import { SERVER_ENV } from '../src/api/env.js';
import { HttpTarget, json } from './load.js';
import { BENCH_PROJECT, ServerProcess } from './processes.js';

const FLOOR_WARMUP_PAIRS = 300;
const FLOOR_PAIRS = 2000;
const REPLAYS = 3;

export interface FloorResult {
  requests: number;
  /** Statements a request runs, begin and commit included. */
  statementsPerRequest: number;
  /** CPU time per request of SQLite alone replaying them, median of REPLAYS replays. */
  sqliteCpuUsPerRequest: number;
  sqliteCpuUsSpread: { min: number; max: number };
  /** Statements of the trace that failed in the replay (they failed in cinode too, and were handled there). */
  failedStatements: number;
}

export interface TracedStatement {
  sql: string;
  parameters: unknown[];
}

/** The statements of a trace file (CINODE_SQL_TRACE), in the order they ran. */
export function readTrace(path: string): TracedStatement[] {
  return readFileSync(path, 'utf8')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as TracedStatement);
}

function countLines(path: string): number {
  const text = readFileSync(path, 'utf8');
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Runs cinode on `configPath` (a SQLite database not yet created) with the trace on, sends the
 * requests, stops it, and replays the trace REPLAYS times into fresh files named by `replayFile`.
 */
export async function databaseFloor(configPath: string, logFile: string, tracePath: string, replayFile: (i: number) => string): Promise<FloorResult> {
  const server = await ServerProcess.start('cinode', ServerProcess.cinodeArgv(configPath), logFile, { ...process.env, [SERVER_ENV.SqlTrace]: tracePath });
  let measured: { from: number; to: number };
  try {
    const target = new HttpTarget(server.port, 1);
    const key = BENCH_PROJECT.key;
    const pair = async () => {
      const got = await target.get(`/Node/get?key=${key}&count=1`);
      if (got.status !== 200) throw new Error(`/Node/get answered ${got.status}: ${got.body}`);
      const done = await target.get(`/Node/done?key=${key}&ssid=${json<{ ssid: string }>(got)!.ssid}`);
      if (done.status !== 200) throw new Error(`/Node/done answered ${done.status}: ${done.body}`);
    };
    try {
      for (let i = 0; i < FLOOR_WARMUP_PAIRS; i++) await pair();
      // The trace is written synchronously: once an answer is in, its statements are in the file.
      const from = countLines(tracePath);
      for (let i = 0; i < FLOOR_PAIRS; i++) await pair();
      measured = { from, to: countLines(tracePath) };
    } finally {
      target.close();
    }
  } finally {
    await server.stop();
  }
  const trace = readTrace(tracePath).slice(0, measured.to);
  const requests = 2 * FLOOR_PAIRS;
  const replays = Array.from({ length: REPLAYS }, (_, i) => replay(trace, measured.from, replayFile(i)));
  const perRequest = replays.map((r) => r.cpuUs / requests).sort((a, b) => a - b);
  return {
    requests,
    statementsPerRequest: Math.round(((measured.to - measured.from) / requests) * 10) / 10,
    sqliteCpuUsPerRequest: Math.round(perRequest[perRequest.length >> 1]!),
    sqliteCpuUsSpread: { min: Math.round(perRequest[0]!), max: Math.round(perRequest[perRequest.length - 1]!) },
    failedStatements: replays[0]!.failed,
  };
}

/**
 * Replays `trace` into a new database at `file`, opened as the store opens its own; the CPU time
 * of the lines from `from` on, and how many statements failed.
 */
export function replay(trace: readonly TracedStatement[], from: number, file: string): { cpuUs: number; failed: number } {
  const db = openSqlite(file);
  const prepared = new Map<string, SQLite.Statement>();
  let failed = 0;
  const run = ({ sql, parameters }: TracedStatement) => {
    let statement = prepared.get(sql);
    if (statement === undefined) prepared.set(sql, (statement = db.prepare(sql)));
    try {
      if (statement.reader) statement.all(parameters);
      else statement.run(parameters);
    } catch {
      failed++;
    }
  };
  try {
    for (let i = 0; i < from; i++) run(trace[i]!);
    const started = process.cpuUsage();
    for (let i = from; i < trace.length; i++) run(trace[i]!);
    const used = process.cpuUsage(started);
    return { cpuUs: used.user + used.system, failed };
  } finally {
    db.close();
  }
}
