/**
 * docs/api.md, "Lifecycle", against the real server over HTTP on loopback, with a real
 * database (SQLite, or PostgreSQL under CINODE_TEST_DATABASE=postgres), short durations in the
 * configuration and real reclaim commands: reclaim that succeeds, fails or hangs, bounded
 * parallelism, expiry and the fail hold, configuration reload, restart on the same database, and
 * graceful close.
 */
import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import type { Kysely } from 'kysely';
import type { Database } from '../src/store/schema.js';
import { openStore } from '../src/store/open.js';
import { testDatabaseKind, testDatabaseUrl } from './support/database.js';
import { DrivenClock, reapNow } from './support/clock.js';
import { isRunning, ScriptDir } from './support/scripts.js';
import { configYaml, KEYS, removeDir, startTestServer, TestServer, waitFor, type ConfigSpec } from './support/server.js';

/** A row of the unkeyed `/Inventory`: [id, hostname, ip, chassis, used_count, state, comment, ..., pool, ...]. */
type Row = [number, string, string | null, string | null, number, string, string | null, ...unknown[]];
interface Got {
  hosts: string[];
  ssid: string;
}
interface Opened {
  ssid: string;
  alias: string | null;
  expires_at: string | null;
}
interface Show {
  ssid: string;
  state: 'active' | 'done';
  expires_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  hosts: Array<{ hostname: string; state: string }>;
}

const alpha = { key: KEYS.alpha };
const RATE = { 'rate-limit': '100/5m' };
const c7 = (n: number): string => `c7-${n}.test.example`;

const servers: TestServer[] = [];
const scriptDirs: ScriptDir[] = [];

afterEach(async () => {
  // Every server first: a restarted server shares its folder (and database) with the first one.
  const closing = servers.splice(0);
  for (const server of closing) await server.close();
  for (const server of closing) removeDir(server.dir);
  for (const dir of scriptDirs.splice(0)) dir.remove();
});

function scripts(): ScriptDir {
  const dir = new ScriptDir();
  scriptDirs.push(dir);
  return dir;
}

async function launch(spec: ConfigSpec, clock?: () => number): Promise<TestServer> {
  const server = await startTestServer(spec, clock);
  servers.push(server);
  return server;
}

/** A new server on the folder (and so the database file) of an earlier one. */
async function restart(dir: string, spec: ConfigSpec): Promise<TestServer> {
  const server = new TestServer(dir, spec);
  servers.push(server);
  return server.start();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function inventory(s: TestServer): Promise<Row[]> {
  const reply = await s.get('/Inventory');
  expect(reply.status).toBe(200);
  return reply.json as Row[];
}

async function rowOf(s: TestServer, hostname: string): Promise<Row | undefined> {
  return (await inventory(s)).find((r) => r[1] === hostname);
}

async function waitForState(s: TestServer, hostnames: readonly string[], state: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    `${hostnames.join(', ')} ${state}`,
    async () => {
      const rows = await inventory(s);
      return hostnames.every((h) => rows.find((r) => r[1] === h)?.[5] === state);
    },
    timeoutMs,
  );
}

/** The store's own view of a node (its reason is not in the legacy inventory). */
async function storeNode(s: TestServer, hostname: string) {
  return (await s.server.store.read().nodes.list()).find((n) => n.hostname === hostname);
}

async function show(s: TestServer, ssid: string, key: string = KEYS.alpha): Promise<Show> {
  const reply = await s.get('/Session/show', { key, ssid });
  expect(reply.status).toBe(200);
  return reply.json as Show;
}

/** Runs `use` on a store of its own over the database of the test folder `dir`, and closes it. */
async function withDb<T>(dir: string, use: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const store = await openStore(testDatabaseUrl(dir));
  try {
    return await use(store.db);
  } finally {
    await store.close();
  }
}

/**
 * At start the server clears every reclaim claim on SQLite (one process owns the file), but not on
 * PostgreSQL, where other replicas may own them: there a claim only lapses at its `lease_until`.
 */
const CLAIMS_CLEARED_AT_START = testDatabaseKind() === 'sqlite';

