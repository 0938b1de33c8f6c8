/**
 * The action's three stages with their collaborators passed in: a fake runner core that records
 * every call in order, a fake client, a controllable signal and clock. No network.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { CinodeAbortError, CinodeApiError } from '../src/client/errors.js';
import type { RetryInfo } from '../src/client/retry.js';
import type { ApiErrorKind, NodeGetParams, SessionGetParams, SessionView } from '../src/client/types.js';
import { Defaults, Env, Inputs, Outputs, OwnerState, POST_TIMEOUT_MS, State, type EnvName, type Input, type StateName } from '../src/action/constants.js';
import { parseDuration } from '../src/api/duration.js';
import { normalizeAlias, parseBoolean, parseList } from '../src/action/inputs.js';
import { runMain } from '../src/action/main-impl.js';
import type { ActionClient, ActionCore, ClientSettings, KeeperSettings, SummarySection } from '../src/action/ports.js';
import { runPost } from '../src/action/post-impl.js';
import { runPre } from '../src/action/pre-impl.js';
import { actionDefaults, REPO_ROOT } from './support/runner.js';

const URL = 'http://127.0.0.1:9';
const KEY = 'secret-key-0123456789';
const ALIAS = 'org/repo/42/1/build/0';
const SSID = '11111111-2222-4333-8444-555555555555';

type Event = [string, ...unknown[]];

class FakeCore implements ActionCore {
  readonly events: Event[] = [];
  readonly inputs = new Map<string, string>();
  readonly state = new Map<string, string>();
  readonly env = new Map<string, string>();
  readonly outputs = new Map<string, string>();
  readonly summaries: SummarySection[] = [];
  failed: string | undefined;
  summaryError: Error | undefined;
  /** Makes the named method throw, to show what was done before it. */
  throwOn: string | undefined;

  constructor(inputs: Partial<Record<Input, string>> = {}) {
    const defaults: Partial<Record<Input, string>> = {
      [Inputs.Url]: URL,
      [Inputs.Key]: KEY,
      [Inputs.Alias]: ALIAS,
      [Inputs.Count]: '1',
      [Inputs.Teardown]: 'true',
      [Inputs.Timeout]: '5m',
      [Inputs.KeyInQuery]: 'false',
    };
    for (const [k, v] of Object.entries({ ...defaults, ...inputs })) this.inputs.set(k, v);
  }

  private record(name: string, ...args: unknown[]): void {
    this.events.push([name, ...args]);
    if (this.throwOn === name) throw new Error(`${name} failed`);
  }

  getInput(name: Input): string {
    return (this.inputs.get(name) ?? '').trim();
  }
  setOutput(name: string, value: string): void {
    this.record('setOutput', name, value);
    this.outputs.set(name, value);
  }
  getState(name: StateName): string {
    return this.state.get(name) ?? '';
  }
  saveState(name: StateName, value: string): void {
    this.state.set(name, value);
    this.record('saveState', name, value);
  }
  exportVariable(name: EnvName, value: string): void {
    this.record('exportVariable', name, value);
    this.env.set(name, value);
  }
  getEnv(name: EnvName): string {
    return this.env.get(name) ?? '';
  }
  setSecret(value: string): void {
    this.record('setSecret', value);
  }
  info(message: string): void {
    this.events.push(['info', message]);
  }
  warning(message: string, title?: string): void {
    this.events.push(['warning', message, title]);
  }
  setFailed(message: string): void {
    this.events.push(['setFailed', message]);
    this.failed = message;
  }
  async appendSummary(section: SummarySection): Promise<void> {
    this.record('appendSummary', section.heading);
    if (this.summaryError) throw this.summaryError;
    this.summaries.push(section);
  }

  names(): string[] {
    return this.events.map((e) => e[0]);
  }
  warnings(): string[] {
    return this.events.filter((e) => e[0] === 'warning').map((e) => e[1] as string);
  }
  infos(): string {
    return this.events
      .filter((e) => e[0] === 'info')
      .map((e) => e[1])
      .join('\n');
  }
}

function host(hostname: string, state = 'deployed'): SessionView['hosts'][number] {
  return { hostname, ip: '192.0.2.1', state, ver: '7', arch: 'x86_64', flavor: null };
}

function apiError(kind: ApiErrorKind, message: string, status?: number): CinodeApiError {
  return new CinodeApiError(kind, message, { status, call: '/test' });
}

