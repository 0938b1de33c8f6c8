/**
 * Session isolation end to end (docs/api.md, the isolation section): the real server, configured
 * with `isolation:` running the netns example hooks (examples/isolation/netns/), lends a static
 * pool whose nodes are test network namespaces (test/support/netns.ts), and the isolation is
 * checked through the HTTP API only: nodes of one session reach each other over TCP and not the
 * other session's; a node released with /Node/done node= has lost its session's network by the
 * time it is ready again; /Session/done deletes the segment; legacy /Node/get (a session and its
 * nodes in one call) is isolated the same way.

 */
import { join } from 'node:path';
import { describeWithNetns, ISOLATION_EXAMPLES, NetnsLab } from './support/netns.js';
import { KEYS, removeDir, startTestServer, waitFor, type Reply, type TestServer } from './support/server.js';

const NETNS_HOOKS = join(ISOLATION_EXAMPLES, 'netns');

/** Fails with the answer's body (a hook's stderr line, in a 503) when the call did not succeed. */
function expectOk(reply: Reply): void {
  if (reply.status !== 200) throw new Error(`expected 200, got ${reply.status}: ${reply.text}`);
}

/** The `isolation:` block for the lab, each hook wrapped in env(1) to pass the lab's settings. */
function isolationYaml(lab: NetnsLab): string[] {
  const settings = Object.entries(lab.hookEnv).map(([name, value]) => `${name}=${value}`);
  const hook = (name: string): string => JSON.stringify(['env', ...settings, join(NETNS_HOOKS, name)]);
  return [
    'isolation:',
    `  session-setup: ${hook('session-setup')}`,
    `  session-teardown: ${hook('session-teardown')}`,
    `  node-attach: ${hook('node-attach')}`,
    `  node-detach: ${hook('node-detach')}`,
    '  timeout: 30s',
  ];
}

