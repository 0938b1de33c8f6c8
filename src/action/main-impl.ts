/**
 * main: finds the job's session (opening it when no pre ran), then releases the hosts of `drop`,
 * reports the hosts of `fail` broken and adds `count` nodes, in that order (releasing first frees
 * quota for the add), and publishes the session's hosts.
 */
import type { HostView, SessionView } from '../client/types.js';
import { Env, Outputs } from './constants.js';
import { maskKey, readMainInputs, type MainInputs } from './inputs.js';
import type { ActionCore, ActionDeps, SummarySection } from './ports.js';
import { resolveSession, type JobSession } from './session.js';
import { connect, describeError, elapsed } from './stage.js';

/** What main changed, for the outputs and the summary. */
export interface MainResult {
  session: JobSession;
  added: string[];
  released: string[];
  failed: string[];
  view: SessionView;
}

export async function runMain(deps: ActionDeps): Promise<MainResult | undefined> {
  const { core } = deps;
  let step = 'read the inputs';
  try {
    maskKey(core);
    const inputs = readMainInputs(core);
    const stage = connect(deps, inputs);
    const { client } = stage;

    step = 'open the session';
    const session = await resolveSession(deps, inputs, stage);
    core.setOutput(Outputs.Ssid, session.ssid);
    core.setOutput(Outputs.Alias, session.alias);

    if (inputs.drop.length > 0) {
      step = `release ${inputs.drop.join(', ')}`;
      await client.doneNodes(session.ssid, inputs.drop);
      core.info(`Released ${inputs.drop.join(', ')}.`);
    }
    if (inputs.fail.length > 0) {
      step = `report ${inputs.fail.join(', ')} broken`;
      await client.failNodes(session.ssid, inputs.fail);
      core.info(`Reported ${inputs.fail.join(', ')} broken: they leave the session and are quarantined.`);
    }
    let added: string[] = [];
    if (inputs.count > 0) {
      step = `add ${describeAdd(inputs)}`;
      core.info(`Adding ${describeAdd(inputs)} to session ${session.ssid}; the server queues the request up to ${inputs.wait} for capacity.`);
      const started = deps.clock();
      const request = { ssid: session.ssid, count: inputs.count, ver: inputs.ver, arch: inputs.arch, flavor: inputs.flavor, wait: inputs.wait };
      added = (await client.getNodes(request)).hosts;
      core.info(`Added ${added.join(', ')} in ${elapsed(deps, started)}.`);
    }

    step = 'read the session';
    const view = await client.showSession(session.ssid);
    const result: MainResult = { session, added, released: inputs.drop, failed: inputs.fail, view };
    publish(core, result);
    await core.appendSummary(summarySection(result)).catch((error: unknown) => {
      core.warning(`cinode could not write the job summary: ${describeError(error)}`);
    });
    return result;
  } catch (error) {
    if (deps.signal.aborted) {
      core.setFailed(`cinode was cancelled while trying to ${step}: ${describeError(error)}. The post step ends the session.`);
    } else {
      core.setFailed(`cinode could not ${step}: ${describeError(error)}`);
    }
    return undefined;
  }
}

function describeAdd(inputs: MainInputs): string {
  const what = [inputs.ver && `ver=${inputs.ver}`, inputs.arch && `arch=${inputs.arch}`, inputs.flavor && `flavor=${inputs.flavor}`].filter(Boolean);
  return `${inputs.count} node${inputs.count === 1 ? '' : 's'}${what.length > 0 ? ` (${what.join(' ')})` : ''}`;
}

/** The public view of a host in `hosts-json`. */
function hostJson(host: HostView): Pick<HostView, 'hostname' | 'ip' | 'ver' | 'arch' | 'flavor'> {
  return { hostname: host.hostname, ip: host.ip, ver: host.ver, arch: host.arch, flavor: host.flavor };
}

function publish(core: ActionCore, result: MainResult): void {
  const all = result.view.hosts.map((h) => h.hostname);
  core.setOutput(Outputs.Hosts, result.added.join('\n'));
  core.setOutput(Outputs.AllHosts, all.join('\n'));
  core.setOutput(Outputs.HostsJson, JSON.stringify(result.view.hosts.map(hostJson)));
  core.exportVariable(Env.Hosts, all.join(' '));
}

function summarySection(result: MainResult): SummarySection {
  const { session, view } = result;
  const changes = [
    result.added.length > 0 ? `added ${result.added.length}` : '',
    result.released.length > 0 ? `released ${result.released.length}` : '',
    result.failed.length > 0 ? `reported ${result.failed.length} broken` : '',
  ].filter((part) => part !== '');
  const expires = view.expires_at === null ? 'never expires' : `expires ${view.expires_at}`;
  const count = `${view.hosts.length} host${view.hosts.length === 1 ? '' : 's'}`;
  const text = `Session ${session.ssid}, ${count}, ${expires}${changes.length > 0 ? `; this step ${changes.join(', ')}` : ''}.`;
  const added = new Set(result.added);
  const table = [
    ['Hostname', 'IP', 'Version', 'Arch', 'Flavor', 'State', 'Added by this step'],
    ...view.hosts.map((h) => [h.hostname, h.ip ?? '', h.ver, h.arch, h.flavor ?? '', h.state, added.has(h.hostname) ? 'yes' : '']),
  ];
  return { heading: `cinode session ${session.alias}`, text, table };
}
