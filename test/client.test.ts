/**
 * The typed client with a fake transport, a fake clock and a fake sleep: the legacy bodies parsed
 * into results and errors, the retry rules per call, the budget, cancellation, and the key's
 * travels. No network (one loopback test checks that the default transport can be cancelled).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ActionsHttpTransport,
  backoffDelay,
  CinodeAbortError,
  CinodeApiError,
  CinodeClient,
  withRetry,
  type CinodeClientOptions,
  type HttpTransport,
  type RetryInfo,
  type SessionView,
  type TransportOptions,
  type TransportResponse,
} from '../src/client/index.js';
import { redactKey } from '../src/client/errors.js';

const KEY = 'secret-key-0123456789abcdef';
const BASE = 'http://cinode.test:8080';
const SSID = '7d2c3a1e-58f1-4b55-9a7e-3f0e3a5c9b10';

type Reply = { status: number; body: unknown; headers?: Record<string, string> } | Error | 'hang';

interface Sent {
  url: URL;
  headers: Record<string, string>;
}

/** A transport that answers from a script (the last reply repeats) and records what was sent. */
class FakeTransport implements HttpTransport {
  readonly sent: Sent[] = [];
  constructor(private readonly replies: Reply[]) {}

  get(url: string, headers: Record<string, string>, options?: TransportOptions): Promise<TransportResponse> {
    this.sent.push({ url: new URL(url), headers });
    const reply = this.replies.length > 1 ? this.replies.shift()! : this.replies[0]!;
    if (reply === 'hang') {
      return new Promise((_resolve, reject) => options?.signal?.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    if (reply instanceof Error) return Promise.reject(reply);
    const body = typeof reply.body === 'string' && reply.headers?.['content-type']?.startsWith('text/plain') ? reply.body : JSON.stringify(reply.body);
    return Promise.resolve({ status: reply.status, headers: reply.headers ?? { 'content-type': 'application/json' }, body });
  }
}

const text = (status: number, body: string, headers: Record<string, string> = {}): Reply => ({
  status,
  body,
  headers: { 'content-type': 'text/plain; charset=utf-8', ...headers },
});
const json = (status: number, body: unknown, headers: Record<string, string> = {}): Reply => ({
  status,
  body,
  headers: { 'content-type': 'application/json', ...headers },
});
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });

interface Harness {
  client: CinodeClient;
  transport: FakeTransport;
  sleeps: number[];
  retries: RetryInfo[];
  clock: { t: number };
}

function harness(replies: Reply[], options: Partial<CinodeClientOptions> = {}): Harness {
  const transport = new FakeTransport(replies);
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  const clock = { t: 1_700_000_000_000 };
  const client = new CinodeClient({
    url: BASE,
    key: KEY,
    transport,
    now: () => clock.t,
    random: () => 0.5,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.t += ms;
    },
    onRetry: (info) => retries.push(info),
    ...options,
  });
  return { client, transport, sleeps, retries, clock };
}

async function failure(promise: Promise<unknown>): Promise<CinodeApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof CinodeApiError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

const VIEW: SessionView = {
  ssid: SSID,
  alias: 'job-1',
  state: 'active',
  created_at: '2026-11-23T18:00:00.000Z',
  expires_at: '2026-11-24T00:00:00.000Z',
  ended_at: null,
  end_reason: null,
  heartbeat: null,
  heartbeat_deadline: null,
  hosts: [{ hostname: 'n1.example', ip: '192.0.2.1', state: 'deployed', ver: '7', arch: 'x86_64', flavor: null }],
};

const PUBLIC_ROW = [1, 'n1.example', '192.0.2.1', null, 3, 'Deployed', SSID, null, null, '7', 'x86_64', 1, null, null];

