/**
 * Command pools (issue 5) against the real server on loopback, with a real database and a fake
 * cloud of real shell scripts (test/support/cloud.ts): the warm pool fills to ready-min at start
 * and after each allocation, max-parallel and max-nodes hold, released nodes are deprovisioned and
 * never handed out again, failing provision backs off, bad output is recorded, failing deprovision
 * is retried and at last left to an operator, max-ready-age replaces old nodes, and a request for
 * more than the warm pool holds makes the pool provision for it.
 */
import { DrivenClock } from './support/clock.js';
import { FakeCloud } from './support/cloud.js';
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor, type PoolSpec, type TestServer } from './support/server.js';

/** A row of the unkeyed `/Inventory`: [id, hostname, ip, chassis, used_count, state, comment, ...]. */
type Row = [number, string, string | null, string | null, number, string, string | null, ...unknown[]];
interface Got {
  hosts: string[];
  ssid: string;
}
interface EventView {
  subject: 'node' | 'session' | 'pool';
  hostname: string | null;
  pool: string | null;
  from: string | null;
  to: string | null;
  reason: string | null;
  detail: string | null;
}

const WANT = { ver: '9-stream', arch: 'aarch64', flavor: 'small' };
const alpha = { key: KEYS.alpha, ...WANT };
const admin = { key: KEYS.beta };
/** Generous: the machine has 2 cores and runs the other test files at the same time. */
const SLOW_MS = 20_000;

const servers: TestServer[] = [];
const scriptDirs: ScriptDir[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    await server.close();
    removeDir(server.dir);
  }
  for (const dir of scriptDirs.splice(0)) dir.remove();
});

function newCloud(provisionSeconds?: number): FakeCloud {
  const dir = new ScriptDir();
  scriptDirs.push(dir);
  return new FakeCloud(dir, provisionSeconds);
}

/** The pool of these tests: ready-min 3, max-nodes 6, max-parallel 2, unless `settings` say otherwise. */
function cloudPool(cloud: FakeCloud, settings: PoolSpec['settings'] = {}): PoolSpec {
  return {
    name: 'cloud',
    ...WANT,
    mechanism: 'command',
    nodes: 0,
    settings: {
      provision: cloud.provision,
      deprovision: cloud.deprovision,
      'ready-min': 3,
      'max-nodes': 6,
      'max-parallel': 2,
      'command-timeout': '10s',
      ...settings,
    },
  };
}

async function launch(cloud: FakeCloud, settings: PoolSpec['settings'] = {}, clock?: () => number): Promise<TestServer> {
  const server = await startTestServer(
    {
      reaperInterval: '1s',
      defaults: { 'rate-limit': '1000/5m' },
      projects: { beta: { admin: true } },
      pools: [cloudPool(cloud, settings)],
    },
    clock,
  );
  servers.push(server);
  return server;
}

async function inventory(s: TestServer): Promise<Row[]> {
  const reply = await s.get('/Inventory');
  expect(reply.status).toBe(200);
  return reply.json as Row[];
}

async function hostsIn(s: TestServer, state: string): Promise<string[]> {
  return (await inventory(s)).filter((r) => r[5] === state).map((r) => r[1]);
}

async function waitForReady(s: TestServer, count: number, timeoutMs = SLOW_MS): Promise<string[]> {
  let ready: string[] = [];
  await waitFor(`${count} ready nodes`, async () => (ready = await hostsIn(s, 'Ready')).length === count, timeoutMs);
  return ready;
}

async function get(s: TestServer, count: number): Promise<Got> {
  const reply = await s.get('/Node/get', { ...alpha, count });
  expect(reply.status).toBe(200);
  return reply.json as Got;
}

async function events(s: TestServer, query: Record<string, string> = {}): Promise<EventView[]> {
  const reply = await s.get('/Admin/events', { ...admin, limit: 10_000, ...query });
  expect(reply.status).toBe(200);
  return reply.json as EventView[];
}

