/**
 * Reading a call's parameters: from the query string, a form or JSON body, and the Bearer header.
 * Every problem becomes a 400 that names the parameter, says what was wrong and what is accepted.
 */
import { DURATION_HELP, HEARTBEAT_HELP, parseDuration, parseHeartbeat, parseLifetime, type Lifetime } from '../api/duration.js';
import { ALIAS_HELP, ALIAS_MAX_LENGTH, ALIAS_PATTERN, HOSTNAME_HELP, HOSTNAME_PATTERN, LABEL_HELP, LABEL_PATTERN } from '../api/patterns.js';
import { NODE_STATES, type NodeState } from '../api/states.js';
import { badRequest, invalidKey, invalidSession, type CinodeError } from '../core/errors.js';

/**
 * Every value given for each parameter name, query first, then body; and the first value that was
 * refused for its shape (an object, or a list inside a list), raised by `checkShapes` once the key
 * has been read, so that a missing key still answers 403 first (docs/api.md, "Precedence").
 */
export type Params = Map<string, string[]> & { refused?: CinodeError };

const COUNT_PATTERN = /^\d{1,9}$/;

/** What a parameter's value may be (docs/api.md, "General rules"). */
const SHAPE_HELP = 'a string or a number, or a list of them where the parameter may repeat (such as node)';

/** A parameter value as shown back in an error: quoted, and cut short when long. */
function shown(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
}

