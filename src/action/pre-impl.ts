/**
 * pre: opens the job's session by alias before any other step runs, so that the session exists
 * (and post knows it) however the rest of the job goes; with a heartbeat, starts the keeper that
 * pings the session until post stops it (keeper.ts).
 */
import { join } from 'node:path';
import { State } from './constants.js';
import { maskKey, readSessionInputs, type SessionInputs } from './inputs.js';
import type { ActionDeps } from './ports.js';
import { resolveSession, type JobSession } from './session.js';
import { connect, describeError } from './stage.js';

export async function runPre(deps: ActionDeps): Promise<void> {
  const { core } = deps;
  try {
    maskKey(core);
    const inputs = readSessionInputs(core);
    const session = await resolveSession(deps, inputs, connect(deps, inputs));
    if (inputs.heartbeatMs !== undefined) startKeeper(deps, inputs, inputs.heartbeatMs, session);
  } catch (error) {
    const cancelled = deps.signal.aborted ? 'cancelled: ' : '';
    core.setFailed(`cinode could not open the session: ${cancelled}${describeError(error)}`);
  }
}

/**
 * Starts the keeper, watching the runner process that started this step. When it cannot be
 * started the session still works: the uses' own calls ping it, and its lifetime bounds it.
 */
function startKeeper(deps: ActionDeps, inputs: SessionInputs, heartbeatMs: number, session: JobSession): void {
  const { core } = deps;
  const fallback = `the session relies on the pings of this job's uses of cinode and on its lifetime`;
  if (!deps.keeper || deps.parentPid === undefined) {
    core.warning(`cinode cannot start a keeper here: ${fallback}.`, 'cinode keeper not started');
    return;
  }
  const everyMs = Math.floor(heartbeatMs / 3);
  const logFile = join(deps.tempDir ?? '.', `cinode-keeper-${session.ssid}.log`);
  try {
    const pid = deps.keeper.start({
      url: inputs.url,
      key: inputs.key,
      keyInQuery: inputs.keyInQuery,
      ssid: session.ssid,
      everyMs,
      watchPid: deps.parentPid,
      logFile,
    });
    core.saveState(State.KeeperPid, String(pid));
    core.info(
      `Started keeper ${pid}: it pings session ${session.ssid} every ${Math.round(everyMs / 1000)}s (heartbeat ${inputs.heartbeat}) until the post step, ` +
        `or until the runner (process ${deps.parentPid}) is gone; its log: ${logFile}.`,
    );
  } catch (error) {
    core.warning(`cinode could not start its keeper: ${describeError(error)}; ${fallback}.`, 'cinode keeper not started');
  }
}
