/**
 * Human output of the client commands: aligned tables and key/value blocks. `--json` bypasses
 * all of this and prints the client's result as it is.
 */
import type { AdminNodeView, EventView, UsageView } from '../client/admin.js';
import type { PublicInventoryRow, KeyedInventoryRow, SessionView } from '../client/index.js';

const NONE = '-';

function cell(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? NONE : String(value);
}

/** Rows aligned in columns under a header, two spaces apart; no trailing spaces. */
export function table(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number | null | undefined>>): string {
  const all = [header.map(cell), ...rows.map((row) => row.map(cell))];
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all.map((row) => row.map((text, i) => (i === row.length - 1 ? text : text.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

export function sessionBlock(view: SessionView): string {
  const fields: Array<[string, string | null]> = [
    ['ssid', view.ssid],
    ['alias', view.alias],
    ['state', view.state],
    ['created_at', view.created_at],
    ['expires_at', view.expires_at ?? (view.state === 'active' ? 'never' : null)],
    ['ended_at', view.ended_at],
    ['end_reason', view.end_reason],
  ];
  if (view.heartbeat !== null) fields.push(['heartbeat', view.heartbeat], ['heartbeat_deadline', view.heartbeat_deadline]);
  const width = Math.max(...fields.map(([name]) => name.length));
  const head = fields.map(([name, value]) => `${name.padEnd(width)}  ${cell(value)}`).join('\n') + '\n';
  if (view.hosts.length === 0) return `${head}\n(no hosts)\n`;
  return `${head}\n${table(
    ['HOSTNAME', 'IP', 'STATE', 'VER', 'ARCH', 'FLAVOR'],
    view.hosts.map((h) => [h.hostname, h.ip, h.state, h.ver, h.arch, h.flavor]),
  )}`;
}

export function sessionTable(views: readonly SessionView[]): string {
  if (views.length === 0) return '(no active sessions)\n';
  return table(
    ['SSID', 'ALIAS', 'STATE', 'HOSTS', 'CREATED_AT', 'EXPIRES_AT'],
    views.map((v) => [v.ssid, v.alias, v.state, v.hosts.map((h) => h.hostname).join(','), v.created_at, v.expires_at ?? 'never']),
  );
}

export function keyedInventoryTable(rows: readonly KeyedInventoryRow[]): string {
  if (rows.length === 0) return '(no nodes in your active sessions)\n';
  return table(['HOSTNAME', 'SSID'], rows);
}

/**
 * The unkeyed listing. Its legacy `pool` field is a flag, not a pool's name (docs/api.md,
 * `/Inventory`): 1 when the node is in the allocation pool, 0 when out; shown as IN_POOL yes/no.
 * The pool's name is in `cinode admin nodes` (an operator's key).
 */
export function publicInventoryTable(rows: readonly PublicInventoryRow[]): string {
  if (rows.length === 0) return '(no nodes)\n';
  const inPool = (flag: PublicInventoryRow[11]) => (flag === 1 ? 'yes' : 'no');
  return table(
    ['ID', 'HOSTNAME', 'IP', 'STATE', 'USED', 'VER', 'ARCH', 'FLAVOR', 'IN_POOL', 'SSID'],
    rows.map((r) => [r[0], r[1], r[2], r[5], r[4], r[9], r[10], r[13], inPool(r[11]), r[6]]),
  );
}

/** `admin nodes`: one node a line, the reason (free text) last. */
export function nodeTable(nodes: readonly AdminNodeView[], state?: string): string {
  if (nodes.length === 0) return state === undefined ? '(no nodes)\n' : `(no ${state} nodes)\n`;
  return table(
    ['HOSTNAME', 'POOL', 'STATE', 'SSID', 'CHANGED_AT', 'REASON'],
    nodes.map((n) => [n.hostname, n.pool, n.state, n.ssid, n.changed_at, n.reason]),
  );
}

/** `admin node release|disable|enable`: the node's state after the action, and why. */
export function nodeLine(node: AdminNodeView): string {
  return `${node.hostname}: ${node.state}${node.reason === null ? '' : ` (${node.reason})`}\n`;
}

/** What an event is about: the node, else the session, else the pool. */
function eventSubject(event: EventView): string | null {
  if (event.subject === 'node') return event.hostname;
  if (event.subject === 'session') return event.ssid;
  return event.pool === null ? null : `pool ${event.pool}`;
}

/** `admin events`: one state change a line; a command's stderr (detail) only with --json. */
export function eventTable(events: readonly EventView[]): string {
  if (events.length === 0) return '(no events)\n';
  return table(
    ['TIME', 'SUBJECT', 'CHANGE', 'PROJECT/ALIAS', 'REASON'],
    events.map((e) => [
      e.at,
      eventSubject(e),
      e.from === null && e.to === null ? null : `${cell(e.from)} -> ${cell(e.to)}`,
      e.project === null ? e.alias : `${e.project}${e.alias === null ? '' : `/${e.alias}`}`,
      e.reason,
    ]),
  );
}

type UsageGrouping = 'project' | 'alias' | 'pool';

/** The columns of `admin usage` by grouping: names, then the figures. */
function usageColumns(by: UsageGrouping): Array<keyof UsageView> {
  const names: Array<keyof UsageView> = by === 'pool' ? ['pool'] : by === 'alias' ? ['project', 'alias'] : ['project'];
  return [...names, 'sessions', 'nodes', 'node_hours'];
}

/** `admin usage`: node-hours to two decimals (--json and --csv keep them unrounded). */
export function usageTable(rows: readonly UsageView[], by: UsageGrouping): string {
  if (rows.length === 0) return '(no node use in the range)\n';
  const columns = usageColumns(by);
  return table(
    columns.map((c) => c.toUpperCase()),
    rows.map((row) => columns.map((c) => (c === 'node_hours' ? row.node_hours.toFixed(2) : row[c]))),
  );
}

/** A CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180). */
function csvField(value: string | number | null | undefined): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** `admin usage --csv`: a header line, then one line a row, node-hours unrounded. */
export function usageCsv(rows: readonly UsageView[], by: UsageGrouping): string {
  const columns = usageColumns(by);
  return [columns.join(','), ...rows.map((row) => columns.map((c) => csvField(row[c])).join(','))].join('\n') + '\n';
}
