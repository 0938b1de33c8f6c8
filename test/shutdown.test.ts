/**
 * A shutdown stops the ssh runs still in flight: a node whose keys are being taken off when the
 * server closes does not keep an ssh process (and its connection) alive after the server is gone.
 * The node's keys go on through the test sshd (test/support/sshd.ts); a reload then points the
 * node at a listener that accepts connections and never answers, so the removal hangs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configYaml, KEYS, removeDir, startTestServer, waitFor, type ConfigSpec, type TestServer } from './support/server.js';
import { describeWithSshd, startSshd, type TestSshd } from './support/sshd.js';

const NODE = 'up1.ssh.test';

/** A TCP listener that takes connections and says nothing: an ssh to it waits for the banner. */
async function silentListener(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.resume(); // reads (and drops) what comes, so the peer's end is seen
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, sockets };
}

describeWithSshd('shutdown', () => {
  let keysDir: string;
  let alphaPublic: string;
  let sshd: TestSshd;
  let server: TestServer | undefined;
  let listener: Awaited<ReturnType<typeof silentListener>> | undefined;

  beforeAll(() => {
    keysDir = mkdtempSync(join(tmpdir(), 'cinode-alpha-key-'));
    const made = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ci@alpha', '-f', join(keysDir, 'alpha')], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`ssh-keygen: ${made.stderr}`);
    alphaPublic = readFileSync(join(keysDir, 'alpha.pub'), 'utf8').trim();
  });

  afterAll(() => rmSync(keysDir, { recursive: true, force: true }));

  beforeEach(async () => {
    sshd = await startSshd();
  });

  afterEach(async () => {
    if (server) {
      await server.close();
      removeDir(server.dir);
      server = undefined;
    }
    if (listener) {
      for (const socket of listener.sockets) socket.destroy();
      listener.server.close();
      listener = undefined;
    }
    await sshd.stop();
  });

  function spec(sshPort: number): ConfigSpec {
    return {
      topYaml: [
        'contextualize:',
        `  user: ${sshd.user}`,
        `  private-key: ${JSON.stringify(sshd.privateKey)}`,
        `  authorized-keys: ${JSON.stringify(sshd.authorizedKeys)}`,
        '  known-hosts: ignore',
        // Long, so that only a kill ends the hanging removal while the test looks.
        '  timeout: 2m',
      ],
      projects: { alpha: { 'ssh-keys': [alphaPublic] } },
      pools: [{ name: 'lab', ver: '7', nodes: 0, nodeList: [{ hostname: NODE, ip: '127.0.0.1', 'ssh-port': sshPort }] }],
    };
  }

  test('an ssh run in flight is killed when the server closes', async () => {
    server = await startTestServer(spec(sshd.port));
    const got = await server.get('/Node/get', { key: KEYS.alpha });
    expect(got.status).toBe(200);
    expect(readFileSync(sshd.authorizedKeysPath, 'utf8')).toContain(alphaPublic);

    // The node now answers on a port that never speaks: taking the keys off hangs.
    listener = await silentListener();
    writeFileSync(server.configPath, configYaml(server.dir, spec(listener.port)));
    await server.server.reload();
    const { ssid } = got.json as { ssid: string };
    expect((await server.get('/Node/done', { key: KEYS.alpha, ssid })).text).toBe('"Done"');
    const sockets = listener.sockets;
    await waitFor('the removal to connect', () => sockets.size > 0, 10_000);

    // close() waits its grace for the reclaim, then kills the ssh: its connection goes with it,
    // long before ssh's own connect timeout (a minute) would end it.
    await server.close();
    const closed = Date.now();
    await waitFor('the ssh connection to close', () => sockets.size === 0, 20_000);
    expect(Date.now() - closed).toBeLessThan(20_000);
    removeDir(server.dir);
    server = undefined;
  });
});
