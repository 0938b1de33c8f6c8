/**
 * The typed cinode client: one method per call of docs/api.md, legacy bodies parsed into typed results
 * and CinodeApiErrors, retries bounded by a total time budget (retry.ts). Works against cinode and
 * against a legacy admin.ci endpoint (`keyInQuery`). Nothing here imports the server.
 */
import { parseDuration } from '../api/duration.js';
import { DONE_BODY, DONE_MESSAGE, NOT_IN_PROD_MESSAGE } from '../api/messages.js';
import { CinodeAbortError, CinodeApiError, errorFromAnswer, legacyRefusal, parseJson, redactKey, snippet, unreachableHint } from './errors.js';
import { abortError, isRetryable, raceAbort, withRetry, type RetryInfo, type Sleep } from './retry.js';
import { ActionsHttpTransport, type HttpTransport, type TransportResponse } from './transport.js';
import type {
  HostView,
  PublicInventoryRow,
  KeyedInventoryRow,
  NodeGetParams,
  NodeGetResult,
  SessionGetParams,
  SessionGetResult,
  SessionView,
} from './types.js';

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_USER_AGENT = 'cinode-client';
/** Every request gets at least this long, even when the budget is nearly spent (its last attempt). */
const MIN_REQUEST_TIMEOUT_MS = 1_000;

