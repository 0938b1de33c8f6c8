/**
 * The `cinode` client and admin commands run in this process, through the functions main.ts wires
 * together (createProgram, addAdminCommands, runCli) with the real client, against a real server
 * on 127.0.0.1: output, exit codes and usage errors. cli.test.ts and cli-admin.test.ts run the
 * compiled command as a process, which is what users run; this file runs the same code where
 * coverage sees it. `cinode serve`'s refusals to start are run in-process too.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addAdminCommands } from '../src/cli/admin-commands.js';
import { createProgram, processDeps, runCli, type CliDeps } from '../src/cli/client-commands.js';
import { serve } from '../src/cli/serve.js';
import { freePort } from './support/process.js';
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const c7 = (n: number): string => `c7-${n}.test.example`;

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({
    defaults: { 'rate-limit': '1000/5m', 'node-quota': 50 },
    projects: { beta: { admin: true }, never: { 'rate-limit': '1/1h' } },
    pools: [
      { name: 'c7', ver: '7', arch: 'x86_64', nodes: 3 },
      { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 1 },
    ],
  });
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

/** Runs `cinode ARGS` in this process, as main.ts would, with CINODE_URL and CINODE_KEY (alpha's key unless given). */
async function cinode(args: string[], env: Record<string, string | undefined> = {}, on: TestServer = server): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const real = processDeps();
  const deps: CliDeps = {
    ...real,
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
    env: { CINODE_URL: on.url, CINODE_KEY: KEYS.alpha, ...env },
  };
  const program = createProgram(deps);
  addAdminCommands(program, deps);
  const code = await runCli(program, ['node', 'cinode', ...args], deps);
  // The key never shows, whatever happened.
  for (const key of Object.values(KEYS)) expect(stdout + stderr).not.toContain(key);
  return { code, stdout, stderr };
}

async function ok(args: string[], env: Record<string, string | undefined> = {}): Promise<string> {
  const run = await cinode(args, env);
  expect([args.join(' '), run.code]).toEqual([args.join(' '), 0]);
  return run.stdout;
}

const admin = { CINODE_KEY: KEYS.beta };