/** A parameter name that can be shown back as it is. */
const PLAIN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function isScalar(value: unknown): value is string | number | boolean {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

function push(params: Params, name: string, text: string): void {
  const values = params.get(name);
  if (values) values.push(text);
  else params.set(name, [text]);
}

/**
 * A value is a scalar, null, or a flat list of scalars; anything deeper is refused without being
 * walked (a 10,000-deep JSON body must not cost a stack frame per level).
 */
function addValue(params: Params, name: string, value: unknown): void {
  if (value === undefined) return;
  // A JSON null or [] is a parameter present with nothing in it: malformed, like `count=`.
  if (value === null || (Array.isArray(value) && value.length === 0)) return push(params, name, '');
  if (isScalar(value)) return push(params, name, String(value));
  if (Array.isArray(value) && value.every(isScalar)) {
    for (const item of value) push(params, name, String(item));
    return;
  }
  const what = Array.isArray(value) ? 'a list inside a list' : 'an object';
  params.refused ??= badRequest(`${PLAIN_NAME.test(name) ? name : shown(name)}: ${what} is not accepted; accepted: ${SHAPE_HELP}`);
  // A key given in a refused shape is no key: the request answers 403 like one without a key.
  if (name !== 'key') push(params, name, '');
}

/** Gathers the parameters of a request from its parsed query and body. */
export function collectParams(query: unknown, body: unknown): Params {
  const params: Params = new Map();
  for (const source of [query, body]) {
    if (source && typeof source === 'object' && !Array.isArray(source)) {
      for (const [name, value] of Object.entries(source)) addValue(params, name, value);
    }
  }
  return params;
}

/** Refuses a request whose parameters had a value of a shape no parameter takes (400). */
export function checkShapes(params: Params): void {
  if (params.refused) throw params.refused;
}

/** One value of a parameter: absent, or given once (the same value repeated is still once). */
function single(params: Params, name: string): string | undefined {
  const values = params.get(name);
  if (!values || values.length === 0) return undefined;
  if (new Set(values).size > 1) throw badRequest(`${name}: given ${values.length} times with different values; give it once`);
  return values[0];
}

/** One non-empty value: a parameter present with an empty value is malformed, not defaulted. */
function nonEmpty(params: Params, name: string, accepted: string): string | undefined {
  const value = single(params, name);
  if (value === '') throw badRequest(`${name}: empty value; accepted: ${accepted}`);
  return value;
}

/** The non-empty `key=` values (an empty key is no key). */
function keyValues(params: Params): string[] {
  return (params.get('key') ?? []).filter((v) => v !== '');
}

/** Whether the request carries credentials at all: a non-empty `key=` or an Authorization header. */
export function hasCredentials(params: Params, authorization: string | undefined): boolean {
  return keyValues(params).length > 0 || authorization !== undefined;
}

/**
 * The API key: `key=` or `Authorization: Bearer`. An empty key is no key; two different keys are
 * refused like a wrong one.
 */
export function readKey(params: Params, authorization: string | undefined): string {
  const values = keyValues(params);
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (bearer !== undefined) values.push(bearer);
  if (values.length === 0 || new Set(values).size > 1) throw invalidKey();
  return values[0]!;
}

function named(params: Params, name: string, accepted: string): string | undefined {
  const value = nonEmpty(params, name, accepted);
  if (value !== undefined && !LABEL_PATTERN.test(value)) throw badRequest(`${name}: ${shown(value)} is not valid; accepted: ${accepted}`);
  return value;
}

export function readVer(params: Params): string | undefined {
  return named(params, 'ver', `${LABEL_HELP}, such as 7, 8-stream or 9-stream`);
}

export function readArch(params: Params): string | undefined {
  return named(params, 'arch', `${LABEL_HELP}, such as x86_64, aarch64 or ppc64le`);
}

/** An empty flavor is the same as no flavor (legacy clients send `flavor=` for none). */
export function readFlavor(params: Params): string | undefined {
  const value = single(params, 'flavor');
  if (value === undefined || value === '') return undefined;
  if (!LABEL_PATTERN.test(value)) throw badRequest(`flavor: ${shown(value)} is not valid; accepted: ${LABEL_HELP}, such as tiny or small`);
  return value;
}

export function readCount(params: Params, maxCount: number): number | undefined {
  const accepted = `a whole number from 1 to ${maxCount}`;
  const value = nonEmpty(params, 'count', accepted);
  if (value === undefined) return undefined;
  if (!COUNT_PATTERN.test(value)) throw badRequest(`count: ${shown(value)} is not a whole number; accepted: ${accepted}`);
  const count = Number(value);
  if (count < 1 || count > maxCount) throw badRequest(`count: ${count} is out of range; accepted: ${accepted}`);
  return count;
}

/**
 * A session reference (ssid or alias). Empty is malformed like any parameter; anything else that
 * cannot name a session is as unknown as a session of another project.
 */
export function readSessionRef(params: Params, required: true): string;
export function readSessionRef(params: Params, required: false): string | undefined;
export function readSessionRef(params: Params, required: boolean): string | undefined {
  const value = nonEmpty(params, 'ssid', "the session's ssid or alias");
  if (value === undefined) {
    if (required) throw badRequest('ssid: missing; accepted: the ssid or alias of one of your sessions');
    return undefined;
  }
  if (value.length > ALIAS_MAX_LENGTH || !ALIAS_PATTERN.test(value)) throw invalidSession();
  return value;
}

export function readAlias(params: Params): string | undefined {
  const value = nonEmpty(params, 'alias', ALIAS_HELP);
  if (value !== undefined && !ALIAS_PATTERN.test(value)) {
    const hint = value.includes(' ') ? ": a space is not allowed (a '+' in a query string reads as a space)" : '';
    throw badRequest(`alias: ${shown(value)} is not valid${hint}; accepted: ${ALIAS_HELP}`);
  }
  return value;
}

export function readLifetime(params: Params, required: boolean): Lifetime | undefined {
  const accepted = `${DURATION_HELP}, or never`;
  const value = nonEmpty(params, 'lifetime', accepted);
  if (value === undefined) {
    if (required) throw badRequest(`lifetime: missing; accepted: ${accepted}`);
    return undefined;
  }
  const lifetime = parseLifetime(value);
  if (lifetime === undefined) throw badRequest(`lifetime: ${shown(value)} is not a duration; accepted: ${accepted}`);
  return lifetime;
}

/**
 * `wait=` of `/Node/get`: how long it may wait for capacity, in milliseconds (0: not at all);
 * undefined when absent (the project's `default-wait` applies). Longer than the project's
 * `max-wait` is not an error: the wait is capped (docs/api.md, "Waiting for capacity").
 */
export function readWait(params: Params): number | undefined {
  const accepted = `0 (answer at once) or ${DURATION_HELP}`;
  const value = nonEmpty(params, 'wait', accepted);
  if (value === undefined) return undefined;
  if (value === '0' || value === '0s') return 0;
  const ms = parseDuration(value);
  if (ms === undefined) throw badRequest(`wait: ${shown(value)} is not a duration; accepted: ${accepted}`);
  return ms;
}

/** `heartbeat=` of `/Session/get`: a duration within the bounds of docs/api.md ("Heartbeats"). */
export function readHeartbeat(params: Params): number | undefined {
  const value = nonEmpty(params, 'heartbeat', HEARTBEAT_HELP);
  if (value === undefined) return undefined;
  const heartbeat = parseHeartbeat(value);
  if (heartbeat === undefined) {
    const what = parseDuration(value) === undefined ? 'is not a duration' : 'is out of range';
    throw badRequest(`heartbeat: ${shown(value)} ${what}; accepted: ${HEARTBEAT_HELP}`);
  }
  return heartbeat;
}

/** `node=`: hostnames, repeated or comma-separated; undefined when absent. */
export function readNodes(params: Params): string[] | undefined {
  const values = params.get('node');
  if (!values) return undefined;
  const hostnames = new Set<string>();
  for (const value of values) {
    for (const item of value.split(',')) {
      const hostname = item.trim();
      if (hostname === '') throw badRequest(`node: empty hostname in ${shown(value)}; accepted: hostnames, repeated or comma-separated`);
      if (!HOSTNAME_PATTERN.test(hostname)) {
        throw badRequest(`node: ${shown(hostname)} is not a hostname; accepted: ${HOSTNAME_HELP}`);
      }
      hostnames.add(hostname);
    }
  }
  return [...hostnames];
}


/** `hostname=`: the one node an operator's call is about. */
export function readHostname(params: Params): string {
  const accepted = `a node's hostname: ${HOSTNAME_HELP}`;
  const value = nonEmpty(params, 'hostname', accepted);
  if (value === undefined) throw badRequest(`hostname: missing; accepted: ${accepted}`);
  if (!HOSTNAME_PATTERN.test(value)) throw badRequest(`hostname: ${shown(value)} is not valid; accepted: ${accepted}`);
  return value;
}

/** `state=`: one of the node states of docs/api.md ("Node states" and "Lifecycle"). */
export function readNodeState(params: Params): NodeState | undefined {
  const accepted = NODE_STATES.join(', ');
  const value = nonEmpty(params, 'state', accepted);
  if (value !== undefined && !(NODE_STATES as readonly string[]).includes(value)) {
    throw badRequest(`state: ${shown(value)} is not a node state; accepted: ${accepted}`);
  }
  return value as NodeState | undefined;
}

/** `session=`: an ssid or alias whose history is asked for (any project's: operators see all). */
export function readSessionFilter(params: Params): string | undefined {
  const value = nonEmpty(params, 'session', ALIAS_HELP);
  if (value !== undefined && !ALIAS_PATTERN.test(value)) throw badRequest(`session: ${shown(value)} is not an ssid or alias; accepted: ${ALIAS_HELP}`);
  return value;
}

export const EVENTS_LIMIT_DEFAULT = 100;
const EVENTS_LIMIT_MAX = 10_000;

/** `limit=`: how many of the latest events to show. */
export function readLimit(params: Params): number {
  const accepted = `a whole number from 1 to ${EVENTS_LIMIT_MAX}`;
  const value = nonEmpty(params, 'limit', accepted);
  if (value === undefined) return EVENTS_LIMIT_DEFAULT;
  const limit = COUNT_PATTERN.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= EVENTS_LIMIT_MAX)) throw badRequest(`limit: ${shown(value)} is not valid; accepted: ${accepted}`);
  return limit;
}
