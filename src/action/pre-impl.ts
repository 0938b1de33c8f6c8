/**
 * pre: opens the job's session by alias before any other step runs, so that the session exists
 * (and post knows it) however the rest of the job goes.
 */
import { maskKey, readSessionInputs } from './inputs.js';
import type { ActionDeps } from './ports.js';
import { resolveSession } from './session.js';
import { connect, describeError } from './stage.js';

export async function runPre(deps: ActionDeps): Promise<void> {
  const { core } = deps;
  try {
    maskKey(core);
    const inputs = readSessionInputs(core);
    await resolveSession(deps, inputs, connect(deps, inputs));
  } catch (error) {
    const cancelled = deps.signal.aborted ? 'cancelled: ' : '';
    core.setFailed(`cinode could not open the session: ${cancelled}${describeError(error)}`);
  }
}
