/**
 * The `cinode` client commands for pipelines and shells: `session`, `node` and `inventory`, over
 * the typed client. Collaborators (output writers, environment, client factory) come in as
 * arguments so the commands run in-process in tests as well as from `main.ts`.
 */
import { Command, CommanderError, Option } from 'commander';
import { parseDuration, parseHeartbeat, DURATION_HELP, HEARTBEAT_HELP } from '../api/duration.js';
import { CLIENT_ENV } from '../api/env.js';
import {
  CinodeAbortError,
  CinodeApiError,
  CinodeClient,
  keepSession,
  lifetimeNote,
  redactKey,
  refusalHint,
  type CinodeClientOptions,
  type RetryInfo,
} from '../client/index.js';
import { addCompletionCommand } from './completion.js';
import { EXIT, exitCodeFor, exitCodeHelp } from './exit-codes.js';
import { VERSION } from './version.js';
import { keyedInventoryTable, publicInventoryTable, sessionBlock, sessionTable } from './format.js';

/** What the commands need of the client (CinodeClient, or a fake in tests). */
export type CinodeApi = Pick<
  CinodeClient,
  | 'getNodes'
  | 'doneNodes'
  | 'failNodes'
  | 'inventory'
  | 'publicInventory'
  | 'getSession'
  | 'doneSession'
  | 'showSession'
  | 'listSessions'
  | 'extendSession'
  | 'ping'
>;

export interface CliDeps {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  createClient: (options: CinodeClientOptions) => CinodeApi;
  /** Milliseconds since the epoch: to say when a lifetime was capped. */
  now: () => number;
  /** Calls `stop` on SIGINT or SIGTERM (`session keep` ends then); returns what undoes that. */
  onStopSignal: (stop: () => void) => () => void;
}

/** The environment variables the commands read. */
export const ENV = { url: CLIENT_ENV.Url, key: CLIENT_ENV.Key } as const;

export function processDeps(): CliDeps {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    env: process.env,
    createClient: (options) => new CinodeClient(options),
    now: Date.now,
    onStopSignal: (stop) => {
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      return () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      };
    },
  };
}

/** A mistake in the command line that commander cannot see (a bad --count, no --url, ...): exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface GlobalOptions {
  url?: string;
  key?: string;
  keyInQuery?: boolean;
  timeout?: string;
  json?: boolean;
}

/** The result a command prints: `json` for --json, `human` otherwise; `note` goes to stderr. */
export interface Output {
  json: unknown;
  human: string;
  note?: string;
}

const DEFAULT_TIMEOUT = '5m';

/** Hosts given as separate arguments and/or comma-separated. */
function hostList(args: readonly string[]): string[] | undefined {
  const hosts = args.flatMap((arg) => arg.split(',')).map((h) => h.trim()).filter((h) => h !== '');
  return hosts.length === 0 ? undefined : hosts;
}

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`--count: ${JSON.stringify(text)} is not a whole number; give how many nodes, e.g. --count 2`);
  return Number(text);
}

/** A duration option (`--wait`, `--every`): checked here so a typo is a usage error, not a server's 400. */
function durationOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined) throw new UsageError(`${name}: ${JSON.stringify(text)} is not ${DURATION_HELP}`);
  return ms;
}

function lines(items: readonly string[]): string {
  return items.map((item) => `${item}\n`).join('');
}

/**
 * Builds the `cinode` program with the client commands. `main.ts` adds `serve` beside them. Usage
 * errors and help go through `deps`, and commander throws instead of exiting (runCli maps it).
 */
