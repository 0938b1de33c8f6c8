/** Jest in ESM mode through ts-jest; collaborators are passed in, so no module mocking is needed. */
import { readdirSync } from 'node:fs';

/**
 * The branch coverage gate, on every folder of `root` as it is when the suite starts (read here,
 * not listed, so a folder added or renamed is gated without touching this file). Each folder is
 * gated on its own: a well-tested folder does not hide a neglected one.
 */
function branchGatePerFolder(root, percent) {
  const rootUrl = new URL(`./${root}/`, import.meta.url);
  const folders = readdirSync(rootUrl, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    // Jest fails a gate that matches no file: a folder without TypeScript (yet) has nothing to gate.
    .filter((name) => readdirSync(new URL(`${name}/`, rootUrl), { recursive: true }).some((file) => String(file).endsWith('.ts')));
  return Object.fromEntries(folders.map((name) => [`./${root}/${name}/`, { branches: percent }]));
}

const config = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // Fastify's inject() needs `cookie`, an ES module Jest cannot require: see the file.
    '^cookie$': '<rootDir>/test/support/cookie.cjs',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json'}],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60_000,
  collectCoverageFrom: ['src/**/*.ts'],
  coverageProvider: 'v8',
  coverageReporters: ['text-summary', 'text'],
  coverageThreshold: branchGatePerFolder('src', 90),
};
export default config;
