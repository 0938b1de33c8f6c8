/**
 * The collaborators the action's stages take as arguments: the runner's I/O (what
 * `@actions/core` offers), the API client, the clock and the cancellation signal. The real ones
 * are wired in runtime.ts; tests pass fakes, so no module needs mocking.
 */
import type { RetryInfo } from '../client/retry.js';
import type {
  NodeGetParams,
  NodeGetResult,
  SessionGetParams,
  SessionGetResult,
  SessionView,
} from '../client/types.js';
import type { EnvName, Input, Output, StateName } from './constants.js';

/** A job-summary section: a heading, a line of text and a table whose first row is the header. */
export interface SummarySection {
  heading: string;
  text: string;
  table: string[][];
}

/** What the action needs of the runner: the `@actions/core` calls it uses, narrowed to its names. */
export interface ActionCore {
  /** The input's value, trimmed; '' when it is not set. */
  getInput(name: Input): string;
  setOutput(name: Output, value: string): void;
  /** This use's state, '' when not set. */
  getState(name: StateName): string;
  saveState(name: StateName, value: string): void;
  /** Sets the variable for the later steps of the job (and for this process). */
  exportVariable(name: EnvName, value: string): void;
  /** The environment this step started with. */
  getEnv(name: EnvName): string;
  setSecret(value: string): void;
  info(message: string): void;
  warning(message: string, title?: string): void;
  /** Fails the step: an error annotation and a non-zero exit code. */
  setFailed(message: string): void;
  appendSummary(section: SummarySection): Promise<void>;
}

/** The client options the action sets (CinodeClientOptions has more, for tests and the CLI). */
export interface ClientSettings {
  url: string;
  key: string;
  keyInQuery: boolean;
  /** The total retry budget of one call. */
  timeoutMs: number;
  signal: AbortSignal;
  onRetry: (info: RetryInfo) => void;
}

/**
 * The calls of the API client (src/client) the action makes. CinodeClient implements it; tests
 * pass fakes that throw errors with a `kind` as CinodeApiError does.
 */
export interface ActionClient {
  getSession(params: SessionGetParams): Promise<SessionGetResult>;
  getNodes(params: NodeGetParams): Promise<NodeGetResult>;
  doneNodes(ssid: string, nodes: readonly string[]): Promise<unknown>;
  failNodes(ssid: string, nodes: readonly string[]): Promise<unknown>;
  doneSession(ssid: string): Promise<void>;
  showSession(ssid: string): Promise<SessionView>;
}

export type ClientFactory = (settings: ClientSettings) => ActionClient;

/** How the keeper process is told what to keep alive (docs/api.md, "Heartbeats"). */
export interface KeeperSettings {
  url: string;
  key: string;
  keyInQuery: boolean;
  ssid: string;
  /** Milliseconds between pings: a third of the heartbeat. */
  everyMs: number;
  /** The runner process that started the job: the keeper stops once it is gone. */
  watchPid: number;
  /** Where the keeper writes what it does (never the key); the step's own output is not held open. */
  logFile: string;
}

/** Starting and stopping the detached keeper process. */
export interface KeeperControl {
  /** Starts it; returns its pid. Throws when it cannot be started. */
  start(settings: KeeperSettings): number;
  /** Stops it; resolves to whether it was still running. */
  stop(pid: number): Promise<boolean>;
}

export interface ActionDeps {
  core: ActionCore;
  /** The keeper (runtime.ts); without it, pre warns that no keeper runs. */
  keeper?: KeeperControl;
  /** The pid of the process that started this step: the runner, which the keeper watches. */
  parentPid?: number;
  /** Where files of this job may go (RUNNER_TEMP). */
  tempDir?: string;
  createClient: ClientFactory;
  /** Aborted on SIGINT/SIGTERM: a call waiting for capacity gives up at once. */
  signal: AbortSignal;
  /** Milliseconds since the epoch. */
  clock: () => number;
}
