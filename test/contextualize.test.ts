/**
 * Contextualization end to end: the real server hands nodes to a project with `ssh-keys`, and a
 * real sshd on 127.0.0.1 (test/support/sshd.ts) stands in for each node. The project's keys must be
 * in the node's authorized_keys when /Node/get answers and gone once the node is ready again; a
 * node that cannot take them is quarantined and never reaches the caller; a request that cannot be
 * served is undone as a whole; a node whose keys cannot be taken off never reaches anyone.
 *
 * Each test starts its own sshd, and only one node at a time is up on it: nodes on one sshd would
 * share one authorized_keys file.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AdminNodeView, EventView } from '../src/api/types.js';
import { BEGIN_MARKER, END_MARKER } from '../src/machines/ssh.js';
import { KEYS, removeDir, startTestServer, waitFor, type PoolSpec, type TestServer } from './support/server.js';
import { freePort } from './support/process.js';
import { describeWithSshd, startSshd, type TestSshd } from './support/sshd.js';

interface Got {
  hosts: string[];
  ssid: string;
}

const alpha = { key: KEYS.alpha };
const beta = { key: KEYS.beta };
const RATE = { 'rate-limit': '100/5m' };
const UP = 'up1.ssh.test';
const DOWN = 'down1.ssh.test';
const CAPACITY = 'Insufficient Nodes in READY State';

describeWithSshd('contextualization of allocated nodes', () => {
  let keysDir: string;
  /** Alpha's key pair: the private key file and the public key line in the configuration. */
  let alphaPrivate: string;
  let alphaPublic: string;
  let sshd: TestSshd;
  const servers: TestServer[] = [];

  beforeAll(() => {
    keysDir = mkdtempSync(join(tmpdir(), 'cinode-alpha-key-'));
    alphaPrivate = join(keysDir, 'alpha');
    const made = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ci@alpha', '-f', alphaPrivate], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`ssh-keygen: ${made.stderr}`);
    alphaPublic = readFileSync(`${alphaPrivate}.pub`, 'utf8').trim();
  });

  afterAll(() => rmSync(keysDir, { recursive: true, force: true }));

  beforeEach(async () => {
    sshd = await startSshd();
  });

  afterEach(async () => {
    for (const server of servers.splice(0)) {
      await server.close();
      removeDir(server.dir);
    }
    await sshd.stop();
  });

  /** The node on the test sshd, and one whose sshd is down. */
  const upNode = () => ({ hostname: UP, ip: '127.0.0.1', 'ssh-port': sshd.port });
  const downNode = async () => ({ hostname: DOWN, ip: '127.0.0.1', 'ssh-port': await freePort() });

  /** A server that contextualizes for alpha (beta, without keys, is the operators' project). */
  async function launch(nodeList: PoolSpec['nodeList'], alphaExtra: Record<string, string> = {}, knownHosts = 'ignore'): Promise<TestServer> {
    const server = await startTestServer({
      topYaml: [
        'contextualize:',
        `  user: ${sshd.user}`,
        `  private-key: ${JSON.stringify(sshd.privateKey)}`,
        `  authorized-keys: ${JSON.stringify(sshd.authorizedKeys)}`,
        `  known-hosts: ${JSON.stringify(knownHosts)}`,
        '  timeout: 5s',
      ],
      defaults: RATE,
      projects: { alpha: { 'ssh-keys': [alphaPublic], ...alphaExtra }, beta: { admin: true } },
      pools: [{ name: 'lab', ver: '7', nodes: 0, nodeList }],
    });
    servers.push(server);
    return server;
  }

  const authorizedKeys = (): string => readFileSync(sshd.authorizedKeysPath, 'utf8');
  const withAlphaBlock = (rest: string): string => `${BEGIN_MARKER}\n${alphaPublic}\n${END_MARKER}\n${rest}`;

  /** Whether alpha's own key logs in to the node, as the CI job would. */
  function alphaLogsIn(): Promise<boolean> {
    const argv = ['-F', '/dev/null', '-i', alphaPrivate, '-p', String(sshd.port), '-l', sshd.user, '-T', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'];
    const hostKeys = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
    return new Promise((resolve) => execFile('ssh', [...argv, ...hostKeys, '--', '127.0.0.1', 'true'], { timeout: 10_000 }, (error) => resolve(error === null)));
  }

  async function stateOf(s: TestServer, hostname: string): Promise<string | undefined> {
    const rows = (await s.get('/Inventory')).json as Array<[number, string, string | null, string | null, number, string]>;
    return rows.find((r) => r[1] === hostname)?.[5];
  }

  async function waitForState(s: TestServer, hostname: string, state: string): Promise<void> {
    await waitFor(`${hostname} ${state}`, async () => (await stateOf(s, hostname)) === state, 10_000);
  }

  async function adminNode(s: TestServer, hostname: string): Promise<AdminNodeView | undefined> {
    const reply = await s.get('/Admin/nodes', beta);
    expect(reply.status).toBe(200);
    return (reply.json as AdminNodeView[]).find((n) => n.hostname === hostname);
  }

  async function eventsOf(s: TestServer, hostname: string): Promise<EventView[]> {
    const reply = await s.get('/Admin/events', { ...beta, hostname });
    expect(reply.status).toBe(200);
    return reply.json as EventView[];
  }

  test("the project's key block is there when /Node/get answers and gone once the node is ready again", async () => {
    const s = await launch([upNode()]);
    const before = authorizedKeys();
    expect(before).toBe(`${sshd.operatorKeyLine}\n`);
    expect(await alphaLogsIn()).toBe(false);

    const got = (await s.get('/Node/get', alpha)).json as Got;
    expect(got.hosts).toEqual([UP]);
    // The block comes first; the operator's key line after it is untouched.
    expect(authorizedKeys()).toBe(withAlphaBlock(before));
    expect(await alphaLogsIn()).toBe(true);

    expect((await s.get('/Node/done', { ...alpha, ssid: got.ssid })).text).toBe('"Done"');
    await waitForState(s, UP, 'Ready');
    expect(authorizedKeys()).toBe(before);
    expect(await alphaLogsIn()).toBe(false);
    expect(await adminNode(s, UP)).toMatchObject({ state: 'ready', used_count: 1, ssid: null });

    // Ready means usable: the next request gets the node, with the keys again.
    const again = (await s.get('/Node/get', alpha)).json as Got;
    expect(again.hosts).toEqual([UP]);
    expect(authorizedKeys()).toBe(withAlphaBlock(before));
  });

  test('a node whose sshd is down is quarantined with the reason, and the request is served by another node', async () => {
    const down = await downNode();
    // Both unused, so the down node (first listed, lower id) is picked first.
    const s = await launch([down, upNode()]);

    const reply = await s.get('/Node/get', alpha);
    expect(reply.status).toBe(200);
    const got = reply.json as Got;
    expect(got.hosts).toEqual([UP]);
    expect(authorizedKeys()).toBe(withAlphaBlock(`${sshd.operatorKeyLine}\n`));

    // The caller never sees the broken node, in any answer.
    const show = (await s.get('/Session/show', { ...alpha, ssid: got.ssid })).json as { hosts: Array<{ hostname: string }> };
    expect(show.hosts.map((h) => h.hostname)).toEqual([UP]);
    expect((await s.get('/Inventory', alpha)).json).toEqual([[UP, got.ssid]]);

    const refused = `contextualize exited with 255: ssh: connect to host 127.0.0.1 port ${down['ssh-port']}: Connection refused`;
    expect(await stateOf(s, DOWN)).toBe('Failed');
    const failed = await s.get('/Admin/nodes', { ...beta, state: 'failed' });
    expect(failed.json).toEqual([expect.objectContaining({ hostname: DOWN, state: 'failed', ssid: null, reason: `could not be contextualized for project alpha: ${refused}` })]);
    const last = (await eventsOf(s, DOWN)).at(-1);
    expect(last).toMatchObject({ subject: 'node', from: 'deployed', to: 'failed', project: 'alpha', ssid: got.ssid });
    expect(last?.detail).toContain('Connection refused');

    // Quarantined for good: not handed out while it is the only other node, nor after a release.
    expect((await s.get('/Node/get', alpha)).status).toBe(503);
    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    await waitForState(s, UP, 'Ready');
    const next = (await s.get('/Node/get', { ...beta, count: 1 })).json as Got;
    expect(next.hosts).toEqual([UP]);
    expect(await stateOf(s, DOWN)).toBe('Failed');
  });

  test('all-or-nothing: too few nodes take the keys -> 503, the prepared node is clean and ready, no session is left', async () => {
    const down = await downNode();
    // One session per 5 minutes: the undone request must not use it up.
    const s = await launch([upNode(), down], { 'rate-limit': '1/5m' });
    const before = authorizedKeys();

    const reply = await s.get('/Node/get', { ...alpha, count: 2 });
    expect(reply.status).toBe(503);
    expect(reply.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(reply.text).toBe(CAPACITY);

    // Undone before the answer was sent: nothing to wait for.
    expect(authorizedKeys()).toBe(before);
    expect(await stateOf(s, UP)).toBe('Ready');
    expect(await adminNode(s, UP)).toMatchObject({ state: 'ready', used_count: 0, ssid: null });
    expect(await adminNode(s, DOWN)).toMatchObject({ state: 'failed', reason: expect.stringMatching(/^could not be contextualized for project alpha: .*Connection refused$/) });
    // Its stay in the request is in the history, ending where it began.
    expect((await eventsOf(s, UP)).map((e) => [e.from, e.to, e.reason])).toEqual([
      [null, 'ready', expect.any(String)],
      ['ready', 'deployed', 'allocated'],
      ['deployed', 'ready', 'request undone: too few nodes could be contextualized'],
    ]);

    expect((await s.get('/Session/list', alpha)).json).toEqual([]);
    const opened = await s.get('/Session/get', alpha);
    expect(opened.status).toBe(200);
    // The limit is real: the session just opened is the one it allows.
    expect((await s.get('/Session/get', alpha)).status).toBe(429);

    // The clean node serves that session, keys and all.
    const got = (await s.get('/Node/get', { ...alpha, ssid: (opened.json as { ssid: string }).ssid })).json as Got;
    expect(got.hosts).toEqual([UP]);
    expect(authorizedKeys()).toBe(withAlphaBlock(before));
  });

  test('with a known_hosts file, a node whose host key is not in it is quarantined like an unreachable one', async () => {
    // The file knows the sshd as [127.0.0.1]:PORT only; reached by the name localhost, its key is unknown.
    const knownHosts = join(keysDir, `known_hosts.${sshd.port}`);
    writeFileSync(knownHosts, `${sshd.hostKeyLine}\n`);
    const unknown = { hostname: 'localhost', 'ssh-port': sshd.port };
    const s = await launch([unknown, upNode()], {}, knownHosts);

    const got = (await s.get('/Node/get', alpha)).json as Got;
    expect(got.hosts).toEqual([UP]);
    expect(await adminNode(s, 'localhost')).toMatchObject({
      state: 'failed',
      reason: 'could not be contextualized for project alpha: contextualize exited with 255: Host key verification failed.',
    });
    expect(authorizedKeys()).toBe(withAlphaBlock(`${sshd.operatorKeyLine}\n`));
  });

  test('a project without ssh-keys gets its node untouched', async () => {
    const s = await launch([upNode()]);
    const before = statSync(sshd.authorizedKeysPath);
    const content = authorizedKeys();

    const got = (await s.get('/Node/get', beta)).json as Got;
    expect(got.hosts).toEqual([UP]);
    await s.get('/Node/done', { ...beta, ssid: got.ssid });
    await waitForState(s, UP, 'Ready');

    // Not even rewritten: the same file, never replaced.
    const after = statSync(sshd.authorizedKeysPath);
    expect(authorizedKeys()).toBe(content);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  test('keys that cannot be removed at release (sshd down) quarantine the node: no project gets it', async () => {
    const s = await launch([upNode()]);
    const got = (await s.get('/Node/get', alpha)).json as Got;
    expect(got.hosts).toEqual([UP]);
    const port = sshd.port;
    await sshd.stop();

    await s.get('/Node/done', { ...alpha, ssid: got.ssid });
    await waitForState(s, UP, 'Failed');
    expect(await adminNode(s, UP)).toMatchObject({
      state: 'failed',
      used_count: 0,
      reason: `could not remove the SSH keys of the last project: decontextualize exited with 255: ssh: connect to host 127.0.0.1 port ${port}: Connection refused`,
    });
    for (const project of [alpha, beta]) expect((await s.get('/Node/get', project)).text).toBe(CAPACITY);
    expect(await stateOf(s, UP)).toBe('Failed');
  });

  test('keys that cannot be removed stay quarantined until an operator releases the node; reclaim then takes them off', async () => {
    const s = await launch([upNode()]);
    const before = authorizedKeys();
    const got = (await s.get('/Node/get', alpha)).json as Got;
    // The login user can no longer write next to its keys file: the removal fails on the node.
    const folder = dirname(sshd.authorizedKeysPath);
    chmodSync(folder, 0o500);
    try {
      await s.get('/Node/done', { ...alpha, ssid: got.ssid });
      await waitForState(s, UP, 'Failed');
    } finally {
      chmodSync(folder, 0o700);
    }
    const failed = await adminNode(s, UP);
    expect(failed?.reason).toMatch(/^could not remove the SSH keys of the last project: decontextualize exited with 1: .*Permission denied$/);
    expect(authorizedKeys()).toBe(withAlphaBlock(before));
    expect((await s.get('/Node/get', beta)).status).toBe(503);

    const released = await s.get('/Admin/node/release', { ...beta, hostname: UP });
    expect(released.status).toBe(200);
    await waitForState(s, UP, 'Ready');
    expect(authorizedKeys()).toBe(before);

    const next = (await s.get('/Node/get', beta)).json as Got;
    expect(next.hosts).toEqual([UP]);
    expect(authorizedKeys()).toBe(before);
  });
});
