/**
 * The Jenkins shared library (jenkins/) under Debian's groovy 2.4, the version Jenkins bundles: each
 * scenario in test/jenkins/scenarios is a pipeline run by test/jenkins/harness.groovy with the
 * pipeline steps bound as fakes, `sh` really running bash, and the library's client file
 * (jenkins/resources/io/cinode/cinode.mjs, the same bytes as dist/cli/index.js) run by `node`
 * against a real cinode server on 127.0.0.1. Needs `groovy` and a JRE (CI installs them, .ci/run)
 * and the built client (`npm run build`).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CinodeApiError, CinodeClient, type SessionView } from '../src/client/index.js';
import { REPO_ROOT } from './support/process.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

const LIBRARY = join(REPO_ROOT, 'jenkins');
const RESOURCE = join(LIBRARY, 'resources', 'io', 'cinode', 'cinode.mjs');
const BUNDLE = join(REPO_ROOT, 'dist', 'cli', 'index.js');
const KEY = KEYS.alpha;

/** JAVA_HOME for groovy: as set, else the JRE that `java` on the PATH belongs to. */
function javaHome(): string | undefined {
  if (process.env.JAVA_HOME) return process.env.JAVA_HOME;
  try {
    const java = realpathSync(execFileSync('bash', ['-c', 'command -v java'], { encoding: 'utf8' }).trim());
    return dirname(dirname(java));
  } catch {
    return undefined;
  }
}

function groovyVersion(): string | undefined {
  try {
    return execFileSync('groovy', ['--version'], { encoding: 'utf8', env: { ...process.env, JAVA_HOME: javaHome() } });
  } catch {
    return undefined;
  }
}

const GROOVY = groovyVersion();

interface Report {
  outcome: 'success' | 'failure';
  error: { type: string; message: string } | null;
  result: unknown;
  body?: { hosts?: string[]; env?: string; ssid?: string };
  scripts: string[];
  log: string[];
  steps: string[];
}

let shared: TestServer;
const workspaces: string[] = [];
let tagNumber = 0;

/** A server the scenario may stop through CINODE_TEST_CONTROL/stop-server. */
async function controlFor(server: TestServer): Promise<{ url: string; close: () => Promise<void> }> {
  const control: Server = createServer((request, response) => {
    if (request.url !== '/stop-server') return void response.writeHead(404).end();
    void server.close().then(() => response.end('stopped'));
  });
  await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
  const { port } = control.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => control.close(() => resolve())) };
}