describe('reclaim commands', () => {
  test('exit 0: Deployed -> Deprovision -> Ready, used count + 1, the node passed in the environment', async () => {
    const dir = scripts();
    const reclaim = dir.script(
      'reclaim.sh',
      `
echo "$CINODE_HOSTNAME $CINODE_IP $CINODE_POOL" >> "$1"
while [ ! -e "$2" ]; do sleep 0.05; done
exit 0
`,
    );
    const s = await launch({
      defaults: RATE,
      pools: [{ name: 'c7', ver: '7', nodes: 2, reclaim: [reclaim, dir.path('env.log'), dir.path('go')], reclaimTimeout: '30s' }],
    });

    const got = (await s.get('/Node/get', alpha)).json as Got;
    expect(got.hosts).toEqual([c7(1)]);
    expect((await rowOf(s, c7(1)))?.slice(1, 7)).toEqual([c7(1), '192.0.2.1', null, 0, 'Deployed', got.ssid]);

    expect((await s.get('/Node/done', { ...alpha, ssid: got.ssid })).text).toBe('"Done"');
    // The release itself moves the node to reclaim; the command starts at once, not at a poll.
    const released = await rowOf(s, c7(1));
    expect(released?.[5]).toBe('Deprovision');
    expect(released?.[6]).toBeNull();
    expect(released?.[11]).toBe(1);
    await waitFor('the reclaim command to start', () => dir.lines('env.log').length === 1, 15_000);
    expect((await rowOf(s, c7(1)))?.[5]).toBe('Deprovision');

    dir.touch('go');
    await waitForState(s, [c7(1)], 'Ready', 15_000);
    expect((await rowOf(s, c7(1)))?.slice(1, 7)).toEqual([c7(1), '192.0.2.1', null, 1, 'Ready', null]);
    expect(dir.lines('env.log')).toEqual([`${c7(1)} 192.0.2.1 c7`]);

    // Back in service: least used first, so c7-2 comes before c7-1 now.
    const again = (await s.get('/Node/get', { ...alpha, count: 2 })).json as Got;
    expect(again.hosts).toEqual([c7(2), c7(1)]);
  });

  test('non-zero exit: the node is quarantined Failed with the exit code and stderr, and never handed out again', async () => {
    const dir = scripts();
    const reclaim = dir.script(
      'reclaim.sh',
      `
echo "starting reinstall" >&2
echo "reinstall of $CINODE_HOSTNAME failed: disk not found" >&2
exit 3
`,
    );
    const s = await launch({ defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 3, reclaim: [reclaim], reclaimTimeout: '30s' }] });

    const got = (await s.get('/Node/get', alpha)).json as Got;
    expect(got.hosts).toEqual([c7(1)]);
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    await waitForState(s, [c7(1)], 'Failed', 15_000);

    const row = await rowOf(s, c7(1));
    expect(row?.[4]).toBe(0); // a failed reclaim does not count as a use
    expect(row?.[6]).toBeNull();
    expect(row?.[11]).toBe(0); // out of the allocation pool
    const node = await storeNode(s, c7(1));
    expect(node?.state).toBe('failed');
    expect(node?.reason).toContain('exited with 3');
    expect(node?.reason).toContain(`reinstall of ${c7(1)} failed: disk not found`);

    // Every other node, and only those.
    const all = await s.get('/Node/get', { ...alpha, count: 3 });
    expect(all.status).toBe(503);
    expect(all.text).toBe('Insufficient Nodes in READY State');
    const rest = (await s.get('/Node/get', { ...alpha, count: 2 })).json as Got;
    expect([...rest.hosts].sort()).toEqual([c7(2), c7(3)]);
    expect((await s.get('/Node/get', alpha)).status).toBe(503);
    expect((await rowOf(s, c7(1)))?.[5]).toBe('Failed');
  });

  test('exit 0 is success even when the command leaves something running in the background', async () => {
    const dir = scripts();
    // The background child keeps the command's output open past the timeout: a server that waited
    // for it would kill the command at the timeout and quarantine the node. Ready is the proof;
    // the bounds are far from the machine's speed (a loaded machine only delays the Ready).
    const reclaim = dir.script('reclaim.sh', `sleep 60 &\necho $! > "$1"\necho "reinstall started in the background"\nexit 0`);
    const s = await launch({ defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 1, reclaim: [reclaim, dir.path('sleep.pid')], reclaimTimeout: '20s' }] });
    const got = (await s.get('/Node/get', alpha)).json as Got;
    const released = Date.now();
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    try {
      await waitForState(s, [c7(1)], 'Ready', 15_000);
      expect(Date.now() - released).toBeLessThan(15_000);
      expect((await storeNode(s, c7(1)))?.state).toBe('ready');
    } finally {
      const pid = dir.pid('sleep.pid');
      if (pid !== undefined && isRunning(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a node whose pool left the configuration is quarantined at release, never handed out unreclaimed', async () => {
    const dir = scripts();
    const reclaim = dir.script('reclaim.sh', `echo "$CINODE_HOSTNAME" >> "${dir.path('reclaimed')}"`);
    const withPool: ConfigSpec = {
      defaults: RATE,
      pools: [
        { name: 'c7', ver: '7', nodes: 1 },
        { name: 'x', ver: '8', nodes: 1, reclaim: [reclaim] },
      ],
    };
    const s = await launch(withPool);
    const got = (await s.get('/Node/get', { ...alpha, ver: '8' })).json as Got;
    expect(got.hosts).toEqual(['x-1.test.example']);
    writeFileSync(s.configPath, configYaml(s.dir, { ...withPool, pools: [withPool.pools![0]!] }));
    await s.server.reload();
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    // Retired nodes are left out of the inventory: read the row itself.
    const orphan = () => s.server.store.db.selectFrom('nodes').selectAll().where('hostname', '=', 'x-1.test.example').executeTakeFirstOrThrow();
    await waitFor('the orphaned node quarantined', async () => (await orphan()).state === 'failed');
    expect((await orphan()).reason).toMatch(/pool x is no longer configured/);
    writeFileSync(s.configPath, configYaml(s.dir, withPool));
    await s.server.reload();
    expect((await s.get('/Node/get', { ...alpha, ver: '8' })).status).toBe(503);
    expect(dir.lines('reclaimed')).toEqual([]);
  });

  test('a command past its timeout is killed with what it started, and the node quarantined', async () => {
    const dir = scripts();
    const reclaim = dir.script(
      'reclaim.sh',
      `
echo $$ > "$1"
sleep 30 &
echo $! > "$2"
wait
`,
    );
    const s = await launch({
      defaults: RATE,
      pools: [{ name: 'c7', ver: '7', nodes: 1, reclaim: [reclaim, dir.path('shell.pid'), dir.path('sleep.pid')], reclaimTimeout: '1s' }],
    });

    const got = (await s.get('/Node/get', alpha)).json as Got;
    const releasedAt = Date.now();
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    // Killed at its 1 s timeout, long before its 30 s sleep ends: the upper bound leaves a loaded
    // machine room to start the command and record the kill.
    await waitForState(s, [c7(1)], 'Failed', 15_000);
    const elapsed = Date.now() - releasedAt;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(15_000);

    const node = await storeNode(s, c7(1));
    expect(node?.state).toBe('failed');
    expect(node?.reason).toMatch(/timed out after 1s/);
    expect((await rowOf(s, c7(1)))?.[11]).toBe(0);

    const shellPid = dir.pid('shell.pid');
    const sleepPid = dir.pid('sleep.pid');
    expect(shellPid).toBeDefined();
    expect(sleepPid).toBeDefined();
    await waitFor('the reclaim command and its child to be gone', () => !isRunning(shellPid!) && !isRunning(sleepPid!), 10_000);
  });

  test('reclaim-parallel bounds how many commands run at once; all nodes come back', async () => {
    const dir = scripts();
    const reclaim = dir.script(
      'reclaim.sh',
      `
mkdir -p "$1/running"
touch "$1/running/$CINODE_HOSTNAME"
echo "start $(date +%s%3N) $(ls "$1/running" | wc -l) $CINODE_HOSTNAME" >> "$1/log"
sleep 0.3
rm -f "$1/running/$CINODE_HOSTNAME"
echo "end $(date +%s%3N) $CINODE_HOSTNAME" >> "$1/log"
`,
    );
    const s = await launch({
      defaults: RATE,
      reclaimParallel: 2,
      pools: [{ name: 'c7', ver: '7', nodes: 6, reclaim: [reclaim, dir.dir], reclaimTimeout: '30s' }],
    });
    const hosts = [1, 2, 3, 4, 5, 6].map(c7);

    const got = (await s.get('/Node/get', { ...alpha, count: 6 })).json as Got;
    expect([...got.hosts].sort()).toEqual(hosts);
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    await waitForState(s, hosts, 'Ready', 10_000);

    const events = dir.lines('log').map((line) => line.split(' '));
    const starts = events.filter((e) => e[0] === 'start');
    expect(starts.map((e) => e[3]).sort()).toEqual(hosts);
    // Running at once, as each command saw it when it started...
    const seen = starts.map((e) => Number(e[2]));
    expect(Math.max(...seen)).toBeLessThanOrEqual(2);
    expect(Math.max(...seen)).toBe(2);
    // ...and from the times each one started and ended.
    const marks = events.map((e) => ({ at: Number(e[1]), delta: e[0] === 'start' ? 1 : -1 })).sort((a, b) => a.at - b.at || a.delta - b.delta);
    let running = 0;
    let most = 0;
    for (const mark of marks) {
      running += mark.delta;
      most = Math.max(most, running);
    }
    expect(most).toBeLessThanOrEqual(2);
    const times = marks.map((m) => m.at);
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(850); // three rounds of 0.3s
    for (const row of await inventory(s)) expect(row[4]).toBe(1);
  });
});

