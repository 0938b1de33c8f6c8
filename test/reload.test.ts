/**
 * A reload (SIGHUP) never takes the server down, against the real process (lib/cli/main.js): a
 * configuration whose catalog sync the database refuses, and a database that fails during the
 * reload, are logged with their reason, and the server keeps serving on the configuration it had.
 * A later reload, once the cause is gone, takes effect. Runs on SQLite and on PostgreSQL
 * (test/support/database.ts decides which).
 */
import SQLite from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { postgresAdminUrl, testDatabaseKind } from './support/database.js';
import { startServerProcess, type ServerProcess } from './support/process.js';
import { ScriptDir } from './support/scripts.js';
import { configYaml, KEYS, removeDir, send, waitFor, type ConfigSpec, type PoolSpec } from './support/server.js';

/** The machine the command pool makes, and that the reloaded file then lists as a static node. */
const CLOUD_HOST = 'x1.cloud.example.org';
const RELOAD_FAILED = 'configuration reload failed; keeping the running configuration';
/** Generous: the machine has 2 cores and runs other test files at the same time. */
const SLOW_MS = 20_000;

const processes: ServerProcess[] = [];
const scriptDirs: ScriptDir[] = [];
const undo: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const restore of undo.splice(0).reverse()) await restore();
  for (const proc of processes.splice(0)) {
    await proc.kill('SIGKILL');
    removeDir(proc.dir);
  }
  for (const dir of scriptDirs.splice(0)) dir.remove();
});

async function start(spec: ConfigSpec): Promise<ServerProcess> {
  const proc = await startServerProcess({ spec });
  processes.push(proc);
  return proc;
}

function staticPool(nodes: number): PoolSpec {
  return { name: 'p', ver: '7', nodes };
}

function get(proc: ServerProcess, path: string, query: Record<string, string | number> = {}) {
  const qs = Object.entries(query)
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  return send(`${proc.url}${path}${qs ? `?${qs}` : ''}`);
}

async function hostnames(proc: ServerProcess): Promise<string[]> {
  const reply = await get(proc, '/Inventory');
  expect(reply.status).toBe(200);
  return (reply.json as Array<[number, string, ...unknown[]]>).map((row) => row[1]).sort();
}

/** The log lines of failed reloads, with the reason each gives. */
function reloadFailures(proc: ServerProcess): string[] {
  return proc
    .logs()
    .filter((line) => line.msg === RELOAD_FAILED)
    .map((line) => String((line.err as { message?: unknown } | undefined)?.message));
}

function alive(proc: ServerProcess): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

/** Sends SIGHUP and waits for the reload to fail; returns the reason it logged. */
async function failingReload(proc: ServerProcess): Promise<string> {
  const before = reloadFailures(proc).length;
  proc.child.kill('SIGHUP');
  await waitFor('the failed reload in the log', () => reloadFailures(proc).length > before || !alive(proc), SLOW_MS);
  expect(alive(proc)).toBe(true);
  return reloadFailures(proc)[before]!;
}

