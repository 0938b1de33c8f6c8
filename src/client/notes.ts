/**
 * What the CLI and the action add to an answer so that nothing surprises the caller: a lifetime
 * the project's maximum shortened, an extend that kept a later expiry (docs/api.md,
 * `/Session/get` and `/Session/extend`), and what to check after a refused key or session.
 */
import { formatDuration, parseDuration } from '../api/duration.js';

/**
 * The client's clock and the server's may differ a little, and the request takes time: an expiry
 * within this much of what was asked for is what was asked for.
 */
const CLOCK_SLACK_MS = 60_000;

/**
 * Says when a session's expiry is not `requested` from `now`: shorter (the project's maximum
 * capped it), or, for an extend, later (an extend never shortens a session). Undefined when the
 * expiry is what was asked for, or when nothing (or `never`) was asked for.
 */
export function lifetimeNote(requested: string | undefined, expiresAt: string | null, now: number, call: 'open' | 'extend'): string | undefined {
  if (requested === undefined || expiresAt === null) return undefined;
  const wantedMs = parseDuration(requested);
  if (wantedMs === undefined) return undefined;
  const grantedMs = Date.parse(expiresAt) - now;
  if (grantedMs < wantedMs - CLOCK_SLACK_MS) {
    return `lifetime ${requested} was capped by the project's maximum: the session expires at ${expiresAt} (in about ${formatDuration(Math.max(0, grantedMs))})`;
  }
  if (call === 'extend' && grantedMs > wantedMs + CLOCK_SLACK_MS) {
    return `the session already expires later than ${requested} from now, and an extend never shortens: it still expires at ${expiresAt}`;
  }
  return undefined;
}

/** Where a caller gives the key: the CLI's variable and option, or the action's input and secret. */
export type KeySource = 'cli' | 'action';

const KEY_SOURCE: Record<KeySource, string> = {
  cli: 'the key in CINODE_KEY (or --key)',
  action: "the action's key input (e.g. secrets.CINODE_KEY: is the secret set for this repository, and not empty?)",
};

/**
 * What to check after a refusal whose wire text is the legacy one (`Invalid duffy key`,
 * `Invalid session ID`): those texts stay as they are on the wire, so the hint is added here.
 */
export function refusalHint(kind: string | undefined, source: KeySource): string | undefined {
  switch (kind) {
    case 'invalid-key':
      return `check ${KEY_SOURCE[source]}: the server knows no project with that key`;
    case 'invalid-session':
      return "check the ssid or alias spelling; a session of another project (another key) looks unknown too";
    default:
      return undefined;
  }
}