describe('requests', () => {
  test('sends a GET to base + path with the key as a Bearer header, not in the query', async () => {
    const h = harness([json(200, { hosts: ['n1.example'], ssid: SSID })]);
    await h.client.getNodes({ count: 2, ver: '9-stream', arch: 'x86_64' });
    const [sent] = h.transport.sent;
    expect(sent!.url.pathname).toBe('/Node/get');
    expect(Object.fromEntries(sent!.url.searchParams)).toEqual({ count: '2', ver: '9-stream', arch: 'x86_64' });
    expect(sent!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent!.url.href).not.toContain(KEY);
    expect(sent!.headers['user-agent']).toBe('cinode-client');
  });

  test('keyInQuery sends key= in the query and no Authorization header (legacy admin.ci)', async () => {
    const h = harness([json(200, [])], { keyInQuery: true });
    await h.client.listSessions();
    const [sent] = h.transport.sent;
    expect(sent!.url.searchParams.get('key')).toBe(KEY);
    expect(sent!.headers.authorization).toBeUndefined();
  });

  test('leaves out parameters that are undefined or empty', async () => {
    const h = harness([json(200, { hosts: [], ssid: SSID })]);
    await h.client.getNodes({ ver: '', arch: undefined, flavor: '', ssid: 'job-1' });
    expect([...h.transport.sent[0]!.url.searchParams.keys()]).toEqual(['ssid']);
  });

  test('keeps a path prefix of the base URL, with or without a trailing slash', async () => {
    for (const url of ['http://host.test/api/v1', 'http://host.test/api/v1/']) {
      const h = harness([json(200, [])], { url });
      await h.client.listSessions();
      expect(h.transport.sent[0]!.url.href).toBe('http://host.test/api/v1/Session/list');
    }
  });

  test('encodes values with URLSearchParams and sends node= as one comma-separated value', async () => {
    const h = harness([json(200, 'Done')]);
    await h.client.doneNodes('org/repo:1@a', ['n1.example', 'n2.example']);
    const { url } = h.transport.sent[0]!;
    expect(url.search).toBe('?ssid=org%2Frepo%3A1%40a&node=n1.example%2Cn2.example');
    expect(url.searchParams.getAll('node')).toEqual(['n1.example,n2.example']);
  });

  test('an explicitly empty node list is refused before sending (leaving it out would end the whole session)', async () => {
    const h = harness([json(200, 'Done')]);
    const error = await failure(h.client.doneNodes(SSID, []));
    expect(error.kind).toBe('bad-request');
    expect(h.transport.sent).toHaveLength(0);
    await expect(h.client.failNodes(SSID, [''])).rejects.toThrow(/empty hostname list/);
  });

  test('publicInventory sends no key at all', async () => {
    const h = harness([json(200, [PUBLIC_ROW])], { keyInQuery: true });
    await h.client.publicInventory();
    expect(h.transport.sent[0]!.url.search).toBe('');
    expect(h.transport.sent[0]!.headers.authorization).toBeUndefined();
  });

  test('refuses a base URL that is not http(s) or carries a query', () => {
    expect(() => new CinodeClient({ url: 'ftp://host', key: KEY })).toThrow(/http/);
    expect(() => new CinodeClient({ url: 'not a url', key: KEY })).toThrow(/not a URL/);
    expect(() => new CinodeClient({ url: `http://host/?key=${KEY}`, key: KEY })).toThrow(/query/);
    try {
      new CinodeClient({ url: `http://host/?key=${KEY}`, key: KEY });
    } catch (error) {
      expect((error as Error).message).not.toContain(KEY);
    }
  });
});