/** Runs scenarios/NAME.groovy under groovy; resolves to its report. */
async function scenario(
  name: string,
  options: { server?: TestServer; buildTag?: string; control?: string; env?: Record<string, string | undefined> } = {},
): Promise<Report & { alias: string; workspace: string }> {
  const server = options.server ?? shared;
  const workspace = mkdtempSync(join(tmpdir(), 'cinode-jenkins-'));
  workspaces.push(workspace);
  const buildTag = options.buildTag ?? `jenkins-storage-${name}-${++tagNumber}`;
  const env: Record<string, string | undefined> = {
    ...process.env,
    JAVA_HOME: javaHome(),
    // The agent's `node`: this one.
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
    CINODE_URL: server.url,
    CINODE_KEY: undefined,
    BUILD_TAG: buildTag,
    WORKSPACE_TMP: `${workspace}@tmp`,
    CINODE_TEST_LIBRARY: LIBRARY,
    CINODE_TEST_WORKSPACE: workspace,
    CINODE_TEST_CREDENTIALS: `cinode-key=${KEY}`,
    CINODE_TEST_CONTROL: options.control,
    ...options.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const reportPath = join(workspace, 'report.json');
  const harness = join(REPO_ROOT, 'test', 'jenkins', 'harness.groovy');
  await new Promise<void>((resolve, reject) => {
    execFile(
      'groovy',
      ['-cp', join(LIBRARY, 'src'), harness, join(REPO_ROOT, 'test', 'jenkins', 'scenarios', `${name}.groovy`), reportPath],
      { env: env as NodeJS.ProcessEnv, maxBuffer: 1 << 24 },
      (error, _stdout, stderr) => (error ? reject(new Error(`groovy failed: ${error.message}\n${stderr}`)) : resolve()),
    );
  });
  const report = JSON.parse(readFileSync(reportPath, 'utf8')) as Report;
  expectKeyNeverShown(report);
  return { ...report, alias: buildTag, workspace };
}

/** The key is in no script and in no line of the log; every cinode call is the one constant script. */
function expectKeyNeverShown(report: Report): void {
  for (const script of report.scripts) expect(script.includes(KEY)).toBe(false);
  for (const line of report.log) expect(line.includes(KEY)).toBe(false);
  const cinodeScripts = new Set(report.scripts.filter((s) => s.includes('CINODE_CLIENT')));
  expect(cinodeScripts.size).toBeLessThanOrEqual(1);
}

function client(server: TestServer = shared): CinodeClient {
  return new CinodeClient({ url: server.url, key: KEY, timeoutMs: 5_000 });
}

async function session(alias: string, server: TestServer = shared): Promise<SessionView | 'none'> {
  try {
    return await client(server).showSession(alias);
  } catch (error) {
    if (error instanceof CinodeApiError && error.kind === 'invalid-session') return 'none';
    throw error;
  }
}

const describeGroovy = GROOVY !== undefined || process.env.CI === 'true' ? describe : describe.skip;

describe('groovy', () => {
  if (GROOVY === undefined && process.env.CI !== 'true') {
    test.skip('is not installed: the Jenkins library is not tested (apt-get install groovy default-jre-headless; CI installs them)', () => {});
  } else {
    test('is installed, in the version Jenkins bundles (2.4)', () => {
      expect(GROOVY).toMatch(/Groovy Version: 2\.4\./);
    });
  }
});

describeGroovy('the Jenkins library', () => {
  beforeAll(async () => {
    if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`npm run build\``);
    shared = await startTestServer({ defaults: { 'rate-limit': '1000/5m', 'node-quota': 50 } });
  });

  afterAll(async () => {
    await shared?.close();
    if (shared) removeDir(shared.dir);
    for (const dir of workspaces) {
      removeDir(dir);
      removeDir(`${dir}@tmp`);
    }
  });

  test('carries the client file: the same bytes as dist/cli/index.js (`npm run build` copies it)', () => {
    expect(readFileSync(RESOURCE).equals(readFileSync(BUNDLE))).toBe(true);
  });

  test('withCinodeSession: the body gets the nodes and their environment, returns its result, and the session ends', async () => {
    const report = await scenario('success');
    expect(report.error).toBeNull();
    expect(report.result).toBe('the body result');
    const hosts = report.body!.hosts!;
    expect(hosts).toHaveLength(2);
    for (const host of hosts) expect(host).toMatch(/^c9s-\d\.test\.example$/);
    const [envHosts, ssid, alias] = report.body!.env!.split('|');
    expect(envHosts).toBe(hosts.join(' '));
    expect(ssid).toMatch(/^[0-9a-f-]{36}$/);
    expect(alias).toBe(report.alias);
    const view = await session(report.alias);
    expect(view).toMatchObject({ ssid, alias: report.alias, state: 'done', end_reason: 'done' });
    // Only the steps the library may use, and the client written once for the whole block.
    expect(new Set(report.steps)).toEqual(new Set(['isUnix', 'echo', 'withEnv', 'withCredentials', 'sh', 'libraryResource', 'fileExists', 'writeFile']));
    expect(report.steps.filter((s) => s === 'writeFile')).toHaveLength(1);
  });

  test('withCinodeSession: a failing body still ends the session, and its failure is the build\'s', async () => {
    const report = await scenario('body-fails');
    expect(report.body!.hosts).toHaveLength(1);
    expect(report.error).toEqual({ type: 'AbortException', message: `the tests failed on ${report.body!.hosts![0]}` });
    expect(await session(report.alias)).toMatchObject({ state: 'done', end_reason: 'done' });
  });

  test('withCinodeSession: an aborted build (interrupt) still ends the session, and the interrupt goes on', async () => {
    const report = await scenario('interrupted');
    expect(report.error).toEqual({ type: 'java.lang.InterruptedException', message: 'Aborted by user' });
    expect(await session(report.alias)).toMatchObject({ state: 'done', end_reason: 'done' });
  });

  test('withCinodeSession: no capacity: the body does not run, the build fails saying so, and no session is left', async () => {
    // Both aarch64 nodes taken by another session.
    const other = await client().getNodes({ count: 2, ver: '9-stream', arch: 'aarch64' });
    const report = await scenario('no-capacity');
    await client().doneSession(other.ssid);
    expect(report.body).toBeUndefined();
    expect(report.error?.type).toBe('AbortException');
    expect(report.error?.message).toMatch(/^withCinodeSession: cinode node get failed with exit code 4 \(no capacity/);
    expect(await session(report.alias)).toMatchObject({ state: 'done', hosts: [] });
    const active = await client().listSessions();
    expect(active.map((s) => s.alias)).not.toContain(report.alias);
  });

  test('withCinodeSession: the server gone at teardown gives a warning, and the body\'s result stands', async () => {
    const own = await startTestServer();
    const control = await controlFor(own);
    try {
      const report = await scenario('server-gone', { server: own, control: control.url });
      expect(report.error).toBeNull();
      expect(report.result).toBe('tested');
      expect(report.body!.hosts).toHaveLength(1);
      expect(report.log.filter((l) => l.startsWith('WARNING: '))).toEqual([
        expect.stringMatching(new RegExp(`^WARNING: withCinodeSession: could not end cinode session ${report.alias} \\(.*exit code 5.*\\); it ends at the end of its lifetime$`)),
      ]);
    } finally {
      await control.close();
      removeDir(own.dir);
    }
  });

  test('a BUILD_TAG with %2F (a multibranch job\'s branch) gives a valid alias: the / decoded, other characters replaced', async () => {
    const report = await scenario('body-fails', { buildTag: 'jenkins-storage-feature%2Fscale out-17' });
    expect(await session('jenkins-storage-feature/scale_out-17')).toMatchObject({ alias: 'jenkins-storage-feature/scale_out-17', state: 'done' });
    expect(report.body!.hosts).toHaveLength(1);
  });

  test('a BUILD_TAG over 128 characters keeps its end, where the build number is', async () => {
    const tag = `jenkins-${'very-long-folder-name-'.repeat(8)}-build-42`;
    const report = await scenario('body-fails', { buildTag: tag });
    const view = await session(tag.slice(-128));
    expect(view).toMatchObject({ alias: tag.slice(-128), state: 'done' });
    expect(report.body!.hosts).toHaveLength(1);
  });

  test('Declarative: cinodeSession.open, cinodeNodes twice, extend and done (twice: fine) on one session named by BUILD_TAG', async () => {
    // Without WORKSPACE_TMP (older Jenkins): the client file goes to .cinode/ in the workspace.
    const report = await scenario('declarative', { env: { WORKSPACE_TMP: undefined } });
    expect(report.error).toBeNull();
    expect(readdirSync(join(report.workspace, '.cinode'))).toEqual([expect.stringMatching(/^cinode-\d+-\d+\.mjs$/)]);
    expect(report.result).toBe('declared');
    const hosts = report.body!.hosts!;
    expect(hosts).toHaveLength(3);
    expect(hosts[0]).toMatch(/^c7-/);
    const view = await session(report.alias);
    expect(view).toMatchObject({ ssid: report.body!.ssid, state: 'done', end_reason: 'done' });
    expect(report.log.filter((l) => l.startsWith('WARNING'))).toEqual([]);
  });

  test('cinodeSession.done with the server gone warns and does not fail the build', async () => {
    const own = await startTestServer();
    await own.close();
    try {
      const report = await scenario('done-warns', { server: own });
      expect(report.error).toBeNull();
      expect(report.result).toBe('cleaned up');
      expect(report.log.some((l) => l.startsWith('WARNING: cinodeSession.done: could not end cinode session'))).toBe(true);
    } finally {
      removeDir(own.dir);
    }
  });

  test('no node on the agent: the build fails saying so, nothing opened', async () => {
    const report = await scenario('body-fails', { env: { CINODE_NODE: '/nonexistent/node' } });
    expect(report.body).toBeUndefined();
    expect(report.error?.message).toMatch(/^withCinodeSession: cinode session open failed with exit code 127 \(no `node` command on this agent/);
    expect(await session(report.alias)).toBe('none');
  });

  test('heartbeat: refused with a clear error that points to the keeper pattern, nothing opened', async () => {
    const report = await scenario('heartbeat');
    expect(report.error?.message).toBe(
      'withCinodeSession: heartbeat is not kept by this step; open the session with cinode session open --heartbeat and run cinode session keep beside the work (docs/jenkins.md, Heartbeats)',
    );
    expect(report.scripts).toEqual([]);
    expect(await session(report.alias)).toBe('none');
  });

  test('an unknown argument is refused with the accepted ones, nothing opened', async () => {
    const report = await scenario('unknown-argument');
    expect(report.error?.message).toBe(
      "withCinodeSession: unknown argument 'cout'; accepted: url, credentialsId, alias, count, ver, arch, flavor, lifetime, timeout, doneTimeout, heartbeat",
    );
    expect(report.scripts).toEqual([]);
    expect(await session(report.alias)).toBe('none');
  });
});
