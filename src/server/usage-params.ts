/**
 * The parameters of `/Admin/usage` (docs/api.md, "Usage"): a range of ISO 8601 dates or times,
 * a grouping, and an alias depth. Each problem is a 400 that names the parameter and says what
 * is accepted.
 */
import type { UsageRequest } from '../core/admin.js';
import { badRequest } from '../core/errors.js';
import type { UsageGrouping } from '../core/storage.js';
import type { Params } from './params.js';

const DAY_MS = 86_400_000;
/** The range when `from` is left out: the last 30 days before `to`. */
const DEFAULT_RANGE_MS = 30 * DAY_MS;
const GROUPINGS: readonly UsageGrouping[] = ['project', 'alias', 'pool'];
const MAX_DEPTH = 32;

/** A date (midnight UTC) or a date and time; a time without an offset is UTC. */
const TIME_PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
const TIME_HELP = 'an ISO 8601 date or time such as 2026-01-31 or 2026-01-31T12:00:00Z (UTC unless an offset is given)';

function one(params: Params, name: string): string | undefined {
  const values = params.get(name);
  if (!values || values.length === 0) return undefined;
  if (new Set(values).size > 1) throw badRequest(`${name}: given ${values.length} times with different values; give it once`);
  return values[0];
}

function readTime(params: Params, name: string): number | undefined {
  const text = one(params, name);
  if (text === undefined) return undefined;
  const match = TIME_PATTERN.exec(text);
  if (!match) throw badRequest(`${name}: ${JSON.stringify(text.slice(0, 40))} is not a date or time; accepted: ${TIME_HELP}`);
  const [, year, month, day, hour, minute, second, fraction, offset] = match;
  const iso = `${year}-${month}-${day}T${hour ?? '00'}:${minute ?? '00'}:${second ?? '00'}${fraction ?? ''}${offset ?? 'Z'}`;
  const ms = Date.parse(iso);
  // Date.parse rolls 2026-02-30 over to March: a date that does not exist is refused instead.
  if (Number.isNaN(ms) || new Date(Date.parse(`${year}-${month}-${day}T00:00:00Z`)).getUTCDate() !== Number(day)) {
    throw badRequest(`${name}: ${JSON.stringify(text)} is not a valid date or time; accepted: ${TIME_HELP}`);
  }
  return ms;
}

/** The range, grouping and depth of a usage request; `now` ends the default range. */
export function readUsageRequest(params: Params, now: number): UsageRequest {
  const to = readTime(params, 'to') ?? now;
  const from = readTime(params, 'from') ?? to - DEFAULT_RANGE_MS;
  if (from >= to) throw badRequest(`from: ${new Date(from).toISOString()} is not before to ${new Date(to).toISOString()}; give a range whose start comes first`);
  const byText = one(params, 'by') ?? 'project';
  if (!GROUPINGS.includes(byText as UsageGrouping)) {
    throw badRequest(`by: ${JSON.stringify(byText.slice(0, 40))} is not a grouping; accepted: ${GROUPINGS.join(', ')}`);
  }
  const by = byText as UsageGrouping;
  const depthText = one(params, 'depth');
  if (depthText === undefined) return { from, to, by };
  if (by !== 'alias') throw badRequest(`depth: groups aliases, so it goes with by=alias (not by=${by})`);
  if (!/^\d{1,2}$/.test(depthText) || Number(depthText) < 1 || Number(depthText) > MAX_DEPTH) {
    throw badRequest(`depth: ${JSON.stringify(depthText.slice(0, 40))} is out of range; accepted: a whole number from 1 to ${MAX_DEPTH} (how many /-separated parts of the alias to group by)`);
  }
  return { from, to, by, depth: Number(depthText) };
}
