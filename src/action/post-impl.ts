/**
 * post: the use of the action that opened the session ends it, after every other step of the job
 * (posts run in reverse order, so the opener's comes last). A teardown that fails never fails the
 * job: the job's own result is what matters, and a warning names the session so that an operator
 * can end it (it also expires at the end of its lifetime).
 */
import { Defaults, Inputs, OwnerState, POST_TIMEOUT_MS, State } from './constants.js';
import { maskKey, parseBoolean, readConnection, type Connection } from './inputs.js';
import type { ActionDeps } from './ports.js';
import { connect, describeError, elapsed, errorKind } from './stage.js';

export async function runPost(deps: ActionDeps): Promise<void> {
  const { core } = deps;
  const ssid = core.getState(State.Ssid);
  const alias = core.getState(State.Alias);
  const owner = core.getState(State.Owner);
  const named = `session ${ssid || '(ssid unknown)'} (alias ${alias || 'none'})`;
  try {
    maskKey(core);
    await stopKeeper(deps);
    if (owner !== OwnerState.Owner && owner !== OwnerState.Pending) {
      core.info(
        ssid === ''
          ? 'This use of cinode opened no session: nothing to end.'
          : `Leaving ${named} to the use of cinode that opened it: its post step ends it.`,
      );
      return;
    }
    if (!teardown(deps)) {
      core.info(`teardown is false: ${named} stays active until it expires or is ended (cinode session done ${ssid || alias}).`);
      return;
    }
    const connection = postConnection(deps);
    // pending: the request that opened the session got no answer, so only its alias is known.
    const ref = ssid !== '' ? ssid : alias;
    const started = deps.clock();
    try {
      await connect(deps, connection).client.doneSession(ref);
      core.info(`Ended ${named} in ${elapsed(deps, started)}; its nodes go to reclaim.`);
    } catch (error) {
      if (ssid === '' && errorKind(error) === 'invalid-session') {
        core.info(`No session of alias ${alias} exists: the pre or main step opened none, nothing to end.`);
        return;
      }
      throw error;
    }
  } catch (error) {
    core.warning(
      `cinode could not end ${named}: ${describeError(error)}. Its nodes stay allocated until it expires; ` +
        `end it with \`cinode session done ${ssid || alias}\` or /Session/done?ssid=${ssid || alias}.`,
      'cinode teardown failed',
    );
  }
}

/** Stops the keeper this use's pre started, if any: the job is over, its pings must stop. */
async function stopKeeper(deps: ActionDeps): Promise<void> {
  const pid = Number(deps.core.getState(State.KeeperPid));
  if (!Number.isInteger(pid) || pid <= 1 || !deps.keeper) return;
  try {
    const running = await deps.keeper.stop(pid);
    deps.core.info(running ? `Stopped keeper ${pid}.` : `Keeper ${pid} had already stopped (the session ended, or it lost its runner).`);
  } catch (error) {
    deps.core.warning(`cinode could not stop its keeper ${pid}: ${describeError(error)}`);
  }
}

/** The teardown input; a value that is not a boolean ends the session (the safe side) and says so. */
function teardown(deps: ActionDeps): boolean {
  try {
    return parseBoolean(Inputs.Teardown, deps.core.getInput(Inputs.Teardown), Defaults.Teardown);
  } catch (error) {
    deps.core.warning(`${describeError(error)}; ending the session anyway.`);
    return true;
  }
}

/**
 * The connection, with the retry budget capped: post must finish well within the runner's limits.
 * The inputs were valid when pre or main opened the session with them.
 */
function postConnection(deps: ActionDeps): Connection {
  const connection = readConnection(deps.core);
  return { ...connection, timeoutMs: Math.min(connection.timeoutMs, POST_TIMEOUT_MS) };
}
