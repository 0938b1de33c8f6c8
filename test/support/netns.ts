/**
 * Test support: a lab of test "nodes" made of real network namespaces, for the isolation hook
 * examples (examples/isolation/). Each node is a namespace `<prefix>-n-<name>` whose `eth0` is one
 * end of a veth pair; the other end, `n-<name>`, is the node's link and starts in the lab's
 * provisioning namespace `<prefix>-prov` (the naming convention of examples/isolation/netns/netns.sh,
 * with CINODE_NETNS_PREFIX set to the lab's prefix). Nothing is made in the machine's own
 * namespace, and every name holds the prefix (`cnt<pid>...`), so that a lab cleans up only what it
 * made and a leak check finds what it left.
 *
 * Needs root and the `ip` tool (iproute2); runs in CI, which runs as root.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './process.js';

const run = promisify(execFile);

export const ISOLATION_EXAMPLES = join(REPO_ROOT, 'examples', 'isolation');

const INSTALL_HINT = 'run the tests as root on a Linux kernel with network namespaces and veth (CI does), with iproute2 installed';

let labCount = 0;

/** Whether this machine can make network namespaces and veth pairs: tried once, for real. */
export function netnsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = `cnt${process.pid}-probe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
    execFileSync('ip', ['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    try {
      execFileSync('ip', ['netns', 'delete', probe], { stdio: 'ignore' });
    } catch {
      // never made: nothing to delete
    }
  }
}

/**
 * Declares a block of tests that need network namespaces. Without them they fail in CI (where
 * nothing may skip) and are skipped elsewhere, saying why.
 */
export function describeWithNetns(name: string, body: () => void): void {
  if (netnsAvailable()) {
    describe(name, body);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      test('network namespaces and veth pairs can be made (CI must run these tests)', () => {
        throw new Error(`\`ip netns add\` and a veth pair failed: ${INSTALL_HINT}`);
      });
    });
  } else {
    console.warn(`NOT RUN: "${name}" needs network namespaces and veth pairs: ${INSTALL_HINT}`);
    describe.skip(name, body);
  }
}

export interface TestNode {
  name: string;
  /** What cinode would pass as CINODE_HOSTNAME: the first label is the node's name. */
  hostname: string;
  netns: string;
  link: string;
}

export interface Connection {
  ok: boolean;
  /** The server's reply when ok, else the error (ENETUNREACH, ETIMEDOUT...). */
  detail: string;
}

/** A TCP server in a node's namespace that answers every connection with the node's name. */
export interface Listener {
  port: number;
  close(): Promise<void>;
}

export class NetnsLab {
  /** In every namespace and link name the lab makes: `cnt<pid>` and a per-process count. */
  readonly prefix: string;
  readonly provisioning: string;
  /** The hooks' state folder (CINODE_ISOLATION_STATE). */
  readonly stateDir: string;
  readonly nodes = new Map<string, TestNode>();
  private readonly listeners = new Set<Listener>();

  constructor() {
    labCount += 1;
    this.prefix = `cnt${process.pid}${String.fromCharCode(96 + labCount)}`;
    this.provisioning = `${this.prefix}-prov`;
    this.stateDir = mkdtempSync(join(tmpdir(), 'cinode-isolation-'));
  }

  /** The settings the netns hooks need to work in this lab (merge into their environment). */
  get hookEnv(): Record<string, string> {
    return { CINODE_NETNS_PREFIX: this.prefix, CINODE_ISOLATION_STATE: this.stateDir };
  }

  async start(): Promise<this> {
    await ip('netns', 'add', this.provisioning);
    return this;
  }

  /** Makes a node: its namespace, and the veth pair between its eth0 and its link in provisioning. */
  async addNode(name: string): Promise<TestNode> {
    const node: TestNode = { name, hostname: `${name}.${this.prefix}.test`, netns: `${this.prefix}-n-${name}`, link: `n-${name}` };
    await ip('netns', 'add', node.netns);
    this.nodes.set(name, node);
    await ip('-n', node.netns, 'link', 'set', 'lo', 'up');
    await ip('-n', node.netns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', node.link, 'netns', this.provisioning);
    await ip('-n', this.provisioning, 'link', 'set', node.link, 'up');
    return node;
  }

  node(name: string): TestNode {
    const node = this.nodes.get(name);
    if (!node) throw new Error(`the lab has no node ${name}`);
    return node;
  }

  /** Runs a command in a namespace; rejects with its stderr when it fails. */
  async exec(netns: string, argv: string[]): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', netns, ...argv]);
    return stdout;
  }

  /** The node's IPv4 addresses on eth0, without prefix length. */
  async addresses(name: string): Promise<string[]> {
    const out = await ip('-n', this.node(name).netns, '-4', '-o', 'addr', 'show', 'dev', 'eth0');
    return out
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => /\binet (\S+)\//.exec(line)?.[1] ?? `(unparsed: ${line})`);
  }

