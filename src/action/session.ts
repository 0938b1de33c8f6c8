/**
 * Finding the session a use of the action works on. Every use in one job shares one session,
 * named by the alias; only the use that opened it ends it in post.
 */
import { Env, OwnerState, State } from './constants.js';
import type { SessionInputs } from './inputs.js';
import type { ActionDeps } from './ports.js';
import { lifetimeNote } from '../client/notes.js';
import { elapsed, errorKind, type StageClient } from './stage.js';

/** The session of the job, as this use of the action found it. */
export interface JobSession {
  ssid: string;
  alias: string;
  /** This use opened the session: its post ends it. */
  owner: boolean;
  /** How this stage came by it. */
  source: 'state' | 'earlier-use' | 'opened' | 'joined';
}

/**
 * The session of this use:
 * - its own state, when pre already found it (main after pre);
 * - the session an earlier use of the action in this job exported (`CINODE_SSID`, same url and
 *   alias), without a request: that use owns it and its post, which runs after ours, ends it;
 * - else `/Session/get` by alias, which opens it (or returns an active one of that alias).
 *
 * The state is written before the request (owner `pending`, with the alias) and again the moment
 * the answer arrives, so a stage that is cancelled or fails right after still leaves post what it
 * needs to end the session.
 */
export async function resolveSession(deps: ActionDeps, inputs: SessionInputs, stage: StageClient): Promise<JobSession> {
  const { core } = deps;
  const stateSsid = core.getState(State.Ssid);
  if (stateSsid !== '') {
    const session: JobSession = {
      ssid: stateSsid,
      alias: core.getState(State.Alias) || inputs.alias,
      owner: core.getState(State.Owner) === OwnerState.Owner,
      source: 'state',
    };
    core.info(`Using session ${session.ssid} (alias ${session.alias}) found by the pre step.`);
    return session;
  }

  const exported = core.getEnv(Env.Ssid);
  if (exported !== '' && core.getEnv(Env.Alias) === inputs.alias && core.getEnv(Env.Url) === inputs.url) {
    core.saveState(State.Ssid, exported);
    core.saveState(State.Alias, inputs.alias);
    core.info(`Using session ${exported} (alias ${inputs.alias}), opened by an earlier use of the action in this job; that use's post step ends it.`);
    return { ssid: exported, alias: inputs.alias, owner: false, source: 'earlier-use' };
  }

  core.saveState(State.Alias, inputs.alias);
  core.saveState(State.Owner, OwnerState.Pending);
  stage.retries.length = 0;
  const started = deps.clock();
  const result = await stage.client.getSession({ alias: inputs.alias, lifetime: inputs.lifetime, heartbeat: inputs.heartbeat }).catch((error: unknown) => {
    // An answered refusal opened nothing; a lost answer may have: post then ends it by alias.
    if (!stage.retries.some((r) => r.error.kind === 'transport') && !['transport', undefined].includes(errorKind(error))) {
      core.saveState(State.Owner, '');
    }
    throw error;
  });
  // When an earlier attempt's answer was lost, `created: false` may be our own creation: take
  // ownership, so the session is ended rather than left to expire.
  const owner = result.created || stage.retries.some((r) => r.error.kind === 'transport');
  core.saveState(State.Ssid, result.ssid);
  core.saveState(State.Owner, owner ? OwnerState.Owner : '');
  const alias = result.alias ?? inputs.alias;
  core.exportVariable(Env.Url, inputs.url);
  core.exportVariable(Env.Ssid, result.ssid);
  core.exportVariable(Env.Alias, alias);
  const expires = result.expires_at === null ? 'never expires' : `expires at ${result.expires_at}`;
  if (result.created) {
    core.info(`Opened session ${result.ssid} (alias ${alias}, ${expires}) in ${elapsed(deps, started)}.`);
    const capped = lifetimeNote(inputs.lifetime, result.expires_at, deps.clock(), 'open');
    if (capped !== undefined) core.warning(`cinode: ${capped}.`);
  } else {
    core.info(
      `Session ${result.ssid} of alias ${alias} was already active (${expires}, ${result.hosts.length} hosts): ` +
        (owner ? 'it was opened by a lost answer of this call, so this use ends it.' : 'whoever opened it ends it; this use will not.'),
    );
  }
  return { ssid: result.ssid, alias, owner, source: owner ? 'opened' : 'joined' };
}