export interface CinodeClientOptions {
  /** The API's base URL; may carry a path prefix (`http://host/api/v1`). */
  url: string;
  key: string;
  /**
   * Send the key as `key=` in the query (for a legacy admin.ci endpoint that reads nothing else)
   * instead of `Authorization: Bearer` (default: query strings end up in proxy and access logs).
   */
  keyInQuery?: boolean;
  /** Total retry budget per call, in milliseconds (default 5 min). */
  timeoutMs?: number;
  /** Each request's own timeout, in milliseconds (default 30 s). */
  requestTimeoutMs?: number;
  /** Cancels every call of this client: it stops promptly with a CinodeAbortError. */
  signal?: AbortSignal;
  /** Told about each retry (the action logs it). */
  onRetry?: (info: RetryInfo) => void;
  userAgent?: string;
  transport?: HttpTransport;
  sleep?: Sleep;
  random?: () => number;
  now?: () => number;
  /** Backoff tuning (defaults in retry.ts). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** The calls of docs/api.md by path: one name per call. */
const CALL = {
  nodeGet: '/Node/get',
  nodeDone: '/Node/done',
  nodeFail: '/Node/fail',
  inventory: '/Inventory',
  sessionGet: '/Session/get',
  sessionDone: '/Session/done',
  sessionShow: '/Session/show',
  sessionList: '/Session/list',
  sessionExtend: '/Session/extend',
  sessionPing: '/Session/ping',
} as const;
type CallPath = (typeof CALL)[keyof typeof CALL];

type QueryValue = string | number | readonly string[] | undefined;

export interface CallSpec<T> {
  path: string;
  query?: Record<string, QueryValue>;
  /** Send the key (false only for the unkeyed `/Inventory`). */
  keyed?: boolean;
  /** Whether a request without an answer may be sent again (it may have been carried out). */
  idempotent: boolean;
  /** The result, or undefined when the body is not the expected shape. */
  parse: (body: unknown) => T | undefined;
  /** The expected shape, for the error message when it does not match. */
  expected: string;
  /** How long the server may wait before it answers (`wait=`): the request's timeout and the budget cover it. */
  serverWaitMs?: number;
}

// ---- shape checks ------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
const isString = (value: unknown): value is string => typeof value === 'string';
const isStringOrNull = (value: unknown): value is string | null => value === null || typeof value === 'string';
const isNumberOrNull = (value: unknown): value is number | null => value === null || typeof value === 'number';
const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every(isString);

function asNodeGet(body: unknown): NodeGetResult | undefined {
  if (!isRecord(body) || !isStringArray(body.hosts) || !isString(body.ssid)) return undefined;
  return { hosts: body.hosts, ssid: body.ssid };
}

function asSessionGet(body: unknown): SessionGetResult | undefined {
  if (!isRecord(body)) return undefined;
  const { ssid, alias, hosts, expires_at, created } = body;
  if (!isString(ssid) || !isStringOrNull(alias) || !isStringArray(hosts) || !isStringOrNull(expires_at) || typeof created !== 'boolean') {
    return undefined;
  }
  return { ssid, alias, hosts, expires_at, created };
}

function asHost(value: unknown): HostView | undefined {
  if (!isRecord(value)) return undefined;
  const { hostname, ip, state, ver, arch, flavor } = value;
  if (!isString(hostname) || !isStringOrNull(ip) || !isString(state) || !isString(ver) || !isString(arch) || !isStringOrNull(flavor)) {
    return undefined;
  }
  return { hostname, ip, state, ver, arch, flavor };
}

function asSessionView(body: unknown): SessionView | undefined {
  if (!isRecord(body)) return undefined;
  const { ssid, alias, state, created_at, expires_at, ended_at, end_reason, hosts } = body;
  // Servers from before heartbeats leave both out (docs/api.md, "Heartbeats").
  const heartbeat = body.heartbeat ?? null;
  const heartbeat_deadline = body.heartbeat_deadline ?? null;
  if (
    !isStringOrNull(heartbeat) ||
    !isStringOrNull(heartbeat_deadline) ||
    !isString(ssid) ||
    !isStringOrNull(alias) ||
    (state !== 'active' && state !== 'done') ||
    !isString(created_at) ||
    !isStringOrNull(expires_at) ||
    !isStringOrNull(ended_at) ||
    !isStringOrNull(end_reason) ||
    !Array.isArray(hosts)
  ) {
    return undefined;
  }
  const views = hosts.map(asHost);
  if (views.some((h) => h === undefined)) return undefined;
  return { ssid, alias, state, created_at, expires_at, ended_at, end_reason, hosts: views as HostView[], heartbeat, heartbeat_deadline };
}

function asSessionList(body: unknown): SessionView[] | undefined {
  if (!Array.isArray(body)) return undefined;
  const views = body.map(asSessionView);
  return views.some((v) => v === undefined) ? undefined : (views as SessionView[]);
}

function asKeyedInventory(body: unknown): KeyedInventoryRow[] | undefined {
  if (!Array.isArray(body)) return undefined;
  const ok = body.every((row) => Array.isArray(row) && row.length >= 2 && isString(row[0]) && isString(row[1]));
  return ok ? body.map((row: unknown[]) => [row[0], row[1]] as KeyedInventoryRow) : undefined;
}

function isPublicInventoryRow(row: unknown): row is PublicInventoryRow {
  if (!Array.isArray(row) || row.length !== 14) return false;
  const [id, hostname, ip, chassis, used, state, comment, distro, rel, ver, arch, pool, port, flavor] = row as unknown[];
  return (
    isNumberOrNull(id) &&
    isString(hostname) &&
    isStringOrNull(ip) &&
    isStringOrNull(chassis) &&
    isNumberOrNull(used) &&
    isString(state) &&
    isStringOrNull(comment) &&
    isStringOrNull(distro) &&
    isStringOrNull(rel) &&
    (isString(ver) || typeof ver === 'number') &&
    isString(arch) &&
    isNumberOrNull(pool) &&
    isNumberOrNull(port) &&
    isStringOrNull(flavor)
  );
}

function asPublicInventory(body: unknown): PublicInventoryRow[] | undefined {
  return Array.isArray(body) && body.every(isPublicInventoryRow) ? body : undefined;
}

const asDone = (body: unknown): true | undefined => (body === DONE_MESSAGE ? true : undefined);

function asNodeDone(body: unknown): 'done' | 'not-in-prod' | undefined {
  if (body === DONE_MESSAGE) return 'done';
  if (isRecord(body) && body.msg === NOT_IN_PROD_MESSAGE) return 'not-in-prod';
  return undefined;
}

const SESSION_VIEW_SHAPE =
  '{"ssid", "alias", "state": "active"|"done", "created_at", "expires_at", "ended_at", "end_reason", "hosts": [{"hostname", "ip", "state", "ver", "arch", "flavor"}], "heartbeat", "heartbeat_deadline"}';

// ---- the client --------------------------------------------------------------------------------

export class CinodeClient {
  private readonly base: URL;
  private readonly key: string;
  private readonly keyInQuery: boolean;
  private readonly timeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly transport: HttpTransport;
  private readonly userAgent: string;
  private readonly now: () => number;

