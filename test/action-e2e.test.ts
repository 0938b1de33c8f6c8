/**
 * The committed action bundles (dist/{pre,main,post}/index.js) run as separate `node` processes
 * the way GitHub's runner runs them (test/support/runner.ts), against a real cinode server on
 * 127.0.0.1: under this machine's Node, and under Node 24 (what `runs.using: node24` means) when
 * CINODE_NODE24 names its binary (`scripts/node24.sh` prints it).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Job, REPO_ROOT, distEntry, type JobContext, type StepResult } from './support/runner.js';
import { KEYS, removeDir, startTestServer, waitFor, type ConfigSpec, type TestServer } from './support/server.js';

const run = promisify(execFile);

const NODE24 = process.env.CINODE_NODE24 ?? '';
const RUNTIMES: Array<{ name: string; node: string }> = [{ name: `node ${process.version} (this machine)`, node: process.execPath }];
if (NODE24 !== '') RUNTIMES.push({ name: 'node 24 (CINODE_NODE24)', node: NODE24 });

const CONTEXT: JobContext = { repository: 'example-org/storage', runId: '9876543210', runAttempt: '1', job: 'scale-out', jobIndex: 0 };
const aliasOf = (c: JobContext) => `${c.repository}/${c.runId}/${c.runAttempt}/${c.job}/${c.jobIndex}`;
const lines = (text: string | undefined) => (text ?? '').split('\n').filter((l) => l !== '');

beforeAll(() => {
  for (const stage of ['pre', 'main', 'post'] as const) {
    if (!existsSync(distEntry(stage))) throw new Error(`${distEntry(stage)} is missing: run \`npm run build\` (dist/ is committed)`);
  }
});

describe('Node 24', () => {
  if (NODE24 !== '') {
    test('CINODE_NODE24 is a Node 24 binary', async () => {
      const { stdout } = await run(NODE24, ['--version']);
      expect(stdout.trim()).toMatch(/^v24\./);
    });
  } else if (process.env.CI === 'true') {
    test('CINODE_NODE24 is set, so that CI runs every scenario under Node 24 too', () => {
      throw new Error('CINODE_NODE24 is not set: CI must run the action under Node 24 (export CINODE_NODE24="$(scripts/node24.sh)")');
    });
  } else {
    test.skip('not run under Node 24: CINODE_NODE24 is not set (CINODE_NODE24="$(scripts/node24.sh)" runs every scenario under Node 24 too)', () => {});
  }
});

describe('dist/', () => {
  test('is what `npm run build` produces, and carries no server code', async () => {
    const script = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.build!;
    const out = mkdtempSync(join(tmpdir(), 'cinode-dist-'));
    try {
      // The build script's ncc commands, each writing to a temporary folder instead of dist/.
      const commands = [...script.matchAll(/ncc build (\S+) -o dist\/(\w+)([^&]*)/g)];
      // The action's three stages, and the single-file client (test/cli-bundle.test.ts runs it).
      expect(commands.map((m) => m[2])).toEqual(['pre', 'main', 'post', 'cli']);
      const ncc = join(REPO_ROOT, 'node_modules', '@vercel', 'ncc', 'dist', 'ncc', 'cli.js');
      // Four bundles built at once take minutes of CPU on a loaded 2-core machine (174 s seen):
      // the test's own timeout is 300 s.
      await Promise.all(
        commands.map(([, entry, stage, flags]) =>
          run(process.execPath, [ncc, 'build', entry!, '-o', join(out, stage!), ...flags!.trim().split(/\s+/)], { cwd: REPO_ROOT, maxBuffer: 1 << 24 }),
        ),
      );
      for (const stage of ['pre', 'main', 'post', 'cli']) {
        const built = readdirSync(join(out, stage)).sort();
        expect(readdirSync(join(REPO_ROOT, 'dist', stage)).sort()).toEqual(built);
        for (const file of built) {
          const fresh = readFileSync(join(out, stage, file), 'utf8');
          const committed = readFileSync(join(REPO_ROOT, 'dist', stage, file), 'utf8');
          if (fresh !== committed) throw new Error(`dist/${stage}/${file} is not what \`npm run build\` produces now: run it and commit dist/`);
        }
        const bundle = readFileSync(join(out, stage, 'index.js'), 'utf8');
        for (const server of ['fastify', 'kysely', 'better-sqlite3', 'pino', 'src/server/', 'src/core/', 'src/store/']) {
          expect({ stage, server, found: bundle.includes(server) }).toEqual({ stage, server, found: false });
        }
      }
    } finally {
      removeDir(out);
    }
  }, 300_000);
});

describe.each(RUNTIMES)('the action under $name', ({ node }) => {
  let server: TestServer;
  let serverClosed = false;
  const jobs: Job[] = [];

  async function start(spec: ConfigSpec = {}): Promise<TestServer> {
    server = await startTestServer({ defaults: { 'rate-limit': '100/5m' }, ...spec });
    serverClosed = false;
    return server;
  }

  function job(context: Partial<JobContext> = {}, inputs: Record<string, string> = {}): Job {
    const created = new Job(node, { ...CONTEXT, ...context }, { url: server.url, key: KEYS.alpha, timeout: '30s', ...inputs });
    jobs.push(created);
    return created;
  }

  afterEach(async () => {
    if (server && !serverClosed) await server.close();
    if (server) removeDir(server.dir);
    for (const j of jobs.splice(0)) removeDir(j.dir);
  });

  const bearer = (key: string = KEYS.alpha) => ({ authorization: `Bearer ${key}` });

  async function show(ssid: string, key: string = KEYS.alpha): Promise<{ state: string; alias: string; end_reason: string | null; hosts: Array<{ hostname: string; state: string }> }> {
    const reply = await server.get('/Session/show', { ssid }, bearer(key));
    expect(reply.status).toBe(200);
    return reply.json as never;
  }

  async function inventory(): Promise<unknown[][]> {
    return (await server.get('/Inventory')).json as unknown[][];
  }

  async function allReady(): Promise<void> {
    await waitFor('every node Ready in the unkeyed /Inventory', async () => (await inventory()).every((row) => row[5] === 'Ready'));
  }

  /** Fails with the job's transcript when a step did not end as expected. */
  function expectExit(step: StepResult, code: number, j: Job): void {
    if (step.code !== code) throw new Error(`${step.use} ${step.stage} exited ${step.code} (${step.signal}), expected ${code}:\n${j.transcript()}`);
  }

  function expectKeyMasked(j: Job): void {
    for (const step of j.steps) {
      expect(step.masked).toContain(KEYS.alpha);
      const output = `${step.stdout}${step.stderr}`.replace(/^::add-mask::.*$/gm, '');
      expect(output).not.toContain(KEYS.alpha);
    }
  }

  test('(1) three uses in one job (add 2, add 1, drop 1): one session, ended by the opener\'s post, every node reclaimed', async () => {
    await start();
    const j = job();
    const add2 = j.use('add2', { count: '2' });
    const add1 = j.use('add1', { count: '1', ver: '7', arch: 'x86_64' });
    const drop1 = j.use('drop1', { count: '0' });

    for (const use of [add2, add1, drop1]) expectExit(await j.run(use, 'pre'), 0, j);
    const ssid = add2.state.ssid!;
    expect(ssid).toMatch(/^[0-9a-f-]{36}$/);
    expect(add2.state).toMatchObject({ ssid, alias: aliasOf(CONTEXT), owner: 'true' });
    // Later uses find the session the first exported, and do not own it.
    expect(add1.state).toMatchObject({ ssid });
    expect(add1.state.owner ?? '').toBe('');
    expect(j.env).toMatchObject({ CINODE_URL: server.url, CINODE_SSID: ssid, CINODE_ALIAS: aliasOf(CONTEXT) });

    const m1 = await j.run(add2, 'main');
    expectExit(m1, 0, j);
    const first = lines(m1.outputs.hosts);
    expect(first).toHaveLength(2);
    expect(m1.outputs).toMatchObject({ ssid, alias: aliasOf(CONTEXT) });

    const m2 = await j.run(add1, 'main');
    expectExit(m2, 0, j);
    expect(lines(m2.outputs.hosts)).toHaveLength(1);
    expect(lines(m2.outputs['all-hosts']).sort()).toEqual([...first, ...lines(m2.outputs.hosts)].sort());

    drop1.inputs.drop = first[0]!;
    const m3 = await j.run(drop1, 'main');
    expectExit(m3, 0, j);
    const remaining = [first[1]!, ...lines(m2.outputs.hosts)].sort();
    expect(m3.outputs.hosts).toBe('');
    expect(lines(m3.outputs['all-hosts']).sort()).toEqual(remaining);
    expect(j.env.CINODE_HOSTS!.split(' ').sort()).toEqual(remaining);
    const json = JSON.parse(m3.outputs['hosts-json']!) as Array<Record<string, unknown>>;
    expect(json.map((h) => h.hostname).sort()).toEqual(remaining);
    expect(Object.keys(json[0]!).sort()).toEqual(['arch', 'flavor', 'hostname', 'ip', 'ver']);
    expect(m3.summary).toContain('<table>');
    for (const host of remaining) expect(m3.summary).toContain(host);
    expect(m1.summary).toContain(`cinode session ${aliasOf(CONTEXT)}`);

    const live = await show(ssid);
    expect(live.hosts.map((h) => h.hostname).sort()).toEqual(remaining);

    // Posts in reverse order: only the opener's ends the session.
    expectExit(await j.run(drop1, 'post'), 0, j);
    expectExit(await j.run(add1, 'post'), 0, j);
    expect((await show(ssid)).state).toBe('active');
    const last = await j.run(add2, 'post');
    expectExit(last, 0, j);
    expect(last.annotations).toEqual([]);
    const ended = await show(ssid);
    expect(ended.state).toBe('done');
    await allReady();
    expectKeyMasked(j);
  });

  test('(2) a main that fails after the job allocated nodes still gets the session ended by post', async () => {
    await start({ projects: { alpha: { 'node-quota': 3 } } });
    const j = job();
    const grow = j.use('grow', { count: '2' });
    const tooMany = j.use('too-many', { count: '2' });
    const { failed } = await j.runAll([grow, tooMany]);
    expect(failed).toBe(true);
    const [mainGrow, mainTooMany] = j.steps.filter((s) => s.stage === 'main');
    expectExit(mainGrow!, 0, j);
    expectExit(mainTooMany!, 1, j);
    expect(mainTooMany!.annotations).toEqual([
      expect.objectContaining({ level: 'error', message: expect.stringMatching(/^cinode could not add 2 nodes: Quota exceeded/) }),
    ]);
    expect(j.steps.map((s) => `${s.use} ${s.stage}`)).toEqual(['grow pre', 'too-many pre', 'grow main', 'too-many main', 'too-many post', 'grow post']);
    expect(j.steps.filter((s) => s.stage === 'post').every((s) => s.code === 0)).toBe(true);
    expect((await show(grow.state.ssid!)).state).toBe('done');
    await allReady();
  });

  test('(3) SIGINT while main waits for capacity: it stops at once, failed, and post ends the session', async () => {
    await start({ pools: [{ name: 'c7', nodes: 2 }] });
    const other = await server.get('/Node/get', { key: KEYS.beta, count: 1 });
    expect(other.status).toBe(200);
    const otherSsid = (other.json as { ssid: string }).ssid;

    const j = job();
    const use = j.use('wait', { count: '2', timeout: '5m' });
    expectExit(await j.run(use, 'pre'), 0, j);
    const ssid = use.state.ssid!;
    const step = j.start(use, 'main');
    // The server queues the request (the wait input, which defaults to the timeout).
    await step.waitForOutput(/the server queues the request up to 5m for capacity/);
    const queued = async () => (await server.get('/Queue', { key: KEYS.alpha })).json as Array<{ ssid: string | null }>;
    await waitFor('the request waiting in the server queue', async () => (await queued()).some((w) => w.ssid === ssid), 30_000);
    const signalled = Date.now();
    step.child.kill('SIGINT');
    const main = await step.done;
    const stopMs = Date.now() - signalled;
    expect(main.signal).toBeNull();
    expectExit(main, 1, j);
    // At once, although the server would hold the request for minutes.
    expect(stopMs).toBeLessThan(9_000);
    expect(main.annotations).toEqual([
      expect.objectContaining({ level: 'error', message: expect.stringMatching(/^cinode was cancelled while trying to add 2 nodes: .*The post step ends the session\.$/) }),
    ]);
    expect(use.state).toMatchObject({ ssid, owner: 'true' });
    expect((await show(ssid)).state).toBe('active');
    // Its connection closed, the request left the queue at once.
    await waitFor('the queue empty again', async () => (await queued()).length === 0, 10_000);

    const post = await j.run(use, 'post');
    expectExit(post, 0, j);
    expect((await show(ssid)).state).toBe('done');
    // The other project's session is untouched.
    expect((await show(otherSsid, KEYS.beta)).state).toBe('active');
  });

  test('(4) backend down during post: bounded retries, a warning naming ssid and alias, exit 0', async () => {
    await start();
    const j = job({}, { timeout: '4s' });
    const use = j.use('only', { count: '1' });
    expectExit(await j.run(use, 'pre'), 0, j);
    expectExit(await j.run(use, 'main'), 0, j);
    const ssid = use.state.ssid!;
    await server.close();
    serverClosed = true;

    const post = await j.run(use, 'post');
    expectExit(post, 0, j);
    expect(post.ms).toBeLessThan(30_000); // the 4 s budget and node's start, on a loaded machine; not unbounded
    expect(post.stdout).toMatch(/no answer from .*retrying in/);
    expect(post.annotations).toHaveLength(1);
    const [warning] = post.annotations;
    expect(warning).toMatchObject({ level: 'warning', properties: { title: 'cinode teardown failed' } });
    expect(warning!.message).toContain(`cinode could not end session ${ssid} (alias ${aliasOf(CONTEXT)})`);
    expect(warning!.message).toContain(`cinode session done ${ssid}`);
    expectKeyMasked(j);
  });

  test('(5) a local action (no pre): the first main opens the session, a later one reuses it, the opener\'s post ends it', async () => {
    await start();
    // With key-in-query (INPUT_KEY-IN-QUERY: the runner keeps the dash), as for a legacy endpoint.
    const j = job({}, { 'key-in-query': 'true' });
    const first = j.use('first', { count: '1' });
    const second = j.use('second', { count: '2' });
    const { failed } = await j.runAll([first, second], { pre: false });
    if (failed) throw new Error(j.transcript());
    expect(j.steps.map((s) => `${s.use} ${s.stage}`)).toEqual(['first main', 'second main', 'second post', 'first post']);
    const ssid = first.state.ssid!;
    expect(first.state.owner).toBe('true');
    expect(second.state).toMatchObject({ ssid });
    expect(second.state.owner ?? '').toBe('');
    const secondMain = j.steps[1]!;
    expect(lines(secondMain.outputs['all-hosts'])).toHaveLength(3);
    expect(secondMain.stdout).toContain('opened by an earlier use of the action in this job');
    expect((await show(ssid)).state).toBe('done');
    await allReady();
    expectKeyMasked(j);
    const urls = server.logs.map((line) => String((JSON.parse(line) as { url?: string }).url ?? '')).filter((url) => url.startsWith('/Session/get'));
    expect(urls).toEqual([expect.stringContaining('key=[REDACTED]')]);
  });

  test('(6) two matrix legs of one job running at once never touch each other\'s nodes', async () => {
    await start();
    const legs = [0, 1].map((jobIndex) => job({ jobIndex }));
    const grow = legs.map((leg) => leg.use('grow', { count: '2' }));
    const shrink = legs.map((leg) => leg.use('shrink', { count: '1' }));

    await Promise.all(
      legs.map(async (leg, i) => {
        expectExit(await leg.run(grow[i]!, 'pre'), 0, leg);
        expectExit(await leg.run(shrink[i]!, 'pre'), 0, leg);
        const m1 = await leg.run(grow[i]!, 'main');
        expectExit(m1, 0, leg);
        shrink[i]!.inputs.drop = lines(m1.outputs.hosts)[0]!;
        expectExit(await leg.run(shrink[i]!, 'main'), 0, leg);
      }),
    );
    const [a, b] = grow.map((use) => use.state.ssid!);
    expect(a).not.toBe(b);
    expect(grow.map((use) => use.state.alias)).toEqual([aliasOf({ ...CONTEXT, jobIndex: 0 }), aliasOf({ ...CONTEXT, jobIndex: 1 })]);
    const hostsA = lines(legs[0]!.steps.at(-1)!.outputs['all-hosts']);
    const hostsB = lines(legs[1]!.steps.at(-1)!.outputs['all-hosts']);
    expect(hostsA).toHaveLength(2);
    expect(hostsB).toHaveLength(2);
    expect(hostsA.filter((h) => hostsB.includes(h))).toEqual([]);
    // Each leg dropped one of its own hosts only.
    const keyed = (await server.get('/Inventory', {}, bearer())).json as Array<[string, string]>;
    expect(keyed.filter(([, s]) => s === a).map(([h]) => h).sort()).toEqual([...hostsA].sort());
    expect(keyed.filter(([, s]) => s === b).map(([h]) => h).sort()).toEqual([...hostsB].sort());

    // Leg 0 finishes first: leg 1's session and nodes are untouched.
    await legs[0]!.run(shrink[0]!, 'post');
    await legs[0]!.run(grow[0]!, 'post');
    expect((await show(a!)).state).toBe('done');
    const stillB = await show(b!);
    expect(stillB.state).toBe('active');
    expect(stillB.hosts.map((h) => [h.hostname, h.state]).sort()).toEqual([...hostsB].sort().map((h) => [h, 'deployed']));

    await legs[1]!.run(shrink[1]!, 'post');
    await legs[1]!.run(grow[1]!, 'post');
    expect((await show(b!)).state).toBe('done');
    await allReady();
  });
});