describe('client commands', () => {
  test('a session from open to done: show, list, extend, node get/done/fail, inventory', async () => {
    const opened = await cinode(['session', 'open', '--alias', 'job-1', '--lifetime', '2h']);
    expect(opened.code).toBe(0);
    const ssid = opened.stdout.trim();
    expect(ssid).toMatch(UUID);
    expect(opened.stderr).toBe('');
    const again = await cinode(['session', 'open', '--alias', 'job-1']);
    expect(again.stdout.trim()).toBe(ssid);
    expect(again.stderr).toBe(`cinode: reusing the active session ${ssid} of alias job-1 (--lifetime and --heartbeat apply to a new session only: use session extend for the lifetime)\n`);

    const got = await cinode(['node', 'get', '--ssid', 'job-1', '--count', '2', '--ver', '7', '--arch', 'x86_64']);
    expect(got.code).toBe(0);
    expect(got.stdout).toBe(`${c7(1)}\n${c7(2)}\n`);
    expect(got.stderr).toBe('');

    const show = await ok(['session', 'show', 'job-1']);
    expect(show).toMatch(new RegExp(`^ssid\\s+${ssid}$`, 'm'));
    expect(show).toMatch(/^alias\s+job-1$/m);
    expect(show).toMatch(/^expires_at\s+\d{4}-/m);
    expect(show).toMatch(/^ended_at\s+-$/m);
    expect(show).toMatch(new RegExp(`^${c7(1)}\\s+192\\.0\\.2\\.1\\s+deployed\\s+7\\s+x86_64\\s+-$`, 'm'));

    const list = await ok(['session', 'list']);
    expect(list).toMatch(/^SSID\s+ALIAS\s+STATE\s+HOSTS\s+CREATED_AT\s+EXPIRES_AT$/m);
    expect(list).toMatch(new RegExp(`^${ssid}\\s+job-1\\s+active\\s+${c7(1)},${c7(2)}\\s+`, 'm'));

    const extended = JSON.parse(await ok(['--json', 'session', 'extend', 'job-1', '3h'])) as { expires_at: string };
    expect(Date.parse(extended.expires_at) - Date.now()).toBeGreaterThan(2.9 * 3_600_000);
    expect(await ok(['session', 'extend', 'job-1', '1h'])).toMatch(/^state\s+active$/m);

    const inventory = await ok(['inventory']);
    expect(inventory).toMatch(/^HOSTNAME\s+SSID$/m);
    expect(inventory).toMatch(new RegExp(`^${c7(2)}\\s+${ssid}$`, 'm'));
    const all = await ok(['inventory', '--all'], { CINODE_KEY: undefined });
    expect(all).toMatch(/^ID\s+HOSTNAME\s+IP\s+STATE\s+USED\s+VER\s+ARCH\s+FLAVOR\s+IN_POOL\s+SSID$/m);
    expect(all).toMatch(new RegExp(`^1\\s+${c7(1)}\\s+192\\.0\\.2\\.1\\s+Deployed\\s+0\\s+7\\s+x86_64\\s+-\\s+yes\\s+${ssid}$`, 'm'));
    expect(all).toMatch(/^4\s+arm-1\.test\.example\s+192\.0\.2\.1\s+Ready\s+0\s+9-stream\s+aarch64\s+tiny\s+yes\s+-$/m);

    // One node reported broken, one released (comma-separated), then the session ended.
    expect(await ok(['node', 'fail', 'job-1', c7(2)])).toBe('');
    expect(await ok(['--json', 'node', 'done', 'job-1', `${c7(1)},`])).toBe('"done"\n');
    expect(await ok(['session', 'show', 'job-1'])).toMatch(/\n\(no hosts\)\n$/);
    expect(await ok(['node', 'done', 'job-1'])).toBe('');
    const late = await cinode(['node', 'done', 'job-1']);
    expect([late.code, late.stderr]).toEqual([0, 'cinode: session job-1 was already done\n']);
    expect(await ok(['session', 'done', ssid])).toBe('');
    expect(await ok(['session', 'list'])).toBe('(no active sessions)\n');
    expect(await ok(['inventory'])).toBe('(no nodes in your active sessions)\n');

    // The broken node waits for an operator.
    const released = await ok(['admin', 'node', 'release', c7(2)], admin);
    expect(released).toMatch(new RegExp(`^${c7(2)}: (reclaiming|ready) \\(released by an operator of project beta\\)\\n$`));
  });

  test('node get without --ssid opens a session and says how to end it; node fail without hosts holds them', async () => {
    const got = await cinode(['node', 'get', '--ver', '9-stream', '--arch', 'aarch64', '--flavor', 'tiny']);
    expect(got.code).toBe(0);
    expect(got.stdout).toBe('arm-1.test.example\n');
    const ssid = /new session (\S+);/.exec(got.stderr)?.[1];
    expect(got.stderr).toBe(`cinode: new session ${ssid}; end it with: cinode session done ${ssid}\n`);
    expect(await ok(['node', 'fail', ssid!])).toBe('');
    expect(await ok(['session', 'show', ssid!])).toMatch(/^arm-1\.test\.example\s+192\.0\.2\.1\s+held\s+/m);
    expect(await ok(['session', 'done', ssid!])).toBe('');
  });

  test('a session that never expires shows it', async () => {
    const ssid = (await ok(['session', 'open', '--lifetime', 'never'], { CINODE_KEY: KEYS.never })).trim();
    expect(await ok(['session', 'show', ssid], { CINODE_KEY: KEYS.never })).toMatch(/^expires_at\s+never$/m);
    expect(await ok(['session', 'list'], { CINODE_KEY: KEYS.never })).toMatch(new RegExp(`^${ssid}\\s+-\\s+active\\s+-\\s+\\S+\\s+never$`, 'm'));
    expect(await ok(['session', 'done', ssid], { CINODE_KEY: KEYS.never })).toBe('');
    expect(await ok(['session', 'show', ssid], { CINODE_KEY: KEYS.never })).toMatch(/^expires_at\s+-\n/m);
  });
});

