/**
 * Which configuration file `cinode serve` and `cinode config check` read: `--config`, else
 * `CINODE_CONFIG`, else /etc/cinode/cinode.yaml when it exists (the path the systemd unit in
 * examples/systemd/ relies on).
 */
import { existsSync } from 'node:fs';
import { DEFAULT_CONFIG_PATH, SERVER_ENV } from '../api/env.js';
import { UsageError } from './client-commands.js';

export function resolveConfigPath(
  given: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  defaultPath = DEFAULT_CONFIG_PATH,
): string {
  if (given !== undefined && given !== '') return given;
  const fromEnv = env[SERVER_ENV.Config];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (existsSync(defaultPath)) return defaultPath;
  throw new UsageError(`no configuration file: give --config FILE, set ${SERVER_ENV.Config}, or put it at ${defaultPath}`);
}
