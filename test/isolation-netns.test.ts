/**
 * The isolation hook examples (examples/isolation/), run directly as cinode runs them (argv, no
 * shell, the environment of docs/api.md's isolation section), in the order a session's life runs
 * them. netns/ on real network namespaces and veth pairs (root; CI runs as root, and there a
 * missing capability fails); bridge-vlan/, which needs a VLAN-filtering bridge this kernel does
 * not have, through a `bridge` on PATH that records the commands the hooks give and answers
 * `bridge -j vlan show` with the port state each test sets.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWithNetns, ISOLATION_EXAMPLES, lastLine, NetnsLab, runHook, type HookRun } from './support/netns.js';

const NETNS = join(ISOLATION_EXAMPLES, 'netns');
const BRIDGE_VLAN = join(ISOLATION_EXAMPLES, 'bridge-vlan');

type Hook = 'session-setup' | 'session-teardown' | 'node-attach' | 'node-detach';

/** What the netns setup prints. */
interface SessionData {
  netns: string;
  subnet: string;
  gateway: string;
}

interface Session {
  ssid: string;
  data: string;
}

describeWithNetns('the netns isolation example on real network namespaces', () => {
  let lab: NetnsLab;
  const sessions = new Map<string, Session>();

  /** Runs a netns hook with cinode's variables for the session (and node), and the lab's settings. */
  function hook(name: Hook, ssid: string, node?: string, extra: Record<string, string> = {}): Promise<HookRun> {
    const env: Record<string, string> = {
      ...lab.hookEnv,
      CINODE_PROJECT: 'alpha',
      CINODE_SSID: ssid,
      CINODE_ALIAS: `job-${ssid}`,
      ...(name === 'session-setup' ? {} : { CINODE_SESSION_DATA: sessions.get(ssid)?.data ?? '{}' }),
      ...(node ? { CINODE_HOSTNAME: lab.node(node).hostname, CINODE_IP: '', CINODE_POOL: 'lab' } : {}),
      ...extra,
    };
    return runHook(join(NETNS, name), env);
  }

  /** Runs a hook that must succeed, and returns its stdout. */
  async function ok(name: Hook, ssid: string, node?: string, extra?: Record<string, string>): Promise<string> {
    const result = await hook(name, ssid, node, extra);
    if (result.code !== 0) throw new Error(`${name} ${ssid} ${node ?? ''} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  }

  /** Runs the setup, keeps its last stdout line as the session's data (as cinode does), and returns it parsed. */
  async function setup(ssid: string): Promise<SessionData> {
    const data = (await ok('session-setup', ssid)).trim().split('\n').at(-1) ?? '';
    sessions.set(ssid, { ssid, data });
    return JSON.parse(data) as SessionData;
  }

  const namespaces = (): Promise<string[]> => lab.namespaces();

  function subnetFiles(): string[] {
    try {
      return readdirSync(join(lab.stateDir, 'subnets'));
    } catch {
      return [];
    }
  }

  async function expectUnreachable(from: string, to: string): Promise<void> {
    const addresses = await lab.addresses(to);
    expect({ to, addresses: addresses.length }).toEqual({ to, addresses: 1 });
    for (const address of addresses) {
      const connection = await lab.connect(from, address);
      expect({ from, to, address, reached: connection.ok }).toEqual({ from, to, address, reached: false });
    }
  }

  beforeAll(async () => {
    lab = await new NetnsLab().start();
    for (const name of ['a1', 'a2', 'b1', 'b2']) await lab.addNode(name);
    for (const name of ['a1', 'a2', 'b1', 'b2']) await lab.listen(name);
  });

  afterAll(async () => {
    if (!lab) return;
    await lab.cleanup();
    expect(await lab.leftovers()).toEqual([]);
  });

  test('session-setup gives each session a namespace with IPv4 forwarding and its own subnet, and prints the same line when run again', async () => {
    const first = await setup('sess-a');
    expect(first).toEqual({ netns: expect.stringMatching(new RegExp(`^${lab.prefix}-s-[0-9a-f]{10}$`)), subnet: '10.200.0.0/24', gateway: '10.200.0.1' });
    expect((await ok('session-setup', 'sess-a')).trim()).toBe(sessions.get('sess-a')?.data);
    const second = await setup('sess-b');
    expect(second.subnet).toBe('10.200.1.0/24');
    expect(second.netns).not.toBe(first.netns);
    expect(await namespaces()).toEqual(expect.arrayContaining([first.netns, second.netns]));
    expect((await lab.exec(first.netns, ['cat', '/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
  });

  test('setups that run at once get different subnets (the allocation holds a lock)', async () => {
    const ssids = Array.from({ length: 6 }, (_, i) => `par-${i}`);
    const results = await Promise.all(ssids.map((ssid) => hook('session-setup', ssid)));
    expect(results.map((result) => result.code)).toEqual(ssids.map(() => 0));
    const subnets = results.map((result) => (JSON.parse(result.stdout.trim()) as { subnet: string }).subnet);
    expect(new Set(subnets).size).toBe(6);
    expect(subnets).not.toContain('10.200.0.0/24');
    expect(subnets).not.toContain('10.200.1.0/24');
    for (const ssid of ssids) await ok('session-teardown', ssid);
    expect(subnetFiles().sort()).toEqual(['0', '1']);
  });

  test('attached nodes of one session reach each other over TCP, and not the other session\'s nodes; attach run twice changes nothing', async () => {
    // All four at once, as the server may run them: the address claims hold the state lock.
    await Promise.all([['sess-a', 'a1'], ['sess-a', 'a2'], ['sess-b', 'b1'], ['sess-b', 'b2']].map(([ssid, node]) => ok('node-attach', ssid ?? '', node)));
    for (const [ssid, nodes] of [['sess-a', ['a1', 'a2']], ['sess-b', ['b1', 'b2']]] as const) {
      for (const node of nodes) {
        const address = await lab.address(node);
        await ok('node-attach', ssid, node);
        expect(await lab.addresses(node)).toEqual([address]);
        expect(await lab.linkNamespace(node)).toBe(JSON.parse(sessions.get(ssid)?.data ?? '{}').netns);
      }
    }
    expect((await lab.address('a1')).startsWith('10.200.0.')).toBe(true);
    expect((await lab.address('b1')).startsWith('10.200.1.')).toBe(true);

    await lab.waitReachable('a1', await lab.address('a2'), 'a2');
    await lab.waitReachable('a2', await lab.address('a1'), 'a1');
    await lab.waitReachable('b1', await lab.address('b2'), 'b2');
    await lab.waitReachable('b2', await lab.address('b1'), 'b1');
    for (const [from, to] of [['a1', 'b1'], ['a2', 'b2'], ['b1', 'a1'], ['b2', 'a2']] as const) await expectUnreachable(from, to);
  });

  test('a detached node is back in provisioning, has no session address and reaches none of its former peers; detach run twice is fine', async () => {
    const formerAddress = await lab.address('a2');
    await ok('node-detach', 'sess-a', 'a2');
    await ok('node-detach', 'sess-a', 'a2');
    expect(await lab.linkNamespace('a2')).toBe(lab.provisioning);
    expect(await lab.addresses('a2')).toEqual([]);
    expect((await lab.connect('a1', formerAddress)).ok).toBe(false);
    expect((await lab.connect('a2', await lab.address('a1'))).ok).toBe(false);
    await lab.waitReachable('b1', await lab.address('b2'), 'b2');
  });

  test('a node detached from one session and attached to another reaches only its new peers', async () => {
    await ok('node-attach', 'sess-b', 'a2');
    expect((await lab.address('a2')).startsWith('10.200.1.')).toBe(true);
    await lab.waitReachable('a2', await lab.address('b1'), 'b1');
    await lab.waitReachable('b2', await lab.address('a2'), 'a2');
    await expectUnreachable('a1', 'a2');
    await expectUnreachable('a2', 'a1');
    await ok('node-detach', 'sess-b', 'a2');
  });

  test('after detach of every node and teardown, the segments are gone and the subnets free; teardown run twice is fine', async () => {
    await ok('node-detach', 'sess-a', 'a1');
    await ok('node-detach', 'sess-b', 'b1');
    await ok('node-detach', 'sess-b', 'b2');
    for (const ssid of ['sess-a', 'sess-b']) {
      await ok('session-teardown', ssid);
      await ok('session-teardown', ssid);
    }
    expect((await namespaces()).filter((name) => name.includes('-s-'))).toEqual([]);
    expect(subnetFiles()).toEqual([]);
    for (const node of ['a1', 'a2', 'b1', 'b2']) {
      expect(await lab.linkNamespace(node)).toBe(lab.provisioning);
      expect(await lab.addresses(node)).toEqual([]);
    }
  });

  test('teardown after a setup that printed nothing ({}) still deletes the segment, and moves a node left in it (failed detach) back to provisioning', async () => {
    const data = await setup('sess-c');
    await ok('node-attach', 'sess-c', 'a1');
    sessions.set('sess-c', { ssid: 'sess-c', data: '{}' });
    await ok('session-teardown', 'sess-c');
    expect(await namespaces()).not.toContain(data.netns);
    expect(await lab.linkNamespace('a1')).toBe(lab.provisioning);
    // A late detach still removes the node's address, from the subnet in the session's data.
    sessions.set('sess-c', { ssid: 'sess-c', data: JSON.stringify(data) });
    expect(await lab.addresses('a1')).toHaveLength(1);
    await ok('node-detach', 'sess-c', 'a1');
    expect(await lab.addresses('a1')).toEqual([]);
  });

  test('attach takes a node left in another session\'s segment (its detach failed) out of it, and removes its old address', async () => {
    const old = await setup('sess-old');
    const current = await setup('sess-new');
    await ok('node-attach', 'sess-old', 'a2');
    await ok('node-attach', 'sess-new', 'b2');
    await ok('node-attach', 'sess-new', 'a2');
    expect(await lab.linkNamespace('a2')).toBe(current.netns);
    const [address] = await lab.addresses('a2');
    expect({ addresses: (await lab.addresses('a2')).length, inNewSubnet: address?.startsWith(current.subnet.replace(/0\/24$/, '')) }).toEqual({ addresses: 1, inNewSubnet: true });
    await lab.waitReachable('b2', address ?? '', 'a2');
    for (const node of ['a2', 'b2']) await ok('node-detach', 'sess-new', node);
    await ok('session-teardown', 'sess-new');
    await ok('session-teardown', 'sess-old');
    expect(await lab.namespaces()).not.toEqual(expect.arrayContaining([old.netns]));
    expect(await lab.linkNamespace('a2')).toBe(lab.provisioning);
  });

  test('a node that is not in the convention is found through CINODE_NETNS_NODE_MAP', async () => {
    const map = join(lab.stateDir, 'nodes.map');
    const b1 = lab.node('b1');
    writeFileSync(map, `# HOSTNAME NODE-NAMESPACE NODE-INTERFACE LINK\nrack4-slot7.example ${b1.netns} eth0 ${b1.link}\n`);
    await setup('sess-m');
    const env = { CINODE_NETNS_NODE_MAP: map, CINODE_HOSTNAME: 'rack4-slot7.example' };
    await ok('node-attach', 'sess-m', 'b1', env);
    expect(await lab.linkNamespace('b1')).toBe(JSON.parse(sessions.get('sess-m')?.data ?? '{}').netns);
    await ok('node-detach', 'sess-m', 'b1', env);
    await ok('session-teardown', 'sess-m');
    expect(await lab.linkNamespace('b1')).toBe(lab.provisioning);
  });

  test('each failure ends with one stderr line that says what is wrong', async () => {
    const failures: Array<[Promise<HookRun>, RegExp]> = [
      [hook('session-setup', ''), /^session-setup: CINODE_SSID is not set: this script is an isolation hook/],
      [hook('node-attach', 'sess-none', 'a1'), /^node-attach: the segment \S+-s-[0-9a-f]+ of session sess-none does not exist \(did session-setup run\?\)$/],
      [hook('node-attach', 'sess-a', 'a1', { CINODE_HOSTNAME: 'ghost.example' }), /^node-attach: the namespace \S+-n-ghost of node ghost.example does not exist/],
      [hook('session-setup', 'sess-x', undefined, { CINODE_NETNS_RANGE: '10.300.0.0/16' }), /^session-setup: CINODE_NETNS_RANGE is '10.300.0.0\/16': 300 is not an IPv4 byte$/],
      [hook('session-setup', 'sess-x', undefined, { CINODE_NETNS_RANGE: 'ten' }), /^session-setup: CINODE_NETNS_RANGE is 'ten': expected an IPv4 network like 10.200.0.0\/16$/],
      [hook('session-setup', 'sess-x', undefined, { CINODE_NETNS_SUBNET_LENGTH: '8' }), /^session-setup: CINODE_NETNS_SUBNET_LENGTH is '8': expected a whole number from 16 to 30$/],
      [hook('node-attach', 'sess-x', 'a1', { CINODE_SESSION_DATA: '{"netns": "cinode-s-0123456789", "subnet": "10.200.9.0/24"}' }), /^node-attach: CINODE_SESSION_DATA names the namespace cinode-s-0123456789, but session sess-x's is \S+ \(was CINODE_NETNS_PREFIX changed\?\)$/],
    ];
    for (const [run, reason] of failures) {
      const result = await run;
      expect({ code: result.code, reason: lastLine(result.stderr) }).toEqual({ code: 1, reason: expect.stringMatching(reason) });
    }
    expect(subnetFiles()).toEqual([]);
  });

  test('a full range refuses the next session, saying so, and a teardown makes room again', async () => {
    const small = { CINODE_NETNS_RANGE: '10.201.0.0/23' };
    await ok('session-setup', 'full-1', undefined, small);
    await ok('session-setup', 'full-2', undefined, small);
    const refused = await hook('session-setup', 'full-3', undefined, small);
    expect(refused.code).toBe(1);
    expect(lastLine(refused.stderr)).toMatch(/^session-setup: no free subnets slot left in 0\.\.1 for full-3/);
    await ok('session-teardown', 'full-1', undefined, small);
    expect(JSON.parse((await ok('session-setup', 'full-3', undefined, small)).trim()).subnet).toBe('10.201.0.0/24');
    for (const ssid of ['full-2', 'full-3']) await ok('session-teardown', ssid, undefined, small);
    expect((await namespaces()).filter((name) => name.includes('-s-'))).toEqual([]);
  });
});

describe('the bridge-vlan isolation example (the commands it gives a VLAN-filtering bridge)', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'cinode-bridge-vlan-'));
    // `bridge` on PATH: records each command line, answers `-j vlan show [dev PORT]` with the
    // state the test wrote in show-PORT.json (show-all.json without dev), or [] when none.
    writeFileSync(
      join(dir, 'bridge'),
      [
        '#!/usr/bin/env bash',
        'echo "$*" >>"$BRIDGE_SHIM/commands"',
        'if [ "$1" = -j ]; then',
        '  file="$BRIDGE_SHIM/show-${5:-all}.json"',
        '  if [ -f "$file" ]; then cat "$file"; else echo "[]"; fi',
        'fi',
      ].join('\n'),
    );
    chmodSync(join(dir, 'bridge'), 0o755);
    writeFileSync(join(dir, 'ports'), '# HOSTNAME PORT\nn1.example swp1\nn2.example swp2\n');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function hook(name: Hook, ssid: string, extra: Record<string, string> = {}): Promise<HookRun> {
    return runHook(join(BRIDGE_VLAN, name), {
      PATH: `${dir}:${process.env.PATH ?? ''}`,
      BRIDGE_SHIM: dir,
      CINODE_ISOLATION_STATE: join(dir, 'state'),
      CINODE_BRIDGE_PORTS: join(dir, 'ports'),
      CINODE_BRIDGE_TRUNKS: 'bond0',
      CINODE_VLAN_RANGE: '100-102',
      CINODE_PROJECT: 'alpha',
      CINODE_SSID: ssid,
      CINODE_ALIAS: '',
      ...extra,
    });
  }

  async function ok(name: Hook, ssid: string, extra?: Record<string, string>): Promise<string> {
    const result = await hook(name, ssid, extra);
    if (result.code !== 0) throw new Error(`${name} ${ssid} exited ${result.code}: ${result.stderr}`);
    return result.stdout.trim();
  }

  /** The bridge commands given since the last call. */
  function commands(): string[] {
    const file = join(dir, 'commands');
    let lines: string[] = [];
    try {
      lines = readFileSync(file, 'utf8').split('\n').filter((line) => line !== '');
    } catch {
      // none yet
    }
    rmSync(file, { force: true });
    return lines;
  }

  function portState(port: string, vids: Array<[number, boolean]>): void {
    const vlans = vids.map(([vlan, pvid]) => (pvid ? { vlan, flags: ['PVID', 'Egress Untagged'] } : { vlan }));
    writeFileSync(join(dir, `show-${port}.json`), JSON.stringify([{ ifname: port, vlans }]));
  }

  test('session-setup claims a VLAN id of the range, adds it to the trunks, and prints it; run again it gives the same', async () => {
    expect(await ok('session-setup', 's1')).toBe('{"vlan":100,"bridge":"br0"}');
    expect(commands()).toEqual(['vlan add dev bond0 vid 100 master']);
    expect(await ok('session-setup', 's1')).toBe('{"vlan":100,"bridge":"br0"}');
    expect(await ok('session-setup', 's2', { CINODE_BRIDGE: 'br1' })).toBe('{"vlan":101,"bridge":"br1"}');
  });

  test('setups that run at once get different VLAN ids, and a full range refuses the next with a clear reason', async () => {
    const results = await Promise.all(['p1', 'p2', 'p3', 'p4'].map((ssid) => hook('session-setup', ssid)));
    const granted = results.filter((result) => result.code === 0).map((result) => (JSON.parse(result.stdout) as { vlan: number }).vlan);
    expect(granted.sort()).toEqual([100, 101, 102]);
    const refused = results.filter((result) => result.code !== 0);
    expect(refused.map((result) => lastLine(result.stderr))).toEqual([expect.stringMatching(/^session-setup: no free vlans slot left in 100\.\.102 for p[1-4]/)]);
  });

  test('attach makes the session VLAN the port\'s only one (untagged, PVID); detach puts it back in the provisioning VLAN only', async () => {
    const data = await ok('session-setup', 's1');
    commands();
    portState('swp1', [[1, false], [10, true]]);
    await ok('node-attach', 's1', { CINODE_SESSION_DATA: data, CINODE_HOSTNAME: 'n1.example' });
    expect(commands()).toEqual(['vlan add dev swp1 vid 100 pvid untagged master', '-j vlan show dev swp1', 'vlan del dev swp1 vid 1 master', 'vlan del dev swp1 vid 10 master']);
    // Run again on the state it left: nothing to remove.
    portState('swp1', [[100, true]]);
    await ok('node-attach', 's1', { CINODE_SESSION_DATA: data, CINODE_HOSTNAME: 'n1.example' });
    expect(commands()).toEqual(['vlan add dev swp1 vid 100 pvid untagged master', '-j vlan show dev swp1']);

    await ok('node-detach', 's1', { CINODE_SESSION_DATA: data, CINODE_HOSTNAME: 'n1.example', CINODE_VLAN_PROVISIONING: '20' });
    expect(commands()).toEqual(['vlan add dev swp1 vid 20 pvid untagged master', '-j vlan show dev swp1', 'vlan del dev swp1 vid 100 master']);
  });

  test('teardown puts a port left in the session VLAN back in provisioning, removes the VLAN from the trunks and frees the id, also with {} as data', async () => {
    await ok('session-setup', 's1');
    commands();
    writeFileSync(join(dir, 'show-all.json'), JSON.stringify([
      { ifname: 'br0', vlans: [{ vlan: 1 }, { vlan: 100 }] },
      { ifname: 'swp1', vlans: [{ vlan: 100, flags: ['PVID', 'Egress Untagged'] }] },
      { ifname: 'swp2', vlans: [{ vlan: 10, flags: ['PVID', 'Egress Untagged'] }] },
      { ifname: 'bond0', vlans: [{ vlan: 100 }] },
    ]));
    portState('swp1', [[10, true], [100, false]]);
    portState('bond0', [[100, false]]);
    await ok('session-teardown', 's1', { CINODE_SESSION_DATA: '{}' });
    expect(commands()).toEqual([
      '-j vlan show',
      'vlan add dev swp1 vid 10 pvid untagged master',
      '-j vlan show dev swp1',
      'vlan del dev swp1 vid 100 master',
      '-j vlan show dev bond0',
      'vlan del dev bond0 vid 100 master',
    ]);
    expect(readdirSync(join(dir, 'state', 'vlans'))).toEqual([]);
    // Run again: the session holds no VLAN any more (100 may be another session's by now), so
    // nothing is touched.
    await ok('session-setup', 's2');
    commands();
    const again = await hook('session-teardown', 's1', { CINODE_SESSION_DATA: '{"vlan":100,"bridge":"br0"}' });
    expect({ code: again.code, reason: lastLine(again.stderr), commands: commands() }).toEqual({ code: 0, reason: 'session-teardown: session s1 holds no VLAN: nothing to tear down', commands: [] });
  });

  test('wrong settings and unknown nodes fail with one line that says what is wrong', async () => {
    const data = await ok('session-setup', 's1');
    const failures: Array<[Hook, Record<string, string>, RegExp]> = [
      ['session-setup', { CINODE_VLAN_RANGE: '5-20' }, /^session-setup: CINODE_VLAN_PROVISIONING \(10\) is inside CINODE_VLAN_RANGE \(5-20\)/],
      ['session-setup', { CINODE_VLAN_RANGE: '100' }, /^session-setup: CINODE_VLAN_RANGE is '100': expected FIRST-LAST, like 100-999$/],
      ['session-setup', { CINODE_VLAN_RANGE: '100-5000' }, /^session-setup: the last VLAN id of CINODE_VLAN_RANGE is '5000': expected a whole number from 100 to 4094$/],
      ['node-attach', { CINODE_SESSION_DATA: data, CINODE_HOSTNAME: 'n9.example' }, /^node-attach: n9.example has no line in \S+ports \(CINODE_BRIDGE_PORTS\)/],
      ['node-attach', { CINODE_SESSION_DATA: data, CINODE_HOSTNAME: 'n1.example', CINODE_BRIDGE_PORTS: '' }, /^node-attach: CINODE_BRIDGE_PORTS is not set/],
      ['node-attach', { CINODE_SESSION_DATA: '{"vlan":102}', CINODE_HOSTNAME: 'n1.example' }, /^node-attach: CINODE_SESSION_DATA says VLAN 102, but \S+ gives session s1 VLAN 100$/],
      ['node-detach', { CINODE_SESSION_DATA: data }, /^node-detach: CINODE_HOSTNAME is not set/],
    ];
    for (const [name, extra, reason] of failures) {
      const result = await hook(name, name === 'session-setup' ? 'other' : 's1', extra);
      expect({ name, code: result.code, reason: lastLine(result.stderr) }).toEqual({ name, code: 1, reason: expect.stringMatching(reason) });
    }
    const unknown = await hook('node-attach', 's9', { CINODE_SESSION_DATA: '{}', CINODE_HOSTNAME: 'n1.example' });
    expect(lastLine(unknown.stderr)).toBe('node-attach: session s9 has no VLAN (did session-setup run?)');
  });
});

describe('the isolation examples\' shell', () => {
  const scripts = ['shared/common.sh', 'netns/netns.sh', 'bridge-vlan/bridge-vlan.sh', ...['netns', 'bridge-vlan'].flatMap((dir) => ['session-setup', 'session-teardown', 'node-attach', 'node-detach'].map((hook) => `${dir}/${hook}`))];
  const shellcheck = spawnSync('shellcheck', ['--version'], { encoding: 'utf8' });

  if (shellcheck.status === 0 || process.env.CI === 'true') {
    test('passes shellcheck, sourced files followed (CI installs shellcheck, .ci/run)', () => {
      const result = spawnSync('shellcheck', ['-x', ...scripts], { cwd: ISOLATION_EXAMPLES, encoding: 'utf8' });
      expect({ status: result.status, error: result.error?.message, findings: result.stdout }).toEqual({ status: 0, error: undefined, findings: '' });
    });
  } else {
    test.skip('passes shellcheck (not installed: apt-get install shellcheck; CI installs it)', () => {});
  }
});