export function createProgram(deps: CliDeps): Command {
  const program = new Command('cinode')
    .description('Lends test machines to CI jobs: the cinode backend and its client commands')
    .version(VERSION, '-V, --version', 'print the version of cinode')
    .exitOverride()
    // A subcommand's --help lists the global options it accepts too.
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      writeOut: deps.stdout,
      writeErr: deps.stderr,
      outputError: (text, write) => write(`cinode: ${oneLineError(text)}\n`),
    })
    .option('--url <url>', `the cinode (or admin.ci) API base URL [env ${ENV.url}]`)
    .option('--key <key>', `the project's API key [env ${ENV.key}; prefer the variable: arguments show in ps]`)
    .option('--key-in-query', 'send the key as key= in the query (for a legacy admin.ci endpoint) instead of Authorization: Bearer')
    .option('--timeout <duration>', `total retry budget per call, ${DURATION_HELP}`, DEFAULT_TIMEOUT)
    .option('--json', 'print the result as JSON instead of text')
    .addHelpText('afterAll', exitCodeHelp());

  const action = actionsFor(deps, deps.createClient);

  const session = program.command('session').description('job sessions: open, end, show, list, extend, ping, keep');

  session
    .command('open')
    .description('open a session with no nodes (by --alias: the active session of that alias if there is one); prints its ssid')
    .option('--alias <alias>', 'name the session, e.g. "${JOB_NAME}-${BUILD_NUMBER}"; opening it again returns the same session')
    .option('--lifetime <duration>', 'how long the session lives, e.g. 6h, or never (if the project may)')
    .option('--heartbeat <duration>', `the session ends unless it hears from its job this often (${HEARTBEAT_HELP}); keep it alive with session keep`)
    .action(
      action(async (client, command) => {
        const opts = command.opts<{ alias?: string; lifetime?: string; heartbeat?: string }>();
        if (opts.heartbeat !== undefined && parseHeartbeat(opts.heartbeat) === undefined) {
          throw new UsageError(`--heartbeat: ${JSON.stringify(opts.heartbeat)} is not ${HEARTBEAT_HELP}`);
        }
        const result = await client.getSession({ alias: opts.alias, lifetime: opts.lifetime, heartbeat: opts.heartbeat });
        const note = result.created
          ? lifetimeNote(opts.lifetime, result.expires_at, deps.now(), 'open')
          : `reusing the active session ${result.ssid} of alias ${result.alias ?? ''} (--lifetime and --heartbeat apply to a new session only: use session extend for the lifetime)`;
        return { json: result, human: `${result.ssid}\n`, note };
      }),
    );

  session
    .command('done')
    .description('end a session (ssid or alias); its nodes go to reclaim. Fine when it was already done')
    .argument('<ssid>', 'the session (ssid or alias)')
    .action(
      action(async (client, command) => {
        const [ssid] = command.processedArgs as string[];
        await client.doneSession(ssid!);
        return { json: 'done', human: '' };
      }),
    );

  session
    .command('show')
    .description('show a session and its nodes')
    .argument('<ssid>', 'the session (ssid or alias)')
    .action(
      action(async (client, command) => {
        const [ssid] = command.processedArgs as string[];
        const view = await client.showSession(ssid!);
        return { json: view, human: sessionBlock(view) };
      }),
    );

  session
    .command('list')
    .description("list the project's active sessions, newest first")
    .action(
      action(async (client) => {
        const views = await client.listSessions();
        return { json: views, human: sessionTable(views) };
      }),
    );

  session
    .command('extend')
    .description('make a session expire LIFETIME from now (capped by the project maximum); never shortens it')
    .argument('<ssid>', 'the session (ssid or alias)')
    .argument('<lifetime>', 'e.g. 2h, or never (if the project may)')
    .action(
      action(async (client, command) => {
        const [ssid, lifetime] = command.processedArgs as string[];
        const view = await client.extendSession(ssid!, lifetime!);
        return { json: view, human: sessionBlock(view), note: lifetimeNote(lifetime, view.expires_at, deps.now(), 'extend') };
      }),
    );

  session
    .command('ping')
    .description('tell a session with a heartbeat that its job is alive; shows the session')
    .argument('<ssid>', 'the session (ssid or alias)')
    .action(
      action(async (client, command) => {
        const [ssid] = command.processedArgs as string[];
        const view = await client.ping(ssid!);
        const note = view.state === 'active' ? undefined : `session ${view.ssid} has ended (${view.end_reason ?? 'done'})`;
        return { json: view, human: sessionBlock(view), note };
      }),
    );

  session
    .command('keep')
    .description("keep a session alive: ping it every third of its heartbeat until SIGINT or SIGTERM (then exit 0); exits non-zero once the session has ended or is unknown")
    .argument('<ssid>', 'the session (ssid or alias)')
    .option('--every <duration>', 'ping this often instead (e.g. 20s)')
    .action(
      action(async (client, command) => {
        const [ssid] = command.processedArgs as string[];
        const everyMs = durationOption('--every', command.opts<{ every?: string }>().every);
        const stopping = new AbortController();
        const undo = deps.onStopSignal(() => stopping.abort());
        let announced = false;
        try {
          await keepSession({
            ping: (ref) => client.ping(ref),
            ssid: ssid!,
            everyMs,
            signal: stopping.signal,
            onPing: (view) => {
              if (announced) return;
              announced = true;
              deps.stderr(`cinode: keeping session ${view.ssid} alive (heartbeat ${view.heartbeat ?? 'none'}); stop with SIGINT or SIGTERM\n`);
            },
            onTransientError: (error) => deps.stderr(`cinode: ping failed, trying again at the next round: ${error.message}\n`),
          });
        } finally {
          undo();
        }
        return { json: 'stopped', human: '', note: `stopped keeping session ${ssid!} alive` };
      }),
    );

  const node = program.command('node').description('nodes: get more, release them (done), keep or report them (fail)');

  node
    .command('get')
    .description('get nodes: into --ssid, or into a new session (its ssid goes to stderr); prints one hostname per line')
    .option('--count <n>', 'how many nodes (default 1)')
    .option('--ver <ver>', 'the OS version, e.g. 7 or 9-stream')
    .option('--arch <arch>', 'the architecture, e.g. x86_64 or aarch64')
    .option('--flavor <flavor>', 'the node flavor, e.g. tiny')
    .option('--ssid <ssid>', 'add the nodes to this active session (ssid or alias)')
    .option('--wait <duration>', 'when too few nodes are ready, let the server queue the request this long (e.g. 10m); the command waits for its answer')
    .action(
      action(async (client, command) => {
        const opts = command.opts<{
          count?: string;
          ver?: string;
          arch?: string;
          flavor?: string;
          ssid?: string;
          wait?: string;
        }>();
        const count = parseCount(opts.count);
        durationOption('--wait', opts.wait);
        const result = await client.getNodes({ count, ver: opts.ver, arch: opts.arch, flavor: opts.flavor, ssid: opts.ssid, wait: opts.wait });
        const note = opts.ssid === undefined ? `new session ${result.ssid}; end it with: cinode session done ${result.ssid}` : undefined;
        return { json: result, human: lines(result.hosts), note };
      }),
    );

  node
    .command('done')
    .description('release HOSTs from the session (it stays active); without HOST, end the whole session')
    .argument('<ssid>', 'the session (ssid or alias)')
    .argument('[host...]', 'hostnames (also comma-separated)')
    .action(
      action(async (client, command) => {
        const [ssid, hosts] = nodeArgs(command);
        const result = await client.doneNodes(ssid, hosts);
        const note = result === 'not-in-prod' ? `session ${ssid} was already done` : undefined;
        return { json: result, human: '', note };
      }),
    );

  node
    .command('fail')
    .description('report HOSTs broken (they leave the session, quarantined); without HOST, keep all nodes for debugging')
    .argument('<ssid>', 'the session (ssid or alias)')
    .argument('[host...]', 'hostnames (also comma-separated)')
    .action(
      action(async (client, command) => {
        const [ssid, hosts] = nodeArgs(command);
        await client.failNodes(ssid, hosts);
        return { json: 'done', human: '' };
      }),
    );

  program
    .command('inventory')
    .description("list the nodes in the project's active sessions (hostname, ssid); --all: every node the backend manages")
    .addOption(new Option('--all', 'the unkeyed listing of every node (no key needed); IN_POOL: in the allocation pool (the legacy 1/0 flag); pool names: cinode admin nodes'))
    .action(
      action(
        async (client, command) => {
          if (command.opts<{ all?: boolean }>().all === true) {
            const rows = await client.publicInventory();
            return { json: rows, human: publicInventoryTable(rows) };
          }
          const rows = await client.inventory();
          return { json: rows, human: keyedInventoryTable(rows) };
        },
        (command) => command.opts<{ all?: boolean }>().all !== true,
      ),
    );

  addCompletionCommand(program, deps);
  return program;
}