  constructor(private readonly options: CinodeClientOptions) {
    let base: URL;
    try {
      base = new URL(options.url);
    } catch {
      throw new Error(`url: ${JSON.stringify(redactKey(options.url, options.key))} is not a URL; expected e.g. http://cinode.example:8080`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new Error(`url: ${JSON.stringify(redactKey(options.url, options.key))} is not http:// or https://`);
    }
    if (base.search !== '' || base.hash !== '') {
      throw new Error(`url: ${JSON.stringify(redactKey(options.url, options.key))} must not carry a query or fragment; give the key as key`);
    }
    this.base = base;
    this.key = options.key;
    this.keyInQuery = options.keyInQuery ?? false;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.transport = options.transport ?? new ActionsHttpTransport();
    this.userAgent = options.userAgent ?? DEFAULT_USER_AGENT;
    this.now = options.now ?? Date.now;
  }

  /**
   * `/Node/get`: a new session holding `count` nodes, or (with `ssid`) more nodes in a live one.
   * With `wait`, the server holds the request in its queue for up to that long; the call waits
   * for its answer whatever the client's timeouts.
   */
  getNodes(params: NodeGetParams = {}): Promise<NodeGetResult> {
    const { ver, arch, flavor, count, ssid, wait } = params;
    let serverWaitMs: number | undefined;
    if (wait !== undefined) {
      serverWaitMs = parseDuration(wait);
      if (serverWaitMs === undefined) {
        return Promise.reject(
          new CinodeApiError('bad-request', `wait: ${JSON.stringify(wait)} is not a duration; accepted: a duration such as 30s, 10m or 1h`, { call: CALL.nodeGet }),
        );
      }
    }
    return this.call({
      path: CALL.nodeGet,
      query: { ver, arch, count, flavor, ssid, wait },
      serverWaitMs,
      // A lost answer may have allocated nodes: never sent twice.
      idempotent: false,
      parse: asNodeGet,
      expected: '{"hosts": [...], "ssid": "..."}',
    });
  }

  /**
   * `/Node/done`: without `nodes`, ends the session ('not-in-prod' when it was already done); with
   * `nodes`, releases just those nodes.
   */
  async doneNodes(ssid: string, nodes?: readonly string[]): Promise<'done' | 'not-in-prod'> {
    return this.call({
      path: CALL.nodeDone,
      query: { ssid, node: nodeList(CALL.nodeDone, nodes) },
      idempotent: false,
      parse: asNodeDone,
      expected: `${DONE_BODY} or {"msg": "${NOT_IN_PROD_MESSAGE}"}`,
    });
  }

  /** `/Node/fail`: without `nodes`, keeps the session's nodes for debugging; with `nodes`, reports those nodes broken. */
  async failNodes(ssid: string, nodes?: readonly string[]): Promise<void> {
    await this.call({
      path: CALL.nodeFail,
      query: { ssid, node: nodeList(CALL.nodeFail, nodes) },
      idempotent: false,
      parse: asDone,
      expected: DONE_BODY,
    });
  }

  /** Keyed `/Inventory`: `[hostname, ssid]` for each node in the project's active sessions. */
  inventory(): Promise<KeyedInventoryRow[]> {
    return this.call({ path: CALL.inventory, idempotent: true, parse: asKeyedInventory, expected: '[[hostname, ssid], ...]' });
  }

  /** Unkeyed `/Inventory`: every node the backend manages, in the 14 legacy fields. */
  publicInventory(): Promise<PublicInventoryRow[]> {
    return this.call({
      path: CALL.inventory,
      keyed: false,
      idempotent: true,
      parse: asPublicInventory,
      expected: '[[id, hostname, ip, chassis, used_count, state, comment, distro, rel, ver, arch, pool, console_port, flavor], ...]',
    });
  }

  /** `/Session/get`: a session with no nodes; with an alias, the project's active session of that alias if there is one. */
  getSession(params: SessionGetParams = {}): Promise<SessionGetResult> {
    const { alias, lifetime, heartbeat } = params;
    return this.call({
      path: CALL.sessionGet,
      query: { alias, lifetime, heartbeat },
      // By alias, sending it again returns the same session; without, it would open another.
      idempotent: alias !== undefined && alias !== '',
      parse: asSessionGet,
      expected: '{"ssid", "alias", "hosts", "expires_at", "created"}',
    });
  }

  /** `/Session/done`: ends the session (ssid or alias); fine when it was already done. */
  async doneSession(ssid: string): Promise<void> {
    await this.call({ path: CALL.sessionDone, query: { ssid }, idempotent: true, parse: asDone, expected: DONE_BODY });
  }

  /** `/Session/show`. */
  showSession(ssid: string): Promise<SessionView> {
    return this.call({ path: CALL.sessionShow, query: { ssid }, idempotent: true, parse: asSessionView, expected: SESSION_VIEW_SHAPE });
  }

  /**
   * `/Session/ping`: tells a session with a heartbeat that its job is alive; the session as
   * `show` has it (a session that ended shows `state: "done"` and its `end_reason`).
   */
  ping(ssid: string): Promise<SessionView> {
    return this.call({ path: CALL.sessionPing, query: { ssid }, idempotent: true, parse: asSessionView, expected: SESSION_VIEW_SHAPE });
  }

  /** `/Session/list`: the project's active sessions, newest first. */
  listSessions(): Promise<SessionView[]> {
    return this.call({ path: CALL.sessionList, idempotent: true, parse: asSessionList, expected: `[${SESSION_VIEW_SHAPE}, ...]` });
  }

  /** `/Session/extend`: the session now expires `lifetime` (e.g. `6h`, `never`) from now. */
  extendSession(ssid: string, lifetime: string): Promise<SessionView> {
    return this.call({
      path: CALL.sessionExtend,
      query: { ssid, lifetime },
      idempotent: false,
      parse: asSessionView,
      expected: SESSION_VIEW_SHAPE,
    });
  }

  // ---- plumbing --------------------------------------------------------------------------------

  /** The request URL: the base's path prefix, the call's path, the query (undefined and empty left out). */
  private urlFor(spec: CallSpec<unknown>): string {
    const url = new URL(this.base.href);
    url.pathname = `${url.pathname.replace(/\/+$/, '')}${spec.path}`;
    const query = new URLSearchParams();
    if (spec.keyed !== false && this.keyInQuery && this.key !== '') query.set('key', this.key);
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      if (value === undefined) continue;
      const text = Array.isArray(value) ? value.join(',') : String(value);
      if (text !== '') query.set(name, text);
    }
    url.search = query.toString();
    return url.href;
  }

