/**
 * The compiled `cinode admin` commands (lib/cli/main.js) run as a separate process against a real
 * backend on 127.0.0.1 with a real reclaim script: listing nodes, a node's way from quarantine
 * back to service, disable/enable, the event history, the exit codes, the --json shapes, and the
 * key never printed. `npm test` builds lib/ first; on its own: `npm run build:lib` before jest.
 */
import { jest } from '@jest/globals';
import { requireBuiltLib, runCli, type CliRun } from './support/process.js';
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

// Each test starts `node` several times, which takes seconds apiece on a loaded machine (a test
// of this file took 29 s of the default 60 under two CPU burners): room, not a bound under test.
jest.setTimeout(120_000);

type Run = CliRun;

const NODE_KEYS = ['arch', 'changed_at', 'flavor', 'hostname', 'ip', 'pool', 'reason', 'ssid', 'state', 'used_count', 'ver'];
const EVENT_KEYS = ['alias', 'at', 'detail', 'from', 'hostname', 'pool', 'project', 'reason', 'ssid', 'subject', 'to'];
const HOSTS = ['c7-1.test.example', 'c7-2.test.example', 'c7-3.test.example'];

let server: TestServer;
let scripts: ScriptDir;
/** Every output of every run, to check that no key ever shows. */
const outputs: string[] = [];

/** Runs `node lib/cli/main.js ...args` with beta's key (an admin project) unless `env` says otherwise. */
async function cinode(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const run = await runCli(args, { CINODE_URL: server.url, CINODE_KEY: KEYS.beta, ...env });
  outputs.push(run.stdout, run.stderr);
  return run;
}

function parse<T>(run: Run): T {
  expect(run).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(run.stdout) as T;
}

/** The node's state, read straight from the API (not through the CLI under test). */
async function stateOf(hostname: string): Promise<string | undefined> {
  const reply = await server.get('/Admin/nodes', { key: KEYS.beta });
  return (reply.json as Array<{ hostname: string; state: string }>).find((n) => n.hostname === hostname)?.state;
}

/** alpha (a plain project) takes one node into a session of `alias` and reports it broken. */
async function quarantineOne(alias: string): Promise<string> {
  expect((await server.get('/Session/get', { key: KEYS.alpha, alias })).status).toBe(200);
  const got = await server.get('/Node/get', { key: KEYS.alpha, ver: '7', ssid: alias });
  const [host] = (got.json as { hosts: string[] }).hosts;
  expect((await server.get('/Node/fail', { key: KEYS.alpha, ssid: alias, node: host })).text).toBe('"Done"');
  return host!;
}

beforeAll(async () => {
  requireBuiltLib();
  scripts = new ScriptDir();
  // Reclaims every node, but fails once (with two lines on stderr) for a node that has a `fail-HOST` file.
  const reclaim = scripts.script(
    'reclaim.sh',
    `
echo "$CINODE_HOSTNAME" >> "${scripts.path('reclaimed')}"
if [ -e "${scripts.dir}/fail-$CINODE_HOSTNAME" ]; then
  rm "${scripts.dir}/fail-$CINODE_HOSTNAME"
  echo "disk not found" >&2
  echo "reinstall failed" >&2
  exit 1
fi
`,
  );
  server = await startTestServer({
    reaperInterval: '1s',
    defaults: { 'rate-limit': '1000/5m' },
    projects: { beta: { admin: true } },
    pools: [
      { name: 'c7', ver: '7', nodes: 3, reclaim: [reclaim], reclaimTimeout: '30s' },
      { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 1 },
    ],
  });
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
  scripts.remove();
});