/**
 * Expiry and the fail hold on a driven clock: the reaper's timer is set far beyond the test
 * (`reaperInterval: 1h`), time moves only when the test moves it, and each reaper pass is one the
 * test asks for (`reapNow`). Only the reclaim commands run in real time.
 */
describe('expiry', () => {
  const logging = (dir: ScriptDir): string => dir.script('reclaim.sh', 'echo "$CINODE_HOSTNAME" >> "$1"');
  const REAPER_INTERVAL_MS = 1000; // as in the configuration the tests were written for

  test('the reaper ends a session past its lifetime and reclaims its nodes; a never session stays', async () => {
    const dir = scripts();
    const clock = new DrivenClock();
    const s = await launch(
      {
        defaults: RATE,
        reaperInterval: '1h',
        pools: [{ name: 'c7', ver: '7', nodes: 4, reclaim: [logging(dir), dir.path('reclaimed.log')], reclaimTimeout: '30s' }],
      },
      clock.now,
    );

    const short = (await s.get('/Session/get', { ...alpha, alias: 'short', lifetime: '2s' })).json as Opened;
    const expiresAt = Date.parse(short.expires_at!);
    expect(Math.abs(expiresAt - clock.now() - 2000)).toBeLessThan(1000);
    expect(expiresAt - clock.now()).toBe(2000);
    const shortNodes = (await s.get('/Node/get', { ...alpha, ssid: 'short', count: 2 })).json as Got;
    expect(shortNodes.ssid).toBe(short.ssid);

    const forever = (await s.get('/Session/get', { key: KEYS.never, alias: 'forever', lifetime: 'never' })).json as Opened;
    expect(forever.expires_at).toBeNull();
    const foreverNodes = (await s.get('/Node/get', { key: KEYS.never, ssid: 'forever' })).json as Got;

    // Before its expiry a pass leaves it alone; the first pass after it ends it.
    clock.advanceTo(expiresAt - 1);
    await reapNow(s);
    expect((await show(s, short.ssid)).state).toBe('active');
    clock.advance(REAPER_INTERVAL_MS / 2);
    expect(await reapNow(s)).toBe(1);
    const ended = await show(s, short.ssid);
    expect(ended).toMatchObject({ state: 'done', end_reason: 'expired', hosts: [] });
    const endedAt = Date.parse(ended.ended_at!);
    expect(endedAt).toBeGreaterThanOrEqual(expiresAt);
    expect(endedAt - expiresAt).toBeLessThan(2500); // within about one reaper interval
    expect(endedAt).toBe(clock.now()); // at the pass that saw it expired

    await waitForState(s, shortNodes.hosts, 'Ready', 15_000);
    expect([...dir.lines('reclaimed.log')].sort()).toEqual([...shortNodes.hosts].sort());
    for (const host of shortNodes.hosts) expect((await rowOf(s, host))?.[4]).toBe(1);

    // Well past a few reaper passes (a year on): the never session keeps its node.
    for (let pass = 0; pass < 3; pass++) {
      clock.advance(122 * 86_400_000);
      expect(await reapNow(s)).toBe(0);
    }
    const kept = await show(s, forever.ssid, KEYS.never);
    expect(kept).toMatchObject({ state: 'active', expires_at: null, end_reason: null, ended_at: null });
    expect(kept.hosts).toEqual([expect.objectContaining({ hostname: foreverNodes.hosts[0], state: 'deployed' })]);
    expect((await rowOf(s, foreverNodes.hosts[0]!))?.[5]).toBe('Deployed');
  });

  test('/Node/fail without node holds the nodes until the fail hold ends, then they go to reclaim', async () => {
    const dir = scripts();
    const clock = new DrivenClock();
    const s = await launch(
      {
        defaults: { ...RATE, 'fail-hold': '3s' },
        reaperInterval: '1h',
        pools: [{ name: 'c7', ver: '7', nodes: 3, reclaim: [logging(dir), dir.path('reclaimed.log')], reclaimTimeout: '30s' }],
      },
      clock.now,
    );

    const opened = (await s.get('/Session/get', { ...alpha, alias: 'dbg', lifetime: '2s' })).json as Opened;
    const lifetimeEnd = Date.parse(opened.expires_at!);
    const got = (await s.get('/Node/get', { ...alpha, ssid: 'dbg', count: 2 })).json as Got;
    clock.advance(500); // the job ran a while before it failed
    const failedAt = clock.now();
    const fail = await s.get('/Node/fail', { ...alpha, ssid: 'dbg' });
    expect(fail.status).toBe(200);
    expect(fail.text).toBe('"Done"');

    const held = await show(s, opened.ssid);
    expect(held.state).toBe('active');
    expect(held.hosts.map((h) => h.state)).toEqual(['held', 'held']);
    const holdEnd = Date.parse(held.expires_at!);
    expect(holdEnd).toBeGreaterThan(lifetimeEnd);
    expect(Math.abs(holdEnd - failedAt - 3000)).toBeLessThan(1000);
    expect(holdEnd - failedAt).toBe(3000);
    for (const host of got.hosts) expect((await rowOf(s, host))?.slice(5, 7)).toEqual(['Fail', opened.ssid]);

    // Past the session's own lifetime, a reaper pass leaves it alone.
    clock.advanceTo(lifetimeEnd + 100);
    expect(clock.now()).toBeLessThan(holdEnd);
    expect(await reapNow(s)).toBe(0);
    const stillHeld = await show(s, opened.ssid);
    expect(stillHeld.state).toBe('active');
    expect(stillHeld.hosts.map((h) => h.state)).toEqual(['held', 'held']);
    // So does one a moment before the hold ends.
    clock.advanceTo(holdEnd - 1);
    await reapNow(s);
    expect((await show(s, opened.ssid)).hosts.map((h) => h.state)).toEqual(['held', 'held']);

    clock.advance(REAPER_INTERVAL_MS / 2);
    expect(await reapNow(s)).toBe(1);
    const ended = await show(s, opened.ssid);
    expect(ended).toMatchObject({ state: 'done', end_reason: 'expired', hosts: [] });
    expect(Date.parse(ended.ended_at!)).toBeGreaterThanOrEqual(holdEnd);
    await waitForState(s, got.hosts, 'Ready', 15_000);
    expect([...dir.lines('reclaimed.log')].sort()).toEqual([...got.hosts].sort());
  });
});

