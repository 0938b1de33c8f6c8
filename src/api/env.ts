/**
 * The `CINODE_*` environment variables: those the CLI reads and the action exports to later
 * steps of a job, and those cinode gives to an operator's commands (reclaim, provision,
 * deprovision). Nothing else spells these names.
 */

/** What a client side reads or exports: the CLI reads the URL and key, the action exports the rest. */
export const CLIENT_ENV = {
  Url: 'CINODE_URL',
  Key: 'CINODE_KEY',
  Ssid: 'CINODE_SSID',
  Alias: 'CINODE_ALIAS',
  /** Every host of the session, space separated. */
  Hosts: 'CINODE_HOSTS',
} as const;

/** What `cinode serve` and `cinode config check` read: the configuration file, when no --config names it. */
export const SERVER_ENV = {
  Config: 'CINODE_CONFIG',
  /** `cinode serve` on SQLite: a file to append every statement to (the benchmark's database floor, bench/floor.ts). */
  SqlTrace: 'CINODE_SQL_TRACE',
} as const;

/** Where `cinode serve` looks for its configuration after --config and CINODE_CONFIG. */
export const DEFAULT_CONFIG_PATH = '/etc/cinode/cinode.yaml';

/** What an operator's command is given: the node (reclaim, deprovision) or the pool and count (provision). */
export const COMMAND_ENV = {
  Hostname: 'CINODE_HOSTNAME',
  Ip: 'CINODE_IP',
  Pool: 'CINODE_POOL',
  Count: 'CINODE_COUNT',
  Ver: 'CINODE_VER',
  Arch: 'CINODE_ARCH',
  Flavor: 'CINODE_FLAVOR',
} as const;

/** What a session isolation hook is given, besides the node's COMMAND_ENV for node hooks (docs/api.md, "Session isolation"). */
export const HOOK_ENV = {
  Project: 'CINODE_PROJECT',
  Ssid: 'CINODE_SSID',
  /** Present and empty when the session has no alias. */
  Alias: 'CINODE_ALIAS',
  /** The JSON object session-setup printed last; `{}` when it printed none. Not given to session-setup. */
  SessionData: 'CINODE_SESSION_DATA',
} as const;
