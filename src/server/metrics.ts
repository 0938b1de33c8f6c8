/**
 * `GET /metrics`: Prometheus text exposition (docs/api.md, "Metrics") from one registry per
 * server. HTTP requests are counted by route as they are answered; nodes by pool and state and
 * sessions by project are read from the database at each scrape, so every replica reports the
 * same truth; time to node and reclaim durations are observed by whoever sees them end.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { NodeState } from '../api/states.js';

/** What a scrape reads from the database. */
export interface ScrapeCounts {
  nodes: Array<{ pool: string; state: NodeState; count: number }>;
  sessions: Array<{ project: string; count: number }>;
  /** Requests waiting for capacity, by project (projects without one left out). */
  waiting: Array<{ project: string; count: number }>;
}

/** HTTP answers take milliseconds; the slow end catches a database that stalls. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Nodes come at once from a ready pool, in minutes from a command pool, in hours when waiting for capacity. */
const TIME_TO_NODE_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400];
/** A reset takes seconds, a reinstall up to an hour. */
const RECLAIM_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600];

/** The route label of requests no route matched: one series, not one per URL a scanner tries. */
const UNMATCHED_ROUTE = 'unmatched';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'cinode_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'cinode_http_request_duration_seconds',
    help: 'Time from a request arriving to its answer, by route',
    labelNames: ['route'] as const,
    buckets: REQUEST_BUCKETS,
    registers: [this.registry],
  });
  readonly timeToNode = new Histogram({
    name: 'cinode_time_to_node_seconds',
    help: 'Time from a /Node/get arriving to its nodes handed out, waiting included, by pool',
    labelNames: ['pool'] as const,
    buckets: TIME_TO_NODE_BUCKETS,
    registers: [this.registry],
  });
  readonly reclaimDuration = new Histogram({
    name: 'cinode_reclaim_duration_seconds',
    help: "Time from a node's release to the end of its aftercare, by pool and outcome (reclaimed, failed, deprovisioned, abandoned)",
    labelNames: ['pool', 'outcome'] as const,
    buckets: RECLAIM_BUCKETS,
    registers: [this.registry],
  });
  /** Session isolation hook runs (docs/api.md, "Session isolation"): outcome `ok`, `failed` or `timeout`. */
  readonly hookRuns = new Counter({
    name: 'cinode_hook_runs_total',
    help: 'Session isolation hook runs, by hook and outcome',
    labelNames: ['hook', 'outcome'] as const,
    registers: [this.registry],
  });

  constructor(counts: () => Promise<ScrapeCounts>) {
    // Unprefixed (process_*, nodejs_*), as the usual Node.js dashboards expect them.
    collectDefaultMetrics({ register: this.registry });
    // One database read per scrape, shared by the gauges it feeds.
    let pending: Promise<ScrapeCounts> | undefined;
    const read = () => (pending ??= counts().finally(() => setImmediate(() => (pending = undefined))));
    new Gauge({
      name: 'cinode_nodes',
      help: 'Nodes in service, by pool and state',
      labelNames: ['pool', 'state'] as const,
      registers: [this.registry],
      async collect() {
        const { nodes } = await read();
        this.reset();
        for (const { pool, state, count } of nodes) this.set({ pool, state }, count);
      },
    });
    new Gauge({
      name: 'cinode_queue_waiting',
      help: 'Requests waiting for capacity, by project (every replica reads the one queue)',
      labelNames: ['project'] as const,
      registers: [this.registry],
      async collect() {
        const { waiting } = await read();
        this.reset();
        for (const { project, count } of waiting) this.set({ project }, count);
      },
    });
    new Gauge({
      name: 'cinode_sessions_active',
      help: 'Active sessions, by project',
      labelNames: ['project'] as const,
      registers: [this.registry],
      async collect() {
        const { sessions } = await read();
        this.reset();
        for (const { project, count } of sessions) this.set({ project }, count);
      },
    });
  }

  /** Counts every answer by its route (the pattern, not the URL) and status. */
  observeRequests(app: FastifyInstance): void {
    // onSend runs before the answer leaves, so a client that reads it and scrapes sees it counted.
    app.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
      this.httpRequests.inc({ route, status: String(reply.statusCode) });
      this.httpDuration.observe({ route }, reply.elapsedTime / 1000);
      return payload;
    });
  }

  /** Registers `GET /metrics`; `authorize` throws (403) when the configuration wants a key and the request has none fit. */
  register(app: FastifyInstance, authorize: (request: FastifyRequest) => void): void {
    app.get('/metrics', { exposeHeadRoute: true }, async (request, reply) => {
      authorize(request);
      const text = await this.registry.metrics();
      return reply.type(this.registry.contentType).send(text);
    });
  }
}