describeWithNetns('session isolation end to end, through the HTTP API, with the netns example hooks', () => {
  const alpha = { key: KEYS.alpha };
  const NODES = ['a1', 'a2', 'b1', 'b2'];
  let lab: NetnsLab;
  let server: TestServer;

  /** The lab node of a hostname the server handed out. */
  function nodeOf(hostname: string): string {
    const name = hostname.split('.')[0] ?? '';
    lab.node(name);
    return name;
  }

  async function inventoryState(hostname: string): Promise<string | undefined> {
    const rows = (await server.get('/Inventory')).json as unknown[][];
    return rows.find((row) => row[1] === hostname)?.[5] as string | undefined;
  }

  async function show(ssid: string): Promise<{ state: string; isolation: { netns: string; subnet: string } | null; teardown?: string; hosts: Array<{ hostname: string }> }> {
    const reply = await server.get('/Session/show', { ...alpha, ssid });
    expect(reply.status).toBe(200);
    return reply.json as never;
  }

  async function openSession(alias: string, count: number): Promise<{ ssid: string; hosts: string[] }> {
    const opened = await server.get('/Session/get', { ...alpha, alias });
    expectOk(opened);
    const { ssid } = opened.json as { ssid: string };
    const got = await server.get('/Node/get', { ...alpha, ver: 7, arch: 'x86_64', count, ssid });
    expectOk(got);
    return { ssid, hosts: (got.json as { hosts: string[] }).hosts };
  }

  async function expectIsolated(inside: string[], outside: string[]): Promise<void> {
    for (const from of inside) {
      for (const to of inside) if (to !== from) await lab.waitReachable(from, await lab.address(to), to);
      for (const to of outside) {
        for (const address of await lab.addresses(to)) expect({ from, to, reached: (await lab.connect(from, address)).ok }).toEqual({ from, to, reached: false });
      }
    }
  }

  beforeAll(async () => {
    lab = await new NetnsLab().start();
    for (const name of NODES) await lab.addNode(name);
    for (const name of NODES) await lab.listen(name);
    server = await startTestServer({
      topYaml: isolationYaml(lab),
      // Four sessions in a few seconds: above the default rate limit's comfort.
      defaults: { 'rate-limit': '100/5m' },
      pools: [{ name: 'lab', ver: '7', arch: 'x86_64', nodes: NODES.length, nodeList: NODES.map((name, i) => ({ hostname: lab.node(name).hostname, ip: `192.0.2.${i + 1}` })) }],
    });
  });

  afterAll(async () => {
    await server?.close();
    if (server) removeDir(server.dir);
    if (!lab) return;
    await lab.cleanup();
    expect(await lab.leftovers()).toEqual([]);
  });

  test('two sessions of two nodes: TCP inside each, nothing across; a released node loses the network before it is ready; /Session/done deletes the segments', async () => {
    const a = await openSession('iso-a', 2);
    const b = await openSession('iso-b', 2);
    const shownA = await show(a.ssid);
    expect(shownA.isolation).toMatchObject({ netns: expect.stringMatching(new RegExp(`^${lab.prefix}-s-`)), subnet: expect.any(String) });
    expect(await lab.namespaces()).toEqual(expect.arrayContaining([shownA.isolation?.netns, (await show(b.ssid)).isolation?.netns]));
    const inA = a.hosts.map(nodeOf);
    const inB = b.hosts.map(nodeOf);
    await expectIsolated(inA, inB);
    await expectIsolated(inB, inA);

    const [leaving, staying] = a.hosts as [string, string];
    const formerAddress = await lab.address(nodeOf(leaving));
    expect((await server.get('/Node/done', { ...alpha, ssid: a.ssid, node: leaving })).status).toBe(200);
    await waitFor(`${leaving} ready again`, async () => (await inventoryState(leaving)) === 'Ready', 30_000);
    // The detach runs before the node can be ready (docs/api.md): by now it has left the segment.
    expect(await lab.linkNamespace(nodeOf(leaving))).toBe(lab.provisioning);
    expect(await lab.addresses(nodeOf(leaving))).toEqual([]);
    expect((await lab.connect(nodeOf(staying), formerAddress)).ok).toBe(false);

    for (const ssid of [a.ssid, b.ssid]) expect((await server.get('/Session/done', { ...alpha, ssid })).status).toBe(200);
    await waitFor('the segments deleted', async () => (await lab.namespaces()).every((name) => !name.includes('-s-')), 30_000);
    await waitFor('the teardowns shown done', async () => (await show(a.ssid)).teardown === 'done' && (await show(b.ssid)).teardown === 'done', 30_000);
    await waitFor('every node ready', async () => {
      for (const name of NODES) if ((await inventoryState(lab.node(name).hostname)) !== 'Ready') return false;
      return true;
    }, 30_000);
    for (const name of NODES) expect(await lab.linkNamespace(name)).toBe(lab.provisioning);
  });

  test('legacy /Node/get (a session with its nodes in one call) isolates them the same way', async () => {
    const first = await server.get('/Node/get', { ...alpha, ver: 7, arch: 'x86_64', count: 2 });
    expectOk(first);
    const one = first.json as { ssid: string; hosts: string[] };
    const second = await server.get('/Node/get', { ...alpha, ver: 7, arch: 'x86_64', count: 2 });
    expectOk(second);
    const two = second.json as { ssid: string; hosts: string[] };
    expect((await show(one.ssid)).isolation).not.toBeNull();
    await expectIsolated(one.hosts.map(nodeOf), two.hosts.map(nodeOf));
    await expectIsolated(two.hosts.map(nodeOf), one.hosts.map(nodeOf));
    for (const ssid of [one.ssid, two.ssid]) expect((await server.get('/Node/done', { ...alpha, ssid })).status).toBe(200);
    await waitFor('the segments deleted', async () => (await lab.namespaces()).every((name) => !name.includes('-s-')), 30_000);
  });
});
