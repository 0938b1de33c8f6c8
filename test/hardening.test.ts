/**
 * What an adversarial client found (issue 15), kept found: each request is written byte for byte
 * over a raw socket (node:net), since a client library would refuse to send most of them, to the
 * real server on loopback with a real database (SQLite, or PostgreSQL with CINODE_TEST_DATABASE).
 */
import { connect, type Socket } from 'node:net';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from the first byte sent to the connection's end. */
  ms: number;
}

function portOf(server: TestServer): number {
  return Number(new URL(server.url).port);
}

function open(server: TestServer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(portOf(server), '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Reads one response from the socket (the server closes it, or Content-Length says it is whole). */
function readReply(socket: Socket, started = Date.now(), timeoutMs = 10_000, head = false): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${timeoutMs} ms; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`));
    }, timeoutMs);
    const parse = (): RawReply | undefined => {
      const text = data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = data.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1')).toString('utf8');
      const length = headers['content-length'];
      if (!head && length !== undefined && Buffer.byteLength(body) < Number(length)) return undefined;
      return { status: Number(statusLine!.split(' ')[1]), headers, body, ms: Date.now() - started };
    };
    const finish = (): void => {
      clearTimeout(timer);
      const reply = parse();
      if (reply) resolve(reply);
      else reject(new Error(`connection ended without a response: ${JSON.stringify(data.toString('latin1').slice(0, 200))}`));
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const reply = parse();
      if (reply && reply.headers['content-length'] !== undefined) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      }
    });
    socket.once('end', finish);
    socket.once('close', () => {
      if (!socket.readableEnded) finish();
    });
    socket.once('error', () => undefined);
  });
}

/** Sends `request` as it is (a string is sent as latin1, one byte per character) and reads the reply. */
async function raw(server: TestServer, request: string | Buffer): Promise<RawReply> {
  const socket = await open(server);
  const started = Date.now();
  // A reply to HEAD has a Content-Length and no body.
  const reply = readReply(socket, started, 10_000, String(request).startsWith('HEAD '));
  socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
  return reply;
}

/** A GET with the headers a plain client sends. */
const get = (target: string, extra = ''): string => `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`;

function postJson(path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function msgOf(reply: RawReply): string {
  const parsed = JSON.parse(reply.body) as { msg?: unknown };
  expect(Object.keys(parsed)).toEqual(['msg']);
  return String(parsed.msg);
}

function logLines(server: TestServer): Array<Record<string, unknown>> {
  return server.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function activeSessions(server: TestServer): Promise<number> {
  const list = await server.get('/Session/list', { key: KEYS.alpha });
  return (list.json as unknown[]).length;
}

describe('hardening: what an adversarial client found', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({
      server: {
        httpLimits: { requestTimeoutMs: 1_500, timeoutCheckIntervalMs: 250, connectionsPerAddress: 40 },
      },
    });
  });

  afterAll(async () => {
    await server.close();
    removeDir(server.dir);
  });

  // 1. API keys never reach the log, however the parameter is spelled or encoded.
  test.each([
    ['a percent-encoded name that authenticates', `/Session/list?k%65y=${KEYS.alpha}`, 200],
    ['key[]', `/Session/list?key[]=${KEYS.alpha}`, 403],
    ['an encoded = inside the name', `/Session/list?key%3D${KEYS.alpha}`, 403],
    ['an encoded ? inside the path', `/Session/list%3Fkey=${KEYS.alpha}`, 404],
    ['KEY in capitals, twice', `/Session/list?KEY=${KEYS.alpha}&KEY=${KEYS.alpha}`, 403],
    ['an encoded name in a JSON-looking query', `/Session/list?%6Bey=${KEYS.alpha}&count=1`, 200],
  ])('point 1: %s (%s, answered %s): the key is not logged', async (_name, target, status) => {
    server.logs.length = 0;
    const reply = await raw(server, get(target));
    expect(reply.status).toBe(status);
    await waitFor('the request log line', () => logLines(server).some((l) => l.msg === 'request'));
    const log = server.logs.join('\n');
    expect(log).not.toContain(KEYS.alpha);
    expect(log).not.toContain(KEYS.alpha.slice(0, 12));
  });

  test('point 1: the log shows the parsed parameters, the key redacted', async () => {
    server.logs.length = 0;
    await raw(server, get(`/Session/list?k%65y=${KEYS.alpha}&count=1`));
    await waitFor('the request log line', () => logLines(server).some((l) => l.msg === 'request'));
    const line = logLines(server).find((l) => l.msg === 'request')!;
    expect(line.url).toBe('/Session/list?key=[REDACTED]&count=1');
    expect(line.project).toBe('alpha');
  });

  // 2. Nested values: a 400 naming the parameter, without a stack frame per level, key first.
  test('point 2: a 10,000-deep JSON value is a 400 naming the parameter, not a 500', async () => {
    server.logs.length = 0;
    const deep = `{"key":"${KEYS.alpha}","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const reply = await raw(server, postJson('/Node/get', deep));
    expect(reply.status).toBe(400);
    expect(msgOf(reply)).toMatch(/^x: a list inside a list is not accepted; accepted: a string or a number/);
    expect(server.logs.join('\n')).not.toMatch(/"level":50/);
  });

  test('point 2: without a key, a deeply nested body is 403 like any keyless call', async () => {
    const deep = `{"x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const reply = await raw(server, postJson('/Node/get', deep));
    expect(reply.status).toBe(403);
    expect(msgOf(reply)).toBe('Invalid duffy key');
  });

  test('point 2: count [[[1]]] is refused, not flattened into 1, and allocates nothing', async () => {
    const before = await activeSessions(server);
    const reply = await raw(server, postJson('/Node/get', JSON.stringify({ key: KEYS.alpha, count: [[[1]]] })));
    expect(reply.status).toBe(400);
    expect(msgOf(reply)).toMatch(/^count: a list inside a list is not accepted/);
    expect(await activeSessions(server)).toBe(before);
  });

  // 3. A request must arrive whole within the request timeout; connections per address are bounded.
  test('point 3: a body sent 1 byte at a time is cut off with a 408 in the API shape', async () => {
    server.logs.length = 0;
    const socket = await open(server);
    const reply = readReply(socket, Date.now(), 20_000);
    socket.write(`POST /Node/get HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`);
    const drip = setInterval(() => socket.writable && socket.write(' '), 300);
    try {
      const answer = await reply;
      expect(answer.status).toBe(408);
      expect(msgOf(answer)).toMatch(/not received in full within 1.5 s/);
      expect(answer.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      // The 1.5 s request timeout, not the 30 s the drip would take to finish: room for a loaded machine.
      expect(answer.ms).toBeLessThan(15_000);
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
    expect(logLines(server).some((l) => l.status === 408)).toBe(true);
  });

  test('point 3: past the connections of one address, a connection is answered 429 and closed', async () => {
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 40; i++) held.push(await open(server));
      const extra = await raw(server, get(`/Session/list?key=${KEYS.alpha}`));
      expect(extra.status).toBe(429);
      expect(msgOf(extra)).toMatch(/Too many open connections from 127\.0\.0\.1 \(at most 40\)/);
    } finally {
      for (const socket of held) socket.destroy();
    }
    await waitFor('a connection accepted again', async () => (await raw(server, get(`/Session/list?key=${KEYS.alpha}`))).status === 200);
  });

  // 4. HEAD never changes state; read-only calls answer it.
  test('point 4: HEAD on /Node/get is 405 and creates no session', async () => {
    const before = await activeSessions(server);
    const reply = await raw(server, `HEAD /Node/get?key=${KEYS.alpha}&count=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, POST');
    expect(await activeSessions(server)).toBe(before);
  });

  test.each(['/Session/list', '/Inventory', '/healthz'])('point 4: HEAD %s answers 200 with no body', async (path) => {
    const reply = await raw(server, `HEAD ${path}?key=${KEYS.alpha} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(reply.status).toBe(200);
    expect(Number(reply.headers['content-length'])).toBeGreaterThan(0);
    expect(reply.body).toBe('');
  });

  // 5. A wrong method is a 405 naming it, with Allow.
  test.each(['PUT', 'DELETE', 'PATCH', 'OPTIONS'])('point 5: %s /Node/get is 405 with Allow', async (method) => {
    const reply = await raw(server, `${method} /Node/get?key=${KEYS.alpha} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, POST');
    expect(msgOf(reply)).toBe(`Method ${method} is not served on /Node/get; use GET or POST (HEAD only on calls that change nothing)`);
  });

  // 6. What the HTTP parser refuses still has the API's shape, a request id and a log line.
  test.each([
    ['an unknown method', 'FOO /Node/get HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', [400, 405]],
    ['a control byte in the URL', `GET /Node/get?key=${KEYS.alpha}&alias=a\x01b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, [400]],
    ['a non-ASCII byte in the URL', `GET /Node/get?alias=caf\xe9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, [400]],
    ['a missing Host', 'GET /Session/list HTTP/1.1\r\nConnection: close\r\n\r\n', [400]],
    ['Content-Length and Transfer-Encoding together', 'POST /Node/get HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', [400]],
    ['a URL over 16 KB', `GET /Node/get?alias=${'a'.repeat(17_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, [431]],
    ['a header over 16 KB', `GET /Session/list HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'b'.repeat(17_000)}\r\n\r\n`, [431]],
    ['Expect: something unknown', 'GET /Session/list HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: teapot\r\nConnection: close\r\n\r\n', [417]],
  ])('point 6: %s is answered in the {"msg"} shape with a request id and a log line', async (_name, request, statuses) => {
    server.logs.length = 0;
    const reply = await raw(server, request as string);
    expect(statuses).toContain(reply.status);
    expect(msgOf(reply).length).toBeGreaterThan(20);
    const id = reply.headers['x-request-id'];
    expect(id).toBeDefined();
    await waitFor('a log line with the request id', () => logLines(server).some((l) => l.reqId === id && l.status === reply.status));
  });

  // 7. A prototype key is refused for what it is.
  test.each([
    ['__proto__', `{"key":"${KEYS.alpha}","__proto__":{"count":2}}`],
    ['constructor.prototype', `{"key":"${KEYS.alpha}","constructor":{"prototype":{"count":2}}}`],
  ])('point 7: a body with %s is refused, and says why', async (_name, body) => {
    const reply = await raw(server, postJson('/Node/get', body));
    expect(reply.status).toBe(400);
    expect(msgOf(reply)).toMatch(/__proto__, or constructor with a prototype inside, is refused/);
  });

});

describe('hardening: failed keys are throttled per address', () => {
  let server: TestServer;
  let now = Date.parse('2026-01-05T10:00:00Z');

  beforeAll(async () => {
    server = await startTestServer({ server: { failedKeyLimits: { failures: 10, windowMs: 60_000 } } }, () => now);
  });

  afterAll(async () => {
    await server.close();
    removeDir(server.dir);
  });

  // 9. Wrong keys are throttled per address; a valid key never is.
  test('point 9: past 10 wrong keys, 429 with Retry-After, while a valid key still gets 200', async () => {
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 15; i++) {
      const reply = await raw(server, get(`/Session/list?key=wrong-${i}`));
      statuses.push(reply.status);
      if (reply.status === 429) retryAfter = reply.headers['retry-after'];
    }
    expect(statuses.slice(0, 10).every((s) => s === 403)).toBe(true);
    expect(statuses.slice(10).every((s) => s === 429)).toBe(true);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    const valid = await raw(server, get(`/Session/list?key=${KEYS.alpha}`));
    expect(valid.status).toBe(200);
    // Once the window has passed, a wrong key is a plain 403 again.
    now += 61_000;
    expect((await raw(server, get('/Session/list?key=wrong-again'))).status).toBe(403);
  });
});