/** A node's life as from -> to: reason lines. */
async function life(s: TestServer, hostname: string): Promise<string[]> {
  return (await events(s, { hostname })).map((e) => `${e.from ?? '-'} -> ${e.to}: ${e.reason}`);
}

async function poolProblems(s: TestServer): Promise<EventView[]> {
  return (await events(s)).filter((e) => e.subject === 'pool');
}

describe('command pools: the warm pool', () => {
  test('fills to ready-min at start, with the pool in the environment and never more than max-parallel in flight', async () => {
    const cloud = newCloud(0.5);
    const s = await launch(cloud);

    const ready = await waitForReady(s, 3);
    expect(ready.every((h) => /^vm-.+\.cloud\.test$/.test(h))).toBe(true);
    const runs = cloud.runs();
    expect(runs.map((r) => [r.pool, r.ver, r.arch, r.flavor])).toEqual(runs.map(() => ['cloud', '9-stream', 'aarch64', 'small']));
    // Three nodes with at most two at once: at least two runs, none asking for more than two.
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...runs.map((r) => r.count))).toBe(2);
    expect(runs.reduce((sum, r) => sum + r.count, 0)).toBe(3);
    expect(cloud.maxInFlight()).toBe(2);

    // Full: nothing more is provisioned while nothing changes.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(cloud.runs()).toHaveLength(runs.length);
    expect(await hostsIn(s, 'Ready')).toEqual(ready);
  });

  test('refills to ready-min after each allocation, never past max-nodes nor max-parallel', async () => {
    const cloud = newCloud(0.3);
    const s = await launch(cloud);
    await waitForReady(s, 3);

    const first = await get(s, 2);
    expect((await hostsIn(s, 'Deployed')).sort()).toEqual([...first.hosts].sort());
    await waitForReady(s, 3);
    // Five nodes exist; room for one more: the pool refills as far as max-nodes allows.
    const second = await get(s, 3);
    await waitForReady(s, 1);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const rows = await inventory(s);
    expect(rows).toHaveLength(6);
    expect(rows.filter((r) => r[5] === 'Deployed').map((r) => r[1]).sort()).toEqual([...first.hosts, ...second.hosts].sort());
    expect(await hostsIn(s, 'Ready')).toHaveLength(1);
    expect(cloud.maxAlive()).toBe(6);
    expect(cloud.maxInFlight()).toBeLessThanOrEqual(2);

    // Releasing makes room: the released nodes go, new ones fill the warm pool again.
    expect((await s.get('/Node/done', { key: KEYS.alpha, ssid: first.ssid })).text).toBe('"Done"');
    await waitFor('the released nodes to be destroyed', () => first.hosts.every((h) => cloud.destroyed().includes(h)), SLOW_MS);
    await waitForReady(s, 3);
    expect(await inventory(s)).toHaveLength(6);
    expect(cloud.maxAlive()).toBeLessThanOrEqual(6);
    expect(cloud.maxInFlight()).toBeLessThanOrEqual(2);
  });
});

