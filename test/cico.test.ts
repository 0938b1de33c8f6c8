/**
 * The contract of python-cicoclient 0.4.7's `cico` command, replayed against the real server.
 *
 * A small TypeScript model of the client's logic (cicoclient/client.py and wrapper.py) talks to
 * cinode exactly as cico does: GET with an unencoded query, the headers it always sends, the body
 * parsed as JSON when it is JSON; `/Node/get` retried (after a sleep) only when its body is NOT
 * JSON, a JSON `{"msg"}` being a final error; hosts matched to the unkeyed `/Inventory` by
 * substring; the keyed inventory read as `[hostname, ssid]`; `--ssid` compared to row[6] as a
 * string; `/Node/done` answering the JSON string "Done".
 */
import { KEYS, removeDir, send, startTestServer, waitFor, type Reply, type TestServer } from './support/server.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CAPACITY_TEXT = 'Insufficient Nodes in READY State';

// ---- the model of cico ----

/** One host as `cico` prints it, from the unkeyed inventory row. */
interface CicoHost {
  host_id: unknown;
  hostname: string;
  ip_address: unknown;
  used_count: unknown;
  current_state: unknown;
  comment: unknown;
  centos_version: unknown;
  architecture: unknown;
  node_pool: unknown;
  flavor: unknown;
}

interface CicoReply {
  reply: Reply;
  /** `json.loads(resp.text)` when the text is JSON, else undefined (cico's `body = None`). */
  body: unknown;
}

class CicoError extends Error {
  constructor(
    message: string,
    readonly attempts: CicoReply[],
  ) {
    super(message);
    this.name = 'CicoError';
  }
}

/** client.py `_request`: GET, cico's headers (a JSON content type even without a body), no encoding. */
async function cicoGet(url: string, pathAndQuery: string): Promise<CicoReply> {
  const reply = await send(`${url}/${pathAndQuery}`, {
    headers: { 'User-Agent': 'python-cicoclient-wrapper', Accept: 'application/json', 'Content-Type': 'application/json' },
  });
  let body: unknown;
  if (reply.text) {
    try {
      body = JSON.parse(reply.text);
    } catch {
      body = undefined;
    }
  }
  return { reply, body };
}

function toHost(row: unknown[]): CicoHost {
  return {
    host_id: row[0],
    hostname: row[1] as string,
    ip_address: row[2],
    used_count: row[4],
    current_state: row[5],
    comment: row[6],
    centos_version: row[9],
    architecture: row[10],
    node_pool: row[11],
    flavor: row[13],
  };
}

/** Python's str(): what `--ssid` is compared with. */
function pyStr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  return String(value);
}

/** wrapper.py `full_inventory`: the unkeyed `/Inventory`, by hostname (row[1]). */
async function fullInventory(url: string): Promise<Map<string, unknown[]>> {
  const { reply, body } = await cicoGet(url, 'Inventory');
  expect(reply.status).toBe(200);
  const rows = body as unknown[][];
  return new Map(rows.map((row) => [row[1] as string, row]));
}

interface NodeGetOptions {
  ver?: string;
  arch?: string;
  /** Passed through even when empty (`flavor=`), as cico does. */
  flavor?: string;
  count?: number;
  /** At most this many requests in all; 5 unless told. */
  tries?: number;
  sleepMs?: number;
  /** Called before each sleep, after a try whose body was not JSON. */
  onRetry?: (attempt: CicoReply, tryNumber: number) => Promise<void> | void;
}

interface NodeGetResult {
  hosts: string[];
  ssid: string;
  /** The unkeyed inventory rows whose hostname is a substring of a returned host. */
  rows: CicoHost[];
  attempts: CicoReply[];
}

/** `cico node get`: wrapper.py `node_get`, with a bounded retry loop. */
async function cicoNodeGet(url: string, key: string, opts: NodeGetOptions = {}): Promise<NodeGetResult> {
  const tries = Math.min(opts.tries ?? 5, 5);
  const sleepMs = opts.sleepMs ?? 10;
  let args = `key=${key}`;
  if (opts.arch !== undefined) args += `&arch=${opts.arch}`;
  if (opts.ver !== undefined) args += `&ver=${opts.ver}`;
  if (opts.flavor !== undefined) args += `&flavor=${opts.flavor}`;
  args += `&count=${opts.count ?? 1}`;

  const attempts: CicoReply[] = [];
  for (let tryNumber = 1; tryNumber <= tries; tryNumber++) {
    const attempt = await cicoGet(url, `Node/get?${args}`);
    attempts.push(attempt);
    if (attempt.body !== undefined) break; // JSON: an answer, good or bad
    if (tryNumber < tries) {
      await opts.onRetry?.(attempt, tryNumber);
      await new Promise((resolve) => setTimeout(resolve, sleepMs));
    }
  }
  const last = attempts[attempts.length - 1]!;
  if (last.body === undefined) throw new CicoError('NoInventory: no node could be had', attempts);
  // A JSON string is raised whole; any other body is indexed by 'hosts' and then 'ssid', and
  // a missing key prints as Python's KeyError does: the key name alone.
  if (typeof last.body === 'string') throw new CicoError(last.body, attempts);
  const body = last.body as { hosts?: string[]; ssid?: string };
  if (body.hosts === undefined) throw new CicoError("'hosts'", attempts);
  if (body.ssid === undefined) throw new CicoError("'ssid'", attempts);

  const inventory = await fullInventory(url);
  const rows: CicoHost[] = [];
  for (const [hostname, row] of inventory) {
    if (body.hosts.some((full) => full.includes(hostname))) rows.push(toHost(row));
  }
  return { hosts: body.hosts, ssid: body.ssid, rows, attempts };
}