describe('admin nodes', () => {
  test('a table of every node in service; --json the /Admin/nodes body', async () => {
    const run = await cinode(['admin', 'nodes']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^HOSTNAME\s+POOL\s+STATE\s+SSID\s+CHANGED_AT\s+REASON$/);
    expect(lines).toHaveLength(5);
    for (const host of HOSTS) expect(run.stdout).toMatch(new RegExp(`^${host}\\s+c7\\s+ready\\s+-\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+`, 'm'));
    expect(run.stdout).toMatch(/^arm-1\.test\.example\s+arm\s+ready\s+/m);

    const nodes = parse<Array<Record<string, unknown>>>(await cinode(['admin', 'nodes', '--json']));
    expect(nodes.map((n) => n.hostname)).toEqual([...HOSTS, 'arm-1.test.example']);
    for (const node of nodes) expect(Object.keys(node).sort()).toEqual(NODE_KEYS);
    expect(nodes[3]).toMatchObject({ pool: 'arm', state: 'ready', ssid: null, ver: '9-stream', arch: 'aarch64', flavor: 'tiny', used_count: 0 });
  });

  test('--state filters; a state that is none: exit 2, naming the states', async () => {
    const deployed = await cinode(['admin', 'nodes', '--state', 'deployed']);
    expect(deployed).toMatchObject({ code: 0, stdout: '(no deployed nodes)\n' });
    expect(parse<unknown[]>(await cinode(['--json', 'admin', 'nodes', '--state', 'disabled']))).toEqual([]);
    const ready = parse<Array<{ state: string }>>(await cinode(['admin', 'nodes', '--state', 'ready', '--json']));
    expect(ready).toHaveLength(4);

    const bad = await cinode(['admin', 'nodes', '--state', 'broken']);
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/^cinode: .*"broken" is invalid\. Allowed choices are ready, deployed, reclaiming, failed, held, disabled/);
  });
});

describe('a node out of service and back', () => {
  test('reported broken, it is listed as failed with why; release reclaims it, then it is ready', async () => {
    const host = await quarantineOne('job-1');
    const failed = await cinode(['admin', 'nodes', '--state', 'failed']);
    expect(failed.code).toBe(0);
    expect(failed.stdout).toMatch(new RegExp(`^${host}\\s+c7\\s+failed\\s+-\\s+\\S+\\s+\\S.*$`, 'm'));
    const [view] = parse<Array<{ hostname: string; reason: string }>>(await cinode(['admin', 'nodes', '--state', 'failed', '--json']));
    expect(view?.hostname).toBe(host);
    expect(failed.stdout.trimEnd().endsWith(view!.reason)).toBe(true);

    const released = await cinode(['admin', 'node', 'release', host]);
    expect(released).toMatchObject({ code: 0, stderr: '', stdout: `${host}: reclaiming (released by an operator of project beta)\n` });
    await waitFor(`${host} to be reclaimed and ready`, async () => (await stateOf(host)) === 'ready', 15_000);
    expect(scripts.lines('reclaimed')).toContain(host);
  });

  test('a reclaim that fails leaves the node failed: the reason in the table, the stderr only in --json', async () => {
    const host = await quarantineOne('job-2');
    scripts.touch(`fail-${host}`);
    expect((await cinode(['admin', 'node', 'release', host])).code).toBe(0);
    // Released, it is reclaiming until the script ends.
    await waitFor(`${host}'s reclaim to fail`, async () => (await stateOf(host)) === 'failed', 15_000);

    const events = parse<Array<{ hostname: string; to: string; reason: string; detail: string | null }>>(
      await cinode(['admin', 'events', '--node', host, '--json']),
    );
    const last = events[events.length - 1]!;
    expect(last).toMatchObject({ hostname: host, to: 'failed' });
    expect(last.reason).toMatch(/exited with 1: reinstall failed$/);
    expect(last.detail).toContain('disk not found\nreinstall failed');
    const human = await cinode(['admin', 'events', '--node', host]);
    expect(human.stdout).toMatch(new RegExp(`^\\S+\\s+${host}\\s+reclaiming -> failed\\s+-\\s+${escape(last.reason)}$`, 'm'));
    expect(human.stdout).not.toContain('disk not found');

    // The script fails only once: released again, it comes back.
    expect((await cinode(['admin', 'node', 'release', host])).code).toBe(0);
    await waitFor(`${host} to be ready`, async () => (await stateOf(host)) === 'ready', 15_000);
  });

  test('disable takes a node out of service, enable returns it through reclaim', async () => {
    const host = HOSTS[2]!;
    const disabled = await cinode(['admin', 'node', 'disable', host]);
    expect(disabled).toMatchObject({ code: 0, stdout: `${host}: disabled (disabled by an operator of project beta)\n` });
    const listed = parse<Array<{ hostname: string; state: string; reason: string }>>(await cinode(['admin', 'nodes', '--state', 'disabled', '--json']));
    expect(listed).toEqual([expect.objectContaining({ hostname: host, state: 'disabled', reason: 'disabled by an operator of project beta' })]);
    // Out of service: not handed out, whatever the demand.
    const got = await server.get('/Node/get', { key: KEYS.alpha, ver: '7', count: 3 });
    expect(got.status).toBe(503);

    const enabled = parse<{ hostname: string; state: string }>(await cinode(['admin', 'node', 'enable', host, '--json']));
    expect(enabled).toMatchObject({ hostname: host, state: 'reclaiming' });
    expect(Object.keys(enabled).sort()).toEqual(NODE_KEYS);
    await waitFor(`${host} to be ready`, async () => (await stateOf(host)) === 'ready', 15_000);
  });
});