/** A fake client over a tiny in-memory session; every call is recorded in the core's event log. */
class FakeClient implements ActionClient {
  hosts: string[] = [];
  created = true;
  expiresAt: string | null = '2030-01-01T00:00:00.000Z';
  nextHosts = ['n1.example', 'n2.example', 'n3.example', 'n4.example'];
  fail: Partial<Record<keyof ActionClient, Error>> = {};
  /** Retries to report (through onRetry) before a call answers. */
  retriesBefore: Partial<Record<keyof ActionClient, RetryInfo[]>> = {};
  /** getNodes waits for the signal (a pool with no capacity) instead of answering. */
  waitForCapacity = false;

  constructor(
    readonly core: FakeCore,
    readonly settings: ClientSettings,
  ) {}

  private async enter(name: keyof ActionClient, ...args: unknown[]): Promise<void> {
    this.core.events.push([`client.${name}`, ...args]);
    for (const info of this.retriesBefore[name] ?? []) this.settings.onRetry(info);
    const error = this.fail[name];
    if (error) throw error;
  }

  async getSession(params: SessionGetParams) {
    await this.enter('getSession', params);
    return { ssid: SSID, alias: params.alias ?? null, hosts: [...this.hosts], expires_at: this.expiresAt, created: this.created };
  }
  async getNodes(params: NodeGetParams) {
    await this.enter('getNodes', params);
    if (this.waitForCapacity) {
      await new Promise<never>((_resolve, reject) => {
        this.settings.onRetry({ attempt: 1, waitMs: 1000, error: apiError('capacity', 'Insufficient Nodes in READY State', 503) });
        this.settings.signal.addEventListener('abort', () => reject(new CinodeAbortError('the call was cancelled: received SIGINT')), {
          once: true,
        });
      });
    }
    const added = this.nextHosts.splice(0, params.count ?? 1);
    this.hosts.push(...added);
    return { ssid: SSID, hosts: added };
  }
  async doneNodes(ssid: string, nodes: readonly string[]) {
    await this.enter('doneNodes', ssid, [...nodes]);
    this.hosts = this.hosts.filter((h) => !nodes.includes(h));
    return 'done';
  }
  async failNodes(ssid: string, nodes: readonly string[]) {
    await this.enter('failNodes', ssid, [...nodes]);
    this.hosts = this.hosts.filter((h) => !nodes.includes(h));
  }
  async doneSession(ssid: string) {
    await this.enter('doneSession', ssid);
  }
  async showSession(ssid: string): Promise<SessionView> {
    await this.enter('showSession', ssid);
    return {
      ssid: SSID,
      alias: ALIAS,
      state: 'active',
      created_at: '2029-12-31T18:00:00.000Z',
      expires_at: '2030-01-01T00:00:00.000Z',
      ended_at: null,
      end_reason: null,
      heartbeat: null,
      heartbeat_deadline: null,
      hosts: this.hosts.map((h) => host(h)),
    };
  }
}

interface Harness {
  core: FakeCore;
  client: FakeClient;
  settings: ClientSettings[];
  controller: AbortController;
  deps: Parameters<typeof runMain>[0];
}

function harness(inputs: Partial<Record<Input, string>> = {}, setup: (client: FakeClient) => void = () => {}): Harness {
  const core = new FakeCore(inputs);
  const controller = new AbortController();
  const settings: ClientSettings[] = [];
  let client!: FakeClient;
  let now = 1_000_000;
  const h: Harness = {
    core,
    get client() {
      return client;
    },
    settings,
    controller,
    deps: {
      core,
      createClient: (s) => {
        settings.push(s);
        // One session's worth of server: every client of a harness shares it.
        if (!client) {
          client = new FakeClient(core, s);
          setup(client);
        } else {
          (client as { settings: ClientSettings }).settings = s;
        }
        return client;
      },
      signal: controller.signal,
      clock: () => (now += 1500),
    },
  };
  return h;
}

const index = (core: FakeCore, name: string, ...args: unknown[]) =>
  core.events.findIndex((e) => e[0] === name && args.every((a, i) => JSON.stringify(e[i + 1]) === JSON.stringify(a)));