describe('command pools: release', () => {
  test('released nodes are deprovisioned with their JSON, leave the inventory, and are never handed out again', async () => {
    const cloud = newCloud(0.2);
    const s = await launch(cloud);
    await waitForReady(s, 3);

    const got = await get(s, 2);
    const printed = new Map(
      (await inventory(s)).filter((r) => got.hosts.includes(r[1])).map((r) => [r[1], r[2]]),
    );
    expect((await s.get('/Session/done', { key: KEYS.alpha, ssid: got.ssid })).text).toBe('"Done"');
    await waitFor('both nodes destroyed', () => got.hosts.every((h) => cloud.destroyed().includes(h)), SLOW_MS);

    // Deprovision got each node as provision printed it: hostname, ip and data.
    for (const { node } of cloud.deprovisions()) {
      expect(node.ip).toBe(printed.get(node.hostname));
      expect(node.data).toEqual({ id: node.hostname.replace(/^vm-(.*)\.cloud\.test$/, '$1') });
    }
    expect(cloud.deprovisions()).toHaveLength(2);
    await waitFor('the released nodes to leave the inventory', async () => {
      const listed = (await inventory(s)).map((r) => r[1]);
      return got.hosts.every((h) => !listed.includes(h));
    });
    const adminNodes = (await s.get('/Admin/nodes', admin)).json as Array<{ hostname: string }>;
    expect(adminNodes.map((n) => n.hostname).filter((h) => got.hosts.includes(h))).toEqual([]);

    // Their history: made, handed out, released, destroyed.
    for (const hostname of got.hosts) {
      const lines = await life(s, hostname);
      expect(lines).toEqual([
        '- -> ready: provisioned by pool cloud',
        expect.stringMatching(/^ready -> deployed: /),
        expect.stringMatching(/^deployed -> reclaiming: /),
        expect.stringMatching(/^reclaiming -> disabled: deprovisioned/),
      ]);
    }

    // Take everything the pool has, again and again: each node is handed out once only.
    const handedOut = [...got.hosts];
    for (let round = 0; round < 3; round++) {
      await waitForReady(s, 3);
      const all = await get(s, 3);
      expect(all.hosts.filter((h) => handedOut.includes(h))).toEqual([]);
      handedOut.push(...all.hosts);
      expect((await s.get('/Node/done', { key: KEYS.alpha, ssid: all.ssid })).text).toBe('"Done"');
    }
    await waitFor('every released node destroyed', () => handedOut.every((h) => cloud.destroyed().includes(h)), SLOW_MS);
    // Each machine destroyed once; none of them listed any more once the server recorded it.
    expect(cloud.destroyed().sort()).toEqual([...handedOut].sort());
    await waitFor('no released node listed', async () => (await inventory(s)).every((r) => !handedOut.includes(r[1])));
    expect(cloud.maxAlive()).toBeLessThanOrEqual(6);
  });

  test('a failing deprovision is retried after a pause, and the node goes once it succeeds', async () => {
    const cloud = newCloud(0.2);
    const s = await launch(cloud, { 'ready-min': 1 });
    await waitForReady(s, 1);
    const got = await get(s, 1);
    const [hostname] = got.hosts as [string];

    cloud.failDeprovision('cloud API: 503 try later\n');
    await s.get('/Node/done', { key: KEYS.alpha, ssid: got.ssid });
    await waitFor('a first, failed deprovision', () => cloud.deprovisions().length === 1, SLOW_MS);
    cloud.failDeprovision(null);
    await waitFor('the retry', () => cloud.destroyed().includes(hostname), SLOW_MS);

    const [failed, retried] = cloud.deprovisions();
    expect(failed).toMatchObject({ failed: true, node: { hostname } });
    expect(retried).toMatchObject({ failed: false, node: failed!.node });
    // The first backoff step is 2 s: a retry, not a loop.
    expect(retried!.atMs - failed!.atMs).toBeGreaterThanOrEqual(1500);
    await waitFor('the node to leave the inventory', async () => !(await inventory(s)).some((r) => r[1] === hostname));
    const history = await events(s, { hostname });
    expect(history.map((e) => `${e.from} -> ${e.to}`).slice(-3)).toEqual(['deployed -> reclaiming', 'reclaiming -> reclaiming', 'reclaiming -> disabled']);
    const attempt = history[history.length - 2]!;
    expect(attempt.reason).toBe('deprovision attempt 1 of 5 failed, next in 2s: deprovision exited with 1: cloud API: 503 try later');
    expect(attempt.detail).toBe('cloud API: 503 try later');
  });

  test('after repeated deprovision failures the node is left failed for an operator, who can release it', async () => {
    // The pauses between attempts (2 s, 4 s, 8 s, 16 s) are measured on the server's clock: the
    // test moves that clock on after each attempt instead of waiting half a minute.
    let offsetMs = 0;
    const cloud = newCloud(0.2);
    const s = await launch(cloud, { 'ready-min': 1 }, () => Date.now() + offsetMs);
    await waitForReady(s, 1);
    const got = await get(s, 1);
    const [hostname] = got.hosts as [string];

    cloud.failDeprovision('instance is locked\n');
    await s.get('/Node/done', { key: KEYS.alpha, ssid: got.ssid });
    for (let attempt = 1; attempt < 5; attempt++) {
      // Moved on once the server has recorded the attempt, so its pause starts before the jump.
      const recorded = `deprovision attempt ${attempt} of 5 failed`;
      await waitFor(recorded, async () => (await events(s, { hostname })).some((e) => e.reason?.startsWith(recorded)), SLOW_MS);
      offsetMs += 20_000;
    }
    await waitFor('the node to be failed', async () => (await hostsIn(s, 'Failed')).includes(hostname), SLOW_MS);
    const last = (await events(s, { hostname })).pop()!;
    expect(last).toMatchObject({ from: 'reclaiming', to: 'failed', detail: 'instance is locked' });
    expect(last.reason).toBe('deprovision failed 5 times, left for an operator: deprovision exited with 1: instance is locked');
    // No sixth attempt on its own.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(cloud.deprovisions()).toHaveLength(5);
    expect((await s.get('/Node/get', { ...alpha, count: 2 })).status).toBe(503);

    cloud.failDeprovision(null);
    expect((await s.get('/Admin/node/release', { ...admin, hostname })).status).toBe(200);
    await waitFor('the released node destroyed', () => cloud.destroyed().includes(hostname), SLOW_MS);
    await waitFor('the node to leave the inventory', async () => !(await inventory(s)).some((r) => r[1] === hostname));
  });
});

