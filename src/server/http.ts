/**
 * The HTTP stack every cinode response goes through, routes aside: Fastify with a request id on
 * every response (a sane incoming one echoed) and one structured log line per request with the
 * key redacted. The benchmark's no-op server runs on exactly this, so it measures the same stack.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request URL with any `key=` value blanked, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]key=)[^&#]*/gi, '$1[REDACTED]');
}

export function createHttpStack(logger: FastifyBaseLogger | false): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: logger === false ? undefined : logger,
    // Fastify's own two lines per request are replaced by the one line of the onResponse hook.
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

  // One structured line per request, the key never in it.
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: redactUrl(request.url),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        ...(request.project ? { project: request.project } : {}),
      },
      'request',
    );
  });

  return app;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the project whose key the request carried, for the request log. */
    project?: string;
  }
}