describe('action.yml', () => {
  interface Manifest {
    inputs: Record<string, { description: string; required?: boolean; default?: string }>;
    outputs: Record<string, { description: string }>;
    runs: Record<string, string>;
    branding: Record<string, string>;
  }
  const manifest = parseYaml(readFileSync(`${REPO_ROOT}/action.yml`, 'utf8')) as Manifest;

  test('declares exactly the inputs and outputs of constants.ts, each described', () => {
    expect(Object.keys(manifest.inputs).sort()).toEqual(Object.values(Inputs).sort());
    expect(Object.keys(manifest.outputs).sort()).toEqual(Object.values(Outputs).sort());
    for (const entry of [...Object.values(manifest.inputs), ...Object.values(manifest.outputs)]) expect(entry.description.length).toBeGreaterThan(10);
    expect(manifest.inputs[Inputs.Url]!.required).toBe(true);
    expect(manifest.inputs[Inputs.Key]!.required).toBe(true);
  });

  test('its defaults are the ones the code falls back to, and the ones the runner emulation uses', () => {
    expect(manifest.inputs[Inputs.Count]!.default).toBe(String(Defaults.Count));
    expect(manifest.inputs[Inputs.Teardown]!.default).toBe(String(Defaults.Teardown));
    expect(manifest.inputs[Inputs.KeyInQuery]!.default).toBe(String(Defaults.KeyInQuery));
    expect(parseDuration(manifest.inputs[Inputs.Timeout]!.default!)).toBe(Defaults.TimeoutMs);
    expect(manifest.inputs[Inputs.Alias]!.default).toBe(
      '${{ github.repository }}/${{ github.run_id }}/${{ github.run_attempt }}/${{ github.job }}/${{ strategy.job-index }}',
    );
    const emulated = actionDefaults({ repository: 'o/r', runId: '1', runAttempt: '2', job: 'j', jobIndex: 3 });
    const declared = Object.fromEntries(Object.entries(manifest.inputs).flatMap(([name, input]) => (input.default === undefined ? [] : [[name, input.default]])));
    expect(Object.keys(emulated).sort()).toEqual(Object.keys(declared).sort());
    for (const [name, value] of Object.entries(emulated)) if (name !== Inputs.Alias) expect([name, value]).toEqual([name, declared[name]]);
    expect(emulated[Inputs.Alias]).toBe('o/r/1/2/j/3');
  });

  test('runs the three bundles on node24, post always', () => {
    expect(manifest.runs).toEqual({
      using: 'node24',
      pre: 'dist/pre/index.js',
      main: 'dist/main/index.js',
      post: 'dist/post/index.js',
      'post-if': 'always()',
    });
    expect(Object.keys(manifest.branding).sort()).toEqual(['color', 'icon']);
  });
});

describe('inputs', () => {
  test('lists split on commas and newlines, trimmed, without empties or repeats', () => {
    expect(parseList(' a.example, b.example\n\nc.example ,a.example\n')).toEqual(['a.example', 'b.example', 'c.example']);
    expect(parseList('')).toEqual([]);
  });

  test('durations of docs/api.md', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    for (const bad of ['', '0s', '5', '5x', '30m1h', 'never']) expect(parseDuration(bad)).toBeUndefined();
  });

  test('booleans as the runner writes them; others refused with the input named', () => {
    expect(parseBoolean(Inputs.Teardown, 'True', false)).toBe(true);
    expect(parseBoolean(Inputs.Teardown, 'false', true)).toBe(false);
    expect(parseBoolean(Inputs.Teardown, '', true)).toBe(true);
    expect(() => parseBoolean(Inputs.Teardown, 'yes', true)).toThrow(/Input teardown: "yes" is not a boolean/);
  });

  test('an alias past 128 characters is shortened the same way each time, keeping legs apart', () => {
    const long = `${'o'.repeat(39)}/${'r'.repeat(100)}/1234567890/1/job`;
    const a = normalizeAlias(`${long}/0`);
    const b = normalizeAlias(`${long}/1`);
    expect(a).toHaveLength(128);
    expect(a).toBe(normalizeAlias(`${long}/0`));
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[A-Za-z0-9._\-:/@]+$/);
    expect(normalizeAlias(ALIAS)).toBe(ALIAS);
    expect(() => normalizeAlias('a b')).toThrow(/Input alias/);
  });
});

