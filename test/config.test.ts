import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, parseConfig } from '../src/config/config.js';
import { hashKey } from '../src/core/catalog.js';

const KEY = 'demo-secret-key-0123456789';
const OTHER_KEY = 'other-secret-key-abcdefgh';
const ENV = { CINODE_DEMO_KEY: KEY };

const lines = (...text: string[]): string => `${text.join('\n')}\n`;

/** The problems parseConfig reports for `text`; fails the test when it accepts it. */
function problemsOf(text: string, env: Record<string, string | undefined> = ENV): string[] {
  try {
    parseConfig(text, 'cinode.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.message).toBe(err.problems.join('\n'));
      return err.problems;
    }
    throw err;
  }
  throw new Error('the configuration was accepted');
}

const FULL = lines(
  'listen: 127.0.0.1:9090',
  'database: postgres://cinode@db/cinode',
  'reaper-interval: 1m',
  'event-retention: 30d',
  'public-inventory: false',
  'reclaim-parallel: 8',
  'metrics: {key-required: true}',
  'defaults: {ver: "7", arch: x86_64, session-lifetime: 6h, session-lifetime-max: 12h,',
  '           fail-hold: 12h, node-quota: 10, max-failed-nodes: 5, rate-limit: 5/5m, max-count: 50,',
  '           default-flavor: {aarch64: tiny, ppc64le: tiny}}',
  'projects:',
  '  - {name: demo, key: "${CINODE_DEMO_KEY}", node-quota: 20, never-expire: true, admin: false}',
  'pools:',
  '  - name: c9s-x86_64',
  '    ver: 9-stream',
  '    arch: x86_64',
  '    flavor: null',
  '    reclaim: [./examples/reinstall.sh, --quick]',
  '    reclaim-timeout: 30m',
  '    nodes:',
  '      - {hostname: n1.example.net, ip: 192.0.2.1}',
  '      - {hostname: n2.example.net, chassis: rack-3, console-port: 7002}',
);

/** Valid, with a project and a pool; a test appends top-level lines from line 9 on. */
const BASE = [
  'projects:',
  `  - {name: demo, key: ${KEY}}`,
  'pools:',
  '  - name: p1',
  '    ver: 9',
  '    arch: x86_64',
  '    nodes:',
  '      - {hostname: n1}',
];

/** A command pool with only what is required, at lines 3-9; a test appends settings from line 10 on. */
const COMMAND_POOL = [
  'projects: []',
  'pools:',
  '  - name: cloud',
  '    mechanism: command',
  '    ver: 9-stream',
  '    arch: aarch64',
  '    provision: [./cloud-create.sh]',
  '    deprovision: [./cloud-delete.sh]',
  '    max-nodes: 4',
];

/** COMMAND_POOL with `key` set to `value` in its place, or left out (null). */
function commandPool(key: string, value: string | null): string[] {
  return COMMAND_POOL.flatMap((line) => (line.startsWith(`    ${key}:`) ? (value === null ? [] : [`    ${key}: ${value}`]) : [line]));
}

/** Public keys as ssh-keygen writes them (the sk- one as it would for a security key). */
const SSH_KEYS = {
  ed25519: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG96XVvILuoX6QoTiFjB9F9koWDeShl1aPw7mHFSmkTo ci@demo',
  rsa:
    'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1RxOioP/4Uxuy4IR3wkUohc4IB/2G7IvL1vNod1ue0MDkEGg37FdyinLpeZdaDEFRvTmwR45UV8owxfmIzyGc0YLM2o4vUbqdMzn1AIjJc18dtmrtW0fE7VHNAku+dk/RgbWO1rYp/h371zD4g0jPFD+3kgI7jsmpnpp1aD/9pQ== ci@demo',
  ecdsa:
    'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFxmwYbtqXKGmndfskaWfq4zpUqrTAhST0w28d5yUymd2quGweQA3BptSNfKwHXa21XX0q6hL+Rzjf7snUUZLfM= build bot (ecdsa)',
  sk: 'sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIIE0D0ZA/ys9LZlOoD55BZIfI5y2B4D2aK1gaisVa4KuAAAABHNzaDo= yubikey@demo',
};

/** A contextualize section with only what is required. */
const CONTEXTUALIZE = ['contextualize:', '  private-key: /etc/cinode/id_ed25519'];

/** A project with `keys` as its ssh-keys at line 2, and a contextualize section. */
const withSshKeys = (...keys: string[]): string =>
  lines('projects:', `  - {name: demo, key: ${KEY}, ssh-keys: ${JSON.stringify(keys)}}`, 'pools: []', ...CONTEXTUALIZE);

const NOT_A_KEY = 'expected an OpenSSH public key such as "ssh-ed25519 AAAA... user@host" (one line), got';

/** A long value as messages quote it: its first 57 characters, then "...". */
const quotedLong = (value: string): string => JSON.stringify(`${value.slice(0, 57)}...`);

const DEFAULT_POLICY = {
  nodeQuota: 10,
  sessionLifetimeMs: 6 * 3_600_000,
  sessionLifetimeMaxMs: 12 * 3_600_000,
  neverExpire: false,
  failHoldMs: 12 * 3_600_000,
  maxFailedNodes: 5,
  rateLimit: { sessions: 5, windowMs: 5 * 60_000 },
  maxCount: 50,
  maxWaitMs: 3_600_000,
  defaultWaitMs: 0,
  admin: false,
};