describe('successful bodies', () => {
  test('/Node/get', async () => {
    const h = harness([json(200, { hosts: ['n1.example', 'n2.example'], ssid: SSID })]);
    await expect(h.client.getNodes({ count: 2 })).resolves.toEqual({ hosts: ['n1.example', 'n2.example'], ssid: SSID });
  });

  test('/Node/done: "Done", and the legacy "Session not in Prod"', async () => {
    const h = harness([json(200, 'Done'), json(200, { msg: 'Session not in Prod' })]);
    await expect(h.client.doneNodes(SSID)).resolves.toBe('done');
    await expect(h.client.doneNodes(SSID)).resolves.toBe('not-in-prod');
    expect(h.transport.sent[0]!.url.searchParams.has('node')).toBe(false);
  });

  test('/Node/fail', async () => {
    const h = harness([json(200, 'Done')]);
    await expect(h.client.failNodes(SSID, ['n1.example'])).resolves.toBeUndefined();
    expect(h.transport.sent[0]!.url.pathname).toBe('/Node/fail');
  });

  test('/Inventory with and without a key', async () => {
    const h = harness([json(200, [['n1.example', SSID]]), json(200, [PUBLIC_ROW])]);
    await expect(h.client.inventory()).resolves.toEqual([['n1.example', SSID]]);
    await expect(h.client.publicInventory()).resolves.toEqual([PUBLIC_ROW]);
  });

  test('/Session/get, /Session/done, /Session/show, /Session/list, /Session/extend', async () => {
    const opened = { ssid: SSID, alias: 'job-1', hosts: [], expires_at: null, created: true };
    const h = harness([json(200, opened), json(200, 'Done'), json(200, VIEW), json(200, [VIEW]), json(200, VIEW)]);
    await expect(h.client.getSession({ alias: 'job-1', lifetime: '6h' })).resolves.toEqual(opened);
    await expect(h.client.doneSession(SSID)).resolves.toBeUndefined();
    await expect(h.client.showSession(SSID)).resolves.toEqual(VIEW);
    await expect(h.client.listSessions()).resolves.toEqual([VIEW]);
    await expect(h.client.extendSession(SSID, '2h')).resolves.toEqual(VIEW);
    expect(h.transport.sent.map((s) => `${s.url.pathname}${s.url.search}`)).toEqual([
      '/Session/get?alias=job-1&lifetime=6h',
      `/Session/done?ssid=${SSID}`,
      `/Session/show?ssid=${SSID}`,
      '/Session/list',
      `/Session/extend?ssid=${SSID}&lifetime=2h`,
    ]);
  });

  test.each([
    ['/Node/get', (c: CinodeClient) => c.getNodes(), { hosts: 'n1', ssid: SSID }],
    ['/Node/done', (c: CinodeClient) => c.doneNodes(SSID), 'OK'],
    ['/Node/fail', (c: CinodeClient) => c.failNodes(SSID), { done: true }],
    ['/Inventory', (c: CinodeClient) => c.inventory(), [['n1.example']]],
    ['/Inventory', (c: CinodeClient) => c.publicInventory(), [[1, 'n1.example']]],
    ['/Session/get', (c: CinodeClient) => c.getSession(), { ssid: SSID }],
    ['/Session/done', (c: CinodeClient) => c.doneSession(SSID), null],
    ['/Session/show', (c: CinodeClient) => c.showSession(SSID), { ...VIEW, state: 'gone' }],
    ['/Session/list', (c: CinodeClient) => c.listSessions(), [{ ...VIEW, hosts: [{ hostname: 1 }] }]],
    ['/Session/extend', (c: CinodeClient) => c.extendSession(SSID, '1h'), {}],
  ])('%s: a 200 of the wrong shape is a server error naming the call, not retried', async (path, call, body) => {
    const h = harness([json(200, body)]);
    const error = await failure(call(h.client));
    expect(error.kind).toBe('server');
    expect(error.status).toBe(200);
    expect(error.message).toContain(`unexpected answer from ${path}`);
    expect(error.message).toMatch(/expected/);
    expect(h.transport.sent).toHaveLength(1);
  });

  test('a 200 that is not JSON at all is a server error too', async () => {
    const h = harness([text(200, '<html>proxy login</html>')]);
    const error = await failure(h.client.listSessions());
    expect(error.kind).toBe('server');
    expect(error.message).toContain('<html>proxy login</html>');
  });
});

