/**
 * How the figures of this run moved against the last committed results (bench/results/latest.json
 * as git's HEAD has it, else the file on disk): so a change that makes a request cost more CPU, or
 * a cycle take longer, shows up in the run that makes it. Figures are read from the JSON of both
 * runs by name; a figure only one of them has is left out.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A figure, and whether a larger value is better (req/s, a share) or worse (ms, us, MiB). */
interface Figure {
  value: number;
  higherIsBetter: boolean;
}

/** Only what the comparison reads of an engine's result (bench/run.ts EngineResult). */
interface ComparableResult {
  engine: string;
  measured: boolean;
  cycle?: { p50Ms: number; p99Ms: number };
  throughput?: Array<{ concurrency: number; cinodeRps: number; ratio: number; cinodeCpuUsPerRequest: number; noopCpuUsPerRequest: number }>;
  floor?: { sqliteCpuUsPerRequest: number; statementsPerRequest: number };
  nodeGet?: Array<{ nodes: number; p50Ms: number; p99Ms: number; startupMs: number; startupPeakMiB: number }>;
  reap?: Array<{ variant: string; passMs: number }>;
  usage?: { queries: Array<{ what: string; p50Ms: number }>; scrape: { p50Ms: number } };
  peakMemoryMiB?: Record<string, number>;
}

/** The figures of one engine's result, by name. */
export function figures(r: ComparableResult): Map<string, Figure> {
  const out = new Map<string, Figure>();
  const lower = (name: string, value: number | undefined) => {
    if (value !== undefined && Number.isFinite(value)) out.set(name, { value, higherIsBetter: false });
  };
  const higher = (name: string, value: number | undefined) => {
    if (value !== undefined && Number.isFinite(value)) out.set(name, { value, higherIsBetter: true });
  };
  lower('cycle p50 ms', r.cycle?.p50Ms);
  lower('cycle p99 ms', r.cycle?.p99Ms);
  for (const t of r.throughput ?? []) {
    higher(`${t.concurrency} clients: req/s`, t.cinodeRps);
    higher(`${t.concurrency} clients: share of the no-op server's req/s`, t.ratio);
    lower(`${t.concurrency} clients: CPU us/req`, t.cinodeCpuUsPerRequest);
    lower(`${t.concurrency} clients: CPU per request vs the no-op server's`, t.cinodeCpuUsPerRequest / t.noopCpuUsPerRequest);
  }
  lower('SQLite alone: CPU us/req', r.floor?.sqliteCpuUsPerRequest);
  lower('statements a request', r.floor?.statementsPerRequest);
  for (const n of r.nodeGet ?? []) {
    lower(`/Node/get p50 ms, ${n.nodes} nodes`, n.p50Ms);
    lower(`/Node/get p99 ms, ${n.nodes} nodes`, n.p99Ms);
    lower(`startup ms, ${n.nodes} nodes`, n.startupMs);
  }
  for (const p of r.reap ?? []) lower(`reaping sessions ${p.variant === 'nodes' ? 'holding a node' : 'without nodes'} ms`, p.passMs);
  for (const q of r.usage?.queries ?? []) lower(`${q.what} p50 ms`, q.p50Ms);
  lower('/metrics scrape p50 ms', r.usage?.scrape.p50Ms);
  for (const [scenario, mib] of Object.entries(r.peakMemoryMiB ?? {})) lower(`peak MiB: ${scenario}`, mib);
  return out;
}

export interface Baseline {
  /** Where it came from, for the report. */
  source: string;
  date: string;
  commit: string | null;
  results: ComparableResult[];
}

/** The last committed results: bench/results/latest.json at git's HEAD, else as on disk, else none. */
export function loadBaseline(repoRoot: string): Baseline | undefined {
  const path = 'bench/results/latest.json';
  let text: string | undefined;
  let source = `${path} at HEAD`;
  try {
    text = execFileSync('git', ['show', `HEAD:${path}`], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    if (existsSync(join(repoRoot, path))) {
      text = readFileSync(join(repoRoot, path), 'utf8');
      source = path;
    }
  }
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as { date: string; commit: string | null; results: ComparableResult[] };
    return { source, date: parsed.date, commit: parsed.commit, results: parsed.results ?? [] };
  } catch {
    return undefined;
  }
}

/** Changes smaller than this share are reported as unchanged (run-to-run noise on a shared machine). */
const NOISE = 0.05;

/** The report section: each figure of `now` against the baseline's, with how much it moved. */
export function comparison(now: ComparableResult, baseline: Baseline | undefined): string {
  if (!now.measured) return '';
  if (!baseline) return '\nAgainst the last committed results: none found (bench/results/latest.json)';
  const before = baseline.results.find((r) => r.engine === now.engine && r.measured);
  if (!before) return `\nAgainst the last committed results (${baseline.source}): that run did not measure ${now.engine}`;
  const old = figures(before);
  const rows: string[][] = [];
  for (const [name, figure] of figures(now)) {
    const was = old.get(name);
    if (!was || was.value === 0) continue;
    const change = figure.value / was.value - 1;
    const better = figure.higherIsBetter ? change > 0 : change < 0;
    const verdict = Math.abs(change) < NOISE ? '~' : better ? 'better' : 'WORSE';
    const sign = change >= 0 ? '+' : '';
    rows.push([name, String(round(was.value)), String(round(figure.value)), `${sign}${(change * 100).toFixed(1)}%`, verdict]);
  }
  if (rows.length === 0) return `\nAgainst the last committed results (${baseline.source}): no figure in common`;
  const header = ['figure', 'before', 'now', 'moved', ''];
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    `\nAgainst the last committed results (${baseline.source}, ${baseline.date}, commit ${baseline.commit ?? 'unknown'}; changes under ${NOISE * 100}% marked ~):`,
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
  ].join('\n');
}

function round(x: number): number {
  return Math.abs(x) >= 100 ? Math.round(x) : Math.round(x * 1000) / 1000;
}
