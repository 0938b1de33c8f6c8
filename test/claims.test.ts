/**
 * Reclaim claims (issue 15, point 8): a claim lasts a short lease that its owner renews while the
 * command runs, whatever the pool's reclaim timeout, so a dead owner's nodes are free again within
 * about a minute on any replica; and a replica that starts again takes its own claims back at once.
 * Real server, real database (SQLite, or PostgreSQL with CINODE_TEST_DATABASE=postgres), time
 * through the injectable clock.
 */
import { KEYS, removeDir, startTestServer, TestServer, waitFor, type ConfigSpec } from './support/server.js';

const SPEC: ConfigSpec = {
  pools: [{ name: 'c7', ver: '7', arch: 'x86_64', nodes: 2, reclaim: ['sleep', '600'], reclaimTimeout: '30m' }],
};

interface Claim {
  lease_owner: string | null;
  lease_until: number | null;
}

async function claimOf(server: TestServer, hostname: string): Promise<Claim> {
  const row = await server.server.store.db
    .selectFrom('nodes')
    .select(['lease_owner', 'lease_until'])
    .where('hostname', '=', hostname)
    .executeTakeFirstOrThrow();
  return { lease_owner: row.lease_owner, lease_until: row.lease_until === null ? null : Number(row.lease_until) };
}

test('a claim lasts a minute, is renewed while its command runs, and a restarted replica takes its own back at once', async () => {
  let now = Date.now();
  const first = await startTestServer(SPEC, () => now);
  let second: TestServer | undefined;
  try {
    const got = await first.get('/Node/get', { key: KEYS.alpha, count: 1 });
    expect(got.status).toBe(200);
    const { hosts, ssid } = got.json as { hosts: string[]; ssid: string };
    const host = hosts[0]!;
    expect((await first.get('/Node/done', { key: KEYS.alpha, ssid })).status).toBe(200);

    await waitFor('the reclaim claimed', async () => (await claimOf(first, host)).lease_owner !== null);
    const claimed = await claimOf(first, host);
    // A lease, not the reclaim timeout (30 minutes) plus a grace.
    expect(claimed.lease_until! - now).toBeLessThanOrEqual(60_000);

    // Renewed by its owner while the command runs.
    now += 40_000;
    await first.server.reclaim.renewClaims();
    expect(await claimOf(first, host)).toEqual({ lease_owner: claimed.lease_owner, lease_until: now + 60_000 });

    // The process goes away mid-command (its shutdown kills the command and leaves the claim).
    await first.close();

    // The same replica (same host, configuration and listen address) starts again: it takes the
    // node back at once instead of waiting for the lease.
    second = await new TestServer(first.dir, SPEC).start(() => now);
    await waitFor('the restarted replica claims the node', async () => {
      const claim = await claimOf(second!, host);
      return claim.lease_owner !== null && claim.lease_owner !== claimed.lease_owner;
    });
    const replica = claimed.lease_owner!.split(':')[0];
    expect((await claimOf(second, host)).lease_owner!.split(':')[0]).toBe(replica);
  } finally {
    await second?.close();
    removeDir(first.dir);
  }
}, 60_000);