describe('command pools: failures of provision', () => {
  test('a failing provision backs off, its reason and stderr recorded, and the pool fills once it works', async () => {
    const cloud = newCloud(0.1);
    cloud.failProvision('quota exceeded for instances\n');
    const s = await launch(cloud);

    // Tries at about 0, 1, 3 and 7 s: a pause of 1 s after the first failure, 2 s after the second,
    // not a loop (the reaper ticks every second). Measured between the runs the script recorded,
    // so that a loaded machine, which only makes the pauses longer, cannot fail it.
    await waitFor('three provision tries', () => cloud.runs().length >= 3, SLOW_MS);
    const [first, second, third] = cloud.runs().sort((a, b) => a.startMs - b.startMs);
    expect(second!.startMs - first!.endMs).toBeGreaterThanOrEqual(900);
    expect(third!.startMs - second!.endMs).toBeGreaterThanOrEqual(1900);
    const tries = cloud.runs().length;
    await waitFor('a problem recorded for each finished try', async () => (await poolProblems(s)).length >= tries - 1, SLOW_MS);
    const problems = await poolProblems(s);
    for (const problem of problems) {
      expect(problem).toMatchObject({ pool: 'cloud', hostname: null, reason: 'provision exited with 1: quota exceeded for instances', detail: 'quota exceeded for instances' });
    }
    expect(await inventory(s)).toEqual([]);

    cloud.failProvision(null);
    await waitForReady(s, 3);
    expect(cloud.runs().filter((r) => !r.failed).reduce((sum, r) => sum + r.count, 0)).toBe(3);
  });

  test('bad output lines are recorded as a problem, and the good lines still become nodes', async () => {
    const cloud = newCloud(0.1);
    cloud.printExtra(['Creating instances...', '{"hostname": "vm-noip.cloud.test"}']);
    const s = await launch(cloud, { 'ready-min': 2 });

    const ready = await waitForReady(s, 2);
    expect(ready).not.toContain('vm-noip.cloud.test');
    const [problem] = await poolProblems(s);
    expect(problem?.reason).toBe(
      'provision printed 2 usable node(s) of 2 asked: line 1: not JSON (expected {"hostname": ..., "ip": ..., "data": ...}); line 2: ip must be a non-empty string (node vm-noip.cloud.test)',
    );
    expect((await get(s, 2)).hosts.sort()).toEqual([...ready].sort());
  });
});

