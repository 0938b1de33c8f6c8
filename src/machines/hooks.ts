/**
 * Runs the session isolation hooks (docs/api.md, "Session isolation"): each an operator's argv,
 * without a shell, with cinode's own environment (as reclaim commands are) plus the session's and,
 * for node hooks, the node's `CINODE_*` variables. A timeout kills the hook's process group.
 * session-setup's last line of stdout, when it printed any, must be a JSON object: the session's
 * data, given to every later hook as `CINODE_SESSION_DATA`.
 */
import { COMMAND_ENV, HOOK_ENV } from '../api/env.js';
import type { HookName } from '../api/states.js';
import { runCommand, stderrDetail } from './command.js';

// The shapes core names in core/model.ts (machines know no core: docs/architecture.md).
export interface HookSession {
  ssid: string;
  project: string;
  alias: string | null;
  data?: Record<string, unknown>;
}
export interface HookNode {
  hostname: string;
  ip: string | null;
  pool: string;
}
export interface HookOutcome {
  ok: boolean;
  reason: string | null;
  stderr: string;
  data?: Record<string, unknown>;
}
/** The `isolation:` block: each hook's argv (null: not hooked) and the timeout of every run. */
export interface IsolationHooks {
  sessionSetup: string[] | null;
  sessionTeardown: string[] | null;
  nodeAttach: string[] | null;
  nodeDetach: string[] | null;
  timeoutMs: number;
}

/** What a hook run came to, as the history and the metrics record it. */
export interface HookReport<N extends HookNode = HookNode> {
  hook: HookName;
  session: HookSession;
  node?: N;
  outcome: HookOutcome;
  /** `ok`, `failed` or `timeout`: the metric's `outcome` label. */
  label: 'ok' | 'failed' | 'timeout';
  exitStatus: number | string | null;
  durationMs: number;
  stderrTail: string | null;
}

const ARGV: Record<HookName, keyof Omit<IsolationHooks, 'timeoutMs'>> = {
  'session-setup': 'sessionSetup',
  'session-teardown': 'sessionTeardown',
  'node-attach': 'nodeAttach',
  'node-detach': 'nodeDetach',
};

/** The environment a hook gets besides cinode's own. */
export function hookEnv(hook: HookName, session: HookSession, node?: HookNode): Record<string, string> {
  const env: Record<string, string> = {
    [HOOK_ENV.Project]: session.project,
    [HOOK_ENV.Ssid]: session.ssid,
    [HOOK_ENV.Alias]: session.alias ?? '',
  };
  if (hook !== 'session-setup') env[HOOK_ENV.SessionData] = JSON.stringify(session.data ?? {});
  if (node) {
    env[COMMAND_ENV.Hostname] = node.hostname;
    env[COMMAND_ENV.Ip] = node.ip ?? '';
    env[COMMAND_ENV.Pool] = node.pool;
  }
  return env;
}

/** The session data in setup's stdout: its last non-empty line, a JSON object; `{}` when it printed nothing. */
export function sessionData(stdout: string): { data: Record<string, unknown> } | { problem: string } {
  const lines = stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines[lines.length - 1];
  if (last === undefined) return { data: {} };
  try {
    const parsed: unknown = JSON.parse(last);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return { data: parsed as Record<string, unknown> };
  } catch {
    // told below
  }
  return { problem: `the last line of its stdout is not a JSON object: ${last.slice(0, 120)}` };
}

/**
 * The hooks of `hooks()` (read at each run, so a reload applies to the next run); a hook that is
 * not configured succeeds at once without running anything. `onRun` hears of every run.
 */
export function hookRunner<N extends HookNode>(
  hooks: () => IsolationHooks | null,
  onRun: (report: HookReport<N>) => Promise<void> | void,
  running?: Set<() => void>,
): { run(hook: HookName, session: HookSession, node?: N): Promise<HookOutcome> } {
  return {
    async run(hook, session, node) {
      const config = hooks();
      const argv = config?.[ARGV[hook]];
      if (!config || !argv) return { ok: true, reason: null, stderr: '', data: hook === 'session-setup' ? {} : undefined };
      const started = Date.now();
      const result = await runCommand({ label: hook, argv, env: hookEnv(hook, session, node), timeoutMs: config.timeoutMs }, running);
      const durationMs = Date.now() - started;
      let outcome: HookOutcome = { ok: result.ok, reason: result.ok ? null : lastStderrLine(result.stderr, result.reason), stderr: result.stderr };
      if (result.ok && hook === 'session-setup') {
        const parsed = sessionData(result.stdout);
        outcome = 'data' in parsed ? { ...outcome, data: parsed.data } : { ok: false, reason: parsed.problem, stderr: result.stderr };
      }
      const timedOut = !result.ok && (result.reason ?? '').includes('timed out');
      await onRun({
        hook,
        session,
        node,
        outcome,
        label: outcome.ok ? 'ok' : timedOut ? 'timeout' : 'failed',
        exitStatus: result.status ?? null,
        durationMs,
        stderrTail: stderrDetail(result),
      });
      return outcome;
    },
  };
}

/** The last line of a failed hook's stderr (docs/api.md: what the caller is told), else why it failed. */
function lastStderrLine(stderr: string, reason: string | null): string {
  const lines = stderr.trim().split('\n');
  const last = (lines[lines.length - 1] ?? '').trim();
  if (reason?.includes('timed out')) return last === '' ? reason : `${reason} (${last.slice(0, 300)})`;
  return last !== '' ? last.slice(0, 300) : (reason ?? 'failed');
}
