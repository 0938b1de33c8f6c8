/**
 * The one ticker that drives periodic background work, and the reaper as the ticker uses it,
 * without a database: time is driven by Jest's fake timers, the store is a stand-in.
 */
import { jest } from '@jest/globals';
import { Catalog } from '../src/core/catalog.js';
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

/** A store whose transactions run `work` on stand-in queries: sessions, nodes and events. */
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

test('a reaper pass ends expired sessions and holds in batches, tells of releases, and prunes events', async () => {
  const calls: string[] = [];
  const expired = [1000, 7];
  const store = fakeStore({
    sessions: {
      expire: async () => {
        calls.push('expire');
        return expired.shift() ?? 0;
      },
    },
    nodes: {
      endHolds: async () => {
        calls.push('holds');
        return 0;
      },
    },
    events: {
      prune: async (before) => {
        calls.push(`prune before ${String(before)}`);
        return 0;
      },
    },
  });
  let released = 0;
  const reaper = new Reaper({ store, catalog, clock: () => 5_000, eventRetention: () => 1_000, wakeReclaim: () => released++, onError: () => undefined });
  expect(await reaper.reapOnce()).toBe(1007);
  expect(calls).toEqual(['expire', 'expire', 'holds', 'prune before 4000']);
  expect(released).toBe(1);
});