describe('pre', () => {
  test('masks the key first, saves the state before the request and the ssid the moment it answers, then exports', async () => {
    const h = harness();
    await runPre(h.deps);
    const { core } = h;
    expect(core.failed).toBeUndefined();
    expect(core.events[0]).toEqual(['setSecret', KEY]);
    const pending = index(core, 'saveState', State.Owner, OwnerState.Pending);
    const request = index(core, 'client.getSession');
    const ssid = index(core, 'saveState', State.Ssid, SSID);
    const owner = index(core, 'saveState', State.Owner, OwnerState.Owner);
    const exported = index(core, 'exportVariable', Env.Ssid, SSID);
    expect(index(core, 'saveState', State.Alias, ALIAS)).toBeLessThan(request);
    expect(pending).toBeLessThan(request);
    expect(request).toBeLessThan(ssid);
    expect(ssid).toBe(request + 1);
    expect(owner).toBe(ssid + 1);
    expect(owner).toBeLessThan(exported);
    expect(core.events[request]).toEqual(['client.getSession', { alias: ALIAS, lifetime: undefined }]);
    expect(Object.fromEntries(core.env)).toEqual({ [Env.Url]: URL, [Env.Ssid]: SSID, [Env.Alias]: ALIAS });
    expect(h.settings[0]).toMatchObject({ url: URL, key: KEY, keyInQuery: false, timeoutMs: 300_000 });
  });

  test('a failure right after the answer still leaves post the ssid and ownership', async () => {
    const h = harness();
    h.core.throwOn = 'exportVariable';
    await runPre(h.deps);
    expect(h.core.failed).toMatch(/exportVariable failed/);
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
  });

  test('lifetime, key-in-query and timeout reach the request and the client', async () => {
    const h = harness({ [Inputs.Lifetime]: '3h', [Inputs.KeyInQuery]: 'true', [Inputs.Timeout]: '90s' });
    await runPre(h.deps);
    expect(h.core.events).toContainEqual(['client.getSession', { alias: ALIAS, lifetime: '3h' }]);
    expect(h.settings[0]).toMatchObject({ keyInQuery: true, timeoutMs: 90_000 });
  });

  test("a lifetime the project's maximum capped is a warning; one granted whole is not", async () => {
    // The harness clock starts at 1970-01-01T00:16:40Z; the fake server grants 12h from then.
    const capped = harness({ [Inputs.Lifetime]: '1d' }, (c) => (c.expiresAt = new Date(1_000_000 + 12 * 3_600_000).toISOString()));
    await runPre(capped.deps);
    expect(capped.core.failed).toBeUndefined();
    expect(capped.core.warnings()).toEqual([expect.stringMatching(/^cinode: lifetime 1d was capped by the project's maximum: the session expires at 1970-01-01T12:16:40.000Z/)]);
    const whole = harness({ [Inputs.Lifetime]: '12h' }, (c) => (c.expiresAt = new Date(1_000_000 + 12 * 3_600_000).toISOString()));
    await runPre(whole.deps);
    expect(whole.core.warnings()).toEqual([]);
  });

  test('a refused key or session says what to check beside the legacy text', async () => {
    const key = harness({}, (c) => (c.fail.getSession = apiError('invalid-key', 'Invalid duffy key', 403)));
    await runPre(key.deps);
    expect(key.core.failed).toMatch(/could not open the session: Invalid duffy key \(check the action's key input \(e\.g\. secrets\.CINODE_KEY/);
    const session = harness({}, (c) => (c.fail.getSession = apiError('invalid-session', 'Invalid session ID', 403)));
    await runPre(session.deps);
    expect(session.core.failed).toMatch(/Invalid session ID \(check the ssid or alias spelling; a session of another project/);
  });

  test('an active session of the alias opened elsewhere is joined, not owned', async () => {
    const h = harness({}, (c) => (c.created = false));
    await runPre(h.deps);
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner)).toBe('');
    expect(h.core.infos()).toMatch(/whoever opened it ends it/);
  });

  test('created: false after a lost answer is our own session: owned', async () => {
    const lost: RetryInfo = { attempt: 1, waitMs: 500, error: apiError('transport', 'no answer from /Session/get') };
    const h = harness({}, (c) => {
      c.created = false;
      c.retriesBefore.getSession = [lost];
    });
    await runPre(h.deps);
    expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
    expect(h.core.infos()).toMatch(/retrying in 0.5s/);
  });

  test('a refusal leaves no ownership; a lost answer leaves it pending for post', async () => {
    const refused = harness({}, (c) => (c.fail.getSession = apiError('policy', 'lifetime never is not allowed', 403)));
    await runPre(refused.deps);
    expect(refused.core.failed).toMatch(/could not open the session: lifetime never is not allowed/);
    expect(refused.core.state.get(State.Owner)).toBe('');

    const lost = harness({}, (c) => (c.fail.getSession = apiError('transport', 'no answer')));
    await runPre(lost.deps);
    expect(lost.core.failed).toMatch(/no answer/);
    expect(lost.core.state.get(State.Owner)).toBe(OwnerState.Pending);
    expect(lost.core.state.get(State.Alias)).toBe(ALIAS);
  });

  test('a later use reuses the session an earlier use exported, with no request', async () => {
    const h = harness();
    h.core.env.set(Env.Url, URL).set(Env.Ssid, SSID).set(Env.Alias, ALIAS);
    await runPre(h.deps);
    expect(h.core.names()).not.toContain('client.getSession');
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner) ?? '').toBe('');
  });

  test('an exported session of another alias or url is not reused', async () => {
    for (const [url, alias] of [
      [URL, 'other'],
      ['http://127.0.0.1:10', ALIAS],
    ]) {
      const h = harness();
      h.core.env.set(Env.Url, url!).set(Env.Ssid, 'other-ssid').set(Env.Alias, alias!);
      await runPre(h.deps);
      expect(h.core.names()).toContain('client.getSession');
      expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
    }
  });

  test('bad inputs fail before any request, the key already masked', async () => {
    for (const [inputs, message] of [
      [{ [Inputs.Timeout]: '5 minutes' }, /Input timeout: "5 minutes" is not a duration/],
      [{ [Inputs.Alias]: 'has space' }, /Input alias/],
      [{ [Inputs.Url]: '' }, /Input url: is required/],
      [{ [Inputs.KeyInQuery]: 'maybe' }, /Input key-in-query/],
    ] as const) {
      const h = harness(inputs);
      await runPre(h.deps);
      expect(h.core.failed).toMatch(message);
      expect(h.core.events[0]).toEqual(['setSecret', KEY]);
      expect(h.core.names()).not.toContain('client.getSession');
    }
    const noKey = harness({ [Inputs.Key]: '' });
    await runPre(noKey.deps);
    expect(noKey.core.failed).toMatch(/Input key: is required/);
    expect(noKey.core.names()).not.toContain('setSecret');
  });
});

describe('main', () => {
  /** A main after its pre: the state pre saved. */
  function afterPre(inputs: Partial<Record<Input, string>> = {}, setup?: (client: FakeClient) => void): Harness {
    const h = harness(inputs, setup);
    h.core.state.set(State.Ssid, SSID).set(State.Alias, ALIAS).set(State.Owner, OwnerState.Owner);
    return h;
  }

  test('after pre: releases, reports, adds in that order, then publishes outputs, env and summary', async () => {
    const h = afterPre({ [Inputs.Count]: '2', [Inputs.Ver]: '9-stream', [Inputs.Drop]: 'old1.example,\nold2.example', [Inputs.Fail]: 'bad.example' }, (c) => {
      c.hosts = ['old1.example', 'old2.example', 'bad.example', 'kept.example'];
    });
    const result = await runMain(h.deps);
    const { core } = h;
    expect(core.failed).toBeUndefined();
    expect(core.events[0]).toEqual(['setSecret', KEY]);
    expect(core.names()).not.toContain('client.getSession');
    const calls = core.events.filter((e) => String(e[0]).startsWith('client.'));
    expect(calls).toEqual([
      ['client.doneNodes', SSID, ['old1.example', 'old2.example']],
      ['client.failNodes', SSID, ['bad.example']],
      ['client.getNodes', { ssid: SSID, count: 2, ver: '9-stream', arch: undefined, flavor: undefined, wait: '5m' }],
      ['client.showSession', SSID],
    ]);
    expect(Object.fromEntries(core.outputs)).toEqual({
      [Outputs.Ssid]: SSID,
      [Outputs.Alias]: ALIAS,
      [Outputs.Hosts]: 'n1.example\nn2.example',
      [Outputs.AllHosts]: 'kept.example\nn1.example\nn2.example',
      [Outputs.HostsJson]: JSON.stringify(
        ['kept.example', 'n1.example', 'n2.example'].map((hostname) => ({ hostname, ip: '192.0.2.1', ver: '7', arch: 'x86_64', flavor: null })),
      ),
    });
    expect(core.env.get(Env.Hosts)).toBe('kept.example n1.example n2.example');
    expect(core.summaries).toHaveLength(1);
    const summary = core.summaries[0]!;
    expect(summary.heading).toBe(`cinode session ${ALIAS}`);
    expect(summary.text).toMatch(/3 hosts.*added 2, released 2, reported 1 broken/);
    expect(summary.table[0]).toEqual(['Hostname', 'IP', 'Version', 'Arch', 'Flavor', 'State', 'Added by this step']);
    expect(summary.table.slice(1).map((r) => [r[0], r[6]])).toEqual([
      ['kept.example', ''],
      ['n1.example', 'yes'],
      ['n2.example', 'yes'],
    ]);
    expect(result?.session).toMatchObject({ ssid: SSID, owner: true, source: 'state' });
  });

  test('without pre and without an earlier use: opens the session itself and owns it', async () => {
    const h = harness();
    await runMain(h.deps);
    expect(h.core.failed).toBeUndefined();
    const open = index(h.core, 'client.getSession');
    expect(open).toBeGreaterThan(0);
    expect(index(h.core, 'saveState', State.Ssid, SSID)).toBe(open + 1);
    expect(open).toBeLessThan(index(h.core, 'client.getNodes'));
    expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
    expect(h.core.env.get(Env.Ssid)).toBe(SSID);
  });

  test('without pre after an earlier use: reuses its session and does not own it', async () => {
    const h = harness();
    h.core.env.set(Env.Url, URL).set(Env.Ssid, SSID).set(Env.Alias, ALIAS);
    const result = await runMain(h.deps);
    expect(h.core.names()).not.toContain('client.getSession');
    expect(result?.session).toMatchObject({ owner: false, source: 'earlier-use' });
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner) ?? '').toBe('');
  });

  test('count 0 adds nothing; empty inputs are left out of the requests', async () => {
    const h = afterPre({ [Inputs.Count]: '0', [Inputs.Drop]: 'a.example' }, (c) => (c.hosts = ['a.example', 'b.example']));
    await runMain(h.deps);
    expect(h.core.names()).not.toContain('client.getNodes');
    expect(h.core.outputs.get(Outputs.Hosts)).toBe('');
    expect(h.core.outputs.get(Outputs.AllHosts)).toBe('b.example');
    expect(h.core.summaries[0]!.text).toMatch(/1 host, expires .*; this step released 1\./);

    const fresh = harness({ [Inputs.Count]: '', [Inputs.Lifetime]: '' });
    await runMain(fresh.deps);
    expect(fresh.core.events).toContainEqual(['client.getSession', { alias: ALIAS, lifetime: undefined }]);
    expect(fresh.core.events).toContainEqual(['client.getNodes', { ssid: SSID, count: 1, ver: undefined, arch: undefined, flavor: undefined, wait: '5m' }]);
  });

  test('a bad count fails before any request', async () => {
    for (const count of ['-1', '1.5', 'two']) {
      const h = afterPre({ [Inputs.Count]: count });
      await runMain(h.deps);
      expect(h.core.failed).toMatch(/Input count: ".*" is not a whole number/);
      expect(h.core.names().filter((n) => n.startsWith('client.'))).toEqual([]);
    }
  });

  test('a failure after allocating fails the step and keeps the state post needs', async () => {
    const h = harness({ [Inputs.Count]: '2' }, (c) => (c.fail.showSession = apiError('server', 'database unavailable', 503)));
    const result = await runMain(h.deps);
    expect(result).toBeUndefined();
    expect(h.core.failed).toBe('cinode could not read the session: database unavailable');
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
  });

  test('a refused add names what was asked', async () => {
    const h = afterPre({ [Inputs.Count]: '9', [Inputs.Arch]: 'aarch64' }, (c) => (c.fail.getNodes = apiError('policy', 'Quota exceeded', 403)));
    await runMain(h.deps);
    expect(h.core.failed).toBe('cinode could not add 9 nodes (arch=aarch64): Quota exceeded');
  });

  test('SIGINT while waiting for capacity stops main at once, failed, with the state saved', async () => {
    const h = harness({ [Inputs.Count]: '3' }, (c) => (c.waitForCapacity = true));
    const running = runMain(h.deps);
    for (let i = 0; i < 50 && !h.core.infos().includes('Insufficient Nodes'); i++) await Promise.resolve();
    expect(h.core.infos()).toMatch(/Insufficient Nodes in READY State \(attempt 1\); retrying in 1.0s/);
    h.controller.abort(new Error('received SIGINT'));
    expect(await running).toBeUndefined();
    expect(h.core.failed).toMatch(/^cinode was cancelled while trying to add 3 nodes: .*cancelled.*The post step ends the session\.$/);
    expect(h.core.state.get(State.Ssid)).toBe(SSID);
    expect(h.core.state.get(State.Owner)).toBe(OwnerState.Owner);
    expect(h.settings[0]!.signal).toBe(h.controller.signal);
    expect(h.core.names()).not.toContain('client.showSession');
  });

  test('a summary that cannot be written is a warning, not a failure', async () => {
    const h = afterPre();
    h.core.summaryError = new Error('GITHUB_STEP_SUMMARY is not set');
    await runMain(h.deps);
    expect(h.core.failed).toBeUndefined();
    expect(h.core.warnings()).toEqual(['cinode could not write the job summary: GITHUB_STEP_SUMMARY is not set']);
    expect(h.core.outputs.get(Outputs.Hosts)).toBe('n1.example');
  });
});

