/**
 * The docs are the project's own: nothing cites a SPEC.md the repository does not have, and
 * docs/api.md has a section for every call the real server serves (the list its 404 answer
 * gives), the operators' calls included.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from './support/process.js';
import { removeDir, startTestServer } from './support/server.js';

const API_MD = readFileSync(join(REPO_ROOT, 'docs/api.md'), 'utf8');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test('no source, test, doc or example cites SPEC.md: docs/api.md is the contract', () => {
  const roots = ['src', 'test', 'docs', 'examples', 'bench', 'scripts'].map((d) => join(REPO_ROOT, d));
  const top = ['README.md', 'CHANGELOG.md', 'action.yml'].map((f) => join(REPO_ROOT, f));
  // This file names it to look for it.
  const citing = [...roots.flatMap(files), ...top]
    .map((path) => relative(REPO_ROOT, path))
    .filter((path) => path !== 'test/docs.test.ts')
    .filter((path) => /SPEC\.md/.test(readFileSync(join(REPO_ROOT, path), 'utf8')));
  expect(citing).toEqual([]);
});

test('docs/api.md has a section for every call the server serves, and for /healthz', async () => {
  const server = await startTestServer();
  try {
    const reply = await server.get('/No/such/call', {});
    expect(reply.status).toBe(404);
    const served = /the API serves (.*)$/.exec((reply.json as { msg: string }).msg)![1]!.split(', ');
    expect(served).toEqual(expect.arrayContaining(['/Node/get', '/Session/extend', '/Admin/nodes', '/Admin/events', '/Admin/node/release']));
    // A heading may document several calls: "### `/Session/show?...` and `/Session/list?...`".
    const headings = API_MD.split('\n').filter((line) => line.startsWith('### '));
    const documented = headings.flatMap((line) => [...line.matchAll(/`(\/[^`?[]+)/g)].map((m) => m[1]!));
    expect(served.filter((path) => !documented.includes(path))).toEqual([]);
    expect(documented).toContain('/healthz');
    expect((await server.get('/healthz', {})).status).toBe(200);
  } finally {
    await server.close();
    removeDir(server.dir);
  }
});
