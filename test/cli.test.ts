/**
 * The compiled `cinode` command (lib/cli/main.js) run as a separate process against a real backend
 * on 127.0.0.1: every command, every exit code, the --json shapes, and the key never printed.
 * `npm test` builds lib/ first; on its own: `npm run build:lib` before jest.
 */
import { jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort, requireBuiltLib, runCli, type CliRun } from './support/process.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

// Each test starts `node` several times, which takes seconds apiece on a loaded machine (this
// file took 234 s under two CPU burners): room, not a bound under test.
jest.setTimeout(120_000);

type Run = CliRun;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: TestServer;
/** Every output of every run, to check that no key ever shows. */
const outputs: string[] = [];

/** Runs `node lib/cli/main.js ...args` asynchronously (the backend runs in this process). */
async function cinode(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const run = await runCli(args, { CINODE_URL: server.url, CINODE_KEY: KEYS.alpha, CINODE_TIMEOUT: undefined, ...env });
  outputs.push(run.stdout, run.stderr);
  return run;
}

function parse<T>(run: Run): T {
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as T;
}

beforeAll(async () => {
  requireBuiltLib();
  server = await startTestServer({
    defaults: { 'rate-limit': '1000/5m', 'node-quota': 50 },
    // beta may open one session an hour: its second is refused with 429 until the budget runs out.
    projects: { beta: { 'rate-limit': '1/1h' } },
  });
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

describe('session commands', () => {
  test('open prints the ssid; again by alias, the same session (note on stderr)', async () => {
    const first = await cinode(['session', 'open', '--alias', 'jenkins-job-1', '--lifetime', '2h']);
    expect(first.code).toBe(0);
    const ssid = first.stdout.trim();
    expect(ssid).toMatch(UUID);
    expect(first.stdout).toBe(`${ssid}\n`);
    const again = await cinode(['session', 'open', '--alias', 'jenkins-job-1']);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(ssid);
    expect(again.stderr).toContain('reusing the active session');
  });

  test('open --json prints the /Session/get result', async () => {
    const result = parse<Record<string, unknown>>(await cinode(['session', 'open', '--json', '--alias', 'json-open']));
    expect(Object.keys(result).sort()).toEqual(['alias', 'created', 'expires_at', 'hosts', 'ssid']);
    expect(result).toMatchObject({ alias: 'json-open', hosts: [], created: true });
    expect(result.ssid).toMatch(UUID);
  });

  test('show, list and extend: readable tables, and the exact JSON with --json', async () => {
    const ssid = (await cinode(['session', 'open', '--alias', 'show-me', '--lifetime', '1h'])).stdout.trim();
    const got = await cinode(['node', 'get', '--ssid', 'show-me', '--count', '2']);
    const hosts = got.stdout.trim().split('\n');

    const show = await cinode(['session', 'show', 'show-me']);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(new RegExp(`^ssid\\s+${ssid}$`, 'm'));
    expect(show.stdout).toMatch(/^state\s+active$/m);
    expect(show.stdout).toMatch(/^HOSTNAME\s+IP\s+STATE\s+VER\s+ARCH\s+FLAVOR$/m);
    for (const host of hosts) expect(show.stdout).toMatch(new RegExp(`^${host}\\s+192\\.0\\.2\\.\\d+\\s+deployed\\s+7\\s+x86_64\\s+-$`, 'm'));

    const view = parse<Record<string, unknown>>(await cinode(['--json', 'session', 'show', ssid]));
    expect(Object.keys(view).sort()).toEqual(['alias', 'created_at', 'end_reason', 'ended_at', 'expires_at', 'heartbeat', 'heartbeat_deadline', 'hosts', 'ssid', 'state']);
    expect((view.hosts as Array<{ hostname: string }>).map((h) => h.hostname).sort()).toEqual([...hosts].sort());

    const list = await cinode(['session', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^SSID\s+ALIAS\s+STATE\s+HOSTS\s+CREATED_AT\s+EXPIRES_AT$/m);
    expect(list.stdout).toMatch(new RegExp(`^${ssid}\\s+show-me\\s+active\\s+`, 'm'));
    const views = parse<Array<{ ssid: string }>>(await cinode(['session', 'list', '--json']));
    expect(views.map((v) => v.ssid)).toContain(ssid);

    const before = Date.now();
    const extended = parse<{ ssid: string; expires_at: string }>(await cinode(['session', 'extend', ssid, '3h', '--json']));
    expect(extended.ssid).toBe(ssid);
    const expires = Date.parse(extended.expires_at);
    expect(expires).toBeGreaterThanOrEqual(before + 3 * 3_600_000 - 5_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 3 * 3_600_000 + 5_000);
    // An extend never shortens: 1h of a session with 3h left keeps the 3h, and says so.
    const human = await cinode(['session', 'extend', ssid, '1h']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^expires_at\\s+${extended.expires_at.replace(/\./g, '\\.')}$`, 'm'));
    expect(human.stderr).toMatch(/^cinode: the session already expires later than 1h from now, and an extend never shortens: it still expires at /);
    // A lifetime past the project's maximum (12h) is capped, and the CLI says so.
    const capped = await cinode(['session', 'extend', ssid, '2d']);
    expect(capped.code).toBe(0);
    expect(capped.stderr).toMatch(/^cinode: lifetime 2d was capped by the project's maximum: the session expires at \S+ \(in about (11h59m\d+s|12h)\)\n$/);
    const opened = await cinode(['session', 'open', '--alias', 'capped-open', '--lifetime', '1d']);
    expect(opened.stderr).toMatch(/^cinode: lifetime 1d was capped by the project's maximum/);
    expect((await cinode(['session', 'done', 'capped-open'])).code).toBe(0);

    expect((await cinode(['session', 'done', ssid])).code).toBe(0);
  });

  test('done ends the session, and again is still fine (idempotent teardown)', async () => {
    const ssid = (await cinode(['session', 'open', '--alias', 'to-end'])).stdout.trim();
    await cinode(['node', 'get', '--ssid', ssid]);
    const done = await cinode(['session', 'done', 'to-end']);
    expect(done).toMatchObject({ code: 0, stdout: '' });
    expect((await cinode(['session', 'done', ssid])).code).toBe(0);
    expect(parse<string>(await cinode(['--json', 'session', 'done', ssid]))).toBe('done');
    const view = parse<{ state: string; end_reason: string }>(await cinode(['--json', 'session', 'show', ssid]));
    expect(view).toMatchObject({ state: 'done', end_reason: 'done' });
  });
});

describe('node commands', () => {
  test('get prints one hostname per line; without --ssid the new ssid goes to stderr', async () => {
    const run = await cinode(['node', 'get', '--count', '2', '--ver', '9-stream', '--arch', 'x86_64']);
    expect(run.code).toBe(0);
    const hosts = run.stdout.split('\n').filter((l) => l !== '');
    expect(hosts).toHaveLength(2);
    for (const host of hosts) expect(host).toMatch(/^c9s-\d+\.test\.example$/);
    const ssid = /new session (\S+);/.exec(run.stderr)?.[1];
    expect(ssid).toMatch(UUID);
    // The whole session ends with node done without hosts.
    expect((await cinode(['node', 'done', ssid!])).code).toBe(0);
  });

  test('get --json prints the /Node/get result; --flavor is passed through', async () => {
    const result = parse<{ hosts: string[]; ssid: string }>(await cinode(['node', 'get', '--json', '--arch', 'aarch64', '--ver', '9-stream', '--flavor', 'tiny']));
    expect(Object.keys(result).sort()).toEqual(['hosts', 'ssid']);
    expect(result.hosts).toEqual([expect.stringMatching(/^arm-\d\.test\.example$/)]);
    expect(result.ssid).toMatch(UUID);
    expect(parse<string>(await cinode(['node', 'done', result.ssid, '--json']))).toBe('done');
    // On a session already done: the legacy answer, exit 0 with a note.
    const again = await cinode(['node', 'done', result.ssid]);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('was already done');
    expect(parse<string>(await cinode(['--json', 'node', 'done', result.ssid]))).toBe('not-in-prod');
  });

  test('done HOST... releases those hosts only; fail HOST reports one broken', async () => {
    const ssid = (await cinode(['session', 'open', '--alias', 'scale-out'])).stdout.trim();
    const hosts = (await cinode(['node', 'get', '--ssid', ssid, '--count', '3'])).stdout.trim().split('\n');
    expect(hosts).toHaveLength(3);

    const drop = await cinode(['node', 'done', 'scale-out', hosts[0]!]);
    expect(drop).toMatchObject({ code: 0, stdout: '' });
    let rows = parse<Array<[string, string]>>(await cinode(['inventory', '--json']));
    expect(rows.filter(([, s]) => s === ssid).map(([h]) => h).sort()).toEqual([hosts[1], hosts[2]].sort());

    expect((await cinode(['node', 'fail', ssid, hosts[1]!])).code).toBe(0);
    rows = parse<Array<[string, string]>>(await cinode(['inventory', '--json']));
    expect(rows.filter(([, s]) => s === ssid).map(([h]) => h)).toEqual([hosts[2]]);
    const all = parse<unknown[][]>(await cinode(['inventory', '--all', '--json']));
    expect(all.find((row) => row[1] === hosts[1])?.[5]).toBe('Failed');

    // Hosts may also come comma-separated.
    const more = (await cinode(['node', 'get', '--ssid', ssid, '--count', '2'])).stdout.trim().split('\n');
    expect((await cinode(['node', 'done', ssid, more.join(',')])).code).toBe(0);

    // fail without hosts keeps the nodes for debugging (Fail in the inventory).
    expect(parse<string>(await cinode(['node', 'fail', ssid, '--json']))).toBe('done');
    const kept = parse<unknown[][]>(await cinode(['inventory', '--all', '--json']));
    expect(kept.find((row) => row[1] === hosts[2])?.[5]).toBe('Fail');
    expect((await cinode(['session', 'done', ssid])).code).toBe(0);
  });
});

describe('inventory', () => {
  test('keyed: the hosts of your active sessions, as a table or [hostname, ssid] pairs', async () => {
    const ssid = (await cinode(['session', 'open', '--alias', 'inv'])).stdout.trim();
    const [host] = (await cinode(['node', 'get', '--ssid', ssid])).stdout.trim().split('\n');
    const table = await cinode(['inventory']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^HOSTNAME\s+SSID$/m);
    expect(table.stdout).toMatch(new RegExp(`^${host}\\s+${ssid}$`, 'm'));
    expect(parse<unknown[]>(await cinode(['--json', 'inventory']))).toContainEqual([host, ssid]);
    await cinode(['session', 'done', ssid]);
  });

  test('--all: the unkeyed listing of every node, no key needed', async () => {
    const run = await cinode(['inventory', '--all'], { CINODE_KEY: undefined });
    expect(run.code).toBe(0);
    // The legacy pool field is a 1/0 flag, not a pool's name: the header says what it is.
    expect(run.stdout).toMatch(/^ID\s+HOSTNAME\s+IP\s+STATE\s+USED\s+VER\s+ARCH\s+FLAVOR\s+IN_POOL\s+SSID$/m);
    expect(run.stdout).toMatch(/^1\s+c7-1\.test\.example\s+192\.0\.2\.1\s+Ready\s+\d+\s+7\s+x86_64\s+-\s+yes\s+-$/m);
    const rows = parse<unknown[][]>(await cinode(['inventory', '--all', '--json'], { CINODE_KEY: undefined }));
    expect(rows).toHaveLength(12);
    for (const row of rows) expect(row).toHaveLength(14);
  });
});

describe('options', () => {
  test('--url/--key on the command line instead of the environment, and --key-in-query', async () => {
    const env = { CINODE_URL: undefined, CINODE_KEY: undefined };
    const bearer = await cinode(['--url', server.url, '--key', KEYS.beta, 'session', 'list', '--json'], env);
    expect(bearer.code).toBe(0);
    const legacy = await cinode(['session', 'list', '--key-in-query', '--url', `${server.url}/`, '--key', KEYS.beta], env);
    expect(legacy.code).toBe(0);
    // The server logged the key= request with the key redacted.
    expect(server.logs.join('\n')).toContain('key=[REDACTED]');
  });

  test('--version and -V print the version of package.json', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) expect(await cinode([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  test('--help lists the commands and the exit-code table', async () => {
    const help = await cinode(['--help']);
    expect(help.code).toBe(0);
    for (const word of ['session', 'node', 'inventory', 'serve', '--url', '--key', '--key-in-query', '--timeout', '--json', 'CINODE_URL', 'CINODE_KEY']) {
      expect(help.stdout).toContain(word);
    }
    expect(help.stdout).toContain('Exit codes:');
    for (const code of [0, 2, 3, 4, 5]) expect(help.stdout).toMatch(new RegExp(`^  ${code}  \\S`, 'm'));
    const sub = await cinode(['node', 'get', '--help']);
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--count');
    expect(sub.stdout).toContain('Exit codes:');
    // A subcommand's help lists the global options it accepts.
    expect(sub.stdout).toMatch(/^Global Options:$/m);
    for (const option of ['--url <url>', '--key <key>', '--key-in-query', '--timeout <duration>', '--json']) {
      expect(sub.stdout.slice(sub.stdout.indexOf('Global Options:'))).toContain(option);
    }
  });

  test('a typo: one line with a suggestion, exit 2, no help dump', async () => {
    const typo = await cinode(['sesion', 'list']);
    expect(typo).toMatchObject({ code: 2, stdout: '', stderr: 'cinode: unknown command "sesion"; did you mean "session"?\n' });
    const sub = await cinode(['session', 'lst']);
    expect(sub).toMatchObject({ code: 2, stderr: 'cinode: unknown command "lst"; did you mean "list"?\n' });
    const option = await cinode(['node', 'get', '--cuont', '2']);
    expect(option).toMatchObject({ code: 2, stderr: 'cinode: unknown option "--cuont"; did you mean "--count"?\n' });
  });

  test('completion bash: a script whose function completes commands, subcommands and options in bash', async () => {
    const script = await cinode(['completion', 'bash'], { CINODE_URL: undefined, CINODE_KEY: undefined });
    expect(script.code).toBe(0);
    const complete = (line: string) => {
      const probe = [
        script.stdout,
        `read -ra COMP_WORDS <<<${JSON.stringify(line)}`,
        line.endsWith(' ') ? 'COMP_WORDS+=("")' : ':',
        'COMP_CWORD=$((${#COMP_WORDS[@]} - 1))',
        '_cinode',
        'echo "${COMPREPLY[*]}"',
      ].join('\n');
      return execFileSync('bash', ['-c', probe], { encoding: 'utf8' }).trim();
    };
    expect(complete('cinode ses')).toBe('session');
    expect(complete('cinode session ')).toBe('open done show list extend ping keep');
    expect(complete('cinode session keep x --ev')).toBe('--every');
    expect(complete('cinode session open --heart')).toBe('--heartbeat');
    expect(complete('cinode node get --wa')).toBe('--wait');
    expect(complete('cinode --url http://x session ex')).toBe('extend');
    expect(complete('cinode session show nightly/42 --js')).toBe('--json');
    expect(complete('cinode admin node ')).toBe('release disable enable');
    expect(complete('cinode completion ')).toBe('bash zsh');
    const zsh = await cinode(['completion', 'zsh']);
    expect(zsh.stdout).toMatch(/^#compdef cinode\n/);
    expect(zsh.stdout).toContain('bashcompinit');
    expect(zsh.stdout).toContain('complete -o default -F _cinode cinode');
    const fish = await cinode(['completion', 'fish']);
    expect(fish).toMatchObject({ code: 2, stderr: 'cinode: command-argument value "fish" is invalid for argument "shell". Allowed choices are bash, zsh.\n' });
  });
});

describe('exit codes', () => {
  test('2: usage errors', async () => {
    const cases: Array<[string[], Record<string, string | undefined>, RegExp]> = [
      [['node', 'get', '--count', 'two'], {}, /--count: "two" is not a whole number/],
      [['node', 'get', '--count', '0'], {}, /count/],
      [['session', 'frobnicate'], {}, /unknown command "frobnicate"/],
      [['session', 'show'], {}, /missing required argument "ssid"/],
      [['session', 'list', '--bogus'], {}, /unknown option "--bogus"/],
      [['session', 'list'], { CINODE_URL: undefined }, /no API URL: give --url or set CINODE_URL/],
      [['session', 'list'], { CINODE_KEY: undefined }, /no API key: set CINODE_KEY/],
      [['session', 'list', '--timeout', 'soon'], {}, /--timeout: "soon" is not a duration/],
      [['session', 'list', '--url', 'not a url'], {}, /not a URL/],
    ];
    for (const [args, env, message] of cases) {
      const run = await cinode(args, env);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toMatch(/^cinode: /);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    }
  });

  test('2: a bad lifetime (bad-request) and a node done on a done session (not-active)', async () => {
    const lifetime = await cinode(['session', 'open', '--lifetime', '5 minutes']);
    expect(lifetime.code).toBe(2);
    expect(lifetime.stderr).toMatch(/^cinode: lifetime: "5 minutes" is not a duration/);

    const got = parse<{ hosts: string[]; ssid: string }>(await cinode(['node', 'get', '--json']));
    expect((await cinode(['session', 'done', got.ssid])).code).toBe(0);
    const late = await cinode(['node', 'done', got.ssid, got.hosts[0]!]);
    expect(late.code).toBe(2);
    expect(late.stderr).toBe(`cinode: Session ${got.ssid} is not active\n`);
    expect((await cinode(['session', 'extend', got.ssid, '1h'])).code).toBe(2);
  });

  test('3: a wrong key, an unknown session, a policy refusal', async () => {
    const wrong = await cinode(['session', 'list'], { CINODE_KEY: 'not-a-key-of-any-project' });
    // The wire's legacy text, then what to check.
    expect(wrong).toMatchObject({ code: 3, stdout: '' });
    expect(wrong.stderr).toMatch(/^cinode: Invalid duffy key \(check the key in CINODE_KEY \(or --key\)[^\n]*\)\n$/);
    const wrongArg = await cinode(['session', 'list', '--key', 'wrong-key-on-the-command-line'], { CINODE_KEY: undefined });
    expect(wrongArg.code).toBe(3);
    expect(wrongArg.stderr).not.toContain('wrong-key-on-the-command-line');

    const unknown = await cinode(['session', 'show', '00000000-0000-4000-8000-000000000000']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^cinode: Invalid session ID \(check the ssid or alias spelling; a session of another project \(another key\) looks unknown too\)\n$/);
    expect((await cinode(['node', 'done', 'no-such-alias', 'c7-1.test.example'])).code).toBe(3);

    const never = await cinode(['session', 'open', '--lifetime', 'never']);
    expect(never.code).toBe(3);
    expect(never.stderr).toMatch(/^cinode: .*never/);
  });

  test('4: capacity still short when the --timeout budget runs out', async () => {
    // The arm pool has 2 nodes: hold both, then ask for one more.
    const holder = parse<{ hosts: string[]; ssid: string }>(await cinode(['node', 'get', '--json', '--ver', '9-stream', '--arch', 'aarch64', '--count', '2']));
    const started = Date.now();
    const run = await cinode(['node', 'get', '--ver', '9-stream', '--arch', 'aarch64', '--timeout', '1s']);
    expect(run.code).toBe(4);
    // The 1 s budget, not the default 5m: the bound leaves a loaded machine room to start node.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/retrying in/);
    expect(run.stderr).toMatch(/^cinode: Insufficient Nodes in READY State \(still failing after \d+ attempts/m);
    expect((await cinode(['session', 'done', holder.ssid])).code).toBe(0);
  });

  test('4: the rate limit still refusing when the budget runs out', async () => {
    const env = { CINODE_KEY: KEYS.beta };
    const first = await cinode(['session', 'open', '--alias', 'beta-1'], env);
    expect(first.code).toBe(0);
    const second = await cinode(['session', 'open', '--timeout', '1s'], env);
    expect(second.code).toBe(4);
    expect(second.stderr).toMatch(/Rate limit exceeded/);
    await cinode(['session', 'done', 'beta-1'], env);
  });

  test('5 at once, not after the budget: an https URL to this plain-http server says to check the scheme', async () => {
    const started = Date.now();
    const run = await cinode(['session', 'list'], { CINODE_URL: server.url.replace(/^http:/, 'https:') });
    expect(Date.now() - started).toBeLessThan(30_000); // the default --timeout is 5m; room to start node on a loaded machine
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/^cinode: no answer from https:\/\/127\.0\.0\.1:\d+\/Session\/list: .*\(TLS failed \(EPROTO\): check the URL's scheme .*; not retried\)\n$/);
    expect(run.stderr).not.toMatch(/retrying/);
  });

  test('5: no answer (a closed port), after retrying an idempotent call for the budget', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const list = await cinode(['session', 'list', '--timeout', '1s'], { CINODE_URL: url });
    expect(list.code).toBe(5);
    expect(list.stderr).toMatch(new RegExp(`^cinode: no answer from ${url}/Session/list: .*ECONNREFUSED`, 'm'));
    // /Node/get is never sent twice after no answer: it may have allocated nodes.
    const get = await cinode(['node', 'get', '--timeout', '1s', '--key-in-query'], { CINODE_URL: url });
    expect(get.code).toBe(5);
    expect(get.stderr).not.toMatch(/retrying/);
    expect(get.stderr).toContain('key=[REDACTED]');
  });

  test('0: and every output so far is free of keys', async () => {
    const run = await cinode(['session', 'list']);
    expect(run.code).toBe(0);
    expect(outputs.length).toBeGreaterThan(20);
    // Not one output of any run carried a key (runs of this file go in order).
    for (const text of outputs) {
      for (const key of Object.values(KEYS)) expect(text).not.toContain(key);
    }
  });
});