describe('command pools: age and demand', () => {
  test('ready nodes older than max-ready-age are deprovisioned and replaced', async () => {
    // Age on a driven clock: the nodes grow old when the test moves time on, not after real seconds.
    const clock = new DrivenClock();
    const cloud = newCloud(0.1);
    const s = await launch(cloud, { 'ready-min': 2, 'max-ready-age': '2s' }, clock.now);
    const first = await waitForReady(s, 2);
    clock.advance(2_001);
    s.server.fill.kick();

    await waitFor('the first nodes destroyed', () => first.every((h) => cloud.destroyed().includes(h)), SLOW_MS);
    await waitFor('two new ready nodes', async () => {
      const ready = await hostsIn(s, 'Ready');
      return ready.length === 2 && ready.every((h) => !first.includes(h));
    }, SLOW_MS);
    const lines = await life(s, first[0]!);
    expect(lines.slice(0, 3)).toEqual([
      '- -> ready: provisioned by pool cloud',
      'ready -> reclaiming: ready for longer than max-ready-age, replaced',
      'reclaiming -> disabled: deprovisioned (ready for longer than max-ready-age, replaced)',
    ]);
  });

  test('a request for more than is ready makes the pool provision for it; one beyond max-nodes is refused', async () => {
    const cloud = newCloud(0.2);
    const s = await launch(cloud, { 'ready-min': 1 });
    await waitForReady(s, 1);

    const tooMany = await s.get('/Node/get', { ...alpha, count: 7 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json).toEqual({ msg: 'count 7 exceeds the 6 nodes pool cloud can hold' });

    const first = await s.get('/Node/get', { ...alpha, count: 5 });
    expect(first.status).toBe(503);
    expect(first.text).toBe('Insufficient Nodes in READY State');
    let got: Got | undefined;
    await waitFor('a retry to get 5 nodes', async () => {
      const reply = await s.get('/Node/get', { ...alpha, count: 5 });
      if (reply.status === 200) got = reply.json as Got;
      else expect(reply.status).toBe(503);
      return got !== undefined;
    }, SLOW_MS);
    expect(got!.hosts).toHaveLength(5);
    expect(cloud.maxInFlight()).toBeLessThanOrEqual(2);
    expect(cloud.maxAlive()).toBeLessThanOrEqual(6);
  });

  test('once a request was served, the pool goes back to ready-min', async () => {
    const cloud = newCloud(0.1);
    const s = await launch(cloud, { 'ready-min': 1, 'max-nodes': 12 });
    await waitForReady(s, 1);

    expect((await s.get('/Node/get', { ...alpha, count: 4 })).status).toBe(503);
    await waitForReady(s, 4);
    await get(s, 4);
    await waitForReady(s, 1);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // The demand was met: the pool keeps its warm size only.
    expect(await hostsIn(s, 'Ready')).toHaveLength(1);
    expect(await inventory(s)).toHaveLength(5);
  });

  test('a larger request still gets its nodes when earlier demand left more than ready-min ready', async () => {
    const cloud = newCloud(0.1);
    const s = await launch(cloud, { 'ready-min': 1, 'max-nodes': 12 });
    await waitForReady(s, 1);

    // Someone asks for 3, then gives up: the pool provisions them anyway.
    expect((await s.get('/Node/get', { ...alpha, count: 3 })).status).toBe(503);
    await waitForReady(s, 3);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Someone else asks for 4: one more is missing, and it comes.
    expect((await s.get('/Node/get', { ...alpha, count: 4 })).status).toBe(503);
    await waitForReady(s, 4);
    expect((await get(s, 4)).hosts).toHaveLength(4);
  });
});
