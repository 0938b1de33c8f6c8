/**
 * What a command pool's provision command prints, line by line, read by the real server: every
 * kind of bad line is named in the pool's problem event, and the good lines still become nodes
 * (with their ssh-port and data). The provision command is a real script; the server runs in this
 * process.
 */
import type { AdminNodeView, EventView } from '../src/api/types.js';
import { ScriptDir } from './support/scripts.js';
import { KEYS, removeDir, startTestServer, waitFor } from './support/server.js';

test('bad lines are problems of the pool, each named by its line; good lines become nodes', async () => {
  const scripts = new ScriptDir();
  const printed = [
    'Creating 2 instances...',
    '[1, 2]',
    'null',
    '"vm-x.cloud.test"',
    '{"hostname": "bad host name", "ip": "198.51.100.9"}',
    '{"hostname": 42, "ip": "198.51.100.9"}',
    '{"hostname": "vm-noip.cloud.test", "ip": ""}',
    '{"hostname": "vm-port.cloud.test", "ip": "198.51.100.7", "ssh-port": 70000}',
    '{"hostname": "vm-port2.cloud.test", "ip": "198.51.100.8", "ssh-port": "22"}',
    '',
    '{"hostname": "vm-a.cloud.test", "ip": "198.51.100.1", "ssh-port": 2222, "data": {"id": "a"}}',
    '   {"hostname": "vm-b.cloud.test", "ip": "198.51.100.2"}   ',
  ];
  const provision = scripts.script('provision.sh', `cat <<'EOF_LINES'\n${printed.join('\n')}\nEOF_LINES`);
  const s = await startTestServer({
    projects: { beta: { admin: true } },
    pools: [
      {
        name: 'cloud',
        mechanism: 'command',
        nodes: 0,
        settings: { provision: [provision], deprovision: [scripts.script('deprovision.sh', 'exit 0')], 'ready-min': 2, 'max-nodes': 2, 'max-parallel': 2 },
      },
    ],
  });
  try {
    const admin = { key: KEYS.beta };
    await waitFor('two ready nodes', async () => ((await s.get('/Admin/nodes', { ...admin, state: 'ready' })).json as AdminNodeView[]).length === 2);
    const nodes = (await s.get('/Admin/nodes', admin)).json as AdminNodeView[];
    expect(nodes.map((n) => [n.hostname, n.ip, n.state])).toEqual([
      ['vm-a.cloud.test', '198.51.100.1', 'ready'],
      ['vm-b.cloud.test', '198.51.100.2', 'ready'],
    ]);
    const stored = await s.server.store.db.selectFrom('nodes').select(['hostname', 'ssh_port', 'data']).orderBy('hostname').execute();
    expect(stored.map((n) => [n.hostname, n.ssh_port, n.data === null ? null : JSON.parse(String(n.data))])).toEqual([
      ['vm-a.cloud.test', 2222, { id: 'a' }],
      ['vm-b.cloud.test', null, null],
    ]);

    const events = (await s.get('/Admin/events', admin)).json as EventView[];
    const problem = events.find((e) => e.subject === 'pool');
    expect(problem?.reason).toBe(
      'provision printed 2 usable node(s) of 2 asked: ' +
        [
          'line 1: not JSON (expected {"hostname": ..., "ip": ..., "data": ...})',
          'line 2: expected a JSON object with hostname and ip',
          'line 3: expected a JSON object with hostname and ip',
          'line 4: expected a JSON object with hostname and ip',
          "line 5: hostname must be a string of letters, digits, '.', '-', '_'",
          "line 6: hostname must be a string of letters, digits, '.', '-', '_'",
          'line 7: ip must be a non-empty string (node vm-noip.cloud.test)',
          'line 8: ssh-port must be a port number (node vm-port.cloud.test)',
          'line 9: ssh-port must be a port number (node vm-port2.cloud.test)',
        ].join('; '),
    );
  } finally {
    await s.close();
    removeDir(s.dir);
    scripts.remove();
  }
});