describe('post', () => {
  function withState(owner: string, inputs: Partial<Record<Input, string>> = {}, setup?: (client: FakeClient) => void): Harness {
    const h = harness(inputs, setup);
    h.core.state.set(State.Ssid, SSID).set(State.Alias, ALIAS).set(State.Owner, owner);
    return h;
  }

  test('the opener ends the session, with the retry budget capped at 60s', async () => {
    const h = withState(OwnerState.Owner);
    await runPost(h.deps);
    expect(h.core.events[0]).toEqual(['setSecret', KEY]);
    expect(h.core.events).toContainEqual(['client.doneSession', SSID]);
    expect(h.settings[0]!.timeoutMs).toBe(POST_TIMEOUT_MS);
    expect(h.core.warnings()).toEqual([]);
    expect(h.core.failed).toBeUndefined();

    const short = withState(OwnerState.Owner, { [Inputs.Timeout]: '10s' });
    await runPost(short.deps);
    expect(short.settings[0]!.timeoutMs).toBe(10_000);
  });

  test('a use that did not open the session leaves it alone', async () => {
    for (const owner of ['', 'false']) {
      const h = withState(owner);
      await runPost(h.deps);
      expect(h.settings).toEqual([]);
      expect(h.core.infos()).toMatch(/to the use of cinode that opened it/);
    }
    const none = harness();
    await runPost(none.deps);
    expect(none.settings).toEqual([]);
    expect(none.core.infos()).toMatch(/opened no session/);
  });

  test('teardown: false leaves the session active and says how to end it', async () => {
    const h = withState(OwnerState.Owner, { [Inputs.Teardown]: 'false' });
    await runPost(h.deps);
    expect(h.settings).toEqual([]);
    expect(h.core.infos()).toMatch(new RegExp(`teardown is false: session ${SSID} \\(alias ${ALIAS.replace(/\//g, '\\/')}\\) stays active`));
  });

  test('a teardown value that is not a boolean ends the session anyway, with a warning', async () => {
    const h = withState(OwnerState.Owner, { [Inputs.Teardown]: 'sometimes' });
    await runPost(h.deps);
    expect(h.core.events).toContainEqual(['client.doneSession', SSID]);
    expect(h.core.warnings()[0]).toMatch(/Input teardown: "sometimes" is not a boolean: use true or false; ending the session anyway/);
  });

  test('a teardown that fails is a warning naming ssid and alias, never a failure', async () => {
    const h = withState(OwnerState.Owner, {}, (c) => (c.fail.doneSession = apiError('transport', 'no answer from http://127.0.0.1:9/Session/done')));
    await runPost(h.deps);
    expect(h.core.failed).toBeUndefined();
    const warning = h.core.events.find((e) => e[0] === 'warning')!;
    expect(warning[1]).toContain(`session ${SSID} (alias ${ALIAS})`);
    expect(warning[1]).toContain(`cinode session done ${SSID}`);
    expect(warning[2]).toBe('cinode teardown failed');
  });

  test('a session whose opening answer was lost is ended by alias; none found is fine', async () => {
    const h = harness();
    h.core.state.set(State.Alias, ALIAS).set(State.Owner, OwnerState.Pending);
    await runPost(h.deps);
    expect(h.core.events).toContainEqual(['client.doneSession', ALIAS]);

    const none = harness({}, (c) => (c.fail.doneSession = apiError('invalid-session', 'Invalid session ID', 403)));
    none.core.state.set(State.Alias, ALIAS).set(State.Owner, OwnerState.Pending);
    await runPost(none.deps);
    expect(none.core.warnings()).toEqual([]);
    expect(none.core.infos()).toMatch(/No session of alias .* exists/);

    const unknown = withState(OwnerState.Owner, {}, (c) => (c.fail.doneSession = apiError('invalid-session', 'Invalid session ID', 403)));
    await runPost(unknown.deps);
    expect(unknown.core.warnings()[0]).toMatch(/could not end session .*Invalid session ID/);
  });

  test('an unexpected error (e.g. a bad url) is a warning too', async () => {
    const h = withState(OwnerState.Owner);
    h.deps.createClient = () => {
      throw new Error('url: "nope" is not a URL');
    };
    await runPost(h.deps);
    expect(h.core.failed).toBeUndefined();
    expect(h.core.warnings()[0]).toMatch(/could not end session .*is not a URL/);
  });
});