/** The configuration text without one project's entry. */
function withoutProject(yaml: string, name: string): string {
  const out: string[] = [];
  let skipping = false;
  for (const line of yaml.split('\n')) {
    if (line === `  - name: ${name}`) {
      skipping = true;
      continue;
    }
    if (skipping && line.startsWith('    ')) continue;
    skipping = false;
    out.push(line);
  }
  return out.join('\n');
}

describe('configuration reload', () => {
  test('removed nodes finish their session then leave; added nodes are ready; removed projects lose access; a bad file changes nothing', async () => {
    const s = await launch({ defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 3 }] });
    const beta = { key: KEYS.beta };

    const keep = (await s.get('/Session/get', { ...alpha, alias: 'keep' })).json as Opened;
    const got = (await s.get('/Node/get', { ...alpha, ssid: 'keep', count: 3 })).json as Got;
    expect([...got.hosts].sort()).toEqual([c7(1), c7(2), c7(3)]);
    expect((await s.get('/Session/get', { ...beta, alias: 'b' })).status).toBe(200);

    // c7-3 leaves the file, pool c9s and its node arrive, project beta is gone.
    const next: ConfigSpec = {
      defaults: RATE,
      pools: [
        { name: 'c7', ver: '7', nodes: 2 },
        { name: 'c9s', ver: '9-stream', nodes: 1 },
      ],
    };
    writeFileSync(s.configPath, withoutProject(configYaml(s.dir, next), 'beta'));
    await s.server.reload();

    const live = await show(s, keep.ssid);
    expect(live.state).toBe('active');
    expect(live.hosts.map((h) => [h.hostname, h.state])).toEqual([
      [c7(1), 'deployed'],
      [c7(2), 'deployed'],
      [c7(3), 'deployed'],
    ]);
    expect((await s.get('/Inventory', alpha)).json).toContainEqual([c7(3), keep.ssid]);
    const rows = await inventory(s);
    expect(rows.map((r) => r[1])).toEqual([c7(1), c7(2), 'c9s-1.test.example']);
    expect(rows[2]?.slice(4, 7)).toEqual([0, 'Ready', null]);

    const refused = await s.get('/Session/show', { ...beta, ssid: 'b' });
    expect(refused.status).toBe(403);
    expect(refused.json).toEqual({ msg: 'Invalid duffy key' });
    expect((await s.get('/Node/get', beta)).status).toBe(403);

    const added = (await s.get('/Node/get', { ...alpha, ver: '9-stream' })).json as Got;
    expect(added.hosts).toEqual(['c9s-1.test.example']);
    await s.get('/Session/done', { ...alpha, ssid: added.ssid });

    // Released, the removed node is reclaimed but stays out of service and out of the listing.
    expect((await s.get('/Node/done', { ...alpha, ssid: 'keep', node: c7(3) })).text).toBe('"Done"');
    await waitFor(
      'c7-3 reclaimed',
      async () => (await s.server.store.db.selectFrom('nodes').select('state').where('hostname', '=', c7(3)).executeTakeFirst())?.state === 'ready',
      5000,
    );
    expect((await inventory(s)).map((r) => r[1])).not.toContain(c7(3));
    expect((await show(s, keep.ssid)).hosts.map((h) => h.hostname)).toEqual([c7(1), c7(2)]);
    await s.get('/Session/done', { ...alpha, ssid: 'keep' });
    await waitForState(s, [c7(1), c7(2), 'c9s-1.test.example'], 'Ready', 15_000);

    const tooMany = await s.get('/Node/get', { ...alpha, count: 3 });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json).toEqual({ msg: 'count 3 exceeds the 2 nodes pool c7 can hold' });
    const both = (await s.get('/Node/get', { ...alpha, count: 2 })).json as Got;
    expect([...both.hosts].sort()).toEqual([c7(1), c7(2)]);
    expect((await s.get('/Node/get', alpha)).status).toBe(503);

    // A broken file, then a well-formed one with a bad setting: the running configuration stays.
    const before = await inventory(s);
    const logsBefore = s.logs.length;
    writeFileSync(s.configPath, 'pools: [\n  - name: c7\n    nodes: {\n');
    await s.server.reload();
    writeFileSync(s.configPath, configYaml(s.dir, { defaults: { ...RATE, 'fail-hold': 'soon' }, pools: [{ name: 'c7', ver: '7', nodes: 1 }] }));
    await s.server.reload();
    const failures = s.logs.slice(logsBefore).filter((line) => line.includes('configuration reload failed'));
    expect(failures).toHaveLength(2);
    expect(await inventory(s)).toEqual(before);
    expect((await s.get('/Node/get', beta)).status).toBe(403);
    expect((await s.get('/Session/list', alpha)).status).toBe(200);
    expect((await s.get('/Node/get', { ...alpha, ver: '9-stream' })).status).toBe(200);
  });
});

