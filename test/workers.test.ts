/**
 * The one ticker that drives periodic background work, and the reaper as the ticker uses it,
 * without a database: time is driven by Jest's fake timers, the store is a stand-in.
 */
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog } from '../src/core/catalog.js';
import { move } from '../src/core/lifecycle.js';
import { openStore } from '../src/store/open.js';
import type { Storage } from '../src/core/storage.js';
import { Reaper } from '../src/workers/reaper.js';
import { Ticker } from '../src/workers/ticker.js';

afterEach(() => {
  jest.useRealTimers();
});

test('the ticker runs every task at start, then once per interval, and never after stop', () => {
  jest.useFakeTimers();
  const runs: string[] = [];
  const ticker = new Ticker(1_000, [() => runs.push('reaper'), () => runs.push('reclaim'), () => runs.push('fill')]);
  ticker.start();
  ticker.start(); // a second start adds no second timer
  expect(runs).toEqual(['reaper', 'reclaim', 'fill']);
  jest.advanceTimersByTime(999);
  expect(runs).toHaveLength(3);
  jest.advanceTimersByTime(1);
  expect(runs).toHaveLength(6);
  jest.advanceTimersByTime(3_000);
  expect(runs).toHaveLength(15);
  ticker.stop();
  jest.advanceTimersByTime(10_000);
  expect(runs).toHaveLength(15);
});

type Calls = Record<string, (...args: unknown[]) => Promise<unknown>>;

/**
 * A store whose transactions run `work` on stand-in queries, for the one thing a real store cannot
 * be made to do on cue: a pass that blocks until the test lets it fail.
 */
function fakeStore(tx: { sessions?: Calls; nodes?: Calls; events?: Calls }): Storage {
  return { transaction: (work: (t: typeof tx) => Promise<unknown>) => work(tx) } as unknown as Storage;
}

const catalog = () => new Catalog([], [], { ver: '7', arch: 'x86_64', defaultFlavor: {} });

test('a reaper pass that fails is reported, not thrown; stop waits for the pass and starts no more', async () => {
  const errors: unknown[] = [];
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => (release = resolve));
  let passes = 0;
  const store = fakeStore({
    sessions: {
      expire: async () => {
        passes++;
        await blocked;
        throw new Error('database is locked');
      },
    },
  });
  const reaper = new Reaper({ store, catalog, clock: () => 0, eventRetention: () => 'never', wakeReclaim: () => undefined, onError: (e) => errors.push(e) });
  reaper.kick();
  reaper.kick(); // a pass is under way: no second one
  expect(passes).toBe(1);
  const stopped = reaper.stop();
  release();
  await stopped; // resolves although the pass failed
  expect(errors).toEqual([new Error('database is locked')]);
  reaper.kick();
  expect(passes).toBe(1);
});

test('a reaper pass on a real store ends expired sessions in batches and holds that are over, tells of releases, and prunes events', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cinode-reaper-'));
  const store = await openStore(`sqlite:${join(dir, 'cinode.db')}`);
  try {
    const [sessionIds, heldId, silentIds] = await store.transaction(async (tx) => {
      const projects = await tx.catalog.syncProjects([{ name: 'alpha', keyHash: 'h', policy: '{}' }]);
      await tx.catalog.syncNodes([{ hostname: 'n1', ip: null, pool: 'c7', ver: '7', arch: 'x86_64', flavor: null, chassis: null, consolePort: null, sshPort: null }], 0);
      const projectId = projects.get('alpha')!;
      // One batch is REAP_BATCH (1000) sessions: 1007 expired ones take two.
      const expired: number[] = [];
      for (let i = 0; i < 1007; i++) {
        expired.push((await tx.sessions.insert({ ssid: `s${i}`, projectId, alias: null, createdAt: 0, expiresAt: 4_500 })).id);
      }
      // Never-expiring sessions whose heartbeat deadline (4000) passed unpinged: two batches too.
      const silent: number[] = [];
      for (let i = 0; i < 1003; i++) {
        silent.push((await tx.sessions.insert({ ssid: `h${i}`, projectId, alias: null, createdAt: 0, expiresAt: null, heartbeatMs: 4_000 })).id);
      }
      // A session that never expires, holding a node whose fail hold ended at 4000.
      const kept = await tx.sessions.insert({ ssid: 'kept', projectId, alias: null, createdAt: 4_200, expiresAt: null });
      const [node] = await tx.nodes.pickReady(['c7'], 1);
      await tx.nodes.assign(kept.id, [node!.id], 4_200, move('allocated'));
      await tx.nodes.hold(kept.id, move('held', [], { holdUntil: 4_000 }), { at: 4_200, reason: 'held' });
      return [expired, kept.id, silent] as const;
    });
    let released = 0;
    const reaper = new Reaper({ store, catalog, clock: () => 5_000, eventRetention: () => 1_000, wakeReclaim: () => released++, onError: () => undefined });
    expect(await reaper.reapOnce()).toBe(1007 + 1003);
    const sessions = await store.db.selectFrom('sessions').select(['id', 'state', 'end_reason']).execute();
    expect(sessions.filter((s) => sessionIds.includes(Number(s.id))).every((s) => s.state === 'done' && s.end_reason === 'expired')).toBe(true);
    expect(sessions.filter((s) => silentIds.includes(Number(s.id))).every((s) => s.state === 'done' && s.end_reason === 'heartbeat-lost')).toBe(true);
    expect(sessions.find((s) => Number(s.id) === heldId)?.state).toBe('active');
    // The hold is over: the node left its session for reclaim (this catalog knows no pool that skips it).
    const node = await store.db.selectFrom('nodes').select(['state', 'session_id', 'hold_until']).executeTakeFirstOrThrow();
    expect(node).toEqual({ state: 'reclaiming', session_id: null, hold_until: null });
    expect(released).toBe(1);
    // Events before 5000 - 1000 are gone; those of this pass and of the hold are kept.
    const times = (await store.db.selectFrom('events').select('at').execute()).map((e) => Number(e.at));
    expect(times.length).toBeGreaterThan(0);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(4_000);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reapOnce asked while a pass is under way runs one more pass after it, on the clock read then', async () => {
  let release!: () => void;
  const blocked = new Promise<void>((resolve) => (release = resolve));
  const seen: unknown[] = [];
  let now = 1_000;
  const store = fakeStore({
    sessions: {
      expire: async (at) => {
        seen.push(at);
        if (seen.length === 1) await blocked;
        return 0;
      },
      loseHeartbeats: async () => 0,
    },
    nodes: { endHolds: async () => 0 },
    events: { prune: async () => 0 },
  });
  const reaper = new Reaper({ store, catalog, clock: () => now, eventRetention: () => 'never', wakeReclaim: () => undefined, onError: () => undefined });
  const first = reaper.reapOnce();
  now = 2_000;
  const second = reaper.reapOnce();
  const third = reaper.reapOnce(); // shares the pass asked for already
  expect(third).toBe(second);
  release();
  await Promise.all([first, second]);
  expect(seen).toEqual([1_000, 2_000]);
});
