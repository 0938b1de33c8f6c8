/**
 * Runs an operator's command (an argv list, no shell) with a timeout, for what is done to a
 * machine: reclaim, provision, deprovision, and ssh for contextualization. The command runs in its
 * own process group so a timeout (or a shutdown) kills whatever it started too.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  ok: boolean;
  /** Why it failed: the exit code or signal with the end of stderr, a timeout, or a failed start. */
  reason: string | null;
  stdout: string;
  stderr: string;
  /** The exit code, the signal that ended it, or null when it did not start. */
  status?: number | string | null;
}

export interface CommandOptions {
  /** What the command is, for messages: `reclaim`, `provision`... */
  label: string;
  argv: readonly string[];
  env: Record<string, string>;
  timeoutMs: number;
  stdin?: string;
}

/** The end of a command's stderr kept in the event history. */
const DETAIL_CHARS = 4_000;

/** Output kept of each stream: enough for a reason and an event history, bounded in memory. */
const MAX_OUTPUT = 64 * 1024;
/** How long output may still arrive after the command exited. */
const OUTPUT_DRAIN_MS = 100;

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

/** The end of a command's stderr, for the event history; null when it printed nothing there. */
export function stderrDetail(result: { stderr?: string }): string | null {
  const text = (result.stderr ?? '').trim();
  return text === '' ? null : text.slice(-DETAIL_CHARS);
}

/**
 * Runs the command; `running`, when given, holds the command's kill function while it runs, so
 * that whoever owns the set can kill it (a worker or the server at shutdown).
 */
export function runCommand(options: CommandOptions, running?: Set<() => void>): Promise<CommandResult> {
  const [file, ...args] = options.argv;
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const child = spawn(file!, args, {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    running?.add(killGroup);
    let status: number | string | null = null;
    const finish = (result: Omit<CommandResult, 'stdout' | 'stderr'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      running?.delete(killGroup);
      resolve({ ...result, stdout, stderr, status });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += chunk.toString();
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
    child.on('error', (error) => finish({ ok: false, reason: `${options.label} could not start ${JSON.stringify(file)}: ${error.message}` }));
    // The command is done when it exits, even if something it left in the background still
    // holds its output pipes: read what is buffered, then stop listening.
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        settle(code, signal);
      }, OUTPUT_DRAIN_MS);
    });
    child.on('close', (code, signal) => settle(code, signal));
    function settle(code: number | null, signal: NodeJS.Signals | null): void {
      status = code ?? signal;
      if (timedOut) {
        finish({ ok: false, reason: `${options.label} timed out after ${Math.round(options.timeoutMs / 1000)}s and was killed` });
      } else if (code === 0) {
        finish({ ok: true, reason: null });
      } else {
        const how = code === null ? `was killed by ${signal}` : `exited with ${code}`;
        const detail = lastLine(stderr);
        finish({ ok: false, reason: `${options.label} ${how}${detail ? `: ${detail}` : ''}` });
      }
    }
  });
}
