/**
 * The claims of session isolation (store/isolation.ts) on a real database (SQLite, or PostgreSQL
 * under CINODE_TEST_DATABASE=postgres): a due detach or teardown has one owner at a time, an
 * owner that lost its claim records nothing, and the leases of a replica's earlier life are
 * dropped when it starts again. The server's own isolation worker is stopped, so the test holds
 * every claim itself.
 */
import { move } from '../src/core/lifecycle.js';
import { TestHooks } from './support/hooks.js';
import { KEYS, removeDir, startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
let hooks: TestHooks;
const alpha = { key: KEYS.alpha };

beforeEach(async () => {
  hooks = new TestHooks();
  server = await startTestServer({ pools: [{ name: 'c7', nodes: 2 }], topYaml: hooks.yaml() });
  await server.server.isolation.stop(0);
});

afterEach(async () => {
  await server.close();
  removeDir(server.dir);
  hooks.remove();
});

test('a due detach and a due teardown each have one owner; a lost claim records nothing; a dead life\'s leases are dropped', async () => {
  const store = server.server.store;
  const { ssid, hosts } = (await server.get('/Node/get', { ...alpha, count: 2 })).json as { ssid: string; hosts: string[] };
  await server.get('/Session/done', { ...alpha, ssid });
  const now = Date.now();
  const lease = now + 60_000;

  const first = await store.transaction((tx) => tx.isolation.claimDetaches('replica-a:1', now, lease, 10));
  expect(first.map((d) => d.node.hostname).sort()).toEqual([...hosts].sort());
  expect(first.every((d) => d.session.ssid === ssid && d.then === 'ready' && (d.session.data as { vlan: number }).vlan === 42)).toBe(true);
  expect(await store.transaction((tx) => tx.isolation.claimDetaches('replica-b:1', now, lease, 10))).toEqual([]);
  // Not before every node detached.
  expect(await store.transaction((tx) => tx.isolation.claimTeardowns('replica-b:1', now, lease, 10))).toEqual([]);

  const [one, two] = first as [(typeof first)[0], (typeof first)[0]];
  const detached = move('detached');
  const change = { at: now, reason: 'test' };
  expect(await store.transaction((tx) => tx.isolation.finishDetach(one.node.id, 'replica-b:1', detached, change))).toBe(false);
  expect(await store.transaction((tx) => tx.isolation.finishDetach(one.node.id, 'replica-a:1', detached, change))).toBe(true);

  // replica-a starts again: its earlier life's claims lapse at once, and another owner takes them.
  await store.transaction((tx) => tx.isolation.dropLeasesOf('replica-a:'));
  const retaken = await store.transaction((tx) => tx.isolation.claimDetaches('replica-b:1', now, lease, 10));
  expect(retaken.map((d) => d.node.id)).toEqual([two.node.id]);
  expect(await store.transaction((tx) => tx.isolation.finishDetach(two.node.id, 'replica-a:1', detached, change))).toBe(false);
  expect(await store.transaction((tx) => tx.isolation.finishDetach(two.node.id, 'replica-b:1', detached, change))).toBe(true);

  const teardowns = await store.transaction((tx) => tx.isolation.claimTeardowns('replica-a:2', now, lease, 10));
  expect(teardowns.map((t) => t.session.ssid)).toEqual([ssid]);
  expect(await store.transaction((tx) => tx.isolation.claimTeardowns('replica-b:1', now, lease, 10))).toEqual([]);
  const id = teardowns[0]!.id;
  expect(await store.transaction((tx) => tx.isolation.finishTeardown(id, 'replica-b:1', { ok: true, retryAt: null }, change))).toBe(false);
  expect(await store.transaction((tx) => tx.isolation.finishTeardown(id, 'replica-a:2', { ok: false, retryAt: now + 10_000 }, change))).toBe(true);
  // Not due again before its retry.
  expect(await store.transaction((tx) => tx.isolation.claimTeardowns('replica-b:1', now + 5_000, lease, 10))).toEqual([]);
  const retry = await store.transaction((tx) => tx.isolation.claimTeardowns('replica-b:1', now + 10_000, lease, 10));
  expect(retry.map((t) => [t.id, t.attempts])).toEqual([[id, 1]]);
  expect(await store.transaction((tx) => tx.isolation.finishTeardown(id, 'replica-b:1', { ok: false, retryAt: null }, change))).toBe(true);
  expect(((await server.get('/Session/show', { ...alpha, ssid })).json as { teardown: string }).teardown).toBe('failed');
  expect(((await server.get('/Inventory')).json as unknown[][]).map((r) => r[5])).toEqual(['Ready', 'Ready']);
});

test('a request whose lease lapsed is undone, and it then answers that it was interrupted', async () => {
  const store = server.server.store;
  hooks.cue('block-attach');
  const pending = server.get('/Node/get', alpha);
  const { waitFor } = await import('./support/server.js');
  await waitFor('the attach running', () => hooks.runs().some((r) => r.hook === 'attach'));
  // As another replica would once the lease lapsed: the setup and the attach are undone.
  const undone = await store.transaction((tx) => tx.isolation.recoverLapsed(Date.now() + 3_600_000, move('allocation-undone', [], { isolate: true })));
  expect(undone).toBe(1);
  hooks.uncue('block-attach');
  const answer = await pending;
  expect(answer.status).toBe(503);
  expect(answer.json).toEqual({ msg: 'Session setup failed: interrupted (the server was stalled past the hook timeout); try again' });
  const due = await store.transaction((tx) => tx.isolation.claimDetaches('replica-c:1', Date.now(), Date.now() + 60_000, 10));
  expect(due.map((d) => d.then)).toEqual(['ready']);
});
