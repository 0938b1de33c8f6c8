/**
 * The README's workflow examples, as a new user copies them: every YAML block parses, no step
 * inlines a step output into `run:` (a multi-line output runs its second line as a command; pass
 * outputs through `env:`), and every `steps.ID.outputs.NAME` names a step of the same block and
 * an output the action declares.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from './support/process.js';

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const ACTION_OUTPUTS = Object.keys((parseYaml(readFileSync(join(REPO_ROOT, 'action.yml'), 'utf8')) as { outputs: object }).outputs);
const OUTPUT_REFERENCE = /steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)/g;

/** The fenced ```yaml blocks, with the line each starts on. */
function yamlBlocks(markdown: string): Array<{ line: number; text: string }> {
  const blocks: Array<{ line: number; text: string }> = [];
  const fence = /^```ya?ml\n([\s\S]*?)^```$/gm;
  for (let match = fence.exec(markdown); match !== null; match = fence.exec(markdown)) {
    blocks.push({ line: markdown.slice(0, match.index).split('\n').length, text: match[1]! });
  }
  return blocks;
}

/** Every object in a parsed document that has a `uses:` or a `run:`: the workflow steps. */
function steps(value: unknown): Array<Record<string, unknown>> {
  if (Array.isArray(value)) return value.flatMap(steps);
  if (typeof value !== 'object' || value === null) return [];
  const record = value as Record<string, unknown>;
  const own = 'run' in record || 'uses' in record ? [record] : [];
  return [...own, ...Object.values(record).flatMap(steps)];
}

/** The problems of one block, as a new user would hit them. */
function workflowProblems(text: string): string[] {
  const problems: string[] = [];
  const all = steps(parseYaml(text));
  const ids = new Set(all.map((step) => step.id).filter((id): id is string => typeof id === 'string'));
  for (const step of all) {
    if (typeof step.run === 'string' && /\$\{\{\s*steps\.[^}]*\.outputs\./.test(step.run)) {
      problems.push(`run: ${JSON.stringify(step.run)} inlines a step output; pass it through env:`);
    }
  }
  for (const [, id, output] of text.matchAll(OUTPUT_REFERENCE)) {
    if (!ids.has(id!)) problems.push(`steps.${id}.outputs.${output}: no step has the id ${id}`);
    if (!ACTION_OUTPUTS.includes(output!)) problems.push(`steps.${id}.outputs.${output}: the action has no output ${output}`);
  }
  return problems;
}

describe("the README's workflow examples", () => {
  const blocks = yamlBlocks(README).filter((block) => /uses:|run:/.test(block.text));

  test('there are workflow examples to check', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3);
  });

  test.each(blocks.map((block) => [block.line, block.text] as const))('the block at README.md line %i parses and passes outputs through env:', (_line, text) => {
    expect(workflowProblems(text)).toEqual([]);
  });

  test('the check catches what the first README shipped', () => {
    const old = [
      'steps:',
      '  - id: nodes',
      '    uses: example-org/cinode@v1',
      '  - run: ./run-tests.sh ${{ steps.nodes.outputs.all-hosts }}',
      '  - run: echo ${{ steps.nodes.outputs.all_hosts }}',
      '    env: {X: "${{ steps.nodez.outputs.hosts }}"}',
    ].join('\n');
    expect(workflowProblems(old)).toEqual([
      'run: "./run-tests.sh ${{ steps.nodes.outputs.all-hosts }}" inlines a step output; pass it through env:',
      'run: "echo ${{ steps.nodes.outputs.all_hosts }}" inlines a step output; pass it through env:',
      'steps.nodes.outputs.all_hosts: the action has no output all_hosts',
      'steps.nodez.outputs.hosts: no step has the id nodez',
    ]);
  });
});
