/**
 * Test support: a real OpenSSH server on 127.0.0.1, for contextualization tests that log in the
 * way cinode logs in to a node. A local test user stands in for the node's root (default
 * `cinode-node`, or CINODE_TEST_SSH_USER); it is created when missing, which needs root, as the
 * tests run here and in CI. Each server has its own authorized_keys file in a fresh folder of the
 * user's home, holding the "operator" key the tests log in with: jest runs test files in parallel,
 * and servers sharing one file would take each other's keys away.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { freePort } from './process.js';

const SSHD = '/usr/sbin/sshd';
const DEFAULT_USER = 'cinode-node';
const START_TIMEOUT_MS = 10_000;
const START_ATTEMPTS = 3;
const INSTALL_HINT = 'install OpenSSH (Debian/Ubuntu: apt-get install openssh-server) and run the tests as root';

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', command], { stdio: 'ignore' }).status === 0;
}

/** Whether this machine can run the test sshd: the OpenSSH binaries, and root to act as the test user. */
export function sshdAvailable(): boolean {
  return existsSync(SSHD) && onPath('ssh') && onPath('ssh-keygen') && process.getuid?.() === 0;
}

/**
 * Declares a block of tests that need the test sshd. Without it they fail in CI (where nothing
 * may skip) and are skipped elsewhere, saying how to get it.
 */
export function describeWithSshd(name: string, body: () => void): void {
  if (sshdAvailable()) {
    describe(name, body);
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      test('an OpenSSH server is available (CI must run these tests)', () => {
        throw new Error(`${SSHD}, ssh and ssh-keygen are needed, as root: ${INSTALL_HINT}`);
      });
    });
  } else {
    console.warn(`NOT RUN: "${name}" needs ${SSHD}, ssh and ssh-keygen, as root: ${INSTALL_HINT}`);
    describe.skip(name, body);
  }
}

export interface TestSshd {
  port: number;
  user: string;
  home: string;
  /** The "operator" key that logs in as `user`. */
  privateKey: string;
  /** This server's authorized_keys, relative to `home`, as cinode's `authorized-keys` setting takes it. */
  authorizedKeys: string;
  /** The same file as an absolute path, for the tests to read. */
  authorizedKeysPath: string;
  /** The public key line of `privateKey`, as written to authorized_keys. */
  operatorKeyLine: string;
  /** A known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 ...`. */
  hostKeyLine: string;
  stop(): Promise<void>;
}

function run(file: string, args: string[]): string {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: 30_000 });
  if (result.status !== 0) {
    throw new Error(`${file} ${args.join(' ')} failed: ${result.stderr?.trim() || result.error?.message || `exit ${result.status}`}`);
  }
  return result.stdout;
}

interface Account {
  uid: number;
  gid: number;
  home: string;
}

function account(user: string): Account | null {
  const result = spawnSync('getent', ['passwd', user], { encoding: 'utf8' });
  if (result.status !== 0) return null;
  const fields = result.stdout.trim().split(':');
  return { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? '' };
}

/** The test user, created when missing. */
function ensureUser(user: string): Account {
  const existing = account(user);
  if (existing) return existing;
  run('useradd', ['-m', '-s', '/bin/sh', user]);
  // useradd leaves the account locked ('!'), and sshd refuses a locked account even for a key;
  // '*' unlocks it while no password can match.
  run('usermod', ['-p', '*', user]);
  const created = account(user);
  if (!created) throw new Error(`useradd ${user} succeeded but getent passwd ${user} finds nothing`);
  return created;
}

/** Whether `ssh ... true` logs in with the operator key. */
function canLogIn(port: number, user: string, privateKey: string, knownHosts: string): Promise<boolean> {
  const args = [
    '-F', '/dev/null', '-i', privateKey, '-p', String(port), '-l', user, '-T',
    '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=2', '-o', 'LogLevel=ERROR',
    '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '--', '127.0.0.1', 'true',
  ];
  return new Promise((resolve) => {
    execFile('ssh', args, { timeout: 5_000 }, (error) => resolve(error === null));
  });
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGKILL');
  });
}