describe('error bodies', () => {
  test.each([
    [json(403, { msg: 'Invalid duffy key' }), 'invalid-key', 'Invalid duffy key'],
    [json(401, {}), 'invalid-key', 'Invalid duffy key'],
    [json(403, { msg: 'Invalid session ID' }), 'invalid-session', 'Invalid session ID'],
    [json(403, { msg: 'Quota exceeded: requested 3 + allocated 9 > quota 10' }), 'policy', 'Quota exceeded: requested 3 + allocated 9 > quota 10'],
    [
      json(403, { msg: 'Exceeded maximum allowed fail nodes limit, please release other machines to continue' }),
      'policy',
      'Exceeded maximum allowed fail nodes limit, please release other machines to continue',
    ],
    [json(400, { msg: 'count: "x" is not a whole number' }), 'bad-request', 'count: "x" is not a whole number'],
    [json(400, { msg: 'Node n9 is not in session S' }), 'bad-request', 'Node n9 is not in session S'],
    [json(404, { msg: 'No such endpoint /Nod/get' }), 'bad-request', 'No such endpoint /Nod/get'],
    [text(404, 'Not Found'), 'bad-request', 'HTTP 404 from /Node/get: Not Found'],
    [json(409, { msg: `Session ${SSID} is not active` }), 'not-active', `Session ${SSID} is not active`],
  ])('%j → %s, not retried', async (reply, kind, message) => {
    const h = harness([reply]);
    const error = await failure(h.client.getNodes({ ssid: SSID }));
    expect(error).toBeInstanceOf(CinodeApiError);
    expect(error.kind).toBe(kind);
    expect(error.message).toBe(message);
    expect(error.call).toBe('/Node/get');
    expect(h.transport.sent).toHaveLength(1);
    expect(h.sleeps).toEqual([]);
  });

  test('429 → rate-limit with Retry-After; 503 plain text → capacity with Retry-After', async () => {
    const rate = harness([json(429, { msg: 'Rate limit exceeded: 5 sessions in the last 5m' }, { 'retry-after': '42' })], { timeoutMs: 0 });
    const rateError = await failure(rate.client.getSession());
    expect(rateError).toMatchObject({ kind: 'rate-limit', status: 429, retryAfterMs: 42_000, message: 'Rate limit exceeded: 5 sessions in the last 5m' });

    const cap = harness([text(503, 'Insufficient Nodes in READY State', { 'Retry-After': '7' })], { timeoutMs: 0 });
    const capError = await failure(cap.client.getNodes());
    expect(capError).toMatchObject({ kind: 'capacity', status: 503, retryAfterMs: 7_000, message: 'Insufficient Nodes in READY State' });
  });

  test('503 with a JSON body (database down) and other 5xx → server', async () => {
    for (const reply of [json(503, { msg: 'The database is unavailable right now' }), json(500, { msg: 'boom' }), text(502, 'Bad Gateway')]) {
      const h = harness([reply], { timeoutMs: 0 });
      const error = await failure(h.client.showSession(SSID));
      expect(error.kind).toBe('server');
      expect(error.status).toBe((reply as { status: number }).status);
    }
  });

  test('Retry-After as an HTTP date', async () => {
    const date = new Date(1_700_000_000_000 + 30_000).toUTCString();
    const h = harness([text(503, 'Insufficient Nodes in READY State', { 'retry-after': date })], { timeoutMs: 0 });
    const error = await failure(h.client.getNodes());
    expect(error.retryAfterMs).toBeGreaterThan(28_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(30_000);
  });

  test('legacy Duffy answered refusals with 200: {"msg"} and the plain-text capacity answer are parsed', async () => {
    const h = harness([json(200, { msg: 'Invalid duffy key' }), json(200, { msg: 'Invalid session ID' }), json(200, { msg: 'Exceeded maximum allowed fail nodes limit' })]);
    expect((await failure(h.client.getNodes())).kind).toBe('invalid-key');
    expect((await failure(h.client.doneNodes(SSID))).kind).toBe('invalid-session');
    expect((await failure(h.client.failNodes(SSID))).kind).toBe('policy');
    const cap = harness([text(200, 'Insufficient Nodes in READY State')], { timeoutMs: 0 });
    expect((await failure(cap.client.getNodes())).kind).toBe('capacity');
  });

  test('no answer → transport, with the URL and the cause', async () => {
    const h = harness([refused()], { timeoutMs: 0 });
    const error = await failure(h.client.getNodes());
    expect(error.kind).toBe('transport');
    expect(error.status).toBeUndefined();
    expect(error.message).toBe('no answer from http://cinode.test:8080/Node/get: connect ECONNREFUSED 127.0.0.1:1');
  });

  test('a name that does not resolve fails at once with what to check; a refused connection and EAI_AGAIN are retried', async () => {
    const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND cinode.test'), { code: 'ENOTFOUND' });
    const h = harness([notFound, json(200, [])], { timeoutMs: 300_000 });
    const error = await failure(h.client.listSessions());
    expect(error).toMatchObject({ kind: 'transport', permanent: true, attempts: 1 });
    expect(error.message).toBe(
      'no answer from http://cinode.test:8080/Session/list: getaddrinfo ENOTFOUND cinode.test (the host name does not resolve: check the host in the URL; not retried)',
    );
    expect(h.transport.sent).toHaveLength(1);
    expect(h.sleeps).toEqual([]);

    const again = Object.assign(new Error('getaddrinfo EAI_AGAIN cinode.test'), { code: 'EAI_AGAIN' });
    const healing = harness([again, refused(), json(200, [])], { timeoutMs: 300_000 });
    await expect(healing.client.listSessions()).resolves.toEqual([]);
    expect(healing.transport.sent).toHaveLength(3);
  });

  test('a request that gets no answer within requestTimeoutMs is a transport error', async () => {
    const h = harness(['hang'], { requestTimeoutMs: 20 });
    const error = await failure(h.client.getNodes());
    expect(error.kind).toBe('transport');
    expect(error.message).toMatch(/no answer within \d+ ms/);
  });
});

describe('retries', () => {
  type Call = [name: string, call: (c: CinodeClient) => Promise<unknown>, ok: Reply, idempotent: boolean];
  const CALLS: Call[] = [
    ['getNodes', (c) => c.getNodes({ count: 1 }), json(200, { hosts: ['n1'], ssid: SSID }), false],
    ['getNodes into a session', (c) => c.getNodes({ ssid: SSID }), json(200, { hosts: ['n1'], ssid: SSID }), false],
    ['doneNodes', (c) => c.doneNodes(SSID), json(200, 'Done'), false],
    ['doneNodes with node', (c) => c.doneNodes(SSID, ['n1']), json(200, 'Done'), false],
    ['failNodes', (c) => c.failNodes(SSID), json(200, 'Done'), false],
    ['extendSession', (c) => c.extendSession(SSID, '1h'), json(200, VIEW), false],
    ['getSession without alias', (c) => c.getSession({ lifetime: '1h' }), json(200, { ssid: SSID, alias: null, hosts: [], expires_at: null, created: true }), false],
    ['getSession with alias', (c) => c.getSession({ alias: 'job-1' }), json(200, { ssid: SSID, alias: 'job-1', hosts: [], expires_at: null, created: true }), true],
    ['doneSession', (c) => c.doneSession(SSID), json(200, 'Done'), true],
    ['showSession', (c) => c.showSession(SSID), json(200, VIEW), true],
    ['listSessions', (c) => c.listSessions(), json(200, [VIEW]), true],
    ['inventory', (c) => c.inventory(), json(200, []), true],
    ['publicInventory', (c) => c.publicInventory(), json(200, []), true],
  ];

  test.each(CALLS)('%s is retried on capacity, 429 and 5xx, honouring Retry-After', async (_name, call, ok) => {
    const h = harness([
      text(503, 'Insufficient Nodes in READY State', { 'retry-after': '5' }),
      json(429, { msg: 'Rate limit exceeded' }, { 'retry-after': '3' }),
      json(503, { msg: 'The database is unavailable' }),
      json(500, { msg: 'internal error' }),
      ok,
    ]);
    await call(h.client);
    expect(h.transport.sent).toHaveLength(5);
    // Retry-After exactly; then full jitter (random 0.5) of 1 s * 2^(attempt-1).
    expect(h.sleeps).toEqual([5_000, 3_000, 2_000, 4_000]);
    expect(h.retries.map((r) => [r.attempt, r.waitMs, r.error.kind])).toEqual([
      [1, 5_000, 'capacity'],
      [2, 3_000, 'rate-limit'],
      [3, 2_000, 'server'],
      [4, 4_000, 'server'],
    ]);
  });

  test.each(CALLS)('%s on no answer: retried only when idempotent by design (%#)', async (_name, call, ok, idempotent) => {
    const h = harness([refused(), ok]);
    if (idempotent) {
      await call(h.client);
      expect(h.transport.sent).toHaveLength(2);
      expect(h.retries[0]!.error.kind).toBe('transport');
    } else {
      const error = await failure(call(h.client));
      expect(error.kind).toBe('transport');
      expect(error.attempts).toBe(1);
      expect(h.transport.sent).toHaveLength(1);
      expect(h.retries).toEqual([]);
    }
  });

  test.each(CALLS)('%s: a 4xx other than 429 is never retried', async (_name, call) => {
    for (const reply of [json(400, { msg: 'bad' }), json(403, { msg: 'Invalid session ID' }), json(409, { msg: 'not active' }), json(404, { msg: 'no' })]) {
      const h = harness([reply]);
      await failure(call(h.client));
      expect(h.transport.sent).toHaveLength(1);
    }
  });

  test('the budget bounds the total wait; the last error comes back with its attempts', async () => {
    const h = harness([text(503, 'Insufficient Nodes in READY State', { 'retry-after': '10' })], { timeoutMs: 25_000 });
    const start = h.clock.t;
    const error = await failure(h.client.getNodes());
    expect(error.kind).toBe('capacity');
    // 10 s, 10 s, then the 5 s left: the last attempt is made as the budget ends.
    expect(h.sleeps).toEqual([10_000, 10_000, 5_000]);
    expect(h.clock.t - start).toBe(25_000);
    expect(error.attempts).toBe(4);
  });

  test('exponential backoff with full jitter, capped, and never past the budget', async () => {
    const h = harness([json(500, { msg: 'boom' })], { timeoutMs: 60_000, random: () => 0.999 });
    const start = h.clock.t;
    await failure(h.client.listSessions());
    expect(h.sleeps.slice(0, 5)).toEqual([999, 1_998, 3_996, 7_992, 15_984]);
    expect(h.sleeps.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(60_000);
    expect(h.clock.t - start).toBe(60_000);
    expect(Math.max(...h.sleeps)).toBeLessThanOrEqual(30_000);
  });

  test('a Retry-After longer than the budget waits only what is left', async () => {
    const h = harness([json(429, { msg: 'Rate limit exceeded' }, { 'retry-after': '3600' })], { timeoutMs: 2_000 });
    const error = await failure(h.client.getSession());
    expect(error.kind).toBe('rate-limit');
    expect(h.sleeps).toEqual([2_000]);
    expect(h.transport.sent).toHaveLength(2);
  });

  test('a zero budget sends once and never waits', async () => {
    const h = harness([json(500, { msg: 'boom' })], { timeoutMs: 0 });
    await failure(h.client.listSessions());
    expect(h.transport.sent).toHaveLength(1);
    expect(h.sleeps).toEqual([]);
  });

  test('backoffDelay is a uniform draw under a doubling cap', () => {
    expect(backoffDelay(1, () => 0)).toBe(0);
    expect(backoffDelay(1, () => 0.999_999)).toBe(999);
    expect(backoffDelay(3, () => 0.5)).toBe(2_000);
    expect(backoffDelay(40, () => 0.5)).toBe(15_000);
    expect(backoffDelay(3, () => 0.5, 100, 300)).toBe(150);
  });

  test('withRetry rethrows an error that is not a CinodeApiError at once', async () => {
    let calls = 0;
    const boom = new TypeError('a bug');
    await expect(
      withRetry(
        async () => {
          calls++;
          throw boom;
        },
        () => true,
        { timeoutMs: 10_000, sleep: async () => undefined },
      ),
    ).rejects.toBe(boom);
    expect(calls).toBe(1);
  });
});

describe('cancellation', () => {
  test('an abort while waiting to retry stops at once with a CinodeAbortError', async () => {
    const controller = new AbortController();
    const transport = new FakeTransport([text(503, 'Insufficient Nodes in READY State', { 'retry-after': '60' })]);
    const client = new CinodeClient({ url: BASE, key: KEY, transport, signal: controller.signal, onRetry: () => controller.abort(new Error('SIGINT')) });
    const started = Date.now();
    const error = await client.getNodes().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CinodeAbortError);
    expect((error as Error).message).toMatch(/cancelled: SIGINT/);
    expect(Date.now() - started).toBeLessThan(10_000); // not the 60 s Retry-After; room for a loaded machine
    expect(transport.sent).toHaveLength(1);
  });

  test('an abort ends a request in flight, even with a sleep that ignores the signal', async () => {
    const controller = new AbortController();
    const h = harness(['hang'], { signal: controller.signal, sleep: () => new Promise(() => undefined) });
    const pending = h.client.showSession(SSID).catch((e: unknown) => e);
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort();
    const error = await pending;
    expect(error).toBeInstanceOf(CinodeAbortError);
    expect(h.transport.sent).toHaveLength(1);
  });

  test('an abort while waiting, with an injected sleep that ignores the signal', async () => {
    const controller = new AbortController();
    const h = harness([json(500, { msg: 'boom' })], { signal: controller.signal, sleep: () => new Promise(() => undefined) });
    const pending = h.client.listSessions().catch((e: unknown) => e);
    await new Promise((resolve) => setTimeout(resolve, 10));
    controller.abort('cancelled by the runner');
    expect(await pending).toBeInstanceOf(CinodeAbortError);
  });

  test('an already aborted signal sends nothing', async () => {
    const controller = new AbortController();
    controller.abort();
    const h = harness([json(200, [])], { signal: controller.signal });
    await expect(h.client.listSessions()).rejects.toBeInstanceOf(CinodeAbortError);
    expect(h.transport.sent).toHaveLength(0);
  });
});

describe('the key never appears in error messages', () => {
  test('a transport error whose cause quotes the URL has key= redacted', async () => {
    const transport: HttpTransport = {
      get: (url) => Promise.reject(new Error(`Request timeout: ${new URL(url).pathname}${new URL(url).search}`)),
    };
    const client = new CinodeClient({ url: BASE, key: KEY, keyInQuery: true, transport, timeoutMs: 0 });
    const error = await failure(client.listSessions());
    expect(error.kind).toBe('transport');
    expect(error.message).not.toContain(KEY);
    expect(error.message).toContain('key=[REDACTED]');
    expect(error.cause).toBeUndefined();
  });

  test('a server that echoes the key in its message gets it redacted', async () => {
    const h = harness([json(400, { msg: `bad key ${KEY} in /Node/get?key=${KEY}` }), json(200, { msg: `unknown ${KEY}` }), json(200, { odd: KEY })]);
    for (const call of [() => h.client.getNodes(), () => h.client.getNodes(), () => h.client.getNodes()]) {
      const error = await failure(call());
      expect(error.message).not.toContain(KEY);
      expect(String(error.stack)).not.toContain(KEY);
    }
  });

  test('redactKey', () => {
    expect(redactKey('http://h/x?key=abc&ssid=1')).toBe('http://h/x?key=[REDACTED]&ssid=1');
    expect(redactKey('http://h/x?a=1&KEY=abc')).toBe('http://h/x?a=1&KEY=[REDACTED]');
    expect(redactKey('token a/b+c here', 'a/b+c')).toBe('token [REDACTED] here');
    expect(redactKey('token a%2Fb%2Bc here', 'a/b+c')).toBe('token [REDACTED] here');
  });
});

describe('ActionsHttpTransport (loopback only)', () => {
  let server: Server;
  let base: string;
  const seen: Array<{ url: string; authorization?: string; agent?: string }> = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      seen.push({ url: request.url ?? '', authorization: request.headers.authorization, agent: request.headers['user-agent'] });
      if (request.url?.startsWith('/hang')) return; // never answers
      response.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
      response.end('Insufficient Nodes in READY State');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  test('returns status, headers and body, sends the headers and the user agent', async () => {
    const transport = new ActionsHttpTransport();
    const response = await transport.get(`${base}/Node/get`, { authorization: 'Bearer x', 'user-agent': 'cinode-test' });
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(response.body).toBe('Insufficient Nodes in READY State');
    expect(seen.at(-1)).toMatchObject({ url: '/Node/get', authorization: 'Bearer x', agent: 'cinode-test' });
  });

  test('the client over it times out a request with no answer, promptly', async () => {
    const client = new CinodeClient({ url: `${base}/hang`, key: KEY, requestTimeoutMs: 200, timeoutMs: 0 });
    const started = Date.now();
    const error = await failure(client.getNodes());
    expect(error.kind).toBe('transport');
    expect(Date.now() - started).toBeLessThan(15_000); // the 200 ms request timeout, not a hang; room for a loaded machine
  });

  test('an https URL to this plain-http server fails at once, not after the whole retry budget', async () => {
    const client = new CinodeClient({ url: base.replace(/^http:/, 'https:'), key: KEY, timeoutMs: 300_000 });
    const started = Date.now();
    const error = await failure(client.listSessions());
    expect(Date.now() - started).toBeLessThan(15_000); // not the 300 s budget; room for a loaded machine
    expect(error).toMatchObject({ kind: 'transport', permanent: true, attempts: 1 });
    expect(error.message).toMatch(/\(TLS failed \(EPROTO\): check the URL's scheme \(an https:\/\/ URL to a server that speaks plain http fails this way\) and the server's certificate; not retried\)$/);
  });

  test('an abort ends a hanging request', async () => {
    const controller = new AbortController();
    const client = new CinodeClient({ url: `${base}/hang`, key: KEY, signal: controller.signal });
    const pending = client.listSessions().catch((e: unknown) => e);
    setTimeout(() => controller.abort(), 50);
    expect(await pending).toBeInstanceOf(CinodeAbortError);
  });
});
