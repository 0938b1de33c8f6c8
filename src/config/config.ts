/**
 * Reads cinode.yaml: YAML, then `${VAR}` substitution, then the schemas of schema.ts, then the
 * checks that span several settings. Every problem found is reported at once, each with the line
 * and path of the setting, so one run of `cinode serve` shows everything that needs fixing.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { z } from 'zod';
import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { formatDuration, NEVER, type Lifetime } from '../api/duration.js';
import type { Pool, ProjectPolicy } from '../core/model.js';
import type { IsolationHooks } from '../machines/hooks.js';
import type { SshSettings } from '../machines/ssh.js';
import type { NodeRecord } from '../core/storage.js';
import { hashKey } from '../core/catalog.js';
import { contextualizeSchema, defaultsSchema, isolationSchema, errorMap, poolSchema, projectSchema, topSchema, type PolicyKey } from './schema.js';


export interface ProjectConfig {
  name: string;
  keyHash: string;
  policy: ProjectPolicy;
  sshKeys: string[];
}

/** A pool and the nodes the file lists for it; `capacity` is their number. */
export interface PoolConfig extends Pool {
  nodes: NodeRecord[];
}

export interface CinodeConfig {
  listen: { host: string; port: number };
  database: string;
  reaperIntervalMs: number;
  /** How long events are kept; `never`: for ever. */
  eventRetentionMs: Lifetime;
  publicInventory: boolean;
  reclaimParallel: number;
  /** Whether `GET /metrics` needs an admin project's key. */
  metricsKeyRequired: boolean;
  /** How nodes are reached to put projects' SSH keys on them; null: nodes are handed over untouched. */
  contextualize: SshSettings | null;
  /** The session isolation hooks; null without an `isolation:` block (no hook ever runs). */
  isolation: IsolationHooks | null;
  defaults: { ver: string; arch: string; defaultFlavor: Record<string, string> };
  projects: ProjectConfig[];
  pools: PoolConfig[];
}

/** Everything wrong with a configuration file, one line per problem. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

type Path = ReadonlyArray<string | number>;

/** `pools[0].nodes[1].hostname` */
function formatPath(path: Path): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

/** Collects problems, each placed at the line of the setting it is about. */
class Problems {
  private readonly found: Array<{ line: number; text: string }> = [];
  private readonly settingsWithProblems = new Set<string>();

  constructor(
    private readonly sourceName: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  get count(): number {
    return this.found.length;
  }

  atLine(line: number, path: Path, message: string): void {
    const where = path.length > 0 ? `${formatPath(path)}: ` : '';
    this.found.push({ line, text: `${this.sourceName}:${line}: ${where}${message}` });
  }

  /**
   * One problem a setting: the rest usually follow from the first (a key whose variable is unset is
   * also too short), and fixing the first brings any other to light.
   */
  at(path: Path, message: string): void {
    const where = formatPath(path);
    if (this.settingsWithProblems.has(where)) return;
    this.settingsWithProblems.add(where);
    this.atLine(this.lineOf(path), path, message);
  }

  /** Parses `value` (found at `path`) with `schema`; undefined, with the problems noted, when it does not fit. */
  check<S extends z.ZodTypeAny>(schema: S, value: unknown, path: Path): z.output<S> | undefined {
    const result = schema.safeParse(value, { errorMap });
    if (result.success) return result.data as z.output<S>;
    for (const issue of result.error.issues) this.at([...path, ...issue.path], issue.message);
    return undefined;
  }

  /** Sorted by line, so they read along with the file; the same problem found twice is told once. */
  sorted(): string[] {
    const ordered = [...this.found].sort((a, b) => a.line - b.line);
    return [...new Set(ordered.map((p) => p.text))];
  }

  /**
   * The line of the setting at `path`: of its key when it sits in a mapping (its value may start on
   * a later line). A setting that is missing is placed at the deepest part of the path that exists.
   */
  lineOf(path: Path): number {
    let node: unknown = this.doc.contents;
    let offset = isNode(node) ? node.range?.[0] : undefined;
    for (const part of path) {
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(part));
        if (!pair) break;
        offset = isNode(pair.key) ? pair.key.range?.[0] : offset;
        node = pair.value;
      } else if (isSeq(node) && typeof part === 'number' && part < node.items.length) {
        node = node.items[part];
        offset = isNode(node) ? node.range?.[0] : offset;
      } else {
        break;
      }
    }
    return offset === undefined ? 1 : this.lines.linePos(offset).line;
  }
}