/**
 * commander's error as one line: `unknown command "sesion"; did you mean "session"?`. The help
 * is one `--help` away; forty lines of it would bury the mistake.
 */
export function oneLineError(text: string): string {
  return text
    .trim()
    .replace(/^error: /, '')
    .replace(/'([^']*)'/g, '"$1"')
    .replace(/\s*\(Did you mean (?:one of )?([^)]*)\?\)/, (_all, names: string) => `; did you mean ${names.split(', ').map((n) => `"${n}"`).join(' or ')}?`)
    .replace(/\s*\n\s*/g, ' ');
}

function nodeArgs(command: Command): [string, string[] | undefined] {
  const [ssid, hosts] = command.processedArgs as [string, string[] | undefined];
  return [ssid, hostList(hosts ?? [])];
}

/**
 * Makes the commander actions of a family of commands: each builds its client from the global
 * options, makes its call and prints the output (the API body with --json). `keyed` says of a
 * command whether it needs a key; `keyOf` says whose, in the message when none is given.
 */
export function actionsFor<Api>(deps: CliDeps, createClient: (options: CinodeClientOptions) => Api, keyOf?: string) {
  return (run: (client: Api, command: Command) => Promise<Output>, keyed: (command: Command) => boolean = () => true) =>
    async (...args: unknown[]): Promise<void> => {
      // commander passes the command itself last.
      const command = args[args.length - 1] as Command;
      const globals = command.optsWithGlobals<GlobalOptions>();
      const options = clientOptions(globals, deps, keyed(command), keyOf);
      let client: Api;
      try {
        client = createClient(options);
      } catch (error) {
        // The client refuses a malformed URL before sending anything.
        throw new UsageError(error instanceof Error ? error.message : String(error));
      }
      const output = await run(client, command);
      if (output.note) deps.stderr(`cinode: ${output.note}\n`);
      deps.stdout(globals.json ? `${JSON.stringify(output.json, null, 2)}\n` : output.human);
    };
}

