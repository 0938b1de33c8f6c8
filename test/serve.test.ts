/**
 * `cinode serve` as an operator runs it: a separate process from the compiled lib/, refusing a
 * wrong configuration with one message per problem, serving a good one, reloading on SIGHUP and
 * stopping cleanly on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { readTrace, replay } from '../bench/floor.js';
import { configYaml, KEYS, removeDir, send, waitFor } from './support/server.js';

const MAIN = join(process.cwd(), 'lib/cli/main.js');

interface Run {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exit: Promise<number | null>;
}

function runServe(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const child = spawn(process.execPath, [MAIN, 'serve', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: Run = { child, stdout: [], stderr: [], exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
  child.stdout!.on('data', (chunk: Buffer) => run.stdout.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => run.stderr.push(chunk.toString()));
  return run;
}

let dir: string;

beforeAll(() => {
  if (!existsSync(MAIN)) throw new Error('lib/cli/main.js is missing: run `npm run build:lib` first (npm test does)');
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cinode-serve-'));
});

afterEach(() => removeDir(dir));

test('a wrong configuration: one message per problem with field and line, and no server', async () => {
  const path = join(dir, 'bad.yaml');
  writeFileSync(
    path,
    [
      'listen: 127.0.0.1:0',
      'reaper-interval: soon',
      'defaults:',
      '  node-quota: -1',
      'projects:',
      '  - {name: demo, key: short}',
      'pools:',
      '  - {name: p, ver: "7", arch: x86_64, nodes: [{hostname: "bad host"}]}',
    ].join('\n'),
  );
  const run = runServe(['--config', path]);
  expect(await run.exit).toBe(2);
  const stderr = run.stderr.join('');
  expect(stderr).toMatch(/did not start/);
  expect(stderr).toMatch(/bad\.yaml:2: reaper-interval/);
  expect(stderr).toMatch(/bad\.yaml:4: defaults\.node-quota/);
  expect(stderr).toMatch(/bad\.yaml:6: projects\[0\]\.key/);
  expect(stderr).toMatch(/bad\.yaml:8: pools\[0\]\.nodes\[0\]\.hostname/);
  expect(stderr).not.toContain('short');
  expect(run.stdout.join('')).not.toMatch(/listening/);
});

test('an SSH key or known_hosts file it cannot read stops the start, named with its setting', async () => {
  const path = join(dir, 'cinode.yaml');
  const top = ['contextualize:', `  private-key: ${join(dir, 'no-key')}`, `  known-hosts: ${join(dir, 'no-known-hosts')}`];
  writeFileSync(path, configYaml(dir, { topYaml: top }));
  const run = runServe(['--config', path]);
  expect(await run.exit).toBe(2);
  const stderr = run.stderr.join('');
  expect(stderr).toContain(`cinode.yaml: contextualize.private-key: cannot read ${JSON.stringify(join(dir, 'no-key'))}: no such file`);
  expect(stderr).toContain(`cinode.yaml: contextualize.known-hosts: cannot read ${JSON.stringify(join(dir, 'no-known-hosts'))}: no such file`);
  expect(run.stdout.join('')).not.toMatch(/listening/);
});

test('a missing configuration file is named', async () => {
  const run = runServe(['--config', join(dir, 'nope.yaml')]);
  expect(await run.exit).toBe(2);
  expect(run.stderr.join('')).toMatch(/nope\.yaml/);
});

test('serves, reloads on SIGHUP, stops on SIGTERM with exit 0; the key never reaches the log', async () => {
  const path = join(dir, 'cinode.yaml');
  writeFileSync(path, configYaml(dir, { pools: [{ name: 'p', nodes: 2 }] }));
  const run = runServe(['--config', path, '--listen', '127.0.0.1:0']);
  try {
    await waitFor('the listening line', () => /cinode listening on http:\/\/127\.0\.0\.1:\d+/.test(run.stderr.join('')), 30_000);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(run.stderr.join(''))![1]!;
    const got = await send(`${url}/Node/get?key=${KEYS.alpha}&count=2`);
    expect(got.status).toBe(200);

    writeFileSync(path, configYaml(dir, { pools: [{ name: 'p', nodes: 3 }] }));
    run.child.kill('SIGHUP');
    await waitFor(
      'the reloaded inventory',
      async () => ((await send(`${url}/Inventory`)).json as unknown[]).length === 3,
      10_000,
    );
    const third = await send(`${url}/Node/get?key=${KEYS.alpha}`);
    expect((third.json as { hosts: string[] }).hosts).toEqual(['p-3.test.example']);

    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    const logs = run.stdout.join('');
    expect(logs).toMatch(/"msg":"request"/);
    expect(logs).toMatch(/key=\[REDACTED\]/);
    expect(logs).not.toContain(KEYS.alpha);
    expect(logs).toMatch(/cinode stopped/);
  } finally {
    run.child.kill('SIGKILL');
  }
});

test('CINODE_SQL_TRACE (SQLite): every statement with its values, one JSON line each, and replaying them makes the same database', async () => {
  const database = join(dir, 'traced.db');
  const trace = join(dir, 'statements.jsonl');
  const path = join(dir, 'cinode.yaml');
  writeFileSync(path, configYaml(dir, { pools: [{ name: 'p', nodes: 3 }] }).replace(/^database: .*$/m, `database: ${JSON.stringify(`sqlite:${database}`)}`));
  const run = runServe(['--config', path, '--listen', '127.0.0.1:0'], { ...process.env, CINODE_SQL_TRACE: trace });
  let ssid: string;
  try {
    await waitFor('the listening line', () => /cinode listening on http:\/\/127\.0\.0\.1:\d+/.test(run.stderr.join('')), 30_000);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(run.stderr.join(''))![1]!;
    const got = await send(`${url}/Node/get?key=${KEYS.alpha}&count=2`);
    expect(got.status).toBe(200);
    ssid = (got.json as { ssid: string }).ssid;
    expect((await send(`${url}/Node/done?key=${KEYS.alpha}&ssid=${ssid}`)).status).toBe(200);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  } finally {
    run.child.kill('SIGKILL');
  }

  expect(readFileSync(trace, 'utf8')).not.toContain(KEYS.alpha);
  const statements = readTrace(trace);
  expect(statements.map((s) => s.sql)).toEqual(expect.arrayContaining(['begin', 'commit']));
  const opened = statements.find((s) => s.sql.startsWith('insert into "sessions"'));
  expect(opened?.parameters).toContain(ssid);

  // The benchmark's database floor rests on this: its replay (bench/floor.ts) of the same
  // statements in the same order on a new file leaves the very same rows.
  expect(replay(statements, 0, join(dir, 'replayed.db')).failed).toBe(0);
  const replayed = new SQLite(join(dir, 'replayed.db'), { readonly: true });
  const original = new SQLite(database, { readonly: true });
  try {
    for (const table of ['sessions', 'nodes', 'session_nodes', 'events']) {
      const rows = (db: SQLite.Database) => db.prepare(`select * from ${table} order by rowid`).all();
      expect(rows(original).length).toBeGreaterThan(0);
      expect(rows(replayed)).toEqual(rows(original));
    }
  } finally {
    replayed.close();
    original.close();
  }
});

describe('a start that fails exits at once, non-zero, having closed what it opened', () => {
  test('a taken port: exit 2 within seconds, the port named, no timer or database left open', async () => {
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const path = join(dir, 'cinode.yaml');
      writeFileSync(path, configYaml(dir, { pools: [{ name: 'p', nodes: 2 }] }));
      const started = Date.now();
      const run = runServe(['--config', path, '--listen', `127.0.0.1:${port}`]);
      // The process ends by itself: a reaper timer, a worker or a PostgreSQL pool left open would
      // keep it alive (the test's own deadline is the bound).
      const code = await Promise.race([run.exit, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000).unref())]);
      if (code === 'hung') run.child.kill('SIGKILL');
      expect(code).toBe(2);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(run.stderr.join('')).toContain(`cinode: could not start: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
      // SQLite removes the write-ahead log when the last connection closes: the database was closed.
      const database = /^sqlite:(.*)$/.exec(/database: "(.*)"/.exec(readFileSync(path, 'utf8'))![1]!);
      if (database) expect(existsSync(`${database[1]}-wal`)).toBe(false);
    } finally {
      taken.close();
    }
  });

  test('a database that cannot be opened: the message says "database" and names it', async () => {
    const path = join(dir, 'cinode.yaml');
    // A directory is no database file.
    writeFileSync(path, configYaml(dir).replace(/^database: .*$/m, `database: ${JSON.stringify(`sqlite:${dir}`)}`));
    const sqlite = runServe(['--config', path]);
    expect(await sqlite.exit).toBe(2);
    expect(sqlite.stderr.join('')).toMatch(new RegExp(`^cinode: could not start: database sqlite:${dir}: unable to open database file\\n$`));
  });

  test('a PostgreSQL server that refuses: "database", the URL without its password', async () => {
    const path = join(dir, 'cinode.yaml');
    writeFileSync(path, configYaml(dir).replace(/^database: .*$/m, 'database: "postgres://cinode:s3cret-pw@127.0.0.1:1/cinode"'));
    const run = runServe(['--config', path]);
    expect(await run.exit).toBe(2);
    const stderr = run.stderr.join('');
    expect(stderr).toMatch(/^cinode: could not start: database postgres:\/\/\*\*\*@127\.0\.0\.1:1\/cinode: .*ECONNREFUSED 127\.0\.0\.1:1/);
    expect(stderr).not.toContain('s3cret-pw');
  });
});

test("public-inventory: false is served, with a warning at start that it breaks cico's node get", async () => {
  const path = join(dir, 'cinode.yaml');
  writeFileSync(path, configYaml(dir, { publicInventory: false }));
  const run = runServe(['--config', path, '--listen', '127.0.0.1:0']);
  try {
    await waitFor('the warning', () => /public-inventory is false: cico's node get fails after allocating/.test(run.stdout.join('')), 30_000);
    expect(run.stdout.join('')).toMatch(/"level":40,[^\n]*public-inventory is false/);
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  } finally {
    run.child.kill('SIGKILL');
  }
});
