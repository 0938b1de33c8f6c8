/**
 * The operators' calls (`/Admin/*`) on the typed client's plumbing: the same key handling,
 * retries and timeouts as every other call. Kept out of client.ts and index.ts on purpose: the
 * GitHub Action bundles those and needs none of this; the `cinode admin` commands import this file.
 */
import type { AdminNodeView, EventView, TeardownView, UsageView } from '../api/types.js';
import { CinodeClient, type CallSpec } from './client.js';
import { CinodeApiError } from './errors.js';

export type { AdminNodeView, EventView, UsageView };

const ADMIN_CALL = {
  nodes: '/Admin/nodes',
  events: '/Admin/events',
  usage: '/Admin/usage',
  release: '/Admin/node/release',
  disable: '/Admin/node/disable',
  enable: '/Admin/node/enable',
  teardown: '/Admin/session/teardown',
} as const;

/** What an operator does to one node: return it to service (release, enable) or take it out (disable). */
export type NodeAction = 'release' | 'disable' | 'enable';

export interface EventFilter {
  /** The history of this node... */
  hostname?: string;
  /** ...or of this session (ssid, or alias: every session of that alias); neither: every event. */
  session?: string;
  /** How many of the latest events (the server's default when left out). */
  limit?: number;
}

export interface UsageFilter {
  /** ISO 8601 dates or times; the server's default range is the last 30 days. */
  from?: string;
  to?: string;
  by?: 'project' | 'alias' | 'pool';
  /** With `by: 'alias'`: group aliases by their first `depth` `/`-separated parts. */
  depth?: number;
}

// ---- shape checks ------------------------------------------------------------------------------

type Field = 'string' | 'string?' | 'number';

function hasFields(value: unknown, fields: Readonly<Record<string, Field>>): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const record = value as Record<string, unknown>;
  return Object.entries(fields).every(([name, type]) => {
    const field = record[name];
    return type === 'string?' ? field === null || typeof field === 'string' : typeof field === type;
  });
}

const NODE_FIELDS = {
  hostname: 'string',
  ip: 'string?',
  pool: 'string',
  state: 'string',
  ssid: 'string?',
  ver: 'string',
  arch: 'string',
  flavor: 'string?',
  used_count: 'number',
  changed_at: 'string',
  reason: 'string?',
} as const satisfies Record<keyof AdminNodeView, Field>;

const EVENT_FIELDS = {
  at: 'string',
  subject: 'string',
  hostname: 'string?',
  pool: 'string?',
  ssid: 'string?',
  project: 'string?',
  alias: 'string?',
  from: 'string?',
  to: 'string?',
  reason: 'string?',
  detail: 'string?',
} as const satisfies Record<keyof EventView, Field>;

const asNode = (body: unknown): AdminNodeView | undefined => (hasFields(body, NODE_FIELDS) ? (body as AdminNodeView) : undefined);

const asNodes = (body: unknown): AdminNodeView[] | undefined =>
  Array.isArray(body) && body.every((node) => hasFields(node, NODE_FIELDS)) ? (body as AdminNodeView[]) : undefined;

const asEvents = (body: unknown): EventView[] | undefined =>
  Array.isArray(body) && body.every((event) => hasFields(event, EVENT_FIELDS)) ? (body as EventView[]) : undefined;

const isUsageRow = (row: unknown): boolean =>
  hasFields(row, { sessions: 'number', nodes: 'number', node_hours: 'number' }) &&
  ['project', 'pool'].every((name) => !(name in (row as object)) || typeof (row as Record<string, unknown>)[name] === 'string') &&
  (!('alias' in (row as object)) || hasFields(row, { alias: 'string?' }));

const asUsage = (body: unknown): UsageView[] | undefined => (Array.isArray(body) && body.every(isUsageRow) ? (body as UsageView[]) : undefined);

const NODE_SHAPE = `{${Object.keys(NODE_FIELDS).map((name) => `"${name}"`).join(', ')}}`;
const EVENT_SHAPE = `{${Object.keys(EVENT_FIELDS).map((name) => `"${name}"`).join(', ')}}`;

// ---- the client --------------------------------------------------------------------------------

/**
 * A CinodeClient that also makes the admin calls; its key must be that of a project with
 * `admin: true`. A 409 (the node's state does not allow the action) comes out as a `policy`
 * refusal, not as `not-active`: that kind means a session that is done.
 */
export class AdminClient extends CinodeClient {
  /** `/Admin/nodes`: every node in service (in `state` only, if given), with its session and why it is in its state. */
  nodes(state?: string): Promise<AdminNodeView[]> {
    return this.admin({ path: ADMIN_CALL.nodes, query: { state }, idempotent: true, parse: asNodes, expected: `[${NODE_SHAPE}, ...]` });
  }

  /** `/Admin/events`: the latest state changes, oldest first. */
  events(filter: EventFilter = {}): Promise<EventView[]> {
    const { hostname, session, limit } = filter;
    return this.admin({
      path: ADMIN_CALL.events,
      query: { hostname, session, limit },
      idempotent: true,
      parse: asEvents,
      expected: `[${EVENT_SHAPE}, ...]`,
    });
  }

  /** `/Admin/usage`: node-hours within a range, by project, project and alias, or pool. */
  usage(filter: UsageFilter = {}): Promise<UsageView[]> {
    const { from, to, by, depth } = filter;
    return this.admin({
      path: ADMIN_CALL.usage,
      query: { from, to, by, depth },
      idempotent: true,
      parse: asUsage,
      expected: '[{"project"|"pool", "alias"?, "sessions", "nodes", "node_hours"}, ...]',
    });
  }

  /** `/Admin/node/{release,disable,enable}`: the node as it is after the action. */
  act(action: NodeAction, hostname: string): Promise<AdminNodeView> {
    return this.admin({
      path: ADMIN_CALL[action],
      query: { hostname },
      // Sent again after a lost answer, a change already made would be refused as the wrong state.
      idempotent: false,
      parse: asNode,
      expected: NODE_SHAPE,
    });
  }

  /** `/Admin/session/teardown`: runs a done session's session-teardown again; answers once it is due. */
  teardown(ssid: string): Promise<TeardownView> {
    return this.admin({
      path: ADMIN_CALL.teardown,
      query: { ssid },
      idempotent: true,
      parse: (body) => (hasFields(body, { ssid: 'string', teardown: 'string' }) ? (body as TeardownView) : undefined),
      expected: '{"ssid", "teardown"}',
    });
  }

  private async admin<T>(spec: CallSpec<T>): Promise<T> {
    try {
      return await this.call(spec);
    } catch (error) {
      if (!(error instanceof CinodeApiError) || error.status !== 409) throw error;
      const refusal = new CinodeApiError('policy', error.message, { status: error.status, call: error.call });
      refusal.attempts = error.attempts;
      throw refusal;
    }
  }
}
