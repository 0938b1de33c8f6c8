#!/usr/bin/env node
/**
 * The `cinode` command: `serve` and `admin` (admin-commands.ts) for operators; the client
 * commands for pipelines (client-commands.ts) beside them.
 */
import { addAdminCommands } from './admin-commands.js';
import { createProgram, processDeps, runCli } from './client-commands.js';

const deps = processDeps();
const program = createProgram(deps);
addAdminCommands(program, deps);

program
  .command('serve')
  .description('run the allocation backend')
  .requiredOption('-c, --config <file>', 'the YAML configuration file')
  .option('--listen <host:port>', "listen here instead of the configuration's listen")
  // Loaded only when serving: the client commands start without the server's dependencies.
  .action(async (options: { config: string; listen?: string }) => (await import('./serve.js')).serve(options));

const code = await runCli(program, process.argv, deps);
// `serve` sets its own exit code when it cannot start; keep it.
if (code !== 0) process.exitCode = code;