describe('configuration reload: what it cannot change', () => {
  test('a new listen address or database is refused with a warning and applies at the next start; the rest of the file applies now', async () => {
    const s = await launch({ defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 1 }] });
    const moved = configYaml(s.dir, { defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 2 }] }).replace('listen: 127.0.0.1:0', 'listen: 127.0.0.1:1');
    writeFileSync(s.configPath, moved);
    await s.server.reload();
    expect(s.logs.filter((line) => line.includes('listen and database changes take effect at the next start only'))).toHaveLength(1);
    expect((await inventory(s)).map((r) => r[1])).toEqual([c7(1), c7(2)]);
    expect((await s.get('/healthz')).status).toBe(200);
  });

  test('a reload asked for while the server is closing changes nothing', async () => {
    const s = await launch({ defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 1 }] });
    writeFileSync(s.configPath, configYaml(s.dir, { defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 2 }] }));
    const closed = s.server.close();
    await s.server.reload();
    await closed;
    expect(s.logs.filter((line) => line.includes('configuration reload'))).toEqual([]);
  });
});

describe('restart on the same database', () => {
  test('a reclaim cut short by shutdown is done again at the next start', async () => {
    const dir = scripts();
    const reclaim = dir.script(
      'reclaim.sh',
      `
if [ -e "$1/slow" ]; then
  echo $$ > "$1/slow.pid"
  exec sleep 30
fi
echo "$CINODE_HOSTNAME" >> "$1/reclaimed.log"
`,
    );
    // The timeout outlasts the shutdown grace (5s), so shutdown, not the timeout, ends the command.
    const spec: ConfigSpec = { defaults: RATE, pools: [{ name: 'c7', ver: '7', nodes: 2, reclaim: [reclaim, dir.dir], reclaimTimeout: '30s' }] };
    const first = await launch(spec);
    dir.touch('slow');
    const got = (await first.get('/Node/get', alpha)).json as Got;
    await first.get('/Node/done', { ...alpha, ssid: got.ssid });
    await waitFor('the slow reclaim to start', () => dir.pid('slow.pid') !== undefined, 10_000);

    const closing = Date.now();
    await first.close();
    const took = Date.now() - closing;
    expect(took).toBeGreaterThanOrEqual(4000); // waited for the command...
    expect(took).toBeLessThan(25_000); // ...up to the grace period (5 s), then killed it, not after its 30 s
    const pid = dir.pid('slow.pid')!;
    await waitFor('the cut-short command to be gone', () => !isRunning(pid), 10_000);
    await withDb(first.dir, async (db) => {
      const row = await db.selectFrom('nodes').select(['state', 'lease_owner']).where('hostname', '=', c7(1)).executeTakeFirstOrThrow();
      expect(row.state).toBe('reclaiming');
      if (!CLAIMS_CLEARED_AT_START) {
        // On PostgreSQL the claim of the closed server stays until its lease ends (the 30s timeout
        // + 60s), as a dead replica's would: we fast-forward the lease instead of waiting.
        await db.updateTable('nodes').set({ lease_until: Date.now() - 1000 }).where('hostname', '=', c7(1)).where('state', '=', 'reclaiming').execute();
      }
    });

    dir.unlink('slow');
    const second = await restart(first.dir, spec);
    await waitForState(second, [c7(1)], 'Ready', 15_000);
    expect(dir.lines('reclaimed.log')).toEqual([c7(1)]);
    expect((await rowOf(second, c7(1)))?.[4]).toBe(1);
  }, 60_000);

  test('nodes left reclaiming, with a claim of a process that died, are reclaimed at start', async () => {
    const dir = scripts();
    const reclaim = dir.script('reclaim.sh', 'echo "$CINODE_HOSTNAME" >> "$1"');
    const spec: ConfigSpec = {
      defaults: RATE,
      pools: [{ name: 'c7', ver: '7', nodes: 3, reclaim: [reclaim, dir.path('reclaimed.log')], reclaimTimeout: '30s' }],
    };
    const first = await launch(spec);
    await first.close();

    const now = Date.now();
    // The dead process's claim: on SQLite one far in the future, since the server clears every
    // claim at start (one process owns the file), which is what is tested there. On PostgreSQL
    // the server does not clear claims (other replicas may own them): a dead replica's claim is
    // taken once its lease has lapsed, so there the claim's lease is already over.
    const deadLeaseUntil = CLAIMS_CLEARED_AT_START ? now + 3_600_000 : now - 1000;
    await withDb(first.dir, async (db) => {
      const update = (hostname: string, leaseOwner: string | null, leaseUntil: number | null) =>
        db
          .updateTable('nodes')
          .set({ state: 'reclaiming', session_id: null, changed_at: now, reason: 'session done', lease_owner: leaseOwner, lease_until: leaseUntil })
          .where('hostname', '=', hostname)
          .executeTakeFirst();
      expect(Number((await update(c7(1), 'crashed-host:4242:deadbeef', deadLeaseUntil)).numUpdatedRows)).toBe(1);
      expect(Number((await update(c7(2), null, null)).numUpdatedRows)).toBe(1);
    });

    const second = await restart(first.dir, spec);
    await waitForState(second, [c7(1), c7(2)], 'Ready', 15_000);
    expect([...dir.lines('reclaimed.log')].sort()).toEqual([c7(1), c7(2)]);
    const rows = await inventory(second);
    expect(rows.map((r) => [r[1], r[4], r[5]])).toEqual([
      [c7(1), 1, 'Ready'],
      [c7(2), 1, 'Ready'],
      [c7(3), 0, 'Ready'],
    ]);
  });
});