  /** The node's one address in a session's subnet; fails when it has none or several. */
  async address(name: string): Promise<string> {
    const addresses = await this.addresses(name);
    const [only] = addresses;
    if (only === undefined || addresses.length !== 1) throw new Error(`node ${name} has ${addresses.length} IPv4 addresses on eth0, expected 1: ${addresses.join(', ')}`);
    return only;
  }

  /** The namespace the node's link is in now (`ip -o link` names it from the node's side). */
  async linkNamespace(name: string): Promise<string> {
    const out = await ip('-n', this.node(name).netns, '-o', 'link', 'show', 'dev', 'eth0');
    const peer = /link-netns (\S+)/.exec(out)?.[1];
    if (peer === undefined) throw new Error(`the peer namespace of ${name}'s eth0 is not shown: ${out}`);
    return peer;
  }

  /** Starts a TCP server on 0.0.0.0:port in the node, answering with the node's name. */
  async listen(name: string, port = 7000): Promise<Listener> {
    const script = `require('net').createServer((s) => s.end(${JSON.stringify(name)})).listen(${port}, '0.0.0.0', () => console.log('listening'))`;
    const child = spawn('ip', ['netns', 'exec', this.node(name).netns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`the TCP server in ${name} exited (${code}): ${stderr}`)));
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const listener: Listener = {
      port,
      close: async () => {
        this.listeners.delete(listener);
        child.kill('SIGKILL');
        await exited;
      },
    };
    this.listeners.add(listener);
    return listener;
  }

  /** One TCP connection attempt from a node, given up after timeoutMs. */
  async connect(from: string, address: string, port = 7000, timeoutMs = 2_000): Promise<Connection> {
    const script = [
      `const s = require('net').connect({ host: ${JSON.stringify(address)}, port: ${port}, timeout: ${timeoutMs} });`,
      `let reply = ''; s.on('data', (d) => (reply += d));`,
      `s.on('end', () => { console.log('ok:' + reply); process.exit(0); });`,
      `s.on('timeout', () => { console.log('fail:ETIMEDOUT'); process.exit(0); });`,
      `s.on('error', (e) => { console.log('fail:' + (e.code || e.message)); process.exit(0); });`,
    ].join('\n');
    const out = (await this.exec(this.node(from).netns, [process.execPath, '-e', script])).trim();
    return { ok: out.startsWith('ok:'), detail: out.replace(/^(ok|fail):/, '') };
  }

  /** Waits until a connection from `from` to address:port gets the reply `expected` (the server's name). */
  async waitReachable(from: string, address: string, expected: string, port = 7000, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: Connection = { ok: false, detail: 'not tried' };
    while (Date.now() < deadline) {
      last = await this.connect(from, address, port);
      if (last.ok && last.detail === expected) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${from} could not reach ${expected} at ${address}:${port} within ${timeoutMs} ms: ${last.detail}`);
  }

  /** The namespaces whose name starts with the lab's prefix (nodes, provisioning, sessions). */
  async namespaces(): Promise<string[]> {
    return (await ip('netns', 'list'))
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => name.startsWith(this.prefix));
  }

  /** What the lab's prefix still names: namespaces (all of them) and links in the machine's own namespace. */
  async leftovers(): Promise<string[]> {
    const namespaces = await this.namespaces();
    const links = (await ip('-o', 'link', 'show'))
      .split('\n')
      .map((line) => line.split(': ')[1]?.split('@')[0] ?? '')
      .filter((name) => name.includes(this.prefix));
    return [...namespaces.map((name) => `namespace ${name}`), ...links.map((name) => `link ${name}`)];
  }

  /**
   * Deletes everything the lab made, also after a failed test: its servers, every namespace with
   * its prefix (nodes, provisioning, and session namespaces the hooks made), and its state folder.
   * Deleting a namespace deletes the veth ends in it, and with them their peers.
   */
  async cleanup(): Promise<void> {
    await Promise.all([...this.listeners].map((listener) => listener.close()));
    for (const name of await this.namespaces()) await ip('netns', 'delete', name);
    this.nodes.clear();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}

async function ip(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args);
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? String(error);
    throw new Error(`ip ${args.join(' ')} failed: ${stderr.trim()}`);
  }
}

/** The outcome of one hook run. */
export interface HookRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs an example hook the way cinode does: its argv without a shell, cinode's environment plus
 * the variables of docs/api.md's isolation section.
 */
export async function runHook(path: string, env: Record<string, string>): Promise<HookRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The last line of a hook's stderr: what cinode shows as the reason of a failure. */
export function lastLine(text: string): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  return lines[lines.length - 1] ?? '';
}