/** YAML reads `ver: 8.10` as the number 8.1; keep every version as it is written. */
function keepVersionsAsWritten(doc: Document.Parsed): void {
  visit(doc, {
    Pair(_, pair) {
      const { key, value } = pair;
      if (isScalar(key) && key.value === 'ver' && isScalar(value) && typeof value.value === 'number' && value.source !== undefined) {
        value.value = value.source;
      }
    },
  });
}

/** `$${` for a literal `${`, `${NAME}` for a variable, and any other `${` is a mistake. */
const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{/g;

/** Replaces `${VAR}` in every string value (not in keys). The message never quotes the value: it may be a key. */
function substitute(value: unknown, path: Path, env: Record<string, string | undefined>, problems: Problems): unknown {
  if (typeof value === 'string') {
    return value.replace(REFERENCE, (match, name: string | undefined) => {
      if (match === '$${') return '${';
      if (name === undefined) {
        problems.at(path, 'a "${" must start a reference such as ${NAME} (write "$${" for a literal "${")');
        return match;
      }
      const replacement = env[name];
      if (replacement === undefined) problems.at(path, `environment variable ${name} is not set`);
      return replacement ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => substitute(item, [...path, i], env, problems));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, [...path, k], env, problems)]));
  }
  return value;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/**
 * Reports the second and later use of a value that must be unique. `items` are the raw entries, so
 * a duplicate is found even when an entry has other problems.
 */
function checkUnique(problems: Problems, what: string, items: Array<{ value: string | undefined; path: Path }>): void {
  const first = new Map<string, Path>();
  for (const { value, path } of items) {
    if (value === undefined) continue;
    const earlier = first.get(value);
    if (earlier === undefined) first.set(value, path);
    else problems.at(path, `${what} as ${formatPath(earlier)} (line ${problems.lineOf(earlier)})`);
  }
}

type PolicySettings = z.output<typeof defaultsSchema>;

const longer = (a: Lifetime, b: Lifetime): boolean => b !== NEVER && (a === NEVER || a > b);
const showLifetime = (l: Lifetime): string => (l === NEVER ? NEVER : formatDuration(l));

/** What is wrong with one combination of policy settings, each with the keys involved (the likeliest culprit first). */
function policyProblems(s: PolicySettings): Array<{ keys: [PolicyKey, PolicyKey]; message: string }> {
  const found: Array<{ keys: [PolicyKey, PolicyKey]; message: string }> = [];
  const lifetime = s['session-lifetime'];
  const max = s['session-lifetime-max'];
  if (longer(lifetime, max)) {
    found.push({
      keys: ['session-lifetime', 'session-lifetime-max'],
      message: `session-lifetime ${showLifetime(lifetime)} is longer than session-lifetime-max ${showLifetime(max)}`,
    });
  }
  for (const key of ['session-lifetime', 'session-lifetime-max'] as const) {
    if (s[key] === NEVER && !s['never-expire']) {
      found.push({ keys: [key, 'never-expire'], message: `${key} "never" needs never-expire: true` });
    }
  }
  if (s['default-wait'] > s['max-wait']) {
    found.push({
      keys: ['default-wait', 'max-wait'],
      message: `default-wait ${formatDuration(s['default-wait'])} is longer than max-wait ${formatDuration(s['max-wait'])}`,
    });
  }
  return found;
}

function toPolicy(s: PolicySettings): ProjectPolicy {
  return {
    nodeQuota: s['node-quota'],
    sessionLifetimeMs: s['session-lifetime'],
    sessionLifetimeMaxMs: s['session-lifetime-max'],
    neverExpire: s['never-expire'],
    failHoldMs: s['fail-hold'],
    maxFailedNodes: s['max-failed-nodes'],
    rateLimit: s['rate-limit'],
    maxCount: s['max-count'],
    maxWaitMs: s['max-wait'],
    defaultWaitMs: s['default-wait'],
    admin: s.admin,
  };
}

/** Settings that belong to one mechanism only; each is refused under the other. */
const STATIC_ONLY = ['nodes', 'reclaim', 'reclaim-timeout'];
const COMMAND_ONLY = ['provision', 'deprovision', 'command-timeout', 'ready-min', 'max-nodes', 'max-parallel', 'max-ready-age'];
const COMMAND_REQUIRED = ['provision', 'deprovision', 'max-nodes'];

/** What is wrong with a pool's settings for its mechanism: a setting of the other one, or a missing one. */
function checkMechanism(mechanism: 'static' | 'command', fields: Record<string, unknown>): Array<{ key: string; message: string }> {
  const [foreign, other] = mechanism === 'static' ? [COMMAND_ONLY, 'command'] : [STATIC_ONLY, 'static'];
  const found = foreign.filter((key) => key in fields).map((key) => ({ key, message: `is only for mechanism: ${other} (this pool is ${mechanism})` }));
  if (mechanism === 'static' && !('nodes' in fields)) found.push({ key: 'nodes', message: 'is required for mechanism: static (the list of the pool\'s machines)' });
  if (mechanism === 'command') {
    for (const key of COMMAND_REQUIRED) if (!(key in fields)) found.push({ key, message: 'is required for mechanism: command' });
  }
  return found;
}