describe('graceful close', () => {
  test('a request in flight when close() is called still completes', async () => {
    const s = await launch({ defaults: RATE });
    const port = Number(new URL(s.url).port);
    const body = `key=${KEYS.alpha}&count=2`;
    let req!: ReturnType<typeof request>;
    const reply = new Promise<{ status: number; text: string }>((resolve, reject) => {
      req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/Node/get',
          agent: false,
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), connection: 'close' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    // Headers and half the body: the server has the request and waits for the rest. Waited for
    // as Node's 'request' event (the headers parsed), not for a while: a connection whose request
    // has not arrived yet is idle, and closing would rightly drop it.
    let received = false;
    s.server.app.server.once('request', () => (received = true));
    req.write(body.slice(0, 8));
    const connections = () => new Promise<number>((resolve) => s.server.app.server.getConnections((_err, n) => resolve(n)));
    await waitFor('the connection', async () => (await connections()) === 1, 10_000);
    await waitFor('the request headers to reach the server', () => received, 10_000);

    let closed = false;
    const closing = s.close().then(() => {
      closed = true;
    });
    await sleep(300);
    expect(closed).toBe(false);
    await expect(fetch(`${s.url}/healthz`)).rejects.toThrow(); // no new connections

    req.end(body.slice(8));
    const answer = await reply;
    expect(answer.status).toBe(200);
    expect((JSON.parse(answer.text) as Got).hosts).toHaveLength(2);
    await waitFor('close() to finish', () => closed, 10_000);
    await closing;

    // What the request did was committed before the store closed.
    const deployed = await withDb(s.dir, (db) =>
      db.selectFrom('nodes').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'deployed').executeTakeFirstOrThrow(),
    );
    expect(deployed.n).toBe(2);
  });
});
