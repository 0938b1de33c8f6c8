/**
 * What the configuration declares, as the core needs it per request: projects by key hash, and
 * the pools that can serve a ver/arch/flavor. Replaced whole when the configuration is reloaded.
 */
import { createHash } from 'node:crypto';
import { aftercareOf, move, type NodeEvent, type NodeMove } from './lifecycle.js';
import type { Pool, Project } from './model.js';

export interface Defaults {
  ver: string;
  arch: string;
  /** The flavor that serves a request without one, per arch, where no flavorless pool exists. */
  defaultFlavor: Record<string, string>;
}

/** The SHA-256 of an API key, in hex: all cinode ever keeps of a key. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export class Catalog {
  private readonly projectsByKeyHash: Map<string, Project>;
  /** Static pools without a reclaim command: a node back from use is ready at once. */
  readonly poolsWithoutAftercare: readonly string[];

  constructor(
    projects: ReadonlyArray<Project & { keyHash: string }>,
    readonly pools: readonly Pool[],
    readonly defaults: Defaults,
    /** Session isolation hooks are configured: nodes are attached and detached (docs/api.md, "Session isolation"). */
    readonly isolated = false,
  ) {
    this.projectsByKeyHash = new Map(projects.map((p) => [p.keyHash, { id: p.id, name: p.name, policy: p.policy, sshKeys: p.sshKeys }]));
    this.poolsWithoutAftercare = pools.filter((p) => aftercareOf(p, { contextualized: false }) === 'none').map((p) => p.name);
  }

  /** The lifecycle's move for `event`, knowing which pools need no aftercare under this configuration. */
  move(event: NodeEvent, extra: Omit<NodeMove, 'event' | 'transition' | 'poolsWithoutAftercare'> = {}): NodeMove {
    return move(event, this.poolsWithoutAftercare, this.isolated ? { isolate: true, ...extra } : extra);
  }

  /** The project an API key belongs to. Keys are compared by hash only. */
  projectForKey(key: string): Project | undefined {
    return this.projectsByKeyHash.get(hashKey(key));
  }

  /**
   * The pools serving a request. Without a flavor: the flavorless pools of the ver/arch, else the
   * pools of the arch's default flavor (legacy: `tiny` on aarch64 and ppc64le).
   */
  poolsFor(ver: string, arch: string, flavor: string | undefined): Pool[] {
    const matching = (f: string | null) => this.pools.filter((p) => p.ver === ver && p.arch === arch && p.flavor === f);
    if (flavor !== undefined) return matching(flavor);
    const flavorless = matching(null);
    if (flavorless.length > 0) return flavorless;
    const fallback = this.defaults.defaultFlavor[arch];
    return fallback === undefined ? [] : matching(fallback);
  }
}
