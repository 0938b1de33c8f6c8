/**
 * The keeper: a detached process that pre starts (dist/pre/index.js run again with
 * KEEPER_ARGUMENT) to ping the job's session every third of its heartbeat, until post stops it,
 * the session ends, or the runner process that started the job is gone (docs/api.md,
 * "Heartbeats"). Detached, with its output in a file: the step ends at once, and a runner killed
 * with its process group does not take the keeper with it; the keeper notices and stops pinging,
 * so the session ends within its heartbeat.
 *
 * Its settings come in the environment (never argv, which `ps` shows to everyone); the key too,
 * and the keeper's environment holds nothing else of the job's.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { CinodeClient } from '../client/client.js';
import { redactKey } from '../client/errors.js';
import { keepSession } from '../client/keep.js';
import { KEEPER_ARGUMENT } from './constants.js';
import type { KeeperControl, KeeperSettings } from './ports.js';

const ENV = {
  Url: 'CINODE_KEEPER_URL',
  Key: 'CINODE_KEEPER_KEY',
  KeyInQuery: 'CINODE_KEEPER_KEY_IN_QUERY',
  Ssid: 'CINODE_KEEPER_SSID',
  EveryMs: 'CINODE_KEEPER_EVERY_MS',
  WatchPid: 'CINODE_KEEPER_WATCH_PID',
} as const;

/** How often the keeper checks that the runner is still there. */
const WATCH_INTERVAL_MS = 1_000;

/** How long post waits for the keeper to be gone after SIGTERM, before SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** Whether a process is there: signal 0 checks without sending anything (EPERM: there, not ours). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Starts and stops the keeper as a process of its own: what runtime.ts gives the stages. */
export const processKeeper: KeeperControl = {
  start(settings: KeeperSettings): number {
    const log = openSync(settings.logFile, 'a', 0o600);
    try {
      const child = spawn(process.execPath, [process.argv[1]!, KEEPER_ARGUMENT], {
        detached: true,
        stdio: ['ignore', log, log],
        env: {
          [ENV.Url]: settings.url,
          [ENV.Key]: settings.key,
          [ENV.KeyInQuery]: String(settings.keyInQuery),
          [ENV.Ssid]: settings.ssid,
          [ENV.EveryMs]: String(settings.everyMs),
          [ENV.WatchPid]: String(settings.watchPid),
        },
      });
      if (child.pid === undefined) throw new Error(`could not start ${process.execPath}`);
      child.unref();
      return child.pid;
    } finally {
      closeSync(log);
    }
  },

  async stop(pid: number): Promise<boolean> {
    if (!isRunning(pid)) return false;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + STOP_GRACE_MS;
    while (isRunning(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    return true;
  },
};

/** The keeper process's life: reads its settings, pings until told to stop; the exit code says how it ended. */
export async function runKeeper(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const key = env[ENV.Key] ?? '';
  const ssid = env[ENV.Ssid] ?? '';
  const everyMs = Number(env[ENV.EveryMs]);
  const watchPid = Number(env[ENV.WatchPid]);
  const log = (message: string) => console.log(`${new Date().toISOString()} cinode keeper ${process.pid}: ${redactKey(message, key)}`);
  const stopping = new AbortController();
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const onSignal = (signal: NodeJS.Signals) => {
    log(`received ${signal}: stopping`);
    stopping.abort();
  };
  for (const signal of signals) process.on(signal, onSignal);
  const client = new CinodeClient({
    url: env[ENV.Url] ?? '',
    key,
    keyInQuery: env[ENV.KeyInQuery] === 'true',
    // A ping's retries end before the next one is due.
    timeoutMs: everyMs,
    requestTimeoutMs: Math.min(30_000, everyMs),
    signal: stopping.signal,
    userAgent: 'cinode-action-keeper',
  });
  // pid 0 or 1 would be this process group or init: never gone.
  const watching = Number.isInteger(watchPid) && watchPid > 1;
  const runnerThere = () => !watching || isRunning(watchPid);
  log(`keeping session ${ssid} alive: a ping every ${Math.round(everyMs / 1000)}s while process ${watchPid} runs`);
  // Checked every second, not only before each ping: the keeper goes soon after its runner.
  const watch = setInterval(() => {
    if (runnerThere() || stopping.signal.aborted) return;
    log(`process ${watchPid} is gone: the job ended without its post step; stopping`);
    stopping.abort();
  }, WATCH_INTERVAL_MS);
  try {
    const end = await keepSession({
      ping: (ref) => client.ping(ref),
      ssid,
      everyMs,
      signal: stopping.signal,
      stillWanted: runnerThere,
      onTransientError: (error) => log(`ping failed, trying again at the next round: ${error.message}`),
    });
    log(end === 'unwanted' ? `process ${watchPid} is gone: the job ended without its post step; stopping` : 'stopped');
    return 0;
  } catch (error) {
    log(`stopping: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    clearInterval(watch);
    for (const signal of signals) process.off(signal, onSignal);
  }
}
