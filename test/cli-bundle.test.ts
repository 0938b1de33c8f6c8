/**
 * The single-file client (dist/cli/index.js, `npm run build`) copied alone into an empty folder and
 * run there as a separate process, the way a CI job fetches it: under this machine's Node (20) and
 * under Node 24 when CINODE_NODE24 names its binary (`scripts/node24.sh` prints it), against a real
 * cinode server on 127.0.0.1. test/action-e2e.test.ts checks that it is what `npm run build` makes.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VERSION } from '../src/cli/version.js';
import { REPO_ROOT } from './support/process.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

const BUNDLE = join(REPO_ROOT, 'dist', 'cli', 'index.js');
const NODE24 = process.env.CINODE_NODE24 ?? '';
const RUNTIMES: Array<{ name: string; node: string }> = [{ name: `node ${process.version} (this machine)`, node: process.execPath }];
if (NODE24 !== '') RUNTIMES.push({ name: 'node 24 (CINODE_NODE24)', node: NODE24 });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let server: TestServer;
const folders: string[] = [];

beforeAll(async () => {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\``);
  server = await startTestServer({ defaults: { 'rate-limit': '1000/5m', 'node-quota': 50 } });
});

afterAll(async () => {
  await server?.close();
  if (server) removeDir(server.dir);
  for (const folder of folders) removeDir(folder);
});

test('the version in src/cli/version.ts is package.json\'s', () => {
  expect(VERSION).toBe((JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
});

test('carries no server code', () => {
  const bundle = readFileSync(BUNDLE, 'utf8');
  for (const server of ['fastify', 'kysely', 'better-sqlite3', 'pg-pool', 'pg-protocol', 'pino', 'src/server/', 'src/core/', 'src/store/', 'src/main/']) {
    expect({ server, found: bundle.includes(server) }).toEqual({ server, found: false });
  }
});

if (NODE24 === '' && process.env.CI === 'true') {
  test('CINODE_NODE24 is set, so that CI runs the single file under Node 24 too', () => {
    throw new Error('CINODE_NODE24 is not set: CI must run the client under Node 24 (export CINODE_NODE24="$(scripts/node24.sh)")');
  });
} else if (NODE24 === '') {
  test.skip('not run under Node 24: CINODE_NODE24 is not set (CINODE_NODE24="$(scripts/node24.sh)" runs it under Node 24 too)', () => {});
}

describe.each(RUNTIMES)('the single file alone in an empty folder under $name', ({ node }) => {
  let folder: string;

  /** Runs `node FILE ...args` in the folder, with only PATH, HOME and `env` in its environment. */
  function cinode(file: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
      execFile(
        node,
        [file, ...args],
        { cwd: folder, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: folder, ...env } },
        (error, stdout, stderr) => {
          if (error && typeof error.code !== 'number') return reject(error);
          resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
        },
      );
    });
  }

  beforeAll(() => {
    // Under the system temporary folder: no package.json above it, no node_modules beside it.
    folder = mkdtempSync(join(tmpdir(), 'cinode-single-'));
    folders.push(folder);
    copyFileSync(BUNDLE, join(folder, 'index.js'));
    copyFileSync(BUNDLE, join(folder, 'cinode.mjs'));
    expect(readdirSync(folder).sort()).toEqual(['cinode.mjs', 'index.js']);
  });

  test('--version and -V print the version, as index.js and as cinode.mjs', async () => {
    for (const file of ['index.js', 'cinode.mjs']) {
      for (const flag of ['--version', '-V']) {
        const run = await cinode(file, [flag]);
        expect({ file, flag, ...run }).toEqual({ file, flag, code: 0, stdout: `${VERSION}\n`, stderr: '' });
      }
    }
  });

  test('a full session cycle: open, get nodes, show, release one, extend, end', async () => {
    const env = { CINODE_URL: server.url, CINODE_KEY: KEYS.alpha };
    const alias = `single-file-${node === NODE24 ? '24' : 'here'}/${process.pid}`;
    const open = await cinode('cinode.mjs', ['session', 'open', '--alias', alias, '--lifetime', '1h'], env);
    expect(open).toMatchObject({ code: 0, stderr: '' });
    const ssid = open.stdout.trim();
    expect(ssid).toMatch(/^[0-9a-f-]{36}$/);

    const get = await cinode('cinode.mjs', ['node', 'get', '--ssid', alias, '--count', '2', '--ver', '7'], env);
    expect(get.code).toBe(0);
    const hosts = get.stdout.trim().split('\n');
    expect(hosts).toHaveLength(2);

    const show = await cinode('index.js', ['--json', 'session', 'show', alias], env);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ ssid, alias, state: 'active', hosts: hosts.map((hostname) => expect.objectContaining({ hostname })) });

    expect(await cinode('cinode.mjs', ['node', 'done', alias, hosts[0]!], env)).toMatchObject({ code: 0 });
    expect(await cinode('cinode.mjs', ['session', 'extend', alias, '2h'], env)).toMatchObject({ code: 0 });
    expect(await cinode('cinode.mjs', ['session', 'done', alias], env)).toMatchObject({ code: 0, stdout: '' });

    const ended = await cinode('cinode.mjs', ['--json', 'session', 'show', ssid], env);
    expect(JSON.parse(ended.stdout)).toMatchObject({ ssid, state: 'done', end_reason: 'done' });
    for (const run of [open, get, show, ended]) expect(run.stdout + run.stderr).not.toContain(KEYS.alpha);
  });

  test('a wrong key: exit 3, and the key is not printed', async () => {
    const run = await cinode('cinode.mjs', ['session', 'open'], { CINODE_URL: server.url, CINODE_KEY: 'wrong-key-0123456789abcdef' });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/^cinode: /);
    expect(run.stdout + run.stderr).not.toContain('wrong-key-0123456789abcdef');
  });
});
