/**
 * Test support: a real cinode server on 127.0.0.1 with a real SQLite file in a temporary folder,
 * and a small HTTP client that sends requests the way legacy scripts do (GET, unencoded query).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startServer, type RunningServer, type ServerOptions } from '../../src/main/server.js';
import { dropTestDatabaseSync, testDatabaseUrl } from './database.js';

export const KEYS = {
  alpha: 'alpha-key-0123456789abcdef',
  beta: 'beta-key-0123456789abcdef0',
  never: 'never-key-0123456789abcdef',
} as const;

export interface PoolSpec {
  name: string;
  ver?: string;
  arch?: string;
  flavor?: string | null;
  nodes: number;
  reclaim?: string[];
  reclaimTimeout?: string;
  /** Hostname prefix; defaults to the pool name. */
  prefix?: string;
  /** `command`: no `nodes:` list is written; give its settings in `settings`. */
  mechanism?: 'static' | 'command';
  /** More settings of the pool (provision, max-nodes...), written as YAML flow values. */
  settings?: Record<string, YamlValue>;
  /** The nodes as written, instead of `nodes` generated ones (for ip and ssh-port). */
  nodeList?: Array<Record<string, YamlValue>>;
}

type YamlValue = string | number | boolean | null | readonly YamlValue[];

export interface ConfigSpec {
  pools?: PoolSpec[];
  /** Extra YAML lines for `defaults:` (indented by the helper). */
  defaults?: Record<string, string | number>;
  /** Extra project settings by project name. */
  projects?: Partial<Record<keyof typeof KEYS, Record<string, YamlValue>>>;
  /** Top-level lines written as they are, before `defaults:` (a `contextualize:` section...). */
  topYaml?: string[];
  reaperInterval?: string;
  publicInventory?: boolean;
  reclaimParallel?: number;
  /** Server options that are not configuration (HTTP limits, the failed-key throttle). */
  server?: Pick<ServerOptions, 'httpLimits' | 'failedKeyLimits' | 'queueTimings'>;
}

export const DEFAULT_POOLS: PoolSpec[] = [
  { name: 'c7', ver: '7', arch: 'x86_64', nodes: 6 },
  { name: 'c9s', ver: '9-stream', arch: 'x86_64', nodes: 4 },
  { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 2 },
];

/** JSON is YAML: strings, lists and null are written as JSON, numbers and booleans plainly. */
function yamlValue(value: YamlValue): string {
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

export function hostnameOf(pool: PoolSpec, index: number): string {
  return `${pool.prefix ?? pool.name}-${index + 1}.test.example`;
}

/** Writes the configuration a test asks for, with the database in `dir` (or made for it: see database.ts). */
export function configYaml(dir: string, spec: ConfigSpec = {}): string {
  const pools = spec.pools ?? DEFAULT_POOLS;
  const lines = [
    'listen: 127.0.0.1:0',
    `database: ${JSON.stringify(testDatabaseUrl(dir))}`,
    `reaper-interval: ${spec.reaperInterval ?? '1s'}`,
    `public-inventory: ${spec.publicInventory ?? true}`,
    `reclaim-parallel: ${spec.reclaimParallel ?? 4}`,
    ...(spec.topYaml ?? []),
    'defaults:',
    ...Object.entries(spec.defaults ?? {}).map(([k, v]) => `  ${k}: ${yamlValue(v)}`),
    'projects:',
  ];
  for (const [name, key] of Object.entries(KEYS)) {
    const extra = { ...(name === 'never' ? { 'never-expire': true } : {}), ...(spec.projects?.[name as keyof typeof KEYS] ?? {}) };
    lines.push(`  - name: ${name}`, `    key: ${JSON.stringify(key)}`);
    for (const [k, v] of Object.entries(extra)) lines.push(`    ${k}: ${yamlValue(v)}`);
  }
  lines.push('pools:');
  for (const pool of pools) {
    lines.push(
      `  - name: ${pool.name}`,
      `    ver: ${JSON.stringify(pool.ver ?? '7')}`,
      `    arch: ${pool.arch ?? 'x86_64'}`,
      `    flavor: ${pool.flavor ?? 'null'}`,
    );
    if (pool.reclaim) lines.push(`    reclaim: ${JSON.stringify(pool.reclaim)}`);
    if (pool.reclaimTimeout) lines.push(`    reclaim-timeout: ${pool.reclaimTimeout}`);
    if (pool.mechanism) lines.push(`    mechanism: ${pool.mechanism}`);
    for (const [k, v] of Object.entries(pool.settings ?? {})) lines.push(`    ${k}: ${yamlValue(v)}`);
    if (pool.mechanism === 'command') continue;
    lines.push('    nodes:');
    if (pool.nodeList) {
      for (const node of pool.nodeList) lines.push(`      - {${Object.entries(node).map(([k, v]) => `${k}: ${yamlValue(v)}`).join(', ')}}`);
      continue;
    }
    for (let i = 0; i < pool.nodes; i++) {
      lines.push(`      - {hostname: ${hostnameOf(pool, i)}, ip: 192.0.2.${(i % 250) + 1}}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

export type Query = Record<string, string | number | undefined> | string;

/** Builds a query string the way legacy clients do: values as they are, not URL-encoded. */
export function rawQuery(query: Query): string {
  if (typeof query === 'string') return query;
  return Object.entries(query)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

export async function send(url: string, init?: RequestInit): Promise<Reply> {
  const response = await fetch(url, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

export class TestServer {
  readonly logs: string[] = [];
  server!: RunningServer;
  readonly configPath: string;

  constructor(
    readonly dir: string,
    private readonly spec: ConfigSpec,
  ) {
    this.configPath = join(dir, 'cinode.yaml');
    writeFileSync(this.configPath, configYaml(dir, spec));
  }

  get url(): string {
    return this.server.url;
  }

  async start(clock?: () => number): Promise<this> {
    const stream = { write: (line: string) => void this.logs.push(line) };
    const logger = pino({ level: 'info' }, stream);
    this.server = await startServer({ configPath: this.configPath, logger, listen: { host: '127.0.0.1', port: 0 }, clock, ...this.spec.server });
    return this;
  }

  /** GET path?query, like legacy clients. */
  get(path: string, query: Query = {}, headers: Record<string, string> = {}): Promise<Reply> {
    const qs = rawQuery(query);
    return send(`${this.url}${path}${qs ? `?${qs}` : ''}`, { headers });
  }

  post(path: string, body: string, contentType: string, headers: Record<string, string> = {}): Promise<Reply> {
    return send(`${this.url}${path}`, { method: 'POST', body, headers: { 'content-type': contentType, ...headers } });
  }

  async close(): Promise<void> {
    await this.server.close();
  }
}

export async function startTestServer(spec: ConfigSpec = {}, clock?: () => number): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'cinode-test-'));
  return new TestServer(dir, spec).start(clock);
}

/** Deletes a test folder, and the PostgreSQL database made for it if there is one. */
export function removeDir(dir: string): void {
  dropTestDatabaseSync(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Waits until `check` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