describe('heartbeats and waiting', () => {
  test('session open --heartbeat, session ping (of a live and of an ended session), and bad durations as usage errors', async () => {
    const ssid = (await ok(['session', 'open', '--heartbeat', '30s'])).trim();
    const pinged = JSON.parse(await ok(['--json', 'session', 'ping', ssid])) as { heartbeat: string; heartbeat_deadline: string };
    expect(pinged.heartbeat).toBe('30s');
    expect(Date.parse(pinged.heartbeat_deadline)).toBeGreaterThan(Date.now());
    await ok(['session', 'done', ssid]);
    const ended = await cinode(['session', 'ping', ssid]);
    expect([ended.code, ended.stderr]).toEqual([0, `cinode: session ${ssid} has ended (done)\n`]);
    for (const args of [
      ['session', 'open', '--heartbeat', '2h'],
      ['node', 'get', '--wait', 'soon'],
      ['session', 'keep', ssid, '--every', 'often'],
    ]) {
      const refused = await cinode(args);
      expect([args.join(' '), refused.code, refused.stdout]).toEqual([args.join(' '), 2, '']);
    }
  });

  test('session keep pings until its stop signal, then exits 0; node get --wait is served when a node comes back', async () => {
    const ssid = (await ok(['session', 'open', '--heartbeat', '10s'])).trim();
    let stderr = '';
    let stop: (() => void) | undefined;
    let released = false;
    const deps: CliDeps = {
      ...processDeps(),
      stdout: () => undefined,
      stderr: (text) => void (stderr += text),
      env: { CINODE_URL: server.url, CINODE_KEY: KEYS.alpha },
      onStopSignal: (onStop) => {
        stop = onStop;
        return () => void (released = true);
      },
    };
    const program = createProgram(deps);
    const keeping = runCli(program, ['node', 'cinode', 'session', 'keep', ssid, '--every', '1s'], deps);
    await waitFor('the keeper to announce itself', () => stderr.includes(`keeping session ${ssid} alive (heartbeat 10s)`));
    stop!();
    expect(await keeping).toBe(0);
    expect(released).toBe(true);
    expect(stderr).toContain(`stopped keeping session ${ssid} alive`);

    // Every c7 node taken, then one given back while a --wait request waits in the queue.
    const holder = (await ok(['session', 'open'])).trim();
    const taken = (await ok(['node', 'get', '--ssid', holder, '--count', '3'])).trim().split('\n');
    const waiting = cinode(['node', 'get', '--ssid', ssid, '--wait', '1m']);
    await waitFor('the request waiting in the queue', async () => ((await server.get('/Queue', { key: KEYS.alpha })).json as unknown[]).length === 1);
    await ok(['node', 'done', holder, taken[0]!]);
    const served = await waiting;
    expect([served.code, served.stdout.trim()]).toEqual([0, taken[0]]);
    await ok(['session', 'done', holder]);
    await ok(['session', 'done', ssid]);
  });
});

describe('admin commands', () => {
  test('nodes, disable, enable and events, as tables and as JSON', async () => {
    const nodes = await ok(['admin', 'nodes'], admin);
    expect(nodes).toMatch(/^HOSTNAME\s+POOL\s+STATE\s+SSID\s+CHANGED_AT\s+REASON$/m);
    expect(nodes).toMatch(new RegExp(`^${c7(3)}\\s+c7\\s+ready\\s+-\\s+\\d{4}-`, 'm'));
    expect(await ok(['admin', 'nodes', '--state', 'disabled'], admin)).toBe('(no disabled nodes)\n');

    expect(await ok(['admin', 'node', 'disable', c7(3)], admin)).toBe(`${c7(3)}: disabled (disabled by an operator of project beta)\n`);
    const disabled = JSON.parse(await ok(['--json', 'admin', 'nodes', '--state', 'disabled'], admin)) as Array<{ hostname: string }>;
    expect(disabled.map((n) => n.hostname)).toEqual([c7(3)]);
    expect(await ok(['admin', 'node', 'enable', c7(3)], admin)).toMatch(new RegExp(`^${c7(3)}: (reclaiming|ready) \\(enabled by an operator of project beta\\)\\n$`));

    const history = await ok(['admin', 'events', '--node', c7(3), '--limit', '3'], admin);
    expect(history).toMatch(/^TIME\s+SUBJECT\s+CHANGE\s+PROJECT\/ALIAS\s+REASON$/m);
    expect(history.trim().split('\n')).toHaveLength(4);
    expect(history).toMatch(new RegExp(`\\s${c7(3)}\\s+ready -> disabled\\s+-\\s+disabled by an operator of project beta$`, 'm'));

    await ok(['session', 'open', '--alias', 'traced']);
    await ok(['node', 'get', '--ssid', 'traced']);
    await ok(['session', 'done', 'traced']);
    const story = await ok(['admin', 'events', '--session', 'traced'], admin);
    expect(story).toMatch(/\s- -> active\s+alpha\/traced\s+opened$/m);
    expect(story).toMatch(/ready -> deployed\s+alpha\/traced\s+allocated$/m);
    expect(await ok(['admin', 'events', '--session', 'nobody-ever'], admin)).toBe('(no events)\n');
    const everything = JSON.parse(await ok(['--json', 'admin', 'events'], admin)) as unknown[];
    expect(everything.length).toBeGreaterThan(5);
  });

  test('refusals: not an admin key, no such node, a state that does not allow it, a bad --limit or --state', async () => {
    const notAdmin = await cinode(['admin', 'nodes']);
    expect([notAdmin.code, notAdmin.stderr]).toEqual([3, 'cinode: Project alpha may not make admin calls; they need the key of a project with admin: true\n']);
    const noKey = await cinode(['admin', 'nodes'], { CINODE_KEY: undefined });
    expect([noKey.code, noKey.stderr]).toEqual([2, 'cinode: no API key: set CINODE_KEY (or give --key) to the key of a project with admin: true\n']);
    const noNode = await cinode(['admin', 'node', 'release', 'nope.example'], admin);
    expect(noNode.code).toBe(2);
    expect(noNode.stderr).toBe('cinode: No node nope.example; cinode admin nodes lists the nodes in service\n');
    const wrong = await cinode(['admin', 'node', 'enable', c7(1)], admin);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/^cinode: Node c7-1\.test\.example is ready; enable returns disabled nodes to service\n$/);
    const limit = await cinode(['admin', 'events', '--limit', 'ten'], admin);
    expect([limit.code, limit.stderr]).toEqual([2, 'cinode: --limit: "ten" is not a whole number; give how many events, e.g. --limit 20\n']);
    const state = await cinode(['admin', 'nodes', '--state', 'broken'], admin);
    expect(state.code).toBe(2);
    expect(state.stderr).toMatch(/^cinode: option "--state <state>" argument "broken" is invalid/);
    const both = await cinode(['admin', 'events', '--node', c7(1), '--session', 'x'], admin);
    expect(both.code).toBe(2);
  });
});