describe('admin events', () => {
  test("--node: the node's history, oldest first, as a table and as the /Admin/events body", async () => {
    const host = await quarantineOne('job-3');
    expect((await cinode(['admin', 'node', 'release', host])).code).toBe(0);
    await waitFor(`${host} to be ready`, async () => (await stateOf(host)) === 'ready', 15_000);

    const events = parse<Array<Record<string, unknown>>>(await cinode(['admin', 'events', '--node', host, '--json']));
    for (const event of events) expect(Object.keys(event).sort()).toEqual(EVENT_KEYS);
    expect(events.every((e) => e.subject === 'node' && e.hostname === host && e.pool === 'c7')).toBe(true);
    const times = events.map((e) => Date.parse(e.at as string));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    // The last use: handed out, reported broken, released, reclaimed.
    const changes = events.map((e) => `${String(e.from)} -> ${String(e.to)}`);
    expect(changes.slice(-4)).toEqual(['ready -> deployed', 'deployed -> failed', 'failed -> reclaiming', 'reclaiming -> ready']);
    expect(events[events.length - 4]).toMatchObject({ project: 'alpha', alias: 'job-3', ssid: expect.any(String) });
    expect(events[events.length - 2]).toMatchObject({ reason: 'released by an operator of project beta' });

    const table = await cinode(['admin', 'events', '--node', host]);
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+SUBJECT\s+CHANGE\s+PROJECT\/ALIAS\s+REASON$/);
    expect(lines).toHaveLength(events.length + 1);
    const shown = lines.slice(-4).map((line) => /\s((?:\S+) -> (?:\S+))\s/.exec(line)?.[1]);
    expect(shown).toEqual(changes.slice(-4));
    expect(lines[lines.length - 4]).toMatch(new RegExp(`^${escape(events[events.length - 4]!.at as string)}\\s+${host}\\s+ready -> deployed\\s+alpha/job-3\\s+`));

    const limited = parse<unknown[]>(await cinode(['admin', 'events', '--node', host, '--limit', '2', '--json']));
    expect(limited).toEqual(events.slice(-2));
  });

  test("--session ALIAS: the session's changes and its nodes'", async () => {
    const ssid = ((await server.get('/Session/get', { key: KEYS.alpha, alias: 'job-4' })).json as { ssid: string }).ssid;
    const got = await server.get('/Node/get', { key: KEYS.alpha, ssid, ver: '7' });
    const [host] = (got.json as { hosts: string[] }).hosts;
    expect((await server.get('/Session/done', { key: KEYS.alpha, ssid })).status).toBe(200);

    const events = parse<Array<{ subject: string; hostname: string | null; ssid: string; alias: string; project: string; to: string }>>(
      await cinode(['admin', 'events', '--session', 'job-4', '--json']),
    );
    expect(events.every((e) => e.ssid === ssid && e.alias === 'job-4' && e.project === 'alpha')).toBe(true);
    expect(events.filter((e) => e.subject === 'node').map((e) => [e.hostname, e.to])).toEqual([
      [host, 'deployed'],
      [host, 'reclaiming'],
    ]);
    expect(events.filter((e) => e.subject === 'session').map((e) => e.to).slice(-1)).toEqual(['done']);

    const table = await cinode(['admin', 'events', '--session', ssid]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^\\S+\\s+${host}\\s+ready -> deployed\\s+alpha/job-4\\s+`, 'm'));
    expect(table.stdout).toMatch(new RegExp(`^\\S+\\s+${ssid}\\s+\\S+ -> done\\s+alpha/job-4\\s+`, 'm'));

    expect(await cinode(['admin', 'events', '--session', 'no-such-job'])).toMatchObject({ code: 0, stdout: '(no events)\n' });
  });
});

describe('exit codes', () => {
  test('3: a node whose state does not allow the action (409), with the server message', async () => {
    const host = HOSTS[0]!;
    const release = await cinode(['admin', 'node', 'release', host]);
    expect(release).toMatchObject({ code: 3, stdout: '', stderr: `cinode: Node ${host} is ready; release returns failed and held nodes to service\n` });
    const enable = await cinode(['admin', 'node', 'enable', host]);
    expect(enable).toMatchObject({ code: 3, stderr: `cinode: Node ${host} is ready; enable returns disabled nodes to service\n` });
    expect(await stateOf(host)).toBe('ready');
  });

  test('2: a hostname that names no node (404); bad --limit; --node with --session', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['admin', 'node', 'disable', 'nope.test.example'], /^cinode: No node nope\.test\.example; cinode admin nodes lists the nodes in service\n$/],
      [['admin', 'events', '--node', 'nope.test.example'], /^cinode: No node nope\.test\.example; /],
      [['admin', 'events', '--limit', 'ten'], /^cinode: --limit: "ten" is not a whole number/],
      [['admin', 'events', '--limit', '0'], /^cinode: limit: "0" is not valid; accepted: a whole number from 1 to/],
      [['admin', 'events', '--node', HOSTS[0]!, '--session', 'job-1'], /cannot be used with option "--session/],
      [['admin', 'node', 'release'], /missing required argument "hostname"/],
      [['admin', 'nodes'], /^cinode: no API key: set CINODE_KEY/],
    ];
    for (const [args, message] of cases) {
      const run = await cinode(args, args[1] === 'nodes' ? { CINODE_KEY: undefined } : {});
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(run.stderr).toMatch(message);
    }
  });

  test("3: the key of a project that is not an admin project, and a wrong key; the key never shows", async () => {
    for (const args of [['admin', 'nodes'], ['admin', 'events'], ['admin', 'node', 'disable', HOSTS[1]!]]) {
      const run = await cinode(args, { CINODE_KEY: KEYS.alpha });
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 3, stdout: '' });
      expect(run.stderr).toBe('cinode: Project alpha may not make admin calls; they need the key of a project with admin: true\n');
    }
    expect(await stateOf(HOSTS[1]!)).toBe('ready');
    const wrong = await cinode(['admin', 'nodes', '--key', 'wrong-key-on-the-command-line', '--key-in-query'], { CINODE_KEY: undefined });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/^cinode: Invalid duffy key \(check the key in CINODE_KEY \(or --key\)/);
    // --url/--key instead of the environment.
    const args = ['--url', server.url, '--key', KEYS.beta, 'admin', 'nodes', '--json'];
    expect(parse<unknown[]>(await cinode(args, { CINODE_URL: undefined, CINODE_KEY: undefined }))).toHaveLength(4);

    for (const text of outputs) {
      for (const key of [...Object.values(KEYS), 'wrong-key-on-the-command-line']) expect(text).not.toContain(key);
    }
  });
});

describe('help', () => {
  test('cinode --help, admin --help and admin node --help list the commands and the exit codes', async () => {
    const top = await cinode(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^ {2}admin\s+operators: /m);
    const admin = await cinode(['admin', '--help']);
    expect(admin.code).toBe(0);
    for (const command of ['nodes', 'node', 'events']) expect(admin.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    expect(admin.stdout).toMatch(/^ {2}2 {2}bad input: .*no node/m);
    expect(admin.stdout).toMatch(/^ {2}3 {2}refused: .*admin: true/m);
    const node = await cinode(['admin', 'node', '--help']);
    for (const command of ['release', 'disable', 'enable']) expect(node.stdout).toMatch(new RegExp(`^  ${command} <hostname>`, 'm'));
    const events = await cinode(['admin', 'events', '--help']);
    for (const option of ['--node', '--session', '--limit']) expect(events.stdout).toContain(option);
  });
});

/** `text` as a regular expression that matches it literally. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