/** `cico inventory [--ssid X]`: keyed rows are `[hostname, ssid]`, looked up in the full inventory. */
async function cicoInventory(url: string, key: string | undefined, ssid?: string): Promise<CicoHost[]> {
  const full = await fullInventory(url);
  let hosts: CicoHost[];
  if (key === undefined) {
    hosts = [...full.values()].map(toHost);
  } else {
    const { reply, body } = await cicoGet(url, `Inventory?key=${key}`);
    expect(reply.status).toBe(200);
    hosts = (body as unknown[][]).map((row) => toHost(full.get(row[0] as string)!));
  }
  return ssid === undefined ? hosts : hosts.filter((h) => pyStr(h.comment) === ssid);
}

/** `cico node done --ssid X`: the hosts of that ssid from the keyed inventory, then `/Node/done`. */
async function cicoNodeDone(url: string, key: string, ssid: string): Promise<{ hosts: string[]; done: CicoReply }> {
  const hosts = (await cicoInventory(url, key, ssid)).map((h) => h.hostname);
  const done = await cicoGet(url, `Node/done?key=${key}&ssid=${ssid}`);
  return { hosts, done };
}

// ---- the server ----

let server: TestServer;

beforeEach(async () => {
  server = await startTestServer({
    defaults: { 'rate-limit': '100/5m' },
    projects: { beta: { 'node-quota': 3 } },
  });
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
});

async function allReady(prefix: string): Promise<boolean> {
  const rows = (await server.get('/Inventory')).json as unknown[][];
  return rows.filter((r) => (r[1] as string).startsWith(prefix)).every((r) => r[5] === 'Ready');
}

