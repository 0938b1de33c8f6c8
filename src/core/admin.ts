/**
 * What operators do to nodes, through the keys of projects with `admin: true`: list them, read
 * the event history, take a node out of service (`disable`), and return one to service (`release`
 * a quarantined or held node, `enable` a disabled one). A node returning to service goes through
 * reclaim first, as after any use: nobody knows what happened to it while it was out.
 */
import type { AdminNodeView, AdminSessionView, EventView, TeardownView, UsageView } from '../api/types.js';
import type { Catalog } from './catalog.js';
import { CinodeError } from './errors.js';
import type { NodeEvent } from './lifecycle.js';
import type { NodeState } from '../api/states.js';
import type { Node, Project } from './model.js';
import type { HistoryEvent, Storage, UsageGrouping, UsageRow } from './storage.js';

export interface AdminDeps {
  store: Storage;
  catalog: () => Catalog;
  clock: () => number;
  /** Called after a node was sent to reclaim, so its reclaim starts at once. */
  wakeReclaim: () => void;
  /** Called after a teardown was asked for again, so the isolation worker runs it at once. */
  wakeTeardown?: () => void;
}

type Action = 'release' | 'disable' | 'enable';

/**
 * The states each action applies to, and the lifecycle event it is for a node in that state. A
 * held node is in a session: returning it to service releases it from there as after any use.
 */
const ACTIONS: Record<Action, { events: Partial<Record<NodeState, NodeEvent>>; hint: string }> = {
  release: { events: { failed: 'returned-to-service', held: 'released' }, hint: 'release returns failed and held nodes to service' },
  disable: { events: { ready: 'disabled', failed: 'disabled', held: 'disabled' }, hint: 'disable takes ready, failed and held nodes out of service' },
  enable: { events: { disabled: 'returned-to-service' }, hint: 'enable returns disabled nodes to service' },
};

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function nodeView(node: Node & { ssid: string | null }): AdminNodeView {
  return {
    hostname: node.hostname,
    ip: node.ip,
    pool: node.pool,
    state: node.state,
    ssid: node.ssid,
    ver: node.ver,
    arch: node.arch,
    flavor: node.flavor,
    used_count: node.usedCount,
    changed_at: iso(node.changedAt),
    reason: node.reason,
  };
}

const MS_PER_HOUR = 3_600_000;

function usageView(row: UsageRow, by: UsageGrouping): UsageView {
  const counts = { sessions: row.sessions, nodes: row.nodes, node_hours: row.nodeMs / MS_PER_HOUR };
  if (by === 'pool') return { pool: row.pool!, ...counts };
  if (by === 'alias') return { project: row.project!, alias: row.alias, ...counts };
  return { project: row.project!, ...counts };
}

/** What `/Admin/usage` was asked: a range in milliseconds and a grouping. */
export interface UsageRequest {
  from: number;
  to: number;
  by: UsageGrouping;
  depth?: number;
}

function eventView(event: HistoryEvent): EventView {
  const { id: _id, at, ...rest } = event;
  return { at: iso(at), ...rest };
}

export class AdminService {
  constructor(private readonly deps: AdminDeps) {}

  /** Refuses the keys of projects that are not admin projects. */
  authorize(project: Project): void {
    if (!project.policy.admin) {
      throw new CinodeError('policy', `Project ${project.name} may not make admin calls; they need the key of a project with admin: true`);
    }
  }

  async nodes(state?: NodeState): Promise<AdminNodeView[]> {
    return (await this.deps.store.read().nodes.list(state)).map(nodeView);
  }

  /** The history of a node or a session (by ssid or alias: the events of every session of that alias). */
  async events(filter: { hostname?: string; session?: string }, limit: number): Promise<EventView[]> {
    const tx = this.deps.store.read();
    if (filter.hostname !== undefined) {
      if (!(await tx.nodes.byHostname(filter.hostname))) throw this.noNode(filter.hostname);
      return (await tx.events.list({ hostname: filter.hostname }, limit)).map(eventView);
    }
    return (await tx.events.list({ session: filter.session }, limit)).map(eventView);
  }

