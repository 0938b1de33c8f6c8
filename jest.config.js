/** Jest in ESM mode through ts-jest; collaborators are passed in, so no module mocking is needed. */
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
  coverageThreshold: {
    './src/server/': { branches: 90 },
    './src/core/': { branches: 90 },
    './src/store/': { branches: 90 },
  },
};
export default config;
