/**
 * Contextualization against a real sshd on 127.0.0.1 (test/support/sshd.ts): the project's keys
 * go into a marked block of the test user's authorized_keys and come out again, the rest of the
 * file untouched; connection, host key and timeout failures come back as reasons.
 */
import { execFile, spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BEGIN_MARKER, END_MARKER, installKeys, removeKeys, sshArgv, type SshSettings, type SshTarget } from '../src/machines/ssh.js';
import { freePort } from './support/process.js';
import { describeWithSshd, startSshd, type TestSshd } from './support/sshd.js';

const block = (keys: string[]): string => [BEGIN_MARKER, ...keys, END_MARKER].map((line) => `${line}\n`).join('');

describe('the ssh command line', () => {
  const settings: SshSettings = { user: 'root', privateKey: '/etc/cinode/id', port: 22, authorizedKeys: '.ssh/authorized_keys', knownHosts: 'ignore', timeoutMs: 30_000 };

  test('connects to the IP when known, else the host name, on the node port when it has one', () => {
    const withPort = sshArgv(settings, { hostname: 'n1.example', ip: '192.0.2.7', sshPort: 2222 });
    expect(withPort.slice(-3)).toEqual(['--', '192.0.2.7', 'sh -s']);
    expect(withPort[withPort.indexOf('-p') + 1]).toBe('2222');
    const argv = sshArgv(settings, { hostname: '-oProxyCommand=x', ip: null, sshPort: null });
    expect(argv.slice(-3)).toEqual(['--', '-oProxyCommand=x', 'sh -s']);
    expect(argv.slice(0, 3)).toEqual(['ssh', '-F', '/dev/null']);
    expect(argv[argv.indexOf('-p') + 1]).toBe('22');
    expect(argv).toEqual(expect.arrayContaining(['StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'BatchMode=yes', 'ConnectTimeout=15']));
  });

  test('checks host keys strictly against a known_hosts file; connects within at least a second', () => {
    const argv = sshArgv({ ...settings, knownHosts: '/etc/cinode/known_hosts', timeoutMs: 500 }, { hostname: 'n1', ip: null, sshPort: null });
    expect(argv).toEqual(expect.arrayContaining(['StrictHostKeyChecking=yes', 'UserKnownHostsFile=/etc/cinode/known_hosts', 'ConnectTimeout=1']));
  });

  test('refuses a key that is not a single line, without connecting', async () => {
    const result = await installKeys(settings, { hostname: 'n1', ip: null, sshPort: 1 }, ['ssh-ed25519 AAAA a', `ssh-ed25519 AAAA b\n${END_MARKER}`]);
    expect(result).toMatchObject({ ok: false, reason: 'contextualize: key 2 is not a single-line public key' });
  });
});

describeWithSshd('contextualization over SSH', () => {
  let sshd: TestSshd;
  let settings: SshSettings;
  let target: SshTarget;
  let keysDir: string;
  /** Two real project keys: [private key path, public key line]. */
  let alice: [string, string];
  let bob: [string, string];
  /** A comment sh would expand or choke on if the key were not quoted. */
  const NASTY_COMMENT = `bob's "key" $HOME \`id\` $(whoami) \\ ; & | * ~ !`;

  function projectKey(name: string, comment: string): [string, string] {
    const path = join(keysDir, name);
    const result = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`ssh-keygen: ${result.stderr}`);
    return [path, readFileSync(`${path}.pub`, 'utf8').trim()];
  }

  function logsIn(privateKey: string): Promise<boolean> {
    const argv = sshArgv({ ...settings, privateKey }, target).slice(1, -1);
    return new Promise((resolve) => execFile('ssh', [...argv, 'true'], { timeout: 10_000 }, (error) => resolve(error === null)));
  }

  const authorizedKeys = (): string => readFileSync(sshd.authorizedKeysPath, 'utf8');
  /** Another file in this server's own folder: [as the settings take it, absolute]. */
  const besideKeys = (name: string): [string, string] => [join(dirname(sshd.authorizedKeys), name), join(dirname(sshd.authorizedKeysPath), name)];

  beforeAll(async () => {
    sshd = await startSshd();
    keysDir = mkdtempSync(join(tmpdir(), 'cinode-project-keys-'));
    alice = projectKey('alice', 'alice@ci');
    bob = projectKey('bob', NASTY_COMMENT);
    settings = { user: sshd.user, privateKey: sshd.privateKey, port: 22, authorizedKeys: sshd.authorizedKeys, knownHosts: 'ignore', timeoutMs: 10_000 };
    target = { hostname: 'node-1.invalid', ip: '127.0.0.1', sshPort: sshd.port };
  });

  afterAll(async () => {
    await sshd?.stop();
    if (keysDir) rmSync(keysDir, { recursive: true, force: true });
  });

  beforeEach(() => {
    writeFileSync(sshd.authorizedKeysPath, `${sshd.operatorKeyLine}\n`);
  });

  test('install adds every key in the block and keeps the operator key; the keys then log in', async () => {
    expect(await logsIn(alice[0])).toBe(false);
    const running = new Set<() => void>();
    const result = await installKeys(settings, target, [alice[1], bob[1]], running);
    expect(result).toMatchObject({ ok: true, reason: null });
    expect(running.size).toBe(0);
    expect(authorizedKeys()).toBe(`${block([alice[1], bob[1]])}${sshd.operatorKeyLine}\n`);
    expect(await logsIn(alice[0])).toBe(true);
    expect(await logsIn(bob[0])).toBe(true);
    expect(await logsIn(sshd.privateKey)).toBe(true);
  });

  test('a key comment with quotes, $, backticks and backslashes arrives verbatim', async () => {
    expect(bob[1].endsWith(` ${NASTY_COMMENT}`)).toBe(true);
    expect(await installKeys(settings, target, [bob[1]])).toMatchObject({ ok: true });
    expect(authorizedKeys().split('\n')).toContain(bob[1]);
  });

  test('a second install replaces the block', async () => {
    expect(await installKeys(settings, target, [alice[1], bob[1]])).toMatchObject({ ok: true });
    expect(await installKeys(settings, target, [bob[1]])).toMatchObject({ ok: true });
    expect(authorizedKeys()).toBe(`${block([bob[1]])}${sshd.operatorKeyLine}\n`);
    expect(await logsIn(alice[0])).toBe(false);
  });

  test('remove takes the block away and leaves the file exactly as it was before install', async () => {
    // Blank line, comment, a line that looks like the end marker, no final newline: all kept as is.
    const before = `${sshd.operatorKeyLine}\n\n# the operator's note\n${END_MARKER}\r\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOtherOth other`;
    writeFileSync(sshd.authorizedKeysPath, before);
    const mode = statSync(sshd.authorizedKeysPath).mode;
    expect(await installKeys(settings, target, [alice[1]])).toMatchObject({ ok: true });
    expect(authorizedKeys()).toBe(`${block([alice[1]])}${before}`);
    expect(statSync(sshd.authorizedKeysPath).mode).toBe(mode);

    const result = await removeKeys(settings, target);
    expect(result).toMatchObject({ ok: true, reason: null });
    expect(authorizedKeys()).toBe(before);
    expect(await logsIn(alice[0])).toBe(false);
    expect(await logsIn(sshd.privateKey)).toBe(true);
  });

  test('remove is ok when there is no block, or no file', async () => {
    expect(await removeKeys(settings, target)).toMatchObject({ ok: true, reason: null });
    expect(authorizedKeys()).toBe(`${sshd.operatorKeyLine}\n`);

    const [relative, absent] = besideKeys('absent');
    expect(await removeKeys({ ...settings, authorizedKeys: relative }, target)).toMatchObject({ ok: true, reason: null });
    expect(existsSync(absent)).toBe(false);
  });

  test('install creates the directories and the file, private to the user', async () => {
    const top = join(sshd.home, 'cinode-test-dir');
    rmSync(top, { recursive: true, force: true });
    try {
      // sshPort null: the settings' port, first a wrong one.
      const result = await installKeys({ ...settings, port: await freePort(), authorizedKeys: 'cinode-test-dir/sub/keys' }, { hostname: '127.0.0.1', ip: null, sshPort: null }, [alice[1]]);
      expect(result.ok).toBe(false);
      expect(await installKeys({ ...settings, port: sshd.port, authorizedKeys: 'cinode-test-dir/sub/keys' }, { hostname: '127.0.0.1', ip: null, sshPort: null }, [alice[1]])).toMatchObject({ ok: true });
      expect(readFileSync(join(top, 'sub', 'keys'), 'utf8')).toBe(block([alice[1]]));
      expect(statSync(top).mode & 0o777).toBe(0o700);
      expect(statSync(join(top, 'sub')).mode & 0o777).toBe(0o700);
      const file = statSync(join(top, 'sub', 'keys'));
      expect(file.mode & 0o777).toBe(0o600);
      expect(file.uid).toBe(statSync(sshd.home).uid);
    } finally {
      rmSync(top, { recursive: true, force: true });
    }
  });

  test('sshd down: a quick failure naming the step and the connection problem', async () => {
    const port = await freePort();
    const started = Date.now();
    const install = await installKeys(settings, { ...target, sshPort: port }, [alice[1]]);
    expect(install.ok).toBe(false);
    expect(install.reason).toBe(`contextualize exited with 255: ssh: connect to host 127.0.0.1 port ${port}: Connection refused`);
    const remove = await removeKeys(settings, { ...target, sshPort: port });
    expect(remove.reason).toMatch(/^decontextualize exited with 255: .*Connection refused$/);
    // Refused at once, not waited out: two runs in well under one 10 s timeout, even on a loaded machine.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  describe('host keys', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'cinode-known-hosts-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const knownHosts = (name: string, content: string): string => {
      const path = join(dir, name);
      writeFileSync(path, content);
      return path;
    };

    test('a known_hosts file without the host key: host key verification fails', async () => {
      const result = await installKeys({ ...settings, knownHosts: knownHosts('empty', '') }, target, [alice[1]]);
      expect(result.ok).toBe(false);
      expect(result.reason).toBe('contextualize exited with 255: Host key verification failed.');
      expect(authorizedKeys()).toBe(`${sshd.operatorKeyLine}\n`);
    });

    test('a known_hosts file with another key for the host: host key verification fails', async () => {
      const other = join(dir, 'other');
      spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
      const otherKey = readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
      const result = await removeKeys({ ...settings, knownHosts: knownHosts('wrong', `[127.0.0.1]:${sshd.port} ${otherKey}\n`) }, target);
      expect(result.ok).toBe(false);
      expect(result.reason).toBe('decontextualize exited with 255: Host key verification failed.');
    });

    test('a known_hosts file with the host key: connects', async () => {
      const result = await installKeys({ ...settings, knownHosts: knownHosts('right', `${sshd.hostKeyLine}\n`) }, target, [alice[1]]);
      expect(result).toMatchObject({ ok: true, reason: null });
    });
  });

  describe('timeouts', () => {
    let silent: Server;
    const sockets = new Set<Socket>();
    beforeAll(async () => {
      silent = createServer((socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });

    /** A FIFO in place of the keys file: the remote grep waits on it for ever. */
    const FIFO = (): string => besideKeys('hang')[0];
    const fifoPath = (): string => besideKeys('hang')[1];
    beforeEach(() => {
      rmSync(fifoPath(), { force: true });
      const made = spawnSync('mkfifo', [fifoPath()], { encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr}`);
    });
    afterEach(() => {
      // Lets the remote reader, left behind by the killed ssh, see end of file and finish.
      try {
        closeSync(openSync(fifoPath(), constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader left
      }
      rmSync(fifoPath(), { force: true });
    });

    test('a host that accepts and never speaks: a failure within the timeout', async () => {
      const port = (silent.address() as { port: number }).port;
      const started = Date.now();
      const result = await installKeys({ ...settings, timeoutMs: 1_500 }, { ...target, sshPort: port }, [alice[1]]);
      // Ended by the 1.5 s timeout (the reason says so), where it would hang: room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.ok).toBe(false);
      expect(result.reason).toMatch(/^contextualize .*timed out/);
    });

    test('a remote command that hangs after login is killed at the timeout', async () => {
      const started = Date.now();
      const result = await removeKeys({ ...settings, authorizedKeys: FIFO(), timeoutMs: 1_500 }, target);
      // Killed at the 1.5 s timeout (the reason says so), where it would hang: room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result).toMatchObject({ ok: false, reason: 'decontextualize timed out after 2s and was killed' });
    });

    test('a shutdown kills a command in flight through `running`', async () => {
      const running = new Set<() => void>();
      const pending = removeKeys({ ...settings, authorizedKeys: FIFO() }, target, running);
      expect(running.size).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const kill of running) kill();
      const result = await pending;
      expect(result).toMatchObject({ ok: false, reason: 'decontextualize was killed by SIGKILL' });
      expect(running.size).toBe(0);
    });
  });
});