  /** Node-hours within a range (docs/api.md, "Usage"), from the sessions' node stays. */
  async usage(request: UsageRequest): Promise<UsageView[]> {
    const rows = await this.deps.store.read().reports.usage({ ...request, now: this.deps.clock() });
    return rows.map((row) => usageView(row, request.by));
  }

  /** Every project's active sessions, newest first, with their hosts. */
  async sessions(): Promise<AdminSessionView[]> {
    const tx = this.deps.store.read();
    const sessions = await tx.reports.allActiveSessions();
    const nodes = await tx.nodes.ofSessions(sessions.map((s) => s.id));
    return sessions.map((s) => ({
      project: s.project,
      ssid: s.ssid,
      alias: s.alias,
      created_at: iso(s.createdAt),
      expires_at: s.expiresAt === null ? null : iso(s.expiresAt),
      hosts: (nodes.get(s.id) ?? []).map((n) => n.hostname),
    }));
  }

  /** Nodes in service by pool and state, and active sessions by project: what the metrics report. */
  async counts(): Promise<{ nodes: Array<{ pool: string; state: NodeState; count: number }>; sessions: Array<{ project: string; count: number }> }> {
    const tx = this.deps.store.read();
    const [nodes, sessions] = await Promise.all([tx.reports.nodeCounts(), tx.reports.activeSessionCounts()]);
    return { nodes, sessions };
  }

  /**
   * `/Admin/session/teardown`: runs session-teardown of a done session again, now (docs/api.md,
   * "Session isolation"), whether it failed, was given up or succeeded.
   */
  async teardown(ssid: string): Promise<TeardownView> {
    const found = await this.deps.store.transaction((tx) => tx.isolation.retryTeardown(ssid, this.deps.clock()));
    if (found === undefined) throw new CinodeError('no-node', `No session ${ssid}; give the full ssid of a session (cinode admin events --session ALIAS shows it)`);
    if (found === 'active') throw new CinodeError('wrong-state', `Session ${ssid} is active: its teardown runs after it ends`);
    if (found === 'not-isolated') throw new CinodeError('wrong-state', `Session ${ssid} was opened without isolation hooks: it has no teardown`);
    this.deps.wakeTeardown?.();
    return { ssid, teardown: 'pending' };
  }

  release(hostname: string, operator: Project): Promise<AdminNodeView> {
    return this.act('release', hostname, operator);
  }

  disable(hostname: string, operator: Project): Promise<AdminNodeView> {
    return this.act('disable', hostname, operator);
  }

  enable(hostname: string, operator: Project): Promise<AdminNodeView> {
    return this.act('enable', hostname, operator);
  }

  private noNode(hostname: string): CinodeError {
    return new CinodeError('no-node', `No node ${hostname}; cinode admin nodes lists the nodes in service`);
  }

  private async act(action: Action, hostname: string, operator: Project): Promise<AdminNodeView> {
    const { events, hint } = ACTIONS[action];
    const view = await this.deps.store.transaction(async (tx) => {
      const node = await tx.nodes.byHostname(hostname);
      if (!node || node.retired) throw this.noNode(hostname);
      const event = events[node.state];
      if (event === undefined) {
        const where = node.ssid ? ` in session ${node.ssid}` : '';
        throw new CinodeError('wrong-state', `Node ${hostname} is ${node.state}${where}; ${hint}`);
      }
      const change = { at: this.deps.clock(), reason: `${action}d by an operator of project ${operator.name}` };
      const moved = this.deps.catalog().move(event);
      if (node.sessionId !== null) await tx.nodes.leave(node.sessionId, [node.id], moved, change);
      else await tx.nodes.apply([node.id], moved, change);
      return nodeView((await tx.nodes.byHostname(hostname))!);
    });
    if (action !== 'disable') this.deps.wakeReclaim();
    return view;
  }
}
