/**
 * `GET /metrics` on a real server (SQLite, or PostgreSQL with CINODE_TEST_DATABASE=postgres),
 * parsed by a real Prometheus text-format parser: every metric of docs/api.md, the node and
 * session gauges agreeing with `/Inventory` and `/Session/list`, counters that move by exactly the
 * requests made, time to node and reclaim durations observed, and the key rule of `metrics:`.
 */
import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

let server: TestServer;

/** The legacy inventory state names and the lifecycle's (docs/api.md, "/Inventory"). */
const LEGACY_STATE: Record<string, string> = {
  Ready: 'ready',
  Deployed: 'deployed',
  Deprovision: 'reclaiming',
  Fail: 'held',
  Failed: 'failed',
  Reserved: 'disabled',
};

async function scrape(target: TestServer = server, headers: Record<string, string> = {}): Promise<Map<string, PromFamily>> {
  const reply = await target.get('/metrics', {}, headers);
  expect(reply.status).toBe(200);
  expect(reply.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return new Map(parsePrometheusTextFormat(reply.text).map((family) => [family.name, family]));
}

function family(metrics: Map<string, PromFamily>, name: string): PromFamily {
  const found = metrics.get(name);
  if (!found) throw new Error(`no metric ${name} in the scrape`);
  return found;
}

/** The value of the counter or gauge series with exactly these labels (0 when there is none). */
function value(metrics: Map<string, PromFamily>, name: string, labels: Record<string, string>): number {
  const sample = family(metrics, name).metrics.find((m) => JSON.stringify(m.labels ?? {}) === JSON.stringify(labels));
  return sample ? Number(sample.value) : 0;
}

/**
 * How many observations a histogram series holds. parse-prometheus-text-format merges the
 * buckets of labelled histogram series into one (it keeps no labels for them), so the count is
 * read from the server's own registry; the scrape still has to parse.
 */
async function observations(name: string, labels: Record<string, string>, target: TestServer = server): Promise<number> {
  await scrape(target);
  const metric = (await target.server.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  // prom-client's JSON names each histogram value by its series (metricName), untyped.
  const values = (metric?.values ?? []) as Array<{ value: number; labels: object; metricName?: string }>;
  const count = values.find((v) => v.metricName === `${name}_count` && JSON.stringify(v.labels) === JSON.stringify(labels));
  return count ? Number(count.value) : 0;
}

beforeAll(async () => {
  server = await startTestServer({
    projects: { beta: { admin: true } },
    defaults: { 'rate-limit': '1000/5m' },
    pools: [
      { name: 'c7', ver: '7', nodes: 4, reclaim: ['/bin/true'] },
      { name: 'c9s', ver: '9-stream', nodes: 2 },
    ],
  });
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

describe('GET /metrics', () => {
  test('every metric of docs/api.md, with its type; the queue with nothing waiting and the hooks without isolation configured have no series', async () => {
    const metrics = await scrape();
    const types: Record<string, PromFamily['type']> = {
      cinode_http_requests_total: 'COUNTER',
      cinode_http_request_duration_seconds: 'HISTOGRAM',
      cinode_nodes: 'GAUGE',
      cinode_sessions_active: 'GAUGE',
      cinode_time_to_node_seconds: 'HISTOGRAM',
      cinode_queue_waiting: 'GAUGE',
      cinode_reclaim_duration_seconds: 'HISTOGRAM',
      cinode_hook_runs_total: 'COUNTER',
      process_resident_memory_bytes: 'GAUGE',
      process_cpu_seconds_total: 'COUNTER',
      nodejs_eventloop_lag_seconds: 'GAUGE',
    };
    for (const [name, type] of Object.entries(types)) expect([name, family(metrics, name).type]).toEqual([name, type]);
    expect(family(metrics, 'cinode_queue_waiting').metrics).toEqual([]);
    expect(family(metrics, 'cinode_hook_runs_total').metrics).toEqual([]);
  });

  test('nodes by pool and state agree with /Inventory and /Admin/nodes; active sessions with /Session/list', async () => {
    const got = await server.get('/Node/get', { key: KEYS.alpha, ver: '7', count: 2 });
    expect(got.status).toBe(200);
    expect((await server.get('/Session/get', { key: KEYS.alpha, alias: 'gauges' })).status).toBe(200);
    expect((await server.get('/Node/get', { key: KEYS.beta, ver: '9-stream' })).status).toBe(200);
    const held = (await server.get('/Node/get', { key: KEYS.beta, ver: '7' })).json as { ssid: string };
    expect((await server.get('/Node/fail', { key: KEYS.beta, ssid: held.ssid })).text).toBe('"Done"');

    const metrics = await scrape();
    const inventory = (await server.get('/Inventory')).json as Array<Array<string | number | null>>;
    const byState = new Map<string, number>();
    for (const row of inventory) byState.set(LEGACY_STATE[row[5] as string]!, (byState.get(LEGACY_STATE[row[5] as string]!) ?? 0) + 1);
    const scraped = new Map<string, number>();
    for (const sample of family(metrics, 'cinode_nodes').metrics) {
      scraped.set(sample.labels!.state!, (scraped.get(sample.labels!.state!) ?? 0) + Number(sample.value));
    }
    expect(scraped).toEqual(byState);
    expect(byState.get('deployed')).toBe(3);
    expect(byState.get('held')).toBe(1);

    const nodes = (await server.get('/Admin/nodes', { key: KEYS.beta })).json as Array<{ pool: string; state: string }>;
    for (const pool of ['c7', 'c9s']) {
      for (const state of new Set(nodes.map((n) => n.state))) {
        const count = nodes.filter((n) => n.pool === pool && n.state === state).length;
        expect([pool, state, value(metrics, 'cinode_nodes', { pool, state })]).toEqual([pool, state, count]);
      }
    }

    for (const [project, key] of [['alpha', KEYS.alpha], ['beta', KEYS.beta]] as const) {
      const sessions = (await server.get('/Session/list', { key })).json as unknown[];
      expect([project, value(metrics, 'cinode_sessions_active', { project })]).toEqual([project, sessions.length]);
    }
    expect(value(metrics, 'cinode_sessions_active', { project: 'alpha' })).toBe(2);
  });

  test('request counters move by exactly the requests made, by route pattern and status', async () => {
    const before = await scrape();
    for (let i = 0; i < 3; i++) expect((await server.get('/Session/list', { key: KEYS.alpha })).status).toBe(200);
    expect((await server.get('/Session/list', { key: 'no-such-key-0123456789' })).status).toBe(403);
    expect((await server.get('/no/such/endpoint/42')).status).toBe(404);
    const after = await scrape();
    const moved = (labels: Record<string, string>) =>
      value(after, 'cinode_http_requests_total', labels) - value(before, 'cinode_http_requests_total', labels);
    expect(moved({ route: '/Session/list', status: '200' })).toBe(3);
    expect(moved({ route: '/Session/list', status: '403' })).toBe(1);
    expect(moved({ route: 'unmatched', status: '404' })).toBe(1);
    // The scrape in between counts itself once.
    expect(moved({ route: '/metrics', status: '200' })).toBe(1);
    expect(await observations('cinode_http_request_duration_seconds', { route: '/Session/list' })).toBe(
      value(after, 'cinode_http_requests_total', { route: '/Session/list', status: '200' }) +
        value(after, 'cinode_http_requests_total', { route: '/Session/list', status: '403' }),
    );
    // No series per URL: a scanner's paths all fall under one route label.
    expect(family(after, 'cinode_http_requests_total').metrics.some((m) => m.labels?.route?.includes('no/such'))).toBe(false);
  });

  test('time to node counts each /Node/get that handed nodes out, by pool; reclaim durations by pool and outcome', async () => {
    const count = (pool: string) => observations('cinode_time_to_node_seconds', { pool });
    const before = { c7: await count('c7'), c9s: await count('c9s') };
    const got = (await server.get('/Node/get', { key: KEYS.alpha, ver: '9-stream' })).json as { ssid: string };
    expect((await server.get('/Node/get', { key: KEYS.alpha, ver: '9-stream' })).status).toBe(503);
    expect((await count('c9s')) - before.c9s).toBe(1);
    expect((await count('c7')) - before.c7).toBe(0);

    // c7 has a reclaim command: a release goes through reclaim and is observed when it ends.
    const c7 = (await server.get('/Node/get', { key: KEYS.alpha, ver: '7' })).json as { ssid: string };
    const reclaimed = () => observations('cinode_reclaim_duration_seconds', { pool: 'c7', outcome: 'reclaimed' });
    const start = await reclaimed();
    expect((await server.get('/Node/done', { key: KEYS.alpha, ssid: c7.ssid })).text).toBe('"Done"');
    await waitFor('the reclaim to be observed', async () => (await reclaimed()) === start + 1);
    // Buckets up to an hour for reclaim, up to hours for time to node.
    const metrics = await scrape();
    expect(Object.keys(family(metrics, 'cinode_reclaim_duration_seconds').metrics[0]!.buckets!)).toContain('3600');
    expect(Object.keys(family(metrics, 'cinode_time_to_node_seconds').metrics[0]!.buckets!)).toContain('14400');
    expect((await server.get('/Node/done', { key: KEYS.alpha, ssid: got.ssid })).text).toBe('"Done"');
  });

  test('a non-admin key gets 403 on every /Admin/ call', async () => {
    const calls = ['/Admin/nodes', '/Admin/events', '/Admin/usage', '/Admin/sessions', '/Admin/node/release', '/Admin/node/disable', '/Admin/node/enable'];
    for (const path of calls) {
      const reply = await server.get(path, { key: KEYS.alpha, hostname: 'c7-1.test.example' });
      expect([path, reply.status, (reply.json as { msg: string }).msg]).toEqual([path, 403, expect.stringContaining('admin: true')]);
    }
  });
});

describe('metrics: {key-required: true}', () => {
  test('a scrape needs an admin project key, as Bearer or key=', async () => {
    const locked = await startTestServer({ projects: { beta: { admin: true } }, topYaml: ['metrics: {key-required: true}'] });
    try {
      expect((await locked.get('/metrics')).status).toBe(403);
      expect((await locked.get('/metrics', { key: KEYS.alpha })).status).toBe(403);
      const metrics = await scrape(locked, { authorization: `Bearer ${KEYS.beta}` });
      expect(family(metrics, 'cinode_nodes').metrics.length).toBeGreaterThan(0);
      expect((await locked.get('/metrics', { key: KEYS.beta })).status).toBe(200);
    } finally {
      await locked.close();
      removeDir(locked.dir);
    }
  });
});
