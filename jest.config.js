/** Jest in ESM mode through ts-jest; collaborators are passed in, so no module mocking is needed. */
import { readdirSync, readFileSync } from 'node:fs';

const SOURCE_ROOT = 'src';

/** A top-level line that declares types only (or closes, continues or comments one). */
const TYPE_LINE = /^(import type |export type |export interface |interface |type |export \{\};?$|[}\])|/*])/;

/**
 * Whether a source file holds types only: compiled, it is empty, so nothing of it ever runs and
 * v8 counts it as one block never run. Such files are left out of coverage. Read from the text (the
 * code is formatted: top-level statements start at column 0), so that this costs milliseconds.
 */
function typesOnly(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .every((line) => line === '' || /^\s/.test(line) || line.startsWith('//') || TYPE_LINE.test(line));
}

/** The TypeScript files of the source root, as paths under it (`/`-separated), and which hold types only. */
const sourceFiles = readdirSync(new URL(`./${SOURCE_ROOT}/`, import.meta.url), { recursive: true })
  .map((file) => String(file).split('\\').join('/'))
  .filter((file) => file.endsWith('.ts'));
const typeOnlyFiles = sourceFiles.filter((file) => typesOnly(readFileSync(new URL(`./${SOURCE_ROOT}/${file}`, import.meta.url), 'utf8')));

/**
 * The branch coverage gate, on every folder of the source root as it is when the suite starts
 * (read here, not listed, so a folder added or renamed is gated without touching this file). Each
 * folder is gated on its own: a well-tested folder does not hide a neglected one. A folder with no
 * code that runs (types only) has nothing to measure, and Jest fails a gate that matches no file:
 * it is left out until it has some.
 */
function branchGatePerFolder(percent) {
  const folders = new Set(sourceFiles.filter((file) => file.includes('/') && !typeOnlyFiles.includes(file)).map((file) => file.split('/')[0]));
  return Object.fromEntries([...folders].sort().map((name) => [`./${SOURCE_ROOT}/${name}/`, { branches: percent }]));
}

const config = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json'}],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60_000,
  collectCoverageFrom: [`${SOURCE_ROOT}/**/*.ts`, ...typeOnlyFiles.map((file) => `!${SOURCE_ROOT}/${file}`)],
  coverageProvider: 'v8',
  coverageReporters: ['text-summary', 'text'],
  coverageThreshold: branchGatePerFolder(90),
};
export default config;
