/**
 * Fastify's inject() runs light-my-request, which `require`s the `cookie` package; cookie 2 is an
 * ES module, and Jest's own module loader cannot `require` one (Node's can, since Node 20.19).
 * jest.config.js maps `cookie` to this file, which hands the real package over through Node's own
 * loader. Tests never set cookies; this only lets inject() load.
 */
const { createRequire } = process.getBuiltinModule('node:module');
module.exports = createRequire(__filename)('cookie');