describe('parseConfig accepts', () => {
  test('a full file', () => {
    expect(parseConfig(FULL, 'cinode.yaml', ENV)).toEqual({
      listen: { host: '127.0.0.1', port: 9090 },
      database: 'postgres://cinode@db/cinode',
      reaperIntervalMs: 60_000,
      eventRetentionMs: 30 * 86_400_000,
      publicInventory: false,
      reclaimParallel: 8,
      metricsKeyRequired: true,
      contextualize: null,
      isolation: null,
      defaults: { ver: '7', arch: 'x86_64', defaultFlavor: { aarch64: 'tiny', ppc64le: 'tiny' } },
      projects: [{ name: 'demo', keyHash: hashKey(KEY), policy: { ...DEFAULT_POLICY, nodeQuota: 20, neverExpire: true }, sshKeys: [] }],
      pools: [
        {
          name: 'c9s-x86_64',
          ver: '9-stream',
          arch: 'x86_64',
          flavor: null,
          reclaim: ['./examples/reinstall.sh', '--quick'],
          reclaimTimeoutMs: 30 * 60_000,
          capacity: 2,
          command: null,
          nodes: [
            { hostname: 'n1.example.net', ip: '192.0.2.1', pool: 'c9s-x86_64', ver: '9-stream', arch: 'x86_64', flavor: null, chassis: null, consolePort: null, sshPort: null },
            { hostname: 'n2.example.net', ip: null, pool: 'c9s-x86_64', ver: '9-stream', arch: 'x86_64', flavor: null, chassis: 'rack-3', consolePort: 7002, sshPort: null },
          ],
        },
      ],
    });
  });

  test('defaults for everything but projects and pools', () => {
    const config = parseConfig(lines('projects: []', 'pools: []'), 'cinode.yaml', {});
    expect(config).toEqual({
      listen: { host: '127.0.0.1', port: 8080 },
      database: 'sqlite:var/cinode.db',
      reaperIntervalMs: 30_000,
      eventRetentionMs: 90 * 86_400_000,
      publicInventory: true,
      reclaimParallel: 4,
      metricsKeyRequired: false,
      contextualize: null,
      isolation: null,
      defaults: { ver: '7', arch: 'x86_64', defaultFlavor: { aarch64: 'tiny', ppc64le: 'tiny' } },
      projects: [],
      pools: [],
    });
  });

  test('built-in defaults for a project and a pool that give only what is required', () => {
    const config = parseConfig(lines(...BASE), 'cinode.yaml', {});
    expect(config.projects).toEqual([{ name: 'demo', keyHash: hashKey(KEY), policy: DEFAULT_POLICY, sshKeys: [] }]);
    expect(config.pools[0]).toMatchObject({ flavor: null, reclaim: null, reclaimTimeoutMs: 30 * 60_000, capacity: 1, command: null });
    expect(config.pools[0]?.nodes[0]).toMatchObject({ ip: null, chassis: null, consolePort: null, sshPort: null });
  });

  test('an empty defaults mapping', () => {
    expect(parseConfig(lines(...BASE, 'defaults:'), 'cinode.yaml', {}).projects[0]?.policy).toEqual(DEFAULT_POLICY);
  });

  test('per-project overrides on top of the file defaults', () => {
    const config = parseConfig(
      lines(
        'defaults:',
        '  node-quota: 3',
        '  rate-limit: 10/1h',
        '  default-flavor: {s390x: small}',
        'projects:',
        `  - {name: plain, key: ${KEY}}`,
        '  - name: special',
        `    key-sha256: ${hashKey(OTHER_KEY)}`,
        '    session-lifetime: never',
        '    session-lifetime-max: never',
        '    never-expire: true',
        '    fail-hold: 1d',
        '    node-quota: 0',
        '    max-failed-nodes: 0',
        '    rate-limit: 1/30s',
        '    max-count: 10000',
        '    max-wait: 1d',
        '    default-wait: 30m',
        '    admin: true',
        'pools: []',
      ),
      'cinode.yaml',
      {},
    );
    expect(config.defaults.defaultFlavor).toEqual({ s390x: 'small' });
    expect(config.projects).toEqual([
      { name: 'plain', keyHash: hashKey(KEY), policy: { ...DEFAULT_POLICY, nodeQuota: 3, rateLimit: { sessions: 10, windowMs: 3_600_000 } }, sshKeys: [] },
      {
        name: 'special',
        keyHash: hashKey(OTHER_KEY),
        policy: {
          nodeQuota: 0,
          sessionLifetimeMs: 'never',
          sessionLifetimeMaxMs: 'never',
          neverExpire: true,
          failHoldMs: 86_400_000,
          maxFailedNodes: 0,
          rateLimit: { sessions: 1, windowMs: 30_000 },
          maxCount: 10_000,
          maxWaitMs: 86_400_000,
          defaultWaitMs: 1_800_000,
          admin: true,
        },
        sshKeys: [],
      },
    ]);
  });

  test('${VAR} in any string, and $${ for a literal ${', () => {
    const config = parseConfig(
      lines(
        'database: "sqlite:${DATA}/cinode.db"',
        'projects:',
        '  - {name: "${PREFIX}-demo", key: "${CINODE_DEMO_KEY}"}',
        'pools:',
        '  - {name: p1, ver: 9, arch: x86_64, reclaim: [reset, "$${HOST}", "${PREFIX}${PREFIX}"], nodes: []}',
      ),
      'cinode.yaml',
      { DATA: '/var/lib/cinode', PREFIX: 'ci', CINODE_DEMO_KEY: KEY },
    );
    expect(config.database).toBe('sqlite:/var/lib/cinode/cinode.db');
    expect(config.projects[0]).toMatchObject({ name: 'ci-demo', keyHash: hashKey(KEY) });
    expect(config.pools[0]?.reclaim).toEqual(['reset', '${HOST}', 'cici']);
  });

  test('a version written as a YAML number, as written', () => {
    const config = parseConfig(
      lines(
        'defaults: {ver: 8.5}',
        'projects: []',
        'pools:',
        '  - {name: a, ver: 7, arch: x86_64, nodes: [{hostname: n1}]}',
        '  - {name: b, ver: 8.10, arch: x86_64, nodes: []}',
      ),
      'cinode.yaml',
      {},
    );
    expect(config.defaults.ver).toBe('8.5');
    expect(config.pools.map((p) => p.ver)).toEqual(['7', '8.10']);
    expect(config.pools[0]?.nodes[0]?.ver).toBe('7');
  });

  test('an IPv6 listen address in brackets', () => {
    expect(parseConfig(lines(...BASE, 'listen: "[::1]:0"'), 'cinode.yaml', {}).listen).toEqual({ host: '::1', port: 0 });
  });

  test('a command pool with all its settings', () => {
    const config = parseConfig(
      lines(
        'projects: []',
        'pools:',
        '  - name: cloud',
        '    mechanism: command',
        '    ver: 9-stream',
        '    arch: aarch64',
        '    flavor: small',
        '    provision: [./cloud-create.sh, --image, c9s]',
        '    deprovision: [./cloud-delete.sh]',
        '    command-timeout: 10m',
        '    ready-min: 2',
        '    max-nodes: 8',
        '    max-parallel: 3',
        '    max-ready-age: 1d',
      ),
      'cinode.yaml',
      {},
    );
    expect(config.pools).toEqual([
      {
        name: 'cloud',
        ver: '9-stream',
        arch: 'aarch64',
        flavor: 'small',
        reclaim: null,
        reclaimTimeoutMs: 30 * 60_000,
        capacity: 8,
        command: {
          provision: ['./cloud-create.sh', '--image', 'c9s'],
          deprovision: ['./cloud-delete.sh'],
          commandTimeoutMs: 10 * 60_000,
          readyMin: 2,
          maxNodes: 8,
          maxParallel: 3,
          maxReadyAgeMs: 86_400_000,
        },
        nodes: [],
      },
    ]);
  });

  test('built-in defaults for a command pool that gives only what is required', () => {
    const [pool] = parseConfig(lines(...COMMAND_POOL), 'cinode.yaml', {}).pools;
    expect(pool).toMatchObject({ command: expect.any(Object), reclaim: null, capacity: 4, nodes: [] });
    expect(pool?.command).toEqual({
      provision: ['./cloud-create.sh'],
      deprovision: ['./cloud-delete.sh'],
      commandTimeoutMs: 15 * 60_000,
      readyMin: 0,
      maxNodes: 4,
      maxParallel: 1,
      maxReadyAgeMs: null,
    });
  });

  test('a contextualize section with all its settings', () => {
    const config = parseConfig(
      lines(
        ...BASE,
        'contextualize:',
        '  user: cinode',
        '  private-key: /etc/cinode/id_ed25519',
        '  port: 2222',
        '  authorized-keys: /etc/ssh/keys/cinode',
        '  known-hosts: /etc/cinode/known_hosts',
        '  timeout: 1m30s',
      ),
      'cinode.yaml',
      {},
    );
    expect(config.contextualize).toEqual({
      user: 'cinode',
      privateKey: '/etc/cinode/id_ed25519',
      port: 2222,
      authorizedKeys: '/etc/ssh/keys/cinode',
      knownHosts: '/etc/cinode/known_hosts',
      timeoutMs: 90_000,
    });
  });

  test('built-in defaults for a contextualize section that gives only the private key', () => {
    expect(parseConfig(lines(...BASE, ...CONTEXTUALIZE), 'cinode.yaml', {}).contextualize).toEqual({
      user: 'root',
      privateKey: '/etc/cinode/id_ed25519',
      port: 22,
      authorizedKeys: '.ssh/authorized_keys',
      knownHosts: 'ignore',
      timeoutMs: 30_000,
    });
  });

  test('an empty contextualize section as none', () => {
    expect(parseConfig(lines(...BASE, 'contextualize:'), 'cinode.yaml', {}).contextualize).toBeNull();
  });

  test('OpenSSH public keys of each kind, with or without a comment', () => {
    const keys = [...Object.values(SSH_KEYS), SSH_KEYS.ed25519.replace(' ci@demo', '')];
    expect(parseConfig(withSshKeys(...keys), 'cinode.yaml', ENV).projects[0]?.sshKeys).toEqual(keys);
  });

  test('an empty ssh-keys list without a contextualize section', () => {
    const config = parseConfig(lines('projects:', `  - {name: demo, key: ${KEY}, ssh-keys: []}`, 'pools: []'), 'cinode.yaml', {});
    expect(config.projects[0]?.sshKeys).toEqual([]);
  });

  test('an ssh-port on a node', () => {
    const config = parseConfig(lines(...BASE, '      - {hostname: n2, ip: 192.0.2.2, ssh-port: 2222}'), 'cinode.yaml', {});
    expect(config.pools[0]?.nodes.map((n) => n.sshPort)).toEqual([null, 2222]);
  });

  test('the example of issue 5 ("Configuration names")', () => {
    const config = parseConfig(
      lines(
        'contextualize:                  # leave out to hand nodes over untouched',
        '  user: root',
        '  private-key: /etc/cinode/id_ed25519',
        '  port: 22                      # a node may override it with ssh-port',
        "  authorized-keys: .ssh/authorized_keys   # relative to the login user's home",
        '  known-hosts: ignore           # or a known_hosts file to check against',
        '  timeout: 30s',
        'projects:',
        `  - {name: demo, key: "\${CINODE_DEMO_KEY}", ssh-keys: ["${SSH_KEYS.ed25519}"]}`,
        'pools:',
        '  - {name: lab, mechanism: static, ver: 9-stream, arch: x86_64, reclaim: [./reinstall.sh],',
        '     nodes: [{hostname: n1.lab.example, ip: 192.0.2.10, ssh-port: 22}]}',
        '  - {name: cloud, mechanism: command, ver: 9-stream, arch: aarch64, flavor: small,',
        '     provision: [./cloud-create.sh], deprovision: [./cloud-delete.sh], command-timeout: 15m,',
        '     ready-min: 5, max-nodes: 20, max-parallel: 2, max-ready-age: 24h}',
      ),
      'cinode.yaml',
      ENV,
    );
    expect(config.contextualize).toEqual({
      user: 'root',
      privateKey: '/etc/cinode/id_ed25519',
      port: 22,
      authorizedKeys: '.ssh/authorized_keys',
      knownHosts: 'ignore',
      timeoutMs: 30_000,
    });
    expect(config.projects).toEqual([{ name: 'demo', keyHash: hashKey(KEY), policy: DEFAULT_POLICY, sshKeys: [SSH_KEYS.ed25519] }]);
    const common = { ver: '9-stream', reclaimTimeoutMs: 30 * 60_000 };
    expect(config.pools).toEqual([
      {
        ...common,
        name: 'lab',
        arch: 'x86_64',
        flavor: null,
        reclaim: ['./reinstall.sh'],
        capacity: 1,
        command: null,
        nodes: [
          { hostname: 'n1.lab.example', ip: '192.0.2.10', pool: 'lab', ver: '9-stream', arch: 'x86_64', flavor: null, chassis: null, consolePort: null, sshPort: 22 },
        ],
      },
      {
        ...common,
        name: 'cloud',
        arch: 'aarch64',
        flavor: 'small',
        reclaim: null,
        capacity: 20,
        command: {
          provision: ['./cloud-create.sh'],
          deprovision: ['./cloud-delete.sh'],
          commandTimeoutMs: 15 * 60_000,
          readyMin: 5,
          maxNodes: 20,
          maxParallel: 2,
          maxReadyAgeMs: 24 * 3_600_000,
        },
        nodes: [],
      },
    ]);
  });
});