describe('a server with no node yet, whose command pool fails to provision', () => {
  test('empty listings say so; the pool\'s failure is an event without node, change or project', async () => {
    const scripts = new ScriptDir();
    const empty = await startTestServer({
      projects: { beta: { admin: true } },
      pools: [
        {
          name: 'cloud',
          mechanism: 'command',
          nodes: 0,
          settings: {
            provision: [scripts.script('provision.sh', 'echo "quota exceeded" >&2\nexit 1')],
            deprovision: [scripts.script('deprovision.sh', 'exit 0')],
            'ready-min': 1,
            'max-nodes': 2,
          },
        },
      ],
    });
    try {
      const run = (args: string[], env: Record<string, string | undefined> = admin) => cinode(args, env, empty);
      expect((await run(['inventory', '--all'], {})).stdout).toBe('(no nodes)\n');
      expect((await run(['admin', 'nodes'])).stdout).toBe('(no nodes)\n');
      await waitFor('the failed provision', async () => (await run(['admin', 'events'])).stdout !== '(no events)\n');
      expect((await run(['admin', 'events'])).stdout).toMatch(/^\S+\s+pool cloud\s+-\s+-\s+provision exited with 1: quota exceeded$/m);
    } finally {
      await empty.close();
      removeDir(empty.dir);
      scripts.remove();
    }
  });
});

