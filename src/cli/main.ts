#!/usr/bin/env node
/**
 * The `cinode` command: `serve` and `admin` (admin-commands.ts) for operators; the client
 * commands for pipelines (client-commands.ts) beside them.
 */
import { Option } from 'commander';
import { DEFAULT_CONFIG_PATH, SERVER_ENV } from '../api/env.js';
import { addAdminCommands } from './admin-commands.js';
import { createProgram, processDeps, runCli } from './client-commands.js';
import type { ServeOptions } from './serve.js';

/** pino's levels. */
const LOG_LEVEL_NAMES = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const deps = processDeps();
const program = createProgram(deps);
addAdminCommands(program, deps);

const CONFIG_HELP = `the YAML configuration file (default: $${SERVER_ENV.Config}, else ${DEFAULT_CONFIG_PATH})`;

program
  .command('serve')
  .description('run the allocation backend')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--listen <host:port>', "listen here instead of the configuration's listen")
  .addOption(new Option('--log-level <level>', 'the least level the log shows').choices(LOG_LEVEL_NAMES).default('info'))
  // Loaded only when serving: the client commands start without the server's dependencies.
  .action(async (options: ServeOptions) => (await import('./serve.js')).serve(options));

program
  .command('config')
  .description('operators: the configuration file')
  .command('check')
  .description('check a configuration as serve would read it: every problem and exit 2, or a one-line summary and exit 0')
  .argument('[file]', CONFIG_HELP)
  .action(async (file: string | undefined) => (await import('./serve.js')).configCheck(file));

const code = await runCli(program, process.argv, deps);
// `serve` sets its own exit code when it cannot start; keep it.
if (code !== 0) process.exitCode = code;
