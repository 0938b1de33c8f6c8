/**
 * What an operator meets first: `cinode config check`, the configuration found without
 * --config, --log-level, and the example systemd unit (checked by `systemd-analyze verify`).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfigPath } from '../src/cli/config-path.js';
import { CLI_PATH, REPO_ROOT, requireBuiltLib, runCli } from './support/process.js';
import { configYaml, removeDir, waitFor } from './support/server.js';

let dir: string;

beforeAll(() => requireBuiltLib());
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cinode-ops-'));
});
afterEach(() => removeDir(dir));

describe('cinode config check', () => {
  test('a valid file: exit 0 and one line of pools, nodes and projects; nothing is opened', async () => {
    const path = join(dir, 'cinode.yaml');
    writeFileSync(path, configYaml(dir, { pools: [{ name: 'a', nodes: 2 }, { name: 'b', ver: '9', nodes: 1 }] }));
    const run = await runCli(['config', 'check', path], {});
    expect(run).toEqual({ code: 0, stdout: `${path}: valid: 2 pools, 3 nodes, 3 projects\n`, stderr: '' });
    const example = await runCli(['config', 'check', 'examples/cinode.yaml'], {});
    expect(example).toEqual({ code: 0, stdout: 'examples/cinode.yaml: valid: 3 pools, 10 nodes, 1 project\n', stderr: '' });
  });

  test('a file with problems: every problem, one a line with its line number, exit 2', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, ['listen: 127.0.0.1:0', 'reaper-interval: soon', 'projects:', '  - {name: demo, key: short}', 'pools: []'].join('\n'));
    const run = await runCli(['config', 'check', path], {});
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trim().split('\n');
    expect(lines).toEqual([expect.stringMatching(/bad\.yaml:2: reaper-interval/), expect.stringMatching(/bad\.yaml:4: projects\[0\]\.key/)]);
    expect(run.stderr).not.toContain('short');
  });

  test('found through CINODE_CONFIG without an argument; none at all says where it looked', async () => {
    const path = join(dir, 'from-env.yaml');
    writeFileSync(path, configYaml(dir, { pools: [{ name: 'a', nodes: 1 }] }));
    const run = await runCli(['config', 'check'], { CINODE_CONFIG: path });
    expect(run).toMatchObject({ code: 0, stdout: `${path}: valid: 1 pool, 1 node, 3 projects\n` });
    if (!existsSync('/etc/cinode/cinode.yaml')) {
      const none = await runCli(['config', 'check'], { CINODE_CONFIG: undefined });
      expect(none).toEqual({
        code: 2,
        stdout: '',
        stderr: 'cinode: no configuration file: give --config FILE, set CINODE_CONFIG, or put it at /etc/cinode/cinode.yaml\n',
      });
    }
  });

  test('the order: --config, then CINODE_CONFIG, then the default path when it exists', () => {
    const fallback = join(dir, 'etc-cinode.yaml');
    expect(() => resolveConfigPath(undefined, {}, fallback)).toThrow(`put it at ${fallback}`);
    writeFileSync(fallback, '');
    expect(resolveConfigPath(undefined, {}, fallback)).toBe(fallback);
    expect(resolveConfigPath(undefined, { CINODE_CONFIG: '/from/env.yaml' }, fallback)).toBe('/from/env.yaml');
    expect(resolveConfigPath('/given.yaml', { CINODE_CONFIG: '/from/env.yaml' }, fallback)).toBe('/given.yaml');
  });
});

test('serve finds its configuration through CINODE_CONFIG, and --log-level warn leaves out the info lines', async () => {
  const path = join(dir, 'cinode.yaml');
  writeFileSync(path, configYaml(dir, { pools: [{ name: 'p', nodes: 1 }] }));
  const child = spawn(process.execPath, [CLI_PATH, 'serve', '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
    env: { ...process.env, CINODE_CONFIG: path },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    await waitFor('the listening line', () => /cinode listening on http:\/\/127\.0\.0\.1:\d+/.test(stderr), 30_000);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(stdout).toBe(''); // every line of the request log and the start is info
  } finally {
    child.kill('SIGKILL');
  }
  const bad = await runCli(['serve', '--log-level', 'loud'], { CINODE_CONFIG: path });
  expect(bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/^cinode: option "--log-level <level>" argument "loud" is invalid\. Allowed choices are fatal, error, warn, info, debug, trace, silent\.\n$/) });
});

describe('examples/systemd/cinode.service', () => {
  const unitPath = join(REPO_ROOT, 'examples/systemd/cinode.service');
  const unit = readFileSync(unitPath, 'utf8');

  /** The unit's `Key=value` lines by section. */
  function sections(text: string): Map<string, Map<string, string[]>> {
    const result = new Map<string, Map<string, string[]>>();
    let current: Map<string, string[]> | undefined;
    for (const line of text.split('\n')) {
      const header = /^\[(\w+)\]$/.exec(line);
      if (header) result.set(header[1]!, (current = new Map()));
      const setting = /^(\w+)=(.*)$/.exec(line);
      if (setting && current) current.set(setting[1]!, [...(current.get(setting[1]!) ?? []), setting[2]!]);
    }
    return result;
  }

  test('reload is SIGHUP, stop is SIGTERM, exit 2 is not restarted, serve finds its configuration', () => {
    const service = sections(unit).get('Service')!;
    expect(service.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(service.get('KillSignal')).toEqual(['SIGTERM']);
    expect(service.get('RestartPreventExitStatus')).toEqual(['2']);
    expect(service.get('ExecStart')![0]).toMatch(/^\/\S+\/cinode serve( |$)/);
    expect(service.get('ExecStart')![0]).not.toContain('--config'); // /etc/cinode/cinode.yaml, found by serve
    expect(sections(unit).get('Install')!.get('WantedBy')).toEqual(['multi-user.target']);
  });

  test('systemd-analyze verify accepts it (with ExecStart pointing at the built command)', () => {
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (analyze.error) {
      if (process.env.CI === 'true') throw new Error('systemd-analyze is missing: .ci/run installs Debian\'s systemd package');
      console.warn('systemd-analyze is not installed: the unit is checked by its keys only (CI installs it)');
      return;
    }
    // verify insists that ExecStart's program exists: the built CLI stands in for /usr/local/bin/cinode.
    const bin = join(dir, 'cinode');
    writeFileSync(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI_PATH)} "$@"\n`);
    chmodSync(bin, 0o755);
    const copy = join(dir, 'cinode.service');
    writeFileSync(copy, unit.replace(/^ExecStart=\S+/m, `ExecStart=${bin}`));
    const out = execFileSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toBe('');
  });
});