/**
 * The client's options from the global options and the environment. `keyed`: the calls need a
 * key; `keyOf` says whose, in the message when none is given.
 */
function clientOptions(globals: GlobalOptions, deps: CliDeps, keyed: boolean, keyOf?: string): CinodeClientOptions {
  const url = globals.url ?? deps.env[ENV.url];
  if (url === undefined || url === '') throw new UsageError(`no API URL: give --url or set ${ENV.url}`);
  const key = globals.key ?? deps.env[ENV.key] ?? '';
  if (keyed && key === '') throw new UsageError(`no API key: set ${ENV.key} (or give --key)${keyOf ? ` to the key of ${keyOf}` : ''}`);
  const timeoutText = globals.timeout ?? DEFAULT_TIMEOUT;
  const timeoutMs = parseDuration(timeoutText);
  if (timeoutMs === undefined) throw new UsageError(`--timeout: ${JSON.stringify(timeoutText)} is not ${DURATION_HELP}`);
  return {
    url,
    key,
    keyInQuery: globals.keyInQuery === true,
    timeoutMs,
    userAgent: 'cinode-cli',
    onRetry: (info: RetryInfo) => deps.stderr(`cinode: ${retryLine(info, key)}\n`),
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

function retryLine(info: RetryInfo, key: string): string {
  return `${redactKey(info.error.message, key)} (${info.error.kind}); retrying in ${seconds(info.waitMs)} (attempt ${info.attempt} failed)`;
}

/** The message printed for a failed call, with how long it was retried when it was. */
function failureMessage(error: CinodeApiError, key: string): string {
  let message = redactKey(error.message, key);
  const hint = refusalHint(error.kind, 'cli');
  if (hint !== undefined) message += ` (${hint})`;
  if (error.attempts !== undefined && error.attempts > 1) message += ` (still failing after ${error.attempts} attempts; the --timeout retry budget is spent)`;
  return message;
}

/**
 * Parses `argv` (as process.argv: node, script, args...) and runs the command; resolves to the
 * exit code. Failures are written to stderr as `cinode: <message>`, never with the key.
 */
export async function runCli(program: Command, argv: readonly string[], deps: CliDeps): Promise<number> {
  const key = deps.env[ENV.key] ?? '';
  const keyFromArgs = argValue(argv, '--key');
  const scrub = (text: string) => redactKey(keyFromArgs === undefined ? text : redactKey(text, keyFromArgs), key);
  try {
    await program.parseAsync([...argv]);
    return EXIT.ok.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version end with code 0; every other commander error is a usage error (already printed).
      return error.exitCode === 0 ? EXIT.ok.code : EXIT.badInput.code;
    }
    if (error instanceof UsageError) {
      deps.stderr(`cinode: ${scrub(error.message)}\n`);
      return EXIT.badInput.code;
    }
    if (error instanceof CinodeApiError) {
      deps.stderr(`cinode: ${scrub(failureMessage(error, key))}\n`);
      return exitCodeFor(error.kind);
    }
    if (error instanceof CinodeAbortError) {
      deps.stderr(`cinode: ${scrub(error.message)}\n`);
      return EXIT.transport.code;
    }
    deps.stderr(`cinode: unexpected error: ${scrub(error instanceof Error ? error.message : String(error))}\n`);
    return EXIT.internal.code;
  }
}

/** The value of `--name value` or `--name=value` in argv, if given. */
function argValue(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === name) return argv[i + 1];
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}