test('a reload whose catalog sync fails (a static node named like a provisioned one) keeps the server on its old configuration', async () => {
  const scripts = new ScriptDir();
  scriptDirs.push(scripts);
  const provision = scripts.script('provision.sh', `printf '{"hostname": "${CLOUD_HOST}", "ip": "198.51.100.7"}\\n'`);
  const deprovision = scripts.script('deprovision.sh', 'cat >/dev/null');
  const cloud: PoolSpec = {
    name: 'cloud',
    ver: '9-stream',
    arch: 'aarch64',
    mechanism: 'command',
    nodes: 0,
    settings: { provision: [provision], deprovision: [deprovision], 'ready-min': 1, 'max-nodes': 1, 'max-parallel': 1, 'command-timeout': '10s' },
  };
  const proc = await start({ pools: [staticPool(2), cloud] });
  await waitFor('the provisioned machine', async () => (await hostnames(proc)).includes(CLOUD_HOST), SLOW_MS);

  // The new file lists the machine as a static node, and one more node in pool p.
  const lab: PoolSpec = { name: 'lab', ver: '8', nodes: 0, nodeList: [{ hostname: CLOUD_HOST, ip: '198.51.100.7' }] };
  writeFileSync(proc.configPath, configYaml(proc.dir, { pools: [staticPool(3), cloud, lab] }));
  const reason = await failingReload(proc);
  expect(reason).toMatch(/UNIQUE constraint failed: nodes\.hostname|duplicate key value violates unique constraint/);

  // Still the old configuration: two nodes in p, the machine in the command pool, no lab pool.
  expect(await hostnames(proc)).toEqual(['p-1.test.example', 'p-2.test.example', CLOUD_HOST]);
  const got = await get(proc, '/Node/get', { key: KEYS.alpha, ver: 7, count: 2 });
  expect(got.status).toBe(200);
  expect((got.json as { hosts: string[] }).hosts.sort()).toEqual(['p-1.test.example', 'p-2.test.example']);
  const fromCloud = await get(proc, '/Node/get', { key: KEYS.alpha, ver: '9-stream', arch: 'aarch64' });
  expect(fromCloud.status).toBe(200);
  expect((fromCloud.json as { hosts: string[] }).hosts).toEqual([CLOUD_HOST]);

  // The file fixed, the next reload takes effect.
  writeFileSync(proc.configPath, configYaml(proc.dir, { pools: [staticPool(3), cloud] }));
  proc.child.kill('SIGHUP');
  await waitFor('the third node of p', async () => (await hostnames(proc)).includes('p-3.test.example'), SLOW_MS);
  expect(await proc.kill('SIGTERM')).toEqual({ code: 0, signal: null });
});

/**
 * Makes the test database refuse work, really: on SQLite another connection holds the write
 * lock (cinode's writes fail as busy after its busy timeout); on PostgreSQL the database stops
 * accepting connections and the open ones are ended. Returns what brings it back.
 */
async function breakDatabase(proc: ServerProcess): Promise<() => Promise<void>> {
  if (testDatabaseKind() === 'sqlite') {
    const db = new SQLite(proc.databaseUrl.slice('sqlite:'.length));
    db.exec('BEGIN IMMEDIATE');
    return async () => {
      db.exec('ROLLBACK');
      db.close();
    };
  }
  const name = new URL(proc.databaseUrl).pathname.slice(1);
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: postgresAdminUrl(), connectionTimeoutMillis: 10_000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
  await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
  return () => admin(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
}

test('a reload while the database fails keeps the server running on its old configuration, and it recovers', async () => {
  const proc = await start({ pools: [staticPool(2)] });
  const first = await get(proc, '/Node/get', { key: KEYS.alpha, ver: 7 });
  expect(first.status).toBe(200);

  writeFileSync(proc.configPath, configYaml(proc.dir, { pools: [staticPool(3)] }));
  const restore = await breakDatabase(proc);
  let restored = false;
  undo.push(() => (restored ? undefined : restore()));
  const reason = await failingReload(proc);
  expect(reason).toMatch(/database is locked|not currently accepting connections|terminat/i);
  await restore();
  restored = true;

  // Back on its feet, on the configuration it had: p has two nodes, the session is still there.
  await waitFor('/healthz to answer 200', async () => (await get(proc, '/healthz')).status === 200, SLOW_MS);
  expect(alive(proc)).toBe(true);
  expect(await hostnames(proc)).toEqual(['p-1.test.example', 'p-2.test.example']);
  const ssid = (first.json as { ssid: string }).ssid;
  expect((await get(proc, '/Session/show', { key: KEYS.alpha, ssid })).status).toBe(200);
  const second = await get(proc, '/Node/get', { key: KEYS.alpha, ver: 7 });
  expect(second.status).toBe(200);

  // The next reload takes effect.
  proc.child.kill('SIGHUP');
  await waitFor('the third node of p', async () => (await hostnames(proc)).includes('p-3.test.example'), SLOW_MS);
  expect(await proc.kill('SIGTERM')).toEqual({ code: 0, signal: null });
});
