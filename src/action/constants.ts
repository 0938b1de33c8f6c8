/**
 * Every name the action shares with the runner, declared once: the inputs and outputs of
 * action.yml, the step state that pre and main hand to post, and the environment variables the
 * action exports to later steps. Nothing else spells these strings; the `CINODE_*` names and the
 * alias grammar are the API's (src/api), shared with the CLI and the server.
 */
import { CLIENT_ENV } from '../api/env.js';

/** The inputs of action.yml. */
export const Inputs = {
  Url: 'url',
  Key: 'key',
  Alias: 'alias',
  Count: 'count',
  Ver: 'ver',
  Arch: 'arch',
  Flavor: 'flavor',
  Drop: 'drop',
  Fail: 'fail',
  Lifetime: 'lifetime',
  Teardown: 'teardown',
  Timeout: 'timeout',
  KeyInQuery: 'key-in-query',
  Heartbeat: 'heartbeat',
  Wait: 'wait',
} as const;
export type Input = (typeof Inputs)[keyof typeof Inputs];

/** The outputs of action.yml. */
export const Outputs = {
  Ssid: 'ssid',
  Alias: 'alias',
  Hosts: 'hosts',
  AllHosts: 'all-hosts',
  HostsJson: 'hosts-json',
} as const;
export type Output = (typeof Outputs)[keyof typeof Outputs];

/**
 * Step state (`GITHUB_STATE` → `STATE_<name>`). The runner keeps it per use of the action: pre
 * and main of one use share it, and the post of that use sees it; another use never does.
 */
export const State = {
  /** The session this use worked on. */
  Ssid: 'ssid',
  Alias: 'alias',
  /**
   * `true` when this use opened the session and so ends it in post; `pending` while it is asking
   * the server to open one, so that post can still end a session whose answer was lost.
   */
  Owner: 'owner',
  /** The pid of the keeper process pre started, which post stops. */
  KeeperPid: 'keeper-pid',
} as const;
export type StateName = (typeof State)[keyof typeof State];

export const OwnerState = {
  Owner: 'true',
  Pending: 'pending',
} as const;

/** Environment variables exported (via `GITHUB_ENV`) to the later steps of the job. */
export const Env = {
  Url: CLIENT_ENV.Url,
  Ssid: CLIENT_ENV.Ssid,
  Alias: CLIENT_ENV.Alias,
  /** Every host of the session after the latest main step, space separated. */
  Hosts: CLIENT_ENV.Hosts,
} as const;
export type EnvName = (typeof Env)[keyof typeof Env];

/** Defaults of inputs left empty (action.yml gives the same; a bare `node dist/...` run gives none). */
export const Defaults = {
  Count: 1,
  Teardown: true,
  TimeoutMs: 5 * 60_000,
  KeyInQuery: false,
} as const;

/**
 * The retry budget of post's `/Session/done`: the runner gives post steps of a cancelled job a few
 * minutes at most, and a teardown that cannot reach the server should warn quickly, not hang.
 */
export const POST_TIMEOUT_MS = 60_000;

/** The argument that makes dist/pre/index.js run as the keeper instead of the pre step. */
export const KEEPER_ARGUMENT = '--cinode-keeper';
