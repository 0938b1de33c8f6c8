/**
 * What a released project carries: the license package.json names, a changelog, a release
 * workflow that checks dist/ and moves the major tag, an npm tarball with what users run and not
 * the tests, and an engines field that every locked dependency agrees with.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from './support/process.js';

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; license: string; engines: { node: string }; files: string[] };

/** semver (a dependency of npm's own tooling in node_modules), for the engines ranges. */
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
};

test('LICENSE is the Apache License 2.0 that package.json names', () => {
  expect(pkg.license).toBe('Apache-2.0');
  const license = read('LICENSE');
  expect(license).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004\s+http:\/\/www\.apache\.org\/licenses\/\s/);
  for (let section = 1; section <= 9; section++) expect(license).toMatch(new RegExp(`^   ${section}\\. [A-Z]`, 'm'));
  expect(license).toContain('END OF TERMS AND CONDITIONS');
});

test("CHANGELOG.md has an Unreleased section and one for the package's version", () => {
  const changelog = read('CHANGELOG.md');
  expect(changelog).toMatch(/^## \[Unreleased\]$/m);
  expect(changelog).toMatch(new RegExp(`^## \\[${pkg.version.replace(/\./g, '\\.')}\\]`, 'm'));
});

test('the release workflow runs on version tags, checks the tag, the changelog and dist/, tests, then moves the major tag', () => {
  const workflow = parseYaml(read('.github/workflows/release.yml')) as {
    on: { push: { tags: string[] } };
    jobs: Record<string, { steps: Array<{ run?: string; name?: string }> }>;
  };
  expect(workflow.on.push.tags).toEqual(['v[0-9]+.[0-9]+.[0-9]+']);
  const runs = Object.values(workflow.jobs).flatMap((job) => job.steps.map((step) => step.run ?? ''));
  const at = (pattern: RegExp) => runs.findIndex((run) => pattern.test(run));
  const order = [/"\$TAG" = "v\$version"/, /CHANGELOG\.md/, /npm run build[\s\S]*git status --porcelain dist/, /^npm test$/, /git tag -f "\$major"/];
  const positions = order.map(at);
  expect(positions.every((p) => p >= 0)).toBe(true);
  expect([...positions].sort((a, b) => a - b)).toEqual(positions);
  expect(existsSync(join(REPO_ROOT, 'docs/releasing.md'))).toBe(true);
});

describe('the npm package', () => {
  test('holds what users run, and neither the tests, the benches nor the sources', () => {
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(pack.status).toBe(0);
    const files = (JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    for (const wanted of ['package.json', 'LICENSE', 'CHANGELOG.md', 'README.md', 'action.yml', 'lib/cli/main.js', 'lib/main/server.js', 'dist/main/index.js', 'dist/post/index.js', 'docs/api.md', 'examples/cinode.yaml', 'examples/systemd/cinode.service']) {
      expect(files).toContain(wanted);
    }
    const unwanted = files.filter((f) => /^(test|bench|src|scripts|\.ci|\.github|lib\/bench|coverage|var)\//.test(f) || /\.test\.|tsconfig|eslint/.test(f));
    expect(unwanted).toEqual([]);
  });

  test('engines tells the truth: every locked package accepts the oldest Node it names, and Node 24', () => {
    const oldest = semver.minVersion(pkg.engines.node)!.version;
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[] }> };
    const refusing: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      const range = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (path === '' || range === undefined) continue;
      for (const node of [oldest, '24.0.0']) {
        if (!semver.satisfies(node, range)) refusing.push(`${path}@${entry.version} wants node ${range}, not ${node}`);
      }
    }
    expect(refusing).toEqual([]);
  });
});
