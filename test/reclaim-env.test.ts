/**
 * The environment of a reclaim command, for a static node written without an ip: CINODE_IP is
 * empty (docs/api.md: the node is passed as CINODE_HOSTNAME, CINODE_IP and CINODE_POOL), and the
 * node comes back ready like any other.
 */
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor } from './support/server.js';

test('a node without ip is reclaimed with CINODE_IP empty', async () => {
  const scripts = new ScriptDir();
  const reclaim = scripts.script('reclaim.sh', 'echo "[$CINODE_HOSTNAME] [$CINODE_IP] [$CINODE_POOL]" >> "$1"');
  const s = await startTestServer({
    defaults: { 'rate-limit': '100/5m' },
    pools: [{ name: 'lab', ver: '7', nodes: 0, nodeList: [{ hostname: 'bare.test.example' }], reclaim: [reclaim, scripts.path('env.log')], reclaimTimeout: '5s' }],
  });
  try {
    const got = (await s.get('/Node/get', { key: KEYS.alpha })).json as { hosts: string[]; ssid: string };
    expect(got.hosts).toEqual(['bare.test.example']);
    const row = ((await s.get('/Inventory')).json as unknown[][])[0]!;
    expect(row.slice(1, 3)).toEqual(['bare.test.example', null]);
    await s.get('/Session/done', { key: KEYS.alpha, ssid: got.ssid });
    await waitFor('the node back in service', async () => ((await s.get('/Inventory')).json as unknown[][])[0]![5] === 'Ready');
    expect(scripts.lines('env.log')).toEqual(['[bare.test.example] [] [lab]']);
  } finally {
    await s.close();
    removeDir(s.dir);
    scripts.remove();
  }
});