describe('parseConfig reports', () => {
  // Each: the file, then the one problem it has (or a pattern for it). BASE takes lines 1-8.
  const cases: Array<[string, string, string | RegExp]> = [
    ['a negative quota', lines('projects: []', 'pools: []', 'defaults: {node-quota: -1}'), 'cinode.yaml:3: defaults.node-quota: expected a whole number >= 0, got -1'],
    ['a fractional quota in a project', lines('projects:', `  - {name: demo, key: ${KEY}, node-quota: 1.5}`, 'pools: []'), 'cinode.yaml:2: projects[0].node-quota: expected a whole number >= 0, got 1.5'],
    ['max-count out of range', lines(...BASE, 'defaults:', '  max-count: 10001'), 'cinode.yaml:10: defaults.max-count: expected a whole number from 1 to 10000, got 10001'],
    ['reclaim-parallel out of range', lines(...BASE, 'reclaim-parallel: 0'), 'cinode.yaml:9: reclaim-parallel: expected a whole number from 1 to 256, got 0'],
    ['a listen port out of range', lines(...BASE, 'listen: 127.0.0.1:65536'), 'cinode.yaml:9: listen: expected host:port such as 127.0.0.1:8080 or [::1]:8080 (port from 0 to 65535), got "127.0.0.1:65536"'],
    ['an unknown database', lines(...BASE, 'database: mysql://root:pw@db'), 'cinode.yaml:9: database: expected sqlite:PATH or a postgres:// URL'],
    ['a bad duration', lines(...BASE, 'reaper-interval: 30 seconds'), 'cinode.yaml:9: reaper-interval: expected a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order), got "30 seconds"'],
    ['a boolean as a string', lines(...BASE, 'public-inventory: "yes"'), 'cinode.yaml:9: public-inventory: expected true or false, got "yes"'],
    ['a rate limit past its range names the range', lines(...BASE, 'defaults:', '  rate-limit: 1000000/1m'), /^cinode\.yaml:10: defaults\.rate-limit: expected N\/DURATION such as 5\/5m \(N a whole number from 1 to 999999, .*got "1000000\/1m"$/],
    ['a rate limit of zero', lines(...BASE, 'defaults:', '  rate-limit: 0/5m'), /^cinode\.yaml:10: defaults\.rate-limit: expected N\/DURATION such as 5\/5m .*, got "0\/5m"$/],
    ['a bad event retention', lines(...BASE, 'event-retention: forever'), 'cinode.yaml:9: event-retention: expected "never" or a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order), got "forever"'],
    ['a metrics setting that is not known', lines(...BASE, 'metrics: {key-required: yes-please}'), 'cinode.yaml:9: metrics.key-required: expected true or false, got "yes-please"'],
    ['an unknown top-level key', lines(...BASE, 'reaper-intervall: 30s'), 'cinode.yaml:9: reaper-intervall: unknown key (expected one of: listen, database, reaper-interval, event-retention, public-inventory, reclaim-parallel, metrics, contextualize, isolation, defaults, projects, pools)'],
    ['an unknown key on a node', lines(...BASE, '      - {hostname: n2, console: 3}'), 'cinode.yaml:9: pools[0].nodes[1].console: unknown key (expected one of: hostname, ip, chassis, console-port, ssh-port)'],
    ['ver and arch in a project', lines('projects:', `  - name: demo`, `    key: ${KEY}`, '    arch: x86_64', 'pools: []'), /^cinode\.yaml:4: projects\[0\]\.arch: unknown key/],
    ['a bad hostname', lines(...BASE, '      - {hostname: "a b"}'), `cinode.yaml:9: pools[0].nodes[1].hostname: "a b" is not a valid hostname (letters, digits, '.', '-', '_')`],
    ['a long hostname', lines(...BASE, `      - {hostname: ${'a'.repeat(254)}}`), /^cinode\.yaml:9: pools\[0\]\.nodes\[1\]\.hostname: "a+\.\.\." is too long for a hostname/],
    ['a bad console port', lines(...BASE, '      - {hostname: n2, console-port: 70000}'), 'cinode.yaml:9: pools[0].nodes[1].console-port: expected a whole number from 1 to 65535, got 70000'],
    ['a bad project name', lines('projects:', `  - {name: "demo project", key: ${KEY}}`, 'pools: []'), `cinode.yaml:2: projects[0].name: "demo project" is not a valid name (1 to 64 letters, digits, '.', '_', '-')`],
    ['a missing pool arch', lines('projects: []', 'pools:', '  - name: p1', '    ver: 9', '    nodes: []'), 'cinode.yaml:3: pools[0].arch: is required'],
    ['missing pools', lines('# cinode', '', 'projects: []'), 'cinode.yaml:3: pools: is required'],
    ['nodes that are not a list', lines('projects: []', 'pools:', '  - name: p1', '    ver: 9', '    arch: x86_64', '    nodes: n1'), 'cinode.yaml:6: pools[0].nodes: expected a list, got "n1"'],
    ['an empty flavor', lines('projects: []', 'pools:', '  - {name: p1, ver: 9, arch: x86_64, flavor: "", nodes: []}'), 'cinode.yaml:3: pools[0].flavor: expected a non-empty string, got ""'],
    ['an empty reclaim argument', lines('projects: []', 'pools:', '  - name: p1', '    ver: 9', '    arch: x86_64', '    reclaim:', '      - ./reset', '      - ""', '    nodes: []'), 'cinode.yaml:8: pools[0].reclaim[1]: expected a non-empty string, got ""'],
    ['an empty reclaim command', lines('projects: []', 'pools:', '  - {name: p1, ver: 9, arch: x86_64, reclaim: [], nodes: []}'), 'cinode.yaml:3: pools[0].reclaim: expected the command and its arguments as a list, such as [./reinstall.sh, --fast]'],
    ['a bad reclaim timeout', lines('projects: []', 'pools:', '  - {name: p1, ver: 9, arch: x86_64, reclaim-timeout: never, nodes: []}'), /^cinode\.yaml:3: pools\[0\]\.reclaim-timeout: expected a duration .*, got "never"$/],
    ['a bad default-flavor', lines(...BASE, 'defaults:', '  default-flavor: tiny'), 'cinode.yaml:10: defaults.default-flavor: expected a mapping, got "tiny"'],
    ['a project without key', lines('projects:', '  - name: demo', 'pools: []'), 'cinode.yaml:2: projects[0]: needs key or key-sha256'],
    ['a project with both keys', lines('projects:', '  - name: demo', `    key: ${KEY}`, `    key-sha256: ${hashKey(KEY)}`, 'pools: []'), 'cinode.yaml:4: projects[0].key-sha256: give key or key-sha256, not both'],
    ['a key-sha256 in capitals', lines('projects:', `  - {name: demo, key-sha256: ${hashKey(KEY).toUpperCase()}}`, 'pools: []'), 'cinode.yaml:2: projects[0].key-sha256: expected 64 lowercase hexadecimal digits (the SHA-256 of the key)'],
    ['a duplicate project name', lines(...BASE.slice(0, 2), `  - {name: demo, key: ${OTHER_KEY}}`, 'pools: []'), 'cinode.yaml:3: projects[1].name: the same name as projects[0].name (line 2)'],
    ['a duplicate pool name', lines(...BASE, '  - {name: p1, ver: 8, arch: x86_64, nodes: []}'), 'cinode.yaml:9: pools[1].name: the same name as pools[0].name (line 4)'],
    ['a lifetime longer than the maximum', lines('projects:', `  - {name: demo, key: ${KEY}, session-lifetime: 1d}`, 'pools: []'), 'cinode.yaml:2: projects[0].session-lifetime: session-lifetime 1d is longer than session-lifetime-max 12h'],
    ['a maximum below the default lifetime', lines('projects:', `  - {name: demo, key: ${KEY},`, '     session-lifetime-max: 1h}', 'pools: []'), 'cinode.yaml:3: projects[0].session-lifetime-max: session-lifetime 6h is longer than session-lifetime-max 1h'],
    ['a never lifetime without never-expire', lines('projects:', `  - {name: demo, key: ${KEY}, session-lifetime-max: never}`, 'pools: []'), 'cinode.yaml:2: projects[0].session-lifetime-max: session-lifetime-max "never" needs never-expire: true'],
    ['a max-wait beyond a day', lines(...BASE, 'defaults:', '  max-wait: 2d'), 'cinode.yaml:10: defaults.max-wait: expected a duration from 1s to 1d, a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order), got "2d"'],
    ['a max-wait of 0', lines(...BASE, 'defaults:', '  max-wait: 0'), /^cinode\.yaml:10: defaults\.max-wait: expected a duration from 1s to 1d, .* got 0$/],
    ['a default-wait that is no duration', lines(...BASE, 'defaults:', '  default-wait: soon'), /^cinode\.yaml:10: defaults\.default-wait: expected 0 or a duration from 1s to 1d, .* got "soon"$/],
    ['a default-wait longer than max-wait', lines('projects:', `  - {name: demo, key: ${KEY}, default-wait: 2h}`, 'pools: []'), 'cinode.yaml:2: projects[0].default-wait: default-wait 2h is longer than max-wait 1h'],
    ['inconsistent defaults', lines(...BASE, 'defaults:', '  session-lifetime: 13h'), 'cinode.yaml:10: defaults.session-lifetime: session-lifetime 13h is longer than session-lifetime-max 12h'],
    ['a duplicate YAML key', lines(...BASE, 'listen: 127.0.0.1:1', 'listen: 127.0.0.1:2'), 'cinode.yaml:10: Map keys must be unique'],
    ['a YAML syntax error', lines('projects: []', 'pools: [', 'listen: x'), 'cinode.yaml:3: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['a document that is not a mapping', lines('- projects'), 'cinode.yaml:1: expected a mapping, got a list'],
    ['an unset variable', lines(...BASE, 'database: "sqlite:${DATA_DIR}/c.db"'), 'cinode.yaml:9: database: environment variable DATA_DIR is not set'],
    ['a stray ${', lines(...BASE, 'database: "sqlite:${DATA_DIR/c.db"'), 'cinode.yaml:9: database: a "${" must start a reference such as ${NAME} (write "$${" for a literal "${")'],
    ['a bad ssh port on a node', lines(...BASE, '      - {hostname: n2, ssh-port: 65536}'), 'cinode.yaml:9: pools[0].nodes[1].ssh-port: expected a whole number from 1 to 65535, got 65536'],
    // Pool mechanisms: COMMAND_POOL takes lines 1-9.
    ['an unknown mechanism', lines(...commandPool('mechanism', 'cloud')), 'cinode.yaml:4: pools[0].mechanism: expected static or command, got "cloud"'],
    ['a command pool without provision', lines(...commandPool('provision', null)), 'cinode.yaml:3: pools[0].provision: is required for mechanism: command'],
    ['a command pool without deprovision', lines(...commandPool('deprovision', null)), 'cinode.yaml:3: pools[0].deprovision: is required for mechanism: command'],
    ['a command pool without max-nodes', lines(...commandPool('max-nodes', null)), 'cinode.yaml:3: pools[0].max-nodes: is required for mechanism: command'],
    ['nodes in a command pool', lines(...COMMAND_POOL, '    nodes: [{hostname: n1}]'), 'cinode.yaml:10: pools[0].nodes: is only for mechanism: static (this pool is command)'],
    ['reclaim in a command pool', lines(...COMMAND_POOL, '    reclaim: [./reinstall.sh]'), 'cinode.yaml:10: pools[0].reclaim: is only for mechanism: static (this pool is command)'],
    ['reclaim-timeout in a command pool', lines(...COMMAND_POOL, '    reclaim-timeout: 1h'), 'cinode.yaml:10: pools[0].reclaim-timeout: is only for mechanism: static (this pool is command)'],
    ['provision in a static pool', lines(...BASE, '    provision: [./cloud-create.sh]'), 'cinode.yaml:9: pools[0].provision: is only for mechanism: command (this pool is static)'],
    ['ready-min in a pool that says it is static', lines('projects: []', 'pools:', '  - {name: p1, mechanism: static, ver: 9, arch: x86_64, ready-min: 1, nodes: []}'), 'cinode.yaml:3: pools[0].ready-min: is only for mechanism: command (this pool is static)'],
    ['a static pool without nodes', lines('projects: []', 'pools:', '  - {name: p1, ver: 9, arch: x86_64, reclaim: [./reinstall.sh]}'), "cinode.yaml:3: pools[0].nodes: is required for mechanism: static (the list of the pool's machines)"],
    ['ready-min above max-nodes', lines(...COMMAND_POOL, '    ready-min: 5'), 'cinode.yaml:10: pools[0].ready-min: ready-min 5 is more than max-nodes 4'],
    ['max-nodes of zero', lines(...commandPool('max-nodes', '0')), 'cinode.yaml:9: pools[0].max-nodes: expected a whole number >= 1, got 0'],
    ['max-parallel of zero', lines(...COMMAND_POOL, '    max-parallel: 0'), 'cinode.yaml:10: pools[0].max-parallel: expected a whole number >= 1, got 0'],
    ['an empty provision command', lines(...commandPool('provision', '[]')), 'cinode.yaml:7: pools[0].provision: expected the command and its arguments as a list, such as [./reinstall.sh, --fast]'],
    ['a deprovision command as a string', lines(...commandPool('deprovision', './cloud-delete.sh')), 'cinode.yaml:8: pools[0].deprovision: expected a list, got "./cloud-delete.sh"'],
    ['a bad max-ready-age', lines(...COMMAND_POOL, '    max-ready-age: forever'), 'cinode.yaml:10: pools[0].max-ready-age: expected a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order), got "forever"'],
    // Contextualization: BASE takes lines 1-8, CONTEXTUALIZE lines 9-10.
    ['contextualize without private-key', lines(...BASE, 'contextualize:', '  user: ci'), 'cinode.yaml:9: contextualize.private-key: is required'],
    ['an unknown key in contextualize', lines(...BASE, ...CONTEXTUALIZE, '  identity-file: /etc/cinode/id_rsa'), 'cinode.yaml:11: contextualize.identity-file: unknown key (expected one of: user, private-key, port, authorized-keys, known-hosts, timeout)'],
    ['a bad contextualize port', lines(...BASE, ...CONTEXTUALIZE, '  port: 0'), 'cinode.yaml:11: contextualize.port: expected a whole number from 1 to 65535, got 0'],
    ['a bad contextualize timeout', lines(...BASE, ...CONTEXTUALIZE, '  timeout: 30'), 'cinode.yaml:11: contextualize.timeout: expected a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order), got 30'],
    ['contextualize that is not a mapping', lines(...BASE, 'contextualize: /etc/cinode/id_ed25519'), 'cinode.yaml:9: contextualize: expected a mapping, got "/etc/cinode/id_ed25519"'],
    // SSH keys: withSshKeys puts the project, and its keys, at line 2.
    ['an ssh key that is not a key', withSshKeys('my laptop'), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} "my laptop"`],
    ['two ssh keys in one string', withSshKeys(`${SSH_KEYS.ed25519}\n${SSH_KEYS.rsa}`), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} ${quotedLong(SSH_KEYS.ed25519)}`],
    ['an ssh key without its base64', withSshKeys(SSH_KEYS.ed25519, 'ssh-ed25519 ci@demo'), `cinode.yaml:2: projects[0].ssh-keys[1]: ${NOT_A_KEY} "ssh-ed25519 ci@demo"`],
    ['an ssh key with a word for its base64', withSshKeys('ssh-ed25519 demo ci@demo'), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} "ssh-ed25519 demo ci@demo"`],
    ['an ssh key cut short', withSshKeys(SSH_KEYS.ed25519.replace('mkTo ci@demo', 'mkT')), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} ${quotedLong(SSH_KEYS.ed25519)}`],
    ['an ssh key of another type than it says', withSshKeys(SSH_KEYS.ed25519.replace('ssh-ed25519', 'ssh-rsa')), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} ${quotedLong(SSH_KEYS.ed25519.replace('ssh-ed25519', 'ssh-rsa'))}`],
    ['an ssh key with options in front', withSshKeys(`command="/bin/true" ${SSH_KEYS.ed25519}`), `cinode.yaml:2: projects[0].ssh-keys[0]: ${NOT_A_KEY} ${quotedLong(`command="/bin/true" ${SSH_KEYS.ed25519}`)}`],
    ['ssh-keys that is not a list', lines('projects:', `  - {name: demo, key: ${KEY}, ssh-keys: "${SSH_KEYS.ed25519}"}`, 'pools: []', ...CONTEXTUALIZE), `cinode.yaml:2: projects[0].ssh-keys: expected a list, got ${quotedLong(SSH_KEYS.ed25519)}`],
    ['ssh-keys without a contextualize section', lines('projects:', '  - name: demo', `    key: ${KEY}`, '    ssh-keys:', `      - ${SSH_KEYS.ed25519}`, 'pools: []'), 'cinode.yaml:4: projects[0].ssh-keys: needs a top-level contextualize: section saying how cinode logs into nodes to add the keys'],
  ];

  test.each(cases)('%s', (_name, text, problem) => {
    const problems = problemsOf(text, {});
    expect(problems).toHaveLength(1);
    if (typeof problem === 'string') expect(problems[0]).toBe(problem);
    else expect(problems[0]).toMatch(problem);
  });

  test('an unset variable, naming it and the field, and nothing else about the field', () => {
    const text = lines('projects:', '  - {name: demo, key: "${CINODE_DEMO_KEY}"}', 'pools: []');
    expect(problemsOf(text, {})).toEqual(['cinode.yaml:2: projects[0].key: environment variable CINODE_DEMO_KEY is not set']);
  });

  test('every problem at once, in the order of the file', () => {
    const problems = problemsOf(
      lines(
        'listen: nowhere',
        'defaults:',
        '  node-quota: -1',
        '  sesion-lifetime: 1h',
        'projects:',
        '  - {name: demo}',
        `  - {name: demo, key: ${KEY}, max-count: 0}`,
        'pools:',
        '  - name: p1',
        '    ver: 9',
        '    arch: x86_64',
        '    nodes:',
        '      - {hostname: "a b", console-port: 0}',
      ),
    );
    expect(problems.map((p) => p.split(':').slice(0, 3).join(':'))).toEqual([
      'cinode.yaml:1: listen',
      'cinode.yaml:3: defaults.node-quota',
      'cinode.yaml:4: defaults.sesion-lifetime',
      'cinode.yaml:6: projects[0]',
      'cinode.yaml:7: projects[1].max-count',
      'cinode.yaml:7: projects[1].name',
      'cinode.yaml:13: pools[0].nodes[0].hostname',
      'cinode.yaml:13: pools[0].nodes[0].console-port',
    ]);
  });

  test('duplicate hostnames across pools, whatever their case', () => {
    const problems = problemsOf(
      lines(
        'projects: []',
        'pools:',
        '  - {name: a, ver: 9, arch: x86_64, nodes: [{hostname: n1}, {hostname: n2}]}',
        '  - name: b',
        '    ver: 9',
        '    arch: aarch64',
        '    nodes:',
        '      - {hostname: n3}',
        '      - {hostname: N2}',
        '      - {hostname: n1}',
      ),
    );
    expect(problems).toEqual([
      'cinode.yaml:9: pools[1].nodes[1].hostname: the same hostname as pools[0].nodes[1].hostname (line 3)',
      'cinode.yaml:10: pools[1].nodes[2].hostname: the same hostname as pools[0].nodes[0].hostname (line 3)',
    ]);
  });

  test('a problem inside a YAML alias, at the line of its anchor', () => {
    const problems = problemsOf(
      lines(
        'projects: []',
        'pools:',
        '  - name: a',
        '    ver: 9',
        '    arch: x86_64',
        '    nodes: &shared',
        '      - {hostname: n1}',
        '  - {name: b, ver: 9, arch: aarch64, nodes: *shared}',
      ),
    );
    expect(problems).toEqual(['cinode.yaml:7: pools[1].nodes[0].hostname: the same hostname as pools[0].nodes[0].hostname (line 7)']);
  });

  test("a pool's mechanism problems along with its other problems", () => {
    const problems = problemsOf(lines(...commandPool('max-nodes', null), '    ready-min: -1', '    max_nodes: 4', '    nodes: []'));
    expect(problems).toEqual([
      'cinode.yaml:3: pools[0].max-nodes: is required for mechanism: command',
      'cinode.yaml:9: pools[0].ready-min: expected a whole number >= 0, got -1',
      'cinode.yaml:10: pools[0].max_nodes: unknown key (expected one of: name, ver, arch, flavor, mechanism, reclaim, reclaim-timeout, nodes, ' +
        'provision, deprovision, command-timeout, ready-min, max-nodes, max-parallel, max-ready-age)',
      'cinode.yaml:11: pools[0].nodes: is only for mechanism: static (this pool is command)',
    ]);
  });

  test('a duplicate key, given plainly in one project and hashed in another', () => {
    const problems = problemsOf(
      lines('projects:', `  - {name: a, key: ${KEY}}`, `  - {name: b, key-sha256: ${hashKey(KEY)}}`, 'pools: []'),
    );
    expect(problems).toEqual(['cinode.yaml:3: projects[1].key-sha256: the same key as projects[0].key (line 2)']);
  });

  test('never the key itself', () => {
    const shortKey = 'hunter2-hunter2';
    const text = lines(
      'database: "${DB}"',
      'projects:',
      `  - {name: a, key: ${KEY}}`,
      `  - {name: b, key: ${KEY}}`,
      `  - {name: c, key: ${shortKey}}`,
      '  - {name: d, key: 1234567890123456789012}',
      `  - {name: e, key: "${'$'}{SECRET}", node-quota: x}`,
      'pools: []',
    );
    const problems = problemsOf(text, { DB: 'postgres-typo://admin:db-password@db', SECRET: 'short-secret' });
    expect(problems).toHaveLength(6);
    for (const secret of [KEY, shortKey, '123456789012', 'db-password', 'short-secret']) {
      expect(problems.join('\n')).not.toContain(secret);
    }
    // Nor in a YAML syntax error near it.
    const broken = problemsOf(lines('projects:', `  - {name: a, key: ${KEY}`, 'pools: []'));
    expect(broken.join('\n')).not.toContain(KEY);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cinode-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('reads the file, with the environment of the process by default', () => {
    const path = join(dir, 'cinode.yaml');
    writeFileSync(path, FULL);
    process.env.CINODE_DEMO_KEY = KEY;
    try {
      expect(loadConfig(path).projects[0]?.keyHash).toBe(hashKey(KEY));
    } finally {
      delete process.env.CINODE_DEMO_KEY;
    }
    expect(loadConfig(path, ENV).pools[0]?.capacity).toBe(2);
  });

  test('names the file in its problems', () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, lines('projects: []'));
    expect(() => loadConfig(path, {})).toThrow(`${path}:1: pools: is required`);
  });

  test('reads the example configuration that `npm start` serves', () => {
    const config = loadConfig(fileURLToPath(new URL('../examples/cinode.yaml', import.meta.url)), {});
    expect(config.contextualize).toBeNull();
    expect(config.projects.map((p) => p.name)).toEqual(['demo']);
    expect(config.pools.map((p) => [p.name, p.command ? 'command' : 'static', p.capacity])).toEqual([
      ['c7-x86_64', 'static', 4],
      ['c9s-x86_64', 'static', 4],
      ['c9s-aarch64-tiny', 'static', 2],
    ]);
  });

  test('reads the example configuration with real machines', () => {
    const env = { CINODE_DEMO_KEY: KEY, CINODE_OPS_KEY: OTHER_KEY };
    const config = loadConfig(fileURLToPath(new URL('../examples/machines.yaml', import.meta.url)), env);
    expect(config.contextualize).toMatchObject({ user: 'root', knownHosts: 'ignore' });
    expect(config.projects.map((p) => [p.name, p.sshKeys.length, p.policy.admin])).toEqual([
      ['storage', 1, false],
      ['ops', 0, true],
    ]);
    expect(config.pools.map((p) => [p.name, p.command ? 'command' : 'static', p.capacity])).toEqual([
      ['lab-c9s', 'static', 3],
      ['cloud-c9s-aarch64', 'command', 20],
    ]);
  });

  test('reports a missing file as a ConfigError naming the path', () => {
    const path = join(dir, 'missing.yaml');
    expect(() => loadConfig(path, {})).toThrow(ConfigError);
    expect(() => loadConfig(path, {})).toThrow(`${path}: cannot read the configuration file: no such file`);
  });
});