/** Reads a configuration from `text`; `sourceName` (the file name) starts every message. */
export function parseConfig(text: string, sourceName: string, env: Record<string, string | undefined>): CinodeConfig {
  const lines = new LineCounter();
  // prettyErrors would quote the surrounding source in messages, and that source may hold a key.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const problems = new Problems(sourceName, doc, lines);
  for (const e of [...doc.errors, ...doc.warnings]) problems.atLine(lines.linePos(e.pos[0]).line, [], e.message);
  // A broken document gives a partial tree; checking it would only add confusing follow-up problems.
  if (problems.count > 0) throw new ConfigError(problems.sorted());

  keepVersionsAsWritten(doc);
  // An empty file is an empty mapping, so the problems are the missing `projects` and `pools`.
  const raw = substitute(doc.toJS() ?? {}, [], env, problems);
  const rawTop = asRecord(raw) ?? {};
  const top = problems.check(topSchema, raw, []);
  // `defaults:` with every line commented out is an empty mapping, not null.
  const defaults = problems.check(defaultsSchema, rawTop.defaults ?? {}, ['defaults']);
  const rawProjects = asList(rawTop.projects).map((value, i) => ({ value, path: ['projects', i], fields: asRecord(value) ?? {} }));
  const rawPools = asList(rawTop.pools).map((value, i) => ({ value, path: ['pools', i], fields: asRecord(value) ?? {} }));

  const projects: ProjectConfig[] = [];
  for (const { value, path, fields } of rawProjects) {
    const hasKey = 'key' in fields;
    if (asRecord(value) && hasKey === 'key-sha256' in fields) {
      problems.at(hasKey ? [...path, 'key-sha256'] : path, hasKey ? 'give key or key-sha256, not both' : 'needs key or key-sha256');
    }
    const project = problems.check(projectSchema, value, path);
    if (!project || !defaults) continue;
    const { name, key, 'key-sha256': keySha256, 'ssh-keys': sshKeys, ...overrides } = project;
    if (sshKeys.length > 0 && (rawTop.contextualize === undefined || rawTop.contextualize === null)) {
      problems.at([...path, 'ssh-keys'], 'needs a top-level contextualize: section saying how cinode logs into nodes to add the keys');
    }
    // zod leaves out the settings the project does not give, so they keep the value of `defaults`.
    const settings: PolicySettings = { ...defaults, ...overrides };
    for (const { keys, message } of policyProblems(settings)) {
      // A project that sets none of the keys involved inherits the problem; it is reported at `defaults`.
      const culprit = keys.find((key) => project[key] !== undefined);
      if (culprit) problems.at([...path, culprit], message);
    }
    const keyHash = key ?? keySha256;
    if (keyHash !== undefined) projects.push({ name, keyHash, policy: toPolicy(settings), sshKeys });
  }
  if (defaults) for (const { keys, message } of policyProblems(defaults)) problems.at(['defaults', keys[0]], message);

  const pools: PoolConfig[] = [];
  for (const { value, path, fields } of rawPools) {
    // Checked on the settings as written, so that a pool with other problems has these told too;
    // a pool that is not a mapping is told only that.
    const rawMechanism = asRecord(value) ? (fields.mechanism ?? 'static') : undefined;
    const mechanismProblems = rawMechanism === 'static' || rawMechanism === 'command' ? checkMechanism(rawMechanism, fields) : [];
    for (const { key, message } of mechanismProblems) problems.at([...path, key], message);
    const pool = problems.check(poolSchema, value, path);
    if (!pool || mechanismProblems.length > 0) continue;
    const { name, ver, arch, flavor, mechanism } = pool;
    const nodes = pool.nodes.map(
      (n): NodeRecord => ({
        hostname: n.hostname,
        ip: n.ip ?? null,
        pool: name,
        ver,
        arch,
        flavor,
        chassis: n.chassis ?? null,
        consolePort: n['console-port'] ?? null,
        sshPort: n['ssh-port'] ?? null,
      }),
    );
    const base = { name, ver, arch, flavor, reclaimTimeoutMs: pool['reclaim-timeout'] };
    if (mechanism === 'static') {
      pools.push({ ...base, reclaim: pool.reclaim, capacity: nodes.length, command: null, nodes });
      continue;
    }
    const maxNodes = pool['max-nodes']!;
    if (pool['ready-min'] > maxNodes) problems.at([...path, 'ready-min'], `ready-min ${pool['ready-min']} is more than max-nodes ${maxNodes}`);
    const command = {
      provision: pool.provision!,
      deprovision: pool.deprovision!,
      commandTimeoutMs: pool['command-timeout'],
      readyMin: pool['ready-min'],
      maxNodes,
      maxParallel: pool['max-parallel'],
      maxReadyAgeMs: pool['max-ready-age'] ?? null,
    };
    pools.push({ ...base, reclaim: null, capacity: maxNodes, command, nodes: [] });
  }

  const contextualize = (rawTop.contextualize === undefined || rawTop.contextualize === null) ? undefined : problems.check(contextualizeSchema, rawTop.contextualize, ['contextualize']);

  const rawIsolation = rawTop.isolation === undefined || rawTop.isolation === null ? undefined : problems.check(isolationSchema, rawTop.isolation, ['isolation']);
  const isolation: IsolationHooks | null = rawIsolation
    ? {
        sessionSetup: rawIsolation['session-setup'] ?? null,
        sessionTeardown: rawIsolation['session-teardown'] ?? null,
        nodeAttach: rawIsolation['node-attach'] ?? null,
        nodeDetach: rawIsolation['node-detach'] ?? null,
        timeoutMs: rawIsolation.timeout,
      }
    : null;

  const stringAt = (fields: Record<string, unknown>, key: string): string | undefined =>
    typeof fields[key] === 'string' ? fields[key] : undefined;
  checkUnique(
    problems,
    'the same name',
    rawProjects.map(({ path, fields }) => ({ value: stringAt(fields, 'name'), path: [...path, 'name'] })),
  );
  // Compared by hash, so a key given plainly in one project and hashed in another is caught too.
  checkUnique(
    problems,
    'the same key',
    rawProjects.map(({ path, fields }) => {
      const key = stringAt(fields, 'key');
      const hashed = stringAt(fields, 'key-sha256')?.toLowerCase();
      return key !== undefined ? { value: hashKey(key), path: [...path, 'key'] } : { value: hashed, path: [...path, 'key-sha256'] };
    }),
  );
  checkUnique(
    problems,
    'the same name',
    rawPools.map(({ path, fields }) => ({ value: stringAt(fields, 'name'), path: [...path, 'name'] })),
  );
  // Across all pools, and regardless of case: DNS names are case-insensitive.
  checkUnique(
    problems,
    'the same hostname',
    rawPools.flatMap(({ path, fields }) =>
      asList(fields.nodes).map((node, j) => ({
        value: stringAt(asRecord(node) ?? {}, 'hostname')?.toLowerCase(),
        path: [...path, 'nodes', j, 'hostname'],
      })),
    ),
  );

  if (problems.count > 0 || !top || !defaults) throw new ConfigError(problems.sorted());
  return {
    listen: top.listen,
    database: top.database,
    reaperIntervalMs: top['reaper-interval'],
    eventRetentionMs: top['event-retention'],
    publicInventory: top['public-inventory'],
    reclaimParallel: top['reclaim-parallel'],
    metricsKeyRequired: top.metrics['key-required'],
    contextualize: contextualize
      ? {
          user: contextualize.user,
          privateKey: contextualize['private-key'],
          port: contextualize.port,
          authorizedKeys: contextualize['authorized-keys'],
          knownHosts: contextualize['known-hosts'],
          timeoutMs: contextualize.timeout,
        }
      : null,
    isolation,
    defaults: { ver: defaults.ver, arch: defaults.arch, defaultFlavor: defaults['default-flavor'] },
    projects,
    pools,
  };
}

/** Reads the configuration file at `path`; `${VAR}` comes from `env`. */
export function loadConfig(path: string, env: Record<string, string | undefined> = process.env): CinodeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new ConfigError([`${path}: cannot read the configuration file: ${reason}`]);
  }
  return parseConfig(text, path, env);
}

/**
 * Checks that the files the configuration names can be read by this process: a missing SSH key
 * would otherwise show only as every node failing contextualization, one after another, each
 * quarantined for a fault of the server's. Run at start and reload, where the files are used.
 */
export function checkConfigFiles(config: CinodeConfig, sourceName: string): void {
  const files: Array<[setting: string, path: string]> = [];
  if (config.contextualize) {
    files.push(['contextualize.private-key', config.contextualize.privateKey]);
    if (config.contextualize.knownHosts !== 'ignore') files.push(['contextualize.known-hosts', config.contextualize.knownHosts]);
  }
  const problems: string[] = [];
  for (const [setting, path] of files) {
    try {
      accessSync(path, fsConstants.R_OK);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
      problems.push(`${sourceName}: ${setting}: cannot read ${JSON.stringify(path)}: ${reason}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
