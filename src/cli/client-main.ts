#!/usr/bin/env node
/**
 * The entry of the single-file client (dist/cli/index.js, `npm run build`): the client commands
 * only. It must not import `serve` or the admin commands' wiring, so that the bundle carries no
 * server code (no HTTP server, no query builder, no database driver) and runs alone with Node.
 */
import { createProgram, processDeps, runCli } from './client-commands.js';

const deps = processDeps();
const code = await runCli(createProgram(deps), process.argv, deps);
if (code !== 0) process.exitCode = code;
