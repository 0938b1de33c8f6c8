/**
 * The load generator of the benchmark: plain node:http GETs to 127.0.0.1 over a keep-alive Agent
 * with one socket per client, closed-loop (each client sends its next request when the previous
 * answer is in), bounded by a request count and a time. The same code drives cinode and the no-op
 * server, so the comparison measures the servers, not two different clients.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface Answer {
  status: number;
  body: string;
}

/** A client of one server: GET path (query included, sent as is, like legacy clients). */
export class HttpTarget {
  readonly agent: Agent;

  constructor(
    readonly port: number,
    concurrency: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  }

  get(path: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: this.port, path, method: 'GET', agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The parsed JSON of an answer, or undefined. */
export function json<T>(answer: Answer): T | undefined {
  try {
    return JSON.parse(answer.body) as T;
  } catch {
    return undefined;
  }
}

/** What one cycle of a client did: how many requests it sent and how many were not 2xx. */
export interface CycleOutcome {
  requests: number;
  errors: number;
  /** The first unexpected answer, for the report. */
  sample?: string;
}

export type Cycle = (target: HttpTarget, client: number) => Promise<CycleOutcome>;

export interface LoadOptions {
  concurrency: number;
  /** Stop after this long (measured phase). */
  durationMs: number;
  /** Or after this many requests, whichever comes first. */
  maxRequests: number;
  /** An unmeasured phase first (same load), so JIT and caches are warm. */
  warmupMs: number;
  /** The CPU time (ms) the server process has used so far, read around the measured phase. */
  serverCpuMs?: () => number;
}

export interface LoadResult {
  concurrency: number;
  requests: number;
  cycles: number;
  errors: number;
  errorSample?: string;
  elapsedMs: number;
  /** Successful (2xx) answers per second. */
  rps: number;
  cycleP50Ms: number;
  cycleP99Ms: number;
  /** Server CPU time per request (user + system), when `serverCpuMs` was given. */
  serverCpuUsPerRequest?: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function summary(samples: readonly number[]): { n: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean,
  };
}

/** Runs `cycle` on `concurrency` clients at once: a warm-up, then the measured phase. */
export async function closedLoop(port: number, cycle: Cycle, options: LoadOptions): Promise<LoadResult> {
  const target = new HttpTarget(port, options.concurrency);
  try {
    const phase = async (durationMs: number, maxRequests: number) => {
      const latencies: number[] = [];
      let requests = 0;
      let errors = 0;
      let sample: string | undefined;
      const start = performance.now();
      const deadline = start + durationMs;
      const client = async (id: number) => {
        while (performance.now() < deadline && requests < maxRequests) {
          const t0 = performance.now();
          const outcome = await cycle(target, id);
          latencies.push(performance.now() - t0);
          requests += outcome.requests;
          errors += outcome.errors;
          sample ??= outcome.sample;
        }
      };
      await Promise.all(Array.from({ length: options.concurrency }, (_, i) => client(i)));
      return { latencies, requests, errors, sample, elapsedMs: performance.now() - start };
    };
    if (options.warmupMs > 0) await phase(options.warmupMs, Number.MAX_SAFE_INTEGER);
    const cpuBefore = options.serverCpuMs?.();
    const measured = await phase(options.durationMs, options.maxRequests);
    const cpuAfter = options.serverCpuMs?.();
    const s = summary(measured.latencies);
    return {
      concurrency: options.concurrency,
      requests: measured.requests,
      cycles: measured.latencies.length,
      errors: measured.errors,
      ...(measured.sample ? { errorSample: measured.sample } : {}),
      elapsedMs: measured.elapsedMs,
      // Answers that were errors (a 503 comes back fast) are not counted as served.
      rps: (measured.requests - measured.errors) / (measured.elapsedMs / 1000),
      cycleP50Ms: s.p50,
      cycleP99Ms: s.p99,
      ...(cpuBefore !== undefined && cpuAfter !== undefined ? { serverCpuUsPerRequest: ((cpuAfter - cpuBefore) * 1000) / measured.requests } : {}),
    };
  } finally {
    target.close();
  }
}

/** Counts an answer into a cycle's outcome. */
export function tally(outcome: CycleOutcome, answer: Answer, what: string): void {
  outcome.requests++;
  if (answer.status < 200 || answer.status > 299) {
    outcome.errors++;
    outcome.sample ??= `${what}: ${answer.status} ${answer.body.slice(0, 200)}`;
  }
}
