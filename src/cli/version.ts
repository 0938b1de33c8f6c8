/**
 * The version `cinode --version` prints. A constant rather than a read of package.json at run
 * time: the single-file client (dist/cli/index.js) runs alone, with no package.json beside it.
 * test/cli-bundle.test.ts checks that it equals package.json's version.
 */
export const VERSION = '0.1.0';