  private headersFor(spec: CallSpec<unknown>): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.userAgent };
    if (spec.keyed !== false && !this.keyInQuery && this.key !== '') headers.authorization = `Bearer ${this.key}`;
    return headers;
  }

  protected call<T>(spec: CallSpec<T>): Promise<T> {
    const url = this.urlFor(spec);
    const headers = this.headersFor(spec);
    const serverWaitMs = spec.serverWaitMs ?? 0;
    return withRetry(
      (_n, remainingMs) => this.attempt(spec, url, headers, remainingMs),
      (error) => isRetryable(error, spec.idempotent),
      {
        // A request the server may hold for `wait` must not be given up while it waits.
        timeoutMs: serverWaitMs > 0 ? Math.max(this.timeoutMs, serverWaitMs + this.requestTimeoutMs) : this.timeoutMs,
        signal: this.options.signal,
        onRetry: this.options.onRetry,
        sleep: this.options.sleep,
        random: this.options.random,
        now: this.options.now,
        baseDelayMs: this.options.baseDelayMs,
        maxDelayMs: this.options.maxDelayMs,
      },
    );
  }

  /** One request: its answer parsed into the result, or a CinodeApiError. */
  private async attempt<T>(spec: CallSpec<T>, url: string, headers: Record<string, string>, remainingMs: number): Promise<T> {
    const response = await this.send(spec, url, headers, remainingMs);
    if (response.status < 200 || response.status > 299) {
      throw this.redacted(errorFromAnswer(spec.path, response, this.now()));
    }
    const json = parseJson(response.body);
    const result = json === undefined ? undefined : spec.parse(json.value);
    if (result !== undefined) return result;
    const refusal = legacyRefusal(spec.path, response.status, response.body);
    if (refusal) throw this.redacted(refusal);
    throw new CinodeApiError(
      'server',
      `unexpected answer from ${spec.path} (HTTP ${response.status}): expected ${spec.expected}, got ${this.scrub(snippet(response.body))}`,
      { status: response.status, call: spec.path },
    );
  }

  /** Sends the GET with its own timeout, also ended by the client's signal; no answer → `transport`. */
  private async send(spec: CallSpec<unknown>, url: string, headers: Record<string, string>, remainingMs: number): Promise<TransportResponse> {
    const timeoutMs = Math.min(this.requestTimeoutMs + (spec.serverWaitMs ?? 0), Math.max(remainingMs, MIN_REQUEST_TIMEOUT_MS));
    const controller = new AbortController();
    const outer = this.options.signal;
    const onOuterAbort = () => controller.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      return await raceAbort(this.transport.get(url, headers, { signal: controller.signal, timeoutMs }), controller.signal, spec.path);
    } catch (error) {
      if (outer?.aborted) throw error instanceof CinodeAbortError ? error : abortError(outer, spec.path);
      // No `cause` on the error: the transport's own error may carry the URL with its key.
      // One line: OpenSSL's messages end with a newline.
      const cause = timedOut ? `no answer within ${timeoutMs} ms` : (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').trim();
      const hint = timedOut ? undefined : unreachableHint(error);
      const message = `no answer from ${this.scrub(url)}: ${this.scrub(cause)}${hint === undefined ? '' : ` (${hint}; not retried)`}`;
      throw new CinodeApiError('transport', message, { call: spec.path, permanent: hint !== undefined });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    }
  }

  private scrub(text: string): string {
    return redactKey(text, this.key);
  }

  /** The error with any trace of the key removed from its message (a foreign server might echo it). */
  private redacted(error: CinodeApiError): CinodeApiError {
    const message = this.scrub(error.message);
    if (message === error.message) return error;
    return new CinodeApiError(error.kind, message, { status: error.status, retryAfterMs: error.retryAfterMs, call: error.call });
  }
}

/** `node=` as one comma-separated value; an explicitly empty list is refused (leaving it out would end the whole session). */
function nodeList(call: CallPath, nodes: readonly string[] | undefined): string | undefined {
  if (nodes === undefined) return undefined;
  if (nodes.length === 0 || nodes.some((n) => n.trim() === '')) {
    throw new CinodeApiError(
      'bad-request',
      `node: an empty hostname list for ${call}; name the hosts, or leave the list out to act on the whole session`,
      { call },
    );
  }
  return nodes.join(',');
}
