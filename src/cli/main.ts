#!/usr/bin/env node
/**
 * The `cinode` command: `serve` for operators; client commands for pipelines come beside it.
 */
import { Command } from 'commander';
import { serve } from './serve.js';

const program = new Command('cinode').description('Lends test machines to CI jobs').showHelpAfterError();

program
  .command('serve')
  .description('run the allocation backend')
  .requiredOption('-c, --config <file>', 'the YAML configuration file')
  .option('--listen <host:port>', "listen here instead of the configuration's listen")
  .action(async (options: { config: string; listen?: string }) => serve(options));

await program.parseAsync(process.argv);