describe('failures and their exit codes', () => {
  test('usage errors: exit 2, said on stderr, nothing on stdout', async () => {
    const cases: Array<[string[], Record<string, string | undefined>, RegExp]> = [
      [['node', 'get', '--count', 'two'], {}, /^cinode: --count: "two" is not a whole number; give how many nodes, e\.g\. --count 2\n$/],
      [['session', 'list'], { CINODE_URL: undefined }, /^cinode: no API URL: give --url or set CINODE_URL\n$/],
      [['session', 'list'], { CINODE_URL: '' }, /^cinode: no API URL/],
      [['session', 'list'], { CINODE_KEY: '' }, /^cinode: no API key: set CINODE_KEY \(or give --key\)\n$/],
      [['--timeout', 'soon', 'session', 'list'], {}, /^cinode: --timeout: "soon" is not /],
      [['--url', 'not a url', 'session', 'list'], {}, /^cinode: /],
      [['session', 'frobnicate'], {}, /^cinode: unknown command "frobnicate"/],
      [['session', 'show'], {}, /^cinode: missing required argument "ssid"/],
    ];
    for (const [args, env, message] of cases) {
      const run = await cinode(args, env);
      expect([args, run.code, run.stdout]).toEqual([args, 2, expect.any(String)]);
      expect(run.stderr).toMatch(message);
    }
  });

  test('--help: the commands and the exit codes, exit 0', async () => {
    const help = await cinode(['--help']);
    expect(help.code).toBe(0);
    for (const word of ['session', 'node', 'inventory', 'admin', 'Exit codes:']) expect(help.stdout).toContain(word);
    for (const code of [0, 1, 2, 3, 4, 5]) expect(help.stdout).toMatch(new RegExp(`^  ${code}  \\S`, 'm'));
    const sub = await cinode(['node', 'get', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--count');
  });

  test('refused by the server: bad input 2, refused 3, no capacity 4; the key given as an argument is never shown', async () => {
    const lifetime = await cinode(['session', 'open', '--lifetime', '5 minutes']);
    expect(lifetime.code).toBe(2);
    expect(lifetime.stderr).toMatch(/^cinode: lifetime: "5 minutes" is not a duration/);

    const wrongKey = await cinode(['--key', 'wrong-key-0123456789', 'session', 'list']);
    expect([wrongKey.code, wrongKey.stderr]).toEqual([3, 'cinode: Invalid duffy key (check the key in CINODE_KEY (or --key): the server knows no project with that key)\n']);
    const legacy = await cinode(['--key-in-query', '--key', 'wrong-key-0123456789', 'session', 'list']);
    expect(legacy.code).toBe(3);
    expect(legacy.stderr).not.toContain('wrong-key-0123456789');
    expect((await cinode(['session', 'show', 'no-such-session'])).code).toBe(3);

    const holding = await cinode(['node', 'get', '--ver', '9-stream', '--arch', 'aarch64']);
    expect(holding.stdout).toBe('arm-1.test.example\n');
    const holder = /new session (\S+);/.exec(holding.stderr)?.[1];
    const short = await cinode(['--timeout', '1s', 'node', 'get', '--ver', '9-stream', '--arch', 'aarch64']);
    expect(short.code).toBe(4);
    expect(short.stdout).toBe('');
    expect(short.stderr).toMatch(/^cinode: Insufficient Nodes in READY State/m);
    expect(await ok(['session', 'done', holder!])).toBe('');

    // Project never may open one session an hour (another test may have opened it already).
    let limited = await cinode(['--timeout', '1s', 'session', 'open'], { CINODE_KEY: KEYS.never });
    if (limited.code === 0) limited = await cinode(['--timeout', '1s', 'session', 'open'], { CINODE_KEY: KEYS.never });
    expect(limited.code).toBe(4);
    expect(limited.stderr).toMatch(/^cinode: Rate limit exceeded: 1 sessions in the last 1h/m);
  });

  test('no answer: exit 5, with the URL and the retries', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const run = await cinode(['--timeout', '1s', 'session', 'list'], { CINODE_URL: url });
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(new RegExp(`^cinode: no answer from ${url}/Session/list: .*ECONNREFUSED`, 'm'));
  });
});

describe('cinode serve: refusing to start', () => {
  /** Runs serve() and returns what it wrote to stderr and the exit code it set; both restored after. */
  async function serveFails(options: { config: string; listen?: string }): Promise<{ code: number | string | undefined; stderr: string }> {
    const write = process.stderr.write;
    const exitCode = process.exitCode;
    let stderr = '';
    process.stderr.write = ((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    }) as typeof process.stderr.write;
    try {
      await serve(options);
      return { code: process.exitCode, stderr };
    } finally {
      process.stderr.write = write;
      process.exitCode = exitCode;
    }
  }

  test('a configuration with problems, a file that is not there, and a bad --listen: exit code 2, said why', async () => {
    const bad = join(server.dir, 'bad.yaml');
    writeFileSync(bad, 'listen: 127.0.0.1:0\ndatabase: "sqlite::memory:"\nreaper-interval: soon\nprojects: []\npools: []\n');
    const problems = await serveFails({ config: bad });
    expect(problems.code).toBe(2);
    expect(problems.stderr).toMatch(/^cinode: the configuration has problems; the server did not start:\n.*reaper-interval/s);

    const missing = await serveFails({ config: join(server.dir, 'missing.yaml') });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^cinode: /);

    for (const listen of ['nowhere', '127.0.0.1:99999', '[::1]:http']) {
      const run = await serveFails({ config: server.configPath, listen });
      expect([listen, run.code]).toEqual([listen, 2]);
      expect(run.stderr).toBe(`cinode: could not start: --listen: ${JSON.stringify(listen)} is not HOST:PORT (e.g. 127.0.0.1:8080)\n`);
    }
  });
});
