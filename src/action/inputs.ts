/**
 * Reading and checking the inputs. A bad input fails the step with a message that names it and
 * says what is accepted, before any request is made.
 */
import { createHash } from 'node:crypto';
import { formatDuration, HEARTBEAT_HELP, parseDuration, parseHeartbeat } from '../api/duration.js';
import { ALIAS_CHARACTERS, ALIAS_MAX_LENGTH } from '../api/patterns.js';
import { Defaults, Inputs, type Input } from './constants.js';
import type { ActionCore } from './ports.js';

export class InputError extends Error {
  constructor(
    readonly input: Input,
    message: string,
  ) {
    super(`Input ${input}: ${message}`);
    this.name = 'InputError';
  }
}

/** What every stage needs to talk to the server. */
export interface Connection {
  url: string;
  key: string;
  keyInQuery: boolean;
  timeoutMs: number;
}

export interface SessionInputs extends Connection {
  alias: string;
  /** Left out of the request when undefined (the server's default applies). */
  lifetime: string | undefined;
  /** The session's heartbeat (e.g. `5m`), or undefined for none (the input left empty). */
  heartbeat: string | undefined;
  heartbeatMs: number | undefined;
}

export interface MainInputs extends SessionInputs {
  count: number;
  ver: string | undefined;
  arch: string | undefined;
  flavor: string | undefined;
  drop: string[];
  fail: string[];
  /** How long the server may queue the request for nodes (`wait=`): the input, else the timeout. */
  wait: string;
}

/** An input's value, or undefined when it is empty: the API treats an empty parameter as malformed. */
export function optional(core: ActionCore, name: Input): string | undefined {
  const value = core.getInput(name);
  return value === '' ? undefined : value;
}

/**
 * Masks the key before anything else can print it (an error message, a debug line). Every stage
 * calls this first: on a local action main is the first stage to run, and post may run alone.
 */
export function maskKey(core: ActionCore): void {
  const key = core.getInput(Inputs.Key);
  if (key !== '') core.setSecret(key);
}

function required(core: ActionCore, name: Input): string {
  const value = core.getInput(name);
  if (value === '') throw new InputError(name, 'is required and was not given');
  return value;
}

/** YAML 1.2 core-schema booleans, as `core.getBooleanInput` reads them. */
export function parseBoolean(name: Input, text: string, fallback: boolean): boolean {
  if (text === '') return fallback;
  if (['true', 'True', 'TRUE'].includes(text)) return true;
  if (['false', 'False', 'FALSE'].includes(text)) return false;
  throw new InputError(name, `"${text}" is not a boolean: use true or false`);
}

export function parseList(text: string): string[] {
  const items = text
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return [...new Set(items)];
}

/**
 * The alias as the server will take it. The default expression of action.yml can exceed 128
 * characters (a long repository name and job id): such an alias is shortened the same way in
 * every use, keeping its start readable and a hash of the whole, so uses of one job still share
 * it and matrix legs still differ.
 */
export function normalizeAlias(alias: string): string {
  if (!ALIAS_CHARACTERS.test(alias)) {
    throw new InputError(Inputs.Alias, `"${alias}" has characters an alias cannot hold: use A-Z a-z 0-9 . _ - : / @`);
  }
  if (alias.length <= ALIAS_MAX_LENGTH) return alias;
  const hash = createHash('sha256').update(alias).digest('hex').slice(0, 16);
  return `${alias.slice(0, ALIAS_MAX_LENGTH - hash.length - 1)}@${hash}`;
}

export function readConnection(core: ActionCore): Connection {
  // The client checks that it is an http(s) URL without a query when the stage creates it.
  const url = required(core, Inputs.Url);
  const key = required(core, Inputs.Key);
  const keyInQuery = parseBoolean(Inputs.KeyInQuery, core.getInput(Inputs.KeyInQuery), Defaults.KeyInQuery);
  const timeoutText = core.getInput(Inputs.Timeout);
  let timeoutMs: number = Defaults.TimeoutMs;
  if (timeoutText !== '') {
    const parsed = parseDuration(timeoutText);
    if (parsed === undefined) {
      throw new InputError(Inputs.Timeout, `"${timeoutText}" is not a duration: use e.g. 90s, 5m or 1h30m (units d, h, m, s)`);
    }
    timeoutMs = parsed;
  }
  return { url, key, keyInQuery, timeoutMs };
}

export function readSessionInputs(core: ActionCore): SessionInputs {
  const connection = readConnection(core);
  const alias = normalizeAlias(required(core, Inputs.Alias));
  const heartbeat = optional(core, Inputs.Heartbeat);
  const heartbeatMs = heartbeat === undefined ? undefined : parseHeartbeat(heartbeat);
  if (heartbeat !== undefined && heartbeatMs === undefined) {
    throw new InputError(Inputs.Heartbeat, `"${heartbeat}" is not ${HEARTBEAT_HELP}; leave it empty for a session without a heartbeat`);
  }
  return { ...connection, alias, lifetime: optional(core, Inputs.Lifetime), heartbeat, heartbeatMs };
}

export function readMainInputs(core: ActionCore): MainInputs {
  const session = readSessionInputs(core);
  const countText = core.getInput(Inputs.Count);
  let count: number = Defaults.Count;
  if (countText !== '') {
    if (!/^\d{1,6}$/.test(countText)) {
      throw new InputError(Inputs.Count, `"${countText}" is not a whole number of nodes: use 0 (add none) or more`);
    }
    count = Number(countText);
  }
  return {
    ...session,
    count,
    ver: optional(core, Inputs.Ver),
    arch: optional(core, Inputs.Arch),
    flavor: optional(core, Inputs.Flavor),
    drop: parseList(core.getInput(Inputs.Drop)),
    fail: parseList(core.getInput(Inputs.Fail)),
    wait: readWait(core, session.timeoutMs),
  };
}

/** `wait`: a duration; empty, the `timeout` input (a step waits for capacity as long as its calls may take). */
function readWait(core: ActionCore, timeoutMs: number): string {
  const text = core.getInput(Inputs.Wait);
  if (text === '') return formatDuration(Math.max(1000, timeoutMs));
  if (parseDuration(text) === undefined) throw new InputError(Inputs.Wait, `"${text}" is not a duration: use e.g. 90s, 5m or 1h30m (units d, h, m, s)`);
  return text;
}
