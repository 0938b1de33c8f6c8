import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/**
 * What each folder of src/ may import from the others (docs/architecture.md, "Folders"): the
 * dependencies point one way, towards api. `null`: the composition root, which wires everything.
 */
const MAY_IMPORT = {
  api: [],
  action: ['client', 'api'],
  client: ['api'],
  cli: ['client', 'api'],
  core: ['api'],
  store: ['core', 'api'],
  machines: ['api'],
  workers: ['core', 'machines', 'api'],
  server: ['core', 'api'],
  // The configuration validates the settings of what is done to machines (ssh), so it knows their types.
  config: ['core', 'machines', 'api'],
  main: null,
};

/** The CLI files that start the server (and wire operator commands to it), and so may also import the composition root. */
const CLI_FILES_WIRED_TO_MAIN = ['src/cli/serve.ts'];

/** How deep below its folder a file may sit and still have its imports checked. */
const MAX_DEPTH = 4;

/**
 * The rules that keep `folder` to the folders it may import. Imports are relative paths, so a
 * file `depth` levels below src/<folder> reaches src/<other> as `../` repeated `depth` times, then
 * `<other>`; one rule per depth, each for the files at that depth.
 */
function boundaryRules(folder, allowed, files) {
  const forbidden = Object.keys(MAY_IMPORT).filter((other) => other !== folder && !allowed.includes(other));
  if (forbidden.length === 0) return [];
  const allowance = allowed.length === 0 ? 'nothing else of src' : `only ${allowed.map((a) => `src/${a}`).join(', ')}`;
  const message = `src/${folder} may import ${allowance} (docs/architecture.md)`;
  const configs = [];
  for (let depth = 1; depth <= MAX_DEPTH; depth++) {
    const upward = `^(?:\\.\\./){${depth}}(?:${forbidden.join('|')})(?:/|$)`;
    const patterns = [{ regex: upward, message }];
    // api is bundled into the action and read by every side: no packages, not even node: ones.
    if (folder === 'api') patterns.push({ regex: '^[^.]', message: 'src/api has no dependencies: only relative imports within src/api' });
    configs.push({
      files: files ?? [`src/${folder}/${'*/'.repeat(depth - 1)}*.ts`],
      rules: {
        'no-restricted-imports': ['error', { patterns }],
        // Dynamic import() is not an ImportDeclaration: the same boundary, by syntax.
        'no-restricted-syntax': [
          'error',
          { selector: `ImportExpression[source.value=/${upward.replaceAll('/', '\\u002F')}/]`, message },
        ],
      },
    });
    if (files) break;
  }
  return configs;
}

const boundaries = Object.entries(MAY_IMPORT).flatMap(([folder, allowed]) => (allowed === null ? [] : boundaryRules(folder, allowed)));
// Later configs win for the same file: the CLI files that start the server may reach src/main.
boundaries.push(...boundaryRules('cli', [...MAY_IMPORT.cli, 'main'], CLI_FILES_WIRED_TO_MAIN));

export default tseslint.config(
  // jenkins/resources/ carries the built single-file client (a copy of dist/cli/index.js).
  { ignores: ['lib/', 'dist/', 'coverage/', 'var/', 'node_modules/', 'jenkins/resources/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'no-console': 'off',
    },
  },
  ...boundaries,
);
