/**
 * The real collaborators of the three stages: @actions/core, the CinodeClient, the process's
 * signals and clock. Only the entrypoints import this module.
 */
import * as core from '@actions/core';
import { tmpdir } from 'node:os';
import { CinodeClient } from '../client/client.js';
import { processKeeper } from './keeper.js';
import type { ActionCore, ActionDeps } from './ports.js';

const actionsCore: ActionCore = {
  getInput: (name) => core.getInput(name),
  setOutput: (name, value) => core.setOutput(name, value),
  getState: (name) => core.getState(name),
  saveState: (name, value) => core.saveState(name, value),
  exportVariable: (name, value) => core.exportVariable(name, value),
  getEnv: (name) => process.env[name] ?? '',
  setSecret: (value) => core.setSecret(value),
  info: (message) => core.info(message),
  warning: (message, title) => core.warning(message, title === undefined ? undefined : { title }),
  setFailed: (message) => core.setFailed(message),
  appendSummary: async ({ heading, text, table }) => {
    const escape = (cell: string) => cell.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    const [header = [], ...rows] = table;
    await core.summary
      .addHeading(escape(heading), 3)
      .addRaw(escape(text), true)
      .addTable([header.map((data) => ({ data: escape(data), header: true })), ...rows.map((row) => row.map(escape))])
      .write();
  },
};

/**
 * An AbortSignal for the runner's cancellation: it sends SIGINT, then SIGTERM 7.5 s later. The
 * first aborts the calls in flight (the stage then fails with its state already saved); a second
 * signal, should the stage still be running, exits at once.
 */
export function cancellation(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(1);
    core.info(`Received ${signal}: stopping.`);
    controller.abort(new Error(`received ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}

function productionDeps(): ActionDeps {
  return {
    core: actionsCore,
    createClient: (settings) => new CinodeClient({ ...settings, userAgent: 'cinode-action' }),
    signal: cancellation(),
    clock: Date.now,
    keeper: processKeeper,
    parentPid: process.ppid,
    tempDir: process.env.RUNNER_TEMP || tmpdir(),
  };
}

/**
 * Runs a stage with the real collaborators. After a cancellation the process exits as soon as the
 * stage returns, rather than waiting for sockets or timers that the abort left behind.
 */
export function launch(stage: (deps: ActionDeps) => Promise<unknown>): void {
  const deps = productionDeps();
  void stage(deps).then(
    () => {
      if (deps.signal.aborted) process.exit(process.exitCode ?? 0);
    },
    (error: unknown) => {
      // The stages catch their own errors; this is a bug's last resort.
      core.setFailed(error instanceof Error ? (error.stack ?? error.message) : String(error));
    },
  );
}