/** Starts sshd on 127.0.0.1 with a fresh host key and operator key; resolves once a login works. */
export async function startSshd(options: { user?: string } = {}): Promise<TestSshd> {
  const user = options.user ?? process.env.CINODE_TEST_SSH_USER ?? DEFAULT_USER;
  // Tests write into the user's home and log in as the user: never as the real root.
  if (user === 'root') throw new Error('the test sshd user must not be root: the tests write into its home');
  if (!sshdAvailable()) throw new Error(`no test sshd: ${INSTALL_HINT}`);
  const { uid, gid, home } = ensureUser(user);

  const made: string[] = [];
  const removeDirs = () => {
    for (const path of made) rmSync(path, { recursive: true, force: true });
  };
  try {
    const dir = mkdtempSync(join(tmpdir(), 'cinode-sshd-'));
    made.push(dir);
    // Private to the user, as ~/.ssh would be; the remote script writes its new file next to the old one.
    const keysDir = mkdtempSync(join(home, '.cinode-sshd-'));
    made.push(keysDir);
    const hostKey = join(dir, 'host_ed25519');
    const privateKey = join(dir, 'operator_ed25519');
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cinode-test-host', '-f', hostKey]);
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cinode-test-operator', '-f', privateKey]);
    const operatorKeyLine = readFileSync(`${privateKey}.pub`, 'utf8').trim();
    const hostPublic = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');

    const authorizedKeys = `${basename(keysDir)}/authorized_keys`;
    const authorizedKeysPath = join(keysDir, 'authorized_keys');
    chmodSync(keysDir, 0o700);
    chownSync(keysDir, uid, gid);
    writeFileSync(authorizedKeysPath, `${operatorKeyLine}\n`, { mode: 0o600 });
    chownSync(authorizedKeysPath, uid, gid);

    // sshd's privilege separation directory; the package's service makes it, a bare sshd does not.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

    let lastError = '';
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const port = await freePort();
      const hostKeyLine = `[127.0.0.1]:${port} ${hostPublic}`;
      const knownHosts = join(dir, 'known_hosts');
      writeFileSync(knownHosts, `${hostKeyLine}\n`);
      const config = join(dir, 'sshd_config');
      writeFileSync(config, sshdConfig({ dir, port, hostKey, user, authorizedKeys, noPenalties: penaltiesSupported(dir) }));

      const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        if (log.length < 64 * 1024) log += chunk.toString();
      });
      child.on('error', (error) => (log += `\n${error.message}`));
      const stop = async () => {
        await stopProcess(child);
        removeDirs();
      };

      const deadline = Date.now() + START_TIMEOUT_MS;
      while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
        if (await canLogIn(port, user, privateKey, knownHosts)) {
          return { port, user, home, privateKey, authorizedKeys, authorizedKeysPath, operatorKeyLine, hostKeyLine, stop };
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await stopProcess(child);
      lastError = `sshd on port ${port} ${child.exitCode === null ? 'accepted no login' : `exited with ${child.exitCode}`}: ${log.trim().slice(-2000)}`;
    }
    throw new Error(`the test sshd did not start after ${START_ATTEMPTS} attempts (user ${user}); last: ${lastError}`);
  } catch (error) {
    removeDirs();
    throw error;
  }
}

let penalties: boolean | undefined;

/**
 * Whether this sshd knows PerSourcePenalties (OpenSSH 9.8 and later). Where it does, it is turned
 * off: tests that fail logins on purpose would otherwise get 127.0.0.1 refused for a while.
 */
function penaltiesSupported(dir: string): boolean {
  if (penalties === undefined) {
    const probe = join(dir, 'sshd_config.probe');
    writeFileSync(probe, 'PerSourcePenalties no\n');
    penalties = spawnSync(SSHD, ['-T', '-f', probe, '-o', `HostKey=${join(dir, 'host_ed25519')}`], { stdio: 'ignore' }).status === 0;
    rmSync(probe, { force: true });
  }
  return penalties;
}

interface SshdOptions {
  dir: string;
  port: number;
  hostKey: string;
  user: string;
  /** Relative to the user's home. */
  authorizedKeys: string;
  noPenalties: boolean;
}

function sshdConfig({ dir, port, hostKey, user, authorizedKeys, noPenalties }: SshdOptions): string {
  return [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AllowUsers ${user}`,
    'PermitRootLogin no',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    `AuthorizedKeysFile ${authorizedKeys}`,
    // The test user's home may be looser than sshd wants (a container's defaults).
    'StrictModes no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    ...(noPenalties ? ['PerSourcePenalties no'] : []),
    '',
  ].join('\n');
}