describe('heartbeat, keeper and wait', () => {
  /** A keeper control that records what it was asked, and fails on cue. */
  function fakeKeeper(core: FakeCore, options: { startError?: Error; running?: boolean; stopError?: Error } = {}) {
    return {
      start(settings: KeeperSettings): number {
        core.events.push(['keeper.start', settings]);
        if (options.startError) throw options.startError;
        return 4242;
      },
      async stop(pid: number): Promise<boolean> {
        core.events.push(['keeper.stop', pid]);
        if (options.stopError) throw options.stopError;
        return options.running ?? true;
      },
    };
  }

  test('pre opens the session with the heartbeat and starts the keeper on a third of it, watching the runner; post stops it', async () => {
    const h = harness({ [Inputs.Heartbeat]: '30s' });
    h.deps.keeper = fakeKeeper(h.core);
    h.deps.parentPid = 777;
    h.deps.tempDir = '/runner/temp';
    await runPre(h.deps);
    expect(h.core.failed).toBeUndefined();
    expect(h.core.events).toContainEqual(['client.getSession', { alias: ALIAS, lifetime: undefined, heartbeat: '30s' }]);
    expect(h.core.events).toContainEqual([
      'keeper.start',
      { url: URL, key: KEY, keyInQuery: false, ssid: SSID, everyMs: 10_000, watchPid: 777, logFile: `/runner/temp/cinode-keeper-${SSID}.log` },
    ]);
    expect(h.core.state.get(State.KeeperPid)).toBe('4242');
    expect(h.core.infos()).toContain('Started keeper 4242');
    expect(h.core.infos()).not.toContain(KEY);

    await runPost(h.deps);
    expect(index(h.core, 'keeper.stop', 4242)).toBeLessThan(index(h.core, 'client.doneSession', SSID));
    expect(h.core.infos()).toContain('Stopped keeper 4242.');
  });

  test('a keeper that cannot start, or no keeper at all, is a warning: the session still works', async () => {
    const failing = harness({ [Inputs.Heartbeat]: '5m' });
    failing.deps.keeper = fakeKeeper(failing.core, { startError: new Error('spawn EAGAIN') });
    failing.deps.parentPid = 777;
    await runPre(failing.deps);
    expect(failing.core.failed).toBeUndefined();
    expect(failing.core.warnings()).toEqual([expect.stringMatching(/could not start its keeper: spawn EAGAIN; the session relies on the pings/)]);
    expect(failing.core.state.get(State.KeeperPid)).toBeUndefined();

    const none = harness({ [Inputs.Heartbeat]: '5m' });
    await runPre(none.deps);
    expect(none.core.failed).toBeUndefined();
    expect(none.core.warnings()).toEqual([expect.stringMatching(/cannot start a keeper here/)]);
  });

  test('without a heartbeat, no keeper; post of a keeper already gone, or that cannot be stopped, says so', async () => {
    const h = harness({ [Inputs.Heartbeat]: '' });
    h.deps.keeper = fakeKeeper(h.core);
    h.deps.parentPid = 777;
    await runPre(h.deps);
    expect(h.core.names()).not.toContain('keeper.start');
    expect(h.core.warnings()).toEqual([]);

    const gone = harness();
    gone.deps.keeper = fakeKeeper(gone.core, { running: false });
    gone.core.state.set(State.KeeperPid, '4242');
    await runPost(gone.deps);
    expect(gone.core.infos()).toContain('Keeper 4242 had already stopped');

    const stuck = harness();
    stuck.deps.keeper = fakeKeeper(stuck.core, { stopError: new Error('EPERM') });
    stuck.core.state.set(State.KeeperPid, '4242');
    await runPost(stuck.deps);
    expect(stuck.core.warnings()).toEqual([expect.stringContaining('could not stop its keeper 4242: EPERM')]);
  });

  test('a heartbeat out of range or a bad wait fails the step naming the input; wait reaches /Node/get', async () => {
    for (const heartbeat of ['5s', '2h', 'never']) {
      const h = harness({ [Inputs.Heartbeat]: heartbeat });
      await runPre(h.deps);
      expect(h.core.failed).toContain(`Input heartbeat: "${heartbeat}" is not a duration from 10s to 1h`);
      expect(h.core.names()).not.toContain('client.getSession');
    }
    const bad = harness({ [Inputs.Wait]: 'a while' });
    await runMain(bad.deps);
    expect(bad.core.failed).toContain('Input wait: "a while" is not a duration');
    const h = harness({ [Inputs.Wait]: '20m', [Inputs.Timeout]: '1m' });
    await runMain(h.deps);
    expect(h.core.events).toContainEqual(['client.getNodes', expect.objectContaining({ wait: '20m' })]);
  });
});
