/**
 * The composition root in-process (src/main/server.ts): `config check`'s verdicts, and a start
 * that fails after opening the database (a taken port, a database that cannot be opened) closes
 * what it opened and says which database. The same paths run as a process in serve.test.ts and
 * operators.test.ts; here coverage sees them.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConfigError } from '../src/config/config.js';
import { checkConfiguration, startFailure, startServer } from '../src/main/server.js';
import { configYaml, removeDir, startTestServer } from './support/server.js';

const quiet = pino({ level: 'silent' });

function folder(): string {
  return mkdtempSync(join(tmpdir(), 'cinode-main-'));
}

test('config check: a valid file is summed up in one line, a bad one lists its problems', () => {
  const dir = folder();
  try {
    const good = join(dir, 'good.yaml');
    writeFileSync(good, configYaml(dir, { pools: [{ name: 'c7', nodes: 2 }] }));
    expect(checkConfiguration(good, {})).toEqual({ valid: true, report: `${good}: valid: 1 pool, 2 nodes, 3 projects` });
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listen: nowhere\nprojects: []\npools: []\n');
    const verdict = checkConfiguration(bad, {});
    expect(verdict.valid).toBe(false);
    expect(verdict.report).toMatch(/listen/);
  } finally {
    removeDir(dir);
  }
});

test('a start on a taken port fails, having closed the database it opened', async () => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  const s = await startTestServer({ pools: [{ name: 'c7', nodes: 1 }] });
  await s.close(); // its folder (and database) stays for the second start
  try {
    const failed = await startServer({ configPath: s.configPath, logger: quiet, listen: { host: '127.0.0.1', port } }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failed?.message).toMatch(/EADDRINUSE/);
    // Nothing was left open: the same database starts again at once on a free port.
    const again = await startServer({ configPath: s.configPath, logger: quiet, listen: { host: '127.0.0.1', port: 0 } });
    await again.close();
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    removeDir(s.dir);
  }
});

test('a database that cannot be opened is named in the error', async () => {
  const dir = folder();
  try {
    const configPath = join(dir, 'cinode.yaml');
    // A file where the database's folder should be: SQLite cannot create the file under it.
    writeFileSync(join(dir, 'not-a-folder'), '');
    const yaml = configYaml(dir, { pools: [{ name: 'c7', nodes: 1 }] }).replace(/^database: .*$/m, `database: "sqlite:${join(dir, 'not-a-folder', 'cinode.db')}"`);
    writeFileSync(configPath, yaml);
    const failed = await startServer({ configPath, logger: quiet, listen: { host: '127.0.0.1', port: 0 } }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failed?.message).toContain(`database sqlite:${join(dir, 'not-a-folder', 'cinode.db')}:`);
  } finally {
    removeDir(dir);
  }
});

test('what serve says when the server did not start: the problems of a configuration, or the cause', () => {
  expect(startFailure(new ConfigError(['cinode.yaml:1: listen: not HOST:PORT']))).toBe(
    'the configuration has problems; the server did not start:\ncinode.yaml:1: listen: not HOST:PORT',
  );
  expect(startFailure(new Error('listen EADDRINUSE: address already in use 127.0.0.1:8080'))).toBe('could not start: listen EADDRINUSE: address already in use 127.0.0.1:8080');
  expect(startFailure('a string')).toBe('could not start: a string');
});

test("a server whose inventory is not public warns at start that cico's node get needs it", async () => {
  const s = await startTestServer({ publicInventory: false, pools: [{ name: 'c7', nodes: 1 }] });
  try {
    expect(s.logs.some((line) => line.includes('public-inventory is false'))).toBe(true);
  } finally {
    await s.close();
    removeDir(s.dir);
  }
});
