/**
 * Durations as docs/api.md writes them ("General rules"): `30s`, `90m`, `6h`, `2d`, combinations
 * with each unit at most once in the order d, h, m, s (`1h30m`), and the word `never`. The server,
 * the configuration, the CLI and the action all read durations here, so they accept the same text.
 */

export const NEVER = 'never' as const;
export type Lifetime = number | typeof NEVER;

const DURATION_PATTERN = /^(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?$/;
const UNIT_MS = [86_400_000, 3_600_000, 60_000, 1_000] as const;

export const DURATION_HELP = 'a duration such as 30s, 90m, 6h, 2d or 1h30m (units d, h, m, s, each at most once, in that order)';

/** Parses a duration into milliseconds; undefined when the text is not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION_PATTERN.exec(text);
  if (!match || text === '') return undefined;
  let ms = 0;
  for (let i = 0; i < UNIT_MS.length; i++) {
    const part = match[i + 1];
    if (part !== undefined) ms += Number(part) * UNIT_MS[i]!;
  }
  return ms > 0 ? ms : undefined;
}

/** Parses a duration or the word `never`. */
export function parseLifetime(text: string): Lifetime | undefined {
  return text === NEVER ? NEVER : parseDuration(text);
}

/** Writes milliseconds back as the shortest duration text (`5400000` -> `1h30m`). */
export function formatDuration(ms: number): string {
  const labels = ['d', 'h', 'm', 's'];
  let rest = Math.round(ms / 1000) * 1000;
  let text = '';
  for (let i = 0; i < UNIT_MS.length; i++) {
    const amount = Math.floor(rest / UNIT_MS[i]!);
    if (amount > 0) text += `${amount}${labels[i]}`;
    rest -= amount * UNIT_MS[i]!;
  }
  return text === '' ? '0s' : text;
}

/** The bounds of a session's heartbeat (docs/api.md, "Heartbeats"). */
export const HEARTBEAT_MIN_MS = 10_000;
export const HEARTBEAT_MAX_MS = 3_600_000;
export const HEARTBEAT_HELP = `a duration from ${formatDuration(HEARTBEAT_MIN_MS)} to ${formatDuration(HEARTBEAT_MAX_MS)}, such as 30s, 5m or 1h`;

/** A heartbeat in milliseconds; undefined when the text is not a duration within the bounds. */
export function parseHeartbeat(text: string): number | undefined {
  const ms = parseDuration(text);
  return ms !== undefined && ms >= HEARTBEAT_MIN_MS && ms <= HEARTBEAT_MAX_MS ? ms : undefined;
}