describe('cico node get', () => {
  test('hosts and ssid, then the inventory rows found by substring are exactly the returned hosts', async () => {
    const got = await cicoNodeGet(server.url, KEYS.alpha, { ver: '7', arch: 'x86_64', count: 2 });
    expect(got.attempts).toHaveLength(1);
    expect(got.attempts[0]!.reply.status).toBe(200);
    expect(Object.keys(got.attempts[0]!.body as object).sort()).toEqual(['hosts', 'ssid']);
    expect(got.ssid).toMatch(UUID_V4);
    expect(got.hosts).toHaveLength(2);
    for (const host of got.hosts) expect(typeof host).toBe('string');

    expect(got.rows.map((r) => r.hostname).sort()).toEqual([...got.hosts].sort());
    for (const row of got.rows) {
      expect(row).toEqual({
        host_id: expect.any(Number),
        hostname: expect.stringMatching(/^c7-\d\.test\.example$/),
        ip_address: expect.stringMatching(/^192\.0\.2\.\d+$/),
        used_count: expect.any(Number),
        current_state: 'Deployed',
        comment: got.ssid,
        centos_version: '7',
        architecture: 'x86_64',
        node_pool: 1,
        flavor: null,
      });
    }
  });

  test('flavor passed empty, and the aarch64 fallback to tiny; defaults without ver/arch', async () => {
    const arm = await cicoNodeGet(server.url, KEYS.alpha, { ver: '9-stream', arch: 'aarch64', flavor: '' });
    expect(arm.hosts).toHaveLength(1);
    expect(arm.rows).toHaveLength(1);
    expect(arm.rows[0]).toMatchObject({ hostname: arm.hosts[0], architecture: 'aarch64', centos_version: '9-stream', flavor: 'tiny', comment: arm.ssid });

    const plain = await cicoNodeGet(server.url, KEYS.alpha, { flavor: '' });
    expect(plain.rows.map((r) => [r.hostname, r.centos_version, r.architecture, r.flavor])).toEqual([[plain.hosts[0], '7', 'x86_64', null]]);
  });

  test('a capacity shortfall is plain text (not JSON) and is retried until nodes come back', async () => {
    const holder = await cicoNodeGet(server.url, KEYS.alpha, { count: 6 });
    expect(holder.hosts).toHaveLength(6);

    const retries: number[] = [];
    const got = await cicoNodeGet(server.url, KEYS.beta, {
      count: 2,
      onRetry: async (attempt, tryNumber) => {
        retries.push(tryNumber);
        expect(attempt.reply.status).toBe(503);
        expect(attempt.reply.text).toBe(CAPACITY_TEXT);
        expect(attempt.reply.headers.get('content-type')).toMatch(/^text\/plain/);
        expect(Number(attempt.reply.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(() => JSON.parse(attempt.reply.text) as unknown).toThrow();
        if (tryNumber === 1) {
          // the holder gives its nodes back while beta's cico is sleeping between tries
          const done = await cicoGet(server.url, `Node/done?key=${KEYS.alpha}&ssid=${holder.ssid}`);
          expect(done.body).toBe('Done');
          await waitFor('c7 nodes ready again', () => allReady('c7-'));
        }
      },
    });
    expect(retries).toEqual([1]);
    expect(got.attempts.map((a) => a.reply.status)).toEqual([503, 200]);
    expect(got.hosts).toHaveLength(2);
    expect(got.rows.map((r) => r.hostname).sort()).toEqual([...got.hosts].sort());
    expect(got.rows.every((r) => r.comment === got.ssid && r.current_state === 'Deployed')).toBe(true);
    // the holder's session is over; the nodes now belong to beta's new session
    expect(got.ssid).not.toBe(holder.ssid);
  });

  test('a shortfall that lasts gives up after the bounded number of tries', async () => {
    await cicoNodeGet(server.url, KEYS.alpha, { count: 6 });
    const retries: number[] = [];
    const error = await cicoNodeGet(server.url, KEYS.alpha, { count: 1, onRetry: (_a, n) => void retries.push(n) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CicoError);
    const { attempts, message } = error as CicoError;
    expect(message).toMatch(/NoInventory/);
    expect(attempts.map((a) => a.reply.status)).toEqual([503, 503, 503, 503, 503]);
    expect(attempts.every((a) => a.body === undefined && a.reply.text === CAPACITY_TEXT)).toBe(true);
    expect(retries).toEqual([1, 2, 3, 4]);
  });

  test('an error other than capacity is final and printed whole: the message as a JSON string, to cico only', async () => {
    await cicoNodeGet(server.url, KEYS.alpha, { count: 6 });

    const cases: Array<[string, NodeGetOptions, number, RegExp]> = [
      [KEYS.beta, { count: 4 }, 403, /^Quota exceeded: requested 4 \+ allocated 0 > quota 3$/],
      [KEYS.beta, { count: 51 }, 400, /^count: /],
      [KEYS.beta, { ver: '5' }, 400, /^No pool serves ver=5 arch=x86_64 flavor=none$/],
      [KEYS.beta, { ver: '9-stream', arch: 'aarch64', count: 3 }, 400, /^count 3 exceeds the 2 nodes pool arm can hold$/],
      ['not-a-key', {}, 403, /^Invalid duffy key$/],
    ];
    for (const [key, opts, status, msg] of cases) {
      const retries: number[] = [];
      const error = await cicoNodeGet(server.url, key, { ...opts, onRetry: (_a, n) => void retries.push(n) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CicoError);
      const { attempts, message } = error as CicoError;
      expect(retries).toEqual([]);
      expect(attempts).toHaveLength(1);
      expect([opts, attempts[0]!.reply.status]).toEqual([opts, status]);
      expect(attempts[0]!.reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(typeof attempts[0]!.body).toBe('string');
      expect(message).toMatch(msg);
    }
    // Everyone else (the same request without cico's User-Agent) gets the {"msg"} body.
    const other = await send(`${server.url}/Node/get?key=${KEYS.beta}&count=4`, { headers: { 'User-Agent': 'curl/8.0' } });
    expect(other.status).toBe(403);
    expect(other.json).toEqual({ msg: 'Quota exceeded: requested 4 + allocated 0 > quota 3' });
    // Other calls keep {"msg"} for cico too: its inventory and done read the body themselves.
    const done = await cicoGet(server.url, `Node/done?key=not-a-key&ssid=x`);
    expect(done.body).toEqual({ msg: 'Invalid duffy key' });
  });
});

describe('cico inventory', () => {
  test('with a key: [hostname, ssid] rows of the caller only, looked up by row[0]', async () => {
    const a1 = await cicoNodeGet(server.url, KEYS.alpha, { count: 2 });
    const a2 = await cicoNodeGet(server.url, KEYS.alpha, { ver: '9-stream', arch: 'x86_64' });
    const b = await cicoNodeGet(server.url, KEYS.beta);

    const keyed = await cicoGet(server.url, `Inventory?key=${KEYS.alpha}`);
    const rows = keyed.body as unknown[][];
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row).toHaveLength(2);
      expect(typeof row[0]).toBe('string');
      expect(typeof row[1]).toBe('string');
    }
    const bySsid = new Map([
      [a1.ssid, a1.hosts],
      [a2.ssid, a2.hosts],
    ]);
    for (const [hostname, ssid] of rows as Array<[string, string]>) expect(bySsid.get(ssid)).toContain(hostname);

    const mine = await cicoInventory(server.url, KEYS.alpha);
    expect(mine.map((h) => h.hostname).sort()).toEqual([...a1.hosts, ...a2.hosts].sort());
    expect(mine.map((h) => h.hostname)).not.toContain(b.hosts[0]);
    for (const host of mine) expect(host.current_state).toBe('Deployed');
  });

  test('--ssid compares str(row[6]) with the ssid: exactly that session, as strings', async () => {
    const a = await cicoNodeGet(server.url, KEYS.alpha, { count: 2 });
    const b = await cicoNodeGet(server.url, KEYS.beta, { count: 1 });
    // a session named by an alias: the inventory's comment is still its ssid, not the alias
    const opened = (await server.get('/Session/get', { key: KEYS.alpha, alias: 'job-7' })).json as { ssid: string };
    const added = await cicoGet(server.url, `Node/get?key=${KEYS.alpha}&ssid=job-7&count=1`);
    expect((added.body as { ssid: string }).ssid).toBe(opened.ssid);

    const all = await cicoInventory(server.url, undefined);
    for (const host of all) expect(host.comment === null || typeof host.comment === 'string').toBe(true);

    const ofA = await cicoInventory(server.url, undefined, a.ssid);
    expect(ofA.map((h) => h.hostname).sort()).toEqual([...a.hosts].sort());
    const ofB = await cicoInventory(server.url, undefined, b.ssid);
    expect(ofB.map((h) => h.hostname)).toEqual(b.hosts);
    const ofAlias = await cicoInventory(server.url, undefined, opened.ssid);
    expect(ofAlias.map((h) => h.hostname)).toEqual((added.body as { hosts: string[] }).hosts);
    expect(await cicoInventory(server.url, undefined, 'job-7')).toEqual([]);
    // with a key, only the caller's own nodes are candidates
    expect(await cicoInventory(server.url, KEYS.alpha, b.ssid)).toEqual([]);
    expect((await cicoInventory(server.url, KEYS.alpha, a.ssid)).map((h) => h.hostname).sort()).toEqual([...a.hosts].sort());
    expect(await cicoInventory(server.url, undefined, '00000000-0000-4000-8000-000000000000')).toEqual([]);
  });
});

describe('cico node done', () => {
  test('lists the hosts of the ssid, answers "Done", and the nodes come back Ready', async () => {
    const got = await cicoNodeGet(server.url, KEYS.alpha, { count: 3 });
    const other = await cicoNodeGet(server.url, KEYS.alpha, { count: 1 });

    const { hosts, done } = await cicoNodeDone(server.url, KEYS.alpha, got.ssid);
    expect(hosts.sort()).toEqual([...got.hosts].sort());
    expect(done.reply.status).toBe(200);
    expect(done.reply.text).toBe('"Done"');
    expect(done.reply.headers.get('content-type')).toMatch(/^application\/json/);
    expect(done.body).toBe('Done');

    // only the other session is left in the keyed inventory
    const keyed = (await cicoGet(server.url, `Inventory?key=${KEYS.alpha}`)).body;
    expect(keyed).toEqual([[other.hosts[0], other.ssid]]);
    expect(await cicoInventory(server.url, undefined, got.ssid)).toEqual([]);

    await waitFor('released nodes ready again', async () => {
      const rows = await cicoInventory(server.url, undefined);
      return rows.filter((r) => got.hosts.includes(r.hostname)).every((r) => r.current_state === 'Ready' && r.comment === null);
    });

    // done again: the legacy answer, JSON with a msg
    const again = await cicoNodeDone(server.url, KEYS.alpha, got.ssid);
    expect(again.hosts).toEqual([]);
    expect(again.done.reply.status).toBe(200);
    expect(again.done.body).toEqual({ msg: 'Session not in Prod' });

    // and the nodes can be had again by the next cico node get
    const next = await cicoNodeGet(server.url, KEYS.beta, { count: 3 });
    expect(next.rows).toHaveLength(3);
    expect(next.rows.every((r) => r.comment === next.ssid)).toBe(true);
  });
});
