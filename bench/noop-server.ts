/**
 * The no-op server of the benchmark: the HTTP stack cinode runs on, with nothing behind it. The
 * very stack of src/server/http.ts (request id, one pino JSON log line per request) with the
 * logger of src/cli/serve.ts (to stdout, written asynchronously), and one GET route that
 * answers `{}` for every path, so the load generator sends it exactly the requests it sends
 * cinode. Its requests per second are the ceiling cinode is measured against.
 *
 *   node lib/bench/bench/noop-server.js --listen 127.0.0.1:0
 */
import { destination as logDestination, pino } from 'pino';
import { createHttpStack } from '../src/server/http.js';

const listenArg = process.argv[process.argv.indexOf('--listen') + 1] ?? '127.0.0.1:0';
const [host, portText] = listenArg.split(':') as [string, string];

// The logger cinode's `serve` builds (src/cli/serve.ts): pino, JSON lines to stdout, written asynchronously.
const destination = logDestination({ dest: 1, sync: false });
const logger = pino({ base: { service: 'noop' } }, destination);
const app = createHttpStack(logger);

app.get('/*', async (_request, reply) => reply.send({}));

await app.listen({ host, port: Number(portText) });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : Number(portText);
process.stderr.write(`noop listening on http://${host}:${port}\n`);

const shutdown = () =>
  void app.close().then(() => {
    destination.flushSync();
    process.exit(0);
  });
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
