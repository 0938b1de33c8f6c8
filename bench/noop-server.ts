/**
 * The no-op server of the benchmark: the HTTP stack cinode runs on, with nothing behind it. Same
 * Fastify options and hooks as src/server/app.ts and the logger of src/cli/serve.ts (request id,
 * one pino JSON log line per request to stdout, written asynchronously), and one GET route that
 * answers `{}` for every path, so the load generator sends it exactly the requests it sends
 * cinode. Its requests per second are the ceiling cinode is measured against.
 *
 *   node lib/bench/noop-server.js --listen 127.0.0.1:0
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController } from 'fastify';
import { destination as logDestination, pino } from 'pino';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

function redactUrl(url: string): string {
  return url.replace(/([?&]key=)[^&#]*/gi, '$1[REDACTED]');
}

const listenArg = process.argv[process.argv.indexOf('--listen') + 1] ?? '127.0.0.1:0';
const [host, portText] = listenArg.split(':') as [string, string];

// The logger cinode's `serve` builds (src/cli/serve.ts): pino, JSON lines to stdout, written asynchronously.
const destination = logDestination({ dest: 1, sync: false });
const logger = pino({ base: { service: 'noop' } }, destination);
const app = Fastify({
  loggerInstance: logger,
  logController: new LogController({ disableRequestLogging: true }),
  genReqId: (req: { headers: Record<string, string | string[] | undefined> }) => {
    const incoming = req.headers['x-request-id'];
    return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID();
  },
  routerOptions: { ignoreTrailingSlash: true },
  bodyLimit: 64 * 1024,
});

app.addHook('onRequest', async (request, reply) => {
  reply.header('x-request-id', request.id);
});

app.addHook('onResponse', async (request, reply) => {
  request.log.info(
    { method: request.method, url: redactUrl(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 },
    'request',
  );
});

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
