/**
 * The import boundaries of src/ (eslint.config.js, after docs/architecture.md) are enforced by
 * `npm run lint`: imports planted in memory, linted as if they were files of a folder, are errors
 * when they point where that folder may not look, and pass when they stay within its allowance.
 */
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const cwd = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd });

/** Every problem ESLint finds in `code` linted as the file `filePath` (no file is written). */
async function lint(filePath: string, code: string): Promise<{ ruleId: string | null; severity: number; message: string }[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map(({ ruleId, severity, message }) => ({ ruleId, severity, message }));
}

const IMPORTS = 'no-restricted-imports';
const DYNAMIC = 'no-restricted-syntax';

describe('import boundaries', () => {
  test.each([
    ['core imports server', 'src/core/planted.ts', "import { buildApp } from '../server/app.js';\nexport const x = buildApp;\n", IMPORTS, 'src/core may import only src/api'],
    ['core imports store', 'src/core/planted.ts', "import type { Store } from '../store/store.js';\nexport type X = Store;\n", IMPORTS, 'src/core may import only src/api'],
    ['action imports server', 'src/action/planted.ts', "import { buildApp } from '../server/app.js';\nexport const x = buildApp;\n", IMPORTS, 'src/action may import only src/client, src/api'],
    ['store imports workers', 'src/store/planted.ts', "import { tick } from '../workers/ticker.js';\nexport const x = tick;\n", IMPORTS, 'src/store may import only src/core, src/api'],
    ['api imports core', 'src/api/planted.ts', "import type { Node } from '../core/model.js';\nexport type X = Node;\n", IMPORTS, 'src/api may import nothing else of src'],
    ['api imports a package', 'src/api/planted.ts', "import { z } from 'zod';\nexport const x = z;\n", IMPORTS, 'src/api has no dependencies'],
    ['client re-exports core', 'src/client/planted.ts', "export { NEVER } from '../core/model.js';\n", IMPORTS, 'src/client may import only src/api'],
    ['a nested store file imports server', 'src/store/sqlite/planted.ts', "import { buildApp } from '../../server/app.js';\nexport const x = buildApp;\n", IMPORTS, 'src/store may import only'],
    ['core imports server dynamically', 'src/core/planted.ts', "export const load = () => import('../server/app.js');\n", DYNAMIC, 'src/core may import only src/api'],
    ['a cli file other than serve.ts imports main', 'src/cli/planted.ts', "import { start } from '../main/root.js';\nexport const x = start;\n", IMPORTS, 'src/cli may import only src/client, src/api'],
  ])('%s is an error', async (_what, filePath, code, ruleId, text) => {
    expect(await lint(filePath, code)).toEqual([{ ruleId, severity: 2, message: expect.stringContaining(text) }]);
  });

  test.each([
    ['core imports api', 'src/core/planted.ts', "import { NODE_STATES } from '../api/states.js';\nexport const x = NODE_STATES;\n"],
    ['core imports its own files', 'src/core/planted.ts', "import type { Node } from './model.js';\nexport type X = Node;\n"],
    ['store imports core and api', 'src/store/planted.ts', "import type { Node } from '../core/model.js';\nimport type { NodeState } from '../api/states.js';\nexport type X = [Node, NodeState];\n"],
    ['workers import machines', 'src/workers/planted.ts', "import { run } from '../machines/command.js';\nexport const x = run;\n"],
    ['action imports client', 'src/action/planted.ts', "import { CinodeClient } from '../client/index.js';\nexport const x = CinodeClient;\n"],
    ['serve.ts imports main', 'src/cli/serve.ts', "import { start } from '../main/root.js';\nexport const x = start;\n"],
    ['main imports everything', 'src/main/planted.ts', "import { buildApp } from '../server/app.js';\nimport { tick } from '../workers/ticker.js';\nexport const x = [buildApp, tick];\n"],
  ])('%s is allowed', async (_what, filePath, code) => {
    // Nothing at all: an ignored file would show a warning here, so the case is really linted.
    expect(await lint(filePath, code)).toEqual([]);
  });
});
