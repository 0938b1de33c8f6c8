/**
 * The `cinode admin` commands for operators: list the nodes, read their history, take a node out
 * of service and return it. They use the key of a project with `admin: true`, given as for every
 * client command (CINODE_URL/CINODE_KEY or --url/--key); failures go through runCli like theirs.
 */
import { Command, Option } from 'commander';
import { AdminClient, type AdminNodeView, type NodeAction } from '../client/admin.js';
import type { CinodeClientOptions } from '../client/index.js';
import { NODE_STATES } from '../api/states.js';
import { actionsFor, UsageError, type CliDeps } from './client-commands.js';
import { eventTable, nodeLine, nodeTable, usageCsv, usageTable } from './format.js';

/** What the commands need of the admin client (AdminClient, or a fake in tests). */
export type AdminApi = Pick<AdminClient, 'nodes' | 'events' | 'act' | 'usage' | 'teardown'>;

const ACTIONS: ReadonlyArray<[NodeAction, string]> = [
  ['release', 'return a failed or held node to service: it is reclaimed, then ready'],
  ['disable', 'take a ready, failed or held node out of service until enabled'],
  ['enable', 'return a disabled node to service: it is reclaimed, then ready'],
];

/**
 * Adds `admin nodes`, `admin node release|disable|enable` and `admin events` to the program.
 * `createAdmin` makes the client from the same options as the other commands' client.
 */
export function addAdminCommands(
  program: Command,
  deps: CliDeps,
  createAdmin: (options: CinodeClientOptions) => AdminApi = (options) => new AdminClient(options),
): void {
  const action = actionsFor(deps, createAdmin, 'a project with admin: true');

  const admin = program
    .command('admin')
    .description('operators: list nodes, read their history, take nodes out of service and back (the key of a project with admin: true)');

  admin
    .command('nodes')
    .description('list the nodes in service: hostname, pool, state, session, when and why it last changed')
    .addOption(new Option('--state <state>', 'only the nodes in this state').choices(NODE_STATES))
    .action(
      action(async (client, command) => {
        const { state } = command.opts<{ state?: string }>();
        const nodes = await client.nodes(state);
        return { json: nodes, human: nodeTable(nodes, state) };
      }),
    );

  const node = admin.command('node').description('take a node out of service (disable) or return it (release, enable)');
  for (const [name, description] of ACTIONS) {
    node
      .command(name)
      .description(`${description}; prints its new state`)
      .argument('<hostname>', "the node's hostname")
      .action(
        action(async (client, command) => {
          const [hostname] = command.processedArgs as string[];
          const view: AdminNodeView = await client.act(name, hostname!);
          return { json: view, human: nodeLine(view) };
        }),
      );
  }

  admin
    .command('session')
    .description('sessions: run a session-teardown again')
    .command('teardown')
    .description("run a done session's session-teardown hook again now (after it failed or was given up); cinode session show tells how it went")
    .argument('<ssid>', "the session's full ssid")
    .action(
      action(async (client, command) => {
        const [ssid] = command.processedArgs as string[];
        const view = await client.teardown(ssid!);
        return { json: view, human: `${view.ssid}: teardown ${view.teardown}\n` };
      }),
    );

  admin
    .command('events')
    .description("the latest state changes, oldest first: of a node (--node), a session (--session), or all")
    .addOption(new Option('--node <hostname>', "this node's history").conflicts('session'))
    .option('--session <ssid>', "this session's history and its nodes' (ssid, or alias: every session of that alias)")
    .option('--limit <n>', 'how many of the latest events (server default 100)')
    .action(
      action(async (client, command) => {
        const opts = command.opts<{ node?: string; session?: string; limit?: string }>();
        const events = await client.events({ hostname: opts.node, session: opts.session, limit: parseLimit(opts.limit) });
        return { json: events, human: eventTable(events) };
      }),
    );

  admin
    .command('usage')
    .description('node-hours within a range (default: the last 30 days), each node stay clipped to it: by project, alias or pool')
    .option('--from <time>', 'start of the range: an ISO 8601 date or time, e.g. 2026-01-01 or 2026-01-01T08:00:00Z (UTC unless an offset is given)')
    .option('--to <time>', 'end of the range (default: now)')
    .addOption(new Option('--by <grouping>', 'one row per project, per project and alias, or per pool').choices(['project', 'alias', 'pool']).default('project'))
    .option('--depth <n>', 'with --by alias: group aliases by their first N /-separated parts (2: org/repo of org/repo/run/attempt/job)')
    .option('--csv', 'print CSV (a header line, then one line a row) instead of a table')
    .action(
      action(async (client, command) => {
        const opts = command.opts<{ from?: string; to?: string; by: 'project' | 'alias' | 'pool'; depth?: string; csv?: boolean }>();
        const depth = opts.depth === undefined ? undefined : parseWhole('--depth', opts.depth, 'how many parts of the alias, e.g. --depth 2');
        const rows = await client.usage({ from: opts.from, to: opts.to, by: opts.by, depth });
        return { json: rows, human: opts.csv ? usageCsv(rows, opts.by) : usageTable(rows, opts.by) };
      }),
    );
}

/** A whole number, or a usage error naming the option; the server checks the range. */
function parseWhole(option: string, text: string, example: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`${option}: ${JSON.stringify(text)} is not a whole number; give ${example}`);
  return Number(text);
}

/** A whole number, or a usage error; the server checks the range (and says what it accepts). */
function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  return parseWhole('--limit', text, 'how many events, e.g. --limit 20');
}

