/**
 * The HTTP stack every cinode response goes through, routes aside: Fastify with a request id on
 * every response (a sane incoming one echoed), one structured log line per request with the
 * credentials removed, and the limits of docs/api.md ("Security and limits" in the README): body
 * size, the time to send a whole request, connections per client address. Whatever Node's HTTP
 * parser refuses before Fastify sees a request is answered in the API's `{"msg"}` shape too. The
 * benchmark's no-op server runs on exactly this, so it measures the same stack.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { badRequest } from '../core/errors.js';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export interface HttpLimits {
  /** The largest request body, in bytes. */
  bodyBytes: number;
  /** The longest request line plus headers, in bytes (Node's `maxHeaderSize`). */
  headerBytes: number;
  /** The time a client has to send a whole request, headers and body (Node's `requestTimeout`). */
  requestTimeoutMs: number;
  /** How often Node looks for requests past their time; a request may live this much longer. */
  timeoutCheckIntervalMs: number;
  /** Open connections one client address may hold; more are answered 429 and closed. */
  connectionsPerAddress: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  bodyBytes: 64 * 1024,
  headerBytes: 16 * 1024,
  requestTimeoutMs: 30_000,
  timeoutCheckIntervalMs: 5_000,
  connectionsPerAddress: 256,
};

export function createHttpStack(logger: FastifyBaseLogger | false, limits: HttpLimits = DEFAULT_HTTP_LIMITS): FastifyInstance {
  const app: FastifyInstance = Fastify({
    loggerInstance: logger === false ? undefined : logger,
    // Fastify's own two lines per request are replaced by the one line of the onResponse hook.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req: { headers: Record<string, string | string[] | undefined> }) => incomingRequestId(req.headers) ?? randomUUID(),
    routerOptions: { ignoreTrailingSlash: true },
    // A call that changes state must not run for a HEAD: routes that change nothing opt in.
    exposeHeadRoutes: false,
    bodyLimit: limits.bodyBytes,
    requestTimeout: limits.requestTimeoutMs,
    http: {
      maxHeaderSize: limits.headerBytes,
      headersTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
      // Node's own answer to a missing Host is an empty 400 that no hook sees; refuseMissingHost's
      // is in the API's shape, with a request id and a log line.
      requireHostHeader: false,
    },
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => answerClientError(app, limits, error, socket),
  });

  // One hook, not two: it runs on every request.
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    await refuseMissingHost(request, reply);
  });

  // One structured line per request, no credential in it.
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: loggedUrl(request),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        ...(request.project ? { project: request.project } : {}),
      },
      'request',
    );
  });

  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  limitConnectionsPerAddress(app, limits.connectionsPerAddress);
  refuseUnknownExpectations(app);
  return app;
}

function incomingRequestId(headers: Record<string, string | string[] | undefined>): string | undefined {
  const incoming = headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming) ? incoming : undefined;
}

// ---- the request log: what was parsed, never the raw request text ----

/** A parameter name or path shown as it is; anything else is described, not shown. */
const PLAIN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const PLAIN_PATH = /^[A-Za-z0-9/._~-]{0,256}$/;
const SHOWN_VALUE_LENGTH = 100;

/**
 * The request's path and its query as parsed: a name that reads as a key (`key`, `KEY`, `k%65y`
 * decoded, `key[]`, `apikey`) has its value replaced, a name that is not plain text is not shown
 * (`key%3DKEY` parses as the name `key=KEY`), and a path that is not plain text is not shown
 * either (`/Node/get%3Fkey=KEY` is a path).
 */
export function loggedUrl(request: FastifyRequest): string {
  const route = request.routeOptions.url;
  const rawPath = request.url.split('?')[0] ?? '';
  const path = route ?? (PLAIN_PATH.test(rawPath) ? rawPath : `[a path of ${rawPath.length} characters, not shown]`);
  const query = request.query;
  if (!query || typeof query !== 'object') return path;
  const parts: string[] = [];
  for (const [name, value] of Object.entries(query as Record<string, unknown>)) {
    for (const item of Array.isArray(value) ? value : [value]) parts.push(loggedParam(name, item));
  }
  return parts.length === 0 ? path : `${path}?${parts.join('&')}`;
}

function loggedParam(name: string, value: unknown): string {
  if (!PLAIN_NAME.test(name)) return '[name not shown]=[REDACTED]';
  if (/key/i.test(name)) return `${name}=[REDACTED]`;
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? '';
  const cut = text.length > SHOWN_VALUE_LENGTH ? `${text.slice(0, SHOWN_VALUE_LENGTH)}...` : text;
  return `${name}=${encodeURIComponent(cut)}`;
}

// ---- JSON bodies ----

const PROTOTYPE_KEY_MESSAGE =
  "Body: a JSON key named __proto__, or constructor with a prototype inside, is refused (it could alter the server's objects); send parameters under their own names";

/**
 * A JSON body, refusing the keys that could reach an object's prototype if the value were ever
 * merged into another object. The walk is a loop, not a recursion: a 64 KB body can nest 32,000
 * levels deep, more than the stack holds.
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') throw badRequest('Body is empty but content-type is application/json; send a JSON object of parameters, or no content-type');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the body, which may hold a key: say where the fault is not.
    throw badRequest("Body is not valid JSON but content-type is set to 'application/json'; send parameters in the query string, a form or a JSON object body");
  }
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (!item || typeof item !== 'object') continue;
    if (Array.isArray(item)) {
      for (const inner of item) pending.push(inner);
      continue;
    }
    for (const [key, inner] of Object.entries(item)) {
      if (key === '__proto__' || (key === 'constructor' && inner && typeof inner === 'object' && Object.hasOwn(inner, 'prototype'))) {
        throw badRequest(PROTOTYPE_KEY_MESSAGE);
      }
      pending.push(inner);
    }
  }
  return value;
}

// ---- answers given before a request reaches a route ----

/** A complete HTTP/1.1 answer in the API's shape, for a socket no Fastify reply exists for. */
function rawAnswer(status: number, msg: string, requestId: string, extraHeaders: string[] = []): string {
  const body = JSON.stringify({ msg });
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    `x-request-id: ${requestId}`,
    'connection: close',
    ...extraHeaders,
    '',
    body,
  ].join('\r\n');
}

/** What Node's parser refused, as a status and a message that says what is accepted. */
export function describeClientError(code: string | undefined, limits: HttpLimits): { status: number; msg: string } {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, msg: `The request was not received in full within ${limits.requestTimeoutMs / 1000} s; send the whole request at once` };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, msg: `The request line and headers exceed ${limits.headerBytes} bytes; send parameters in a form or JSON body (up to ${limits.bodyBytes} bytes)` };
    case 'HPE_INVALID_METHOD':
      return { status: 405, msg: 'Unknown HTTP method; the API serves GET and POST (and HEAD on calls that change nothing)' };
    case 'HPE_INVALID_URL':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CONSTANT':
      return { status: 400, msg: 'The request line or a header holds bytes HTTP does not allow (control or non-ASCII); percent-encode them, as in count=1&alias=my%20job' };
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return { status: 400, msg: 'Conflicting or invalid Content-Length and Transfer-Encoding; send one of them' };
    default:
      return { status: 400, msg: `The request could not be read as HTTP/1.1 (${code ?? 'malformed'}); send a plain GET or POST` };
  }
}

function answerClientError(app: FastifyInstance, limits: HttpLimits, error: Error & { code?: string }, socket: Socket): void {
  // A connection reset has nobody to answer (https://nodejs.org/api/http.html#event-clienterror).
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const requestId = randomUUID();
  const { status, msg } = describeClientError(error.code, limits);
  app.log.info({ reqId: requestId, status, remoteAddress: socket.remoteAddress, reason: error.code ?? error.message }, 'request refused by the HTTP parser');
  // A response already under way on this socket cannot be followed by another one.
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) socket.end(rawAnswer(status, msg, requestId));
  else socket.destroy();
}

/**
 * Connections are counted per client address; one past the limit is answered 429 and closed, so
 * that one client cannot hold every descriptor the server has.
 */
function limitConnectionsPerAddress(app: FastifyInstance, limit: number): void {
  const open = new Map<string, number>();
  app.server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const count = (open.get(address) ?? 0) + 1;
    if (count > limit) {
      const requestId = randomUUID();
      app.log.warn({ reqId: requestId, status: 429, remoteAddress: address, limit }, 'connection refused: too many from one address');
      const msg = `Too many open connections from ${address} (at most ${limit}); reuse connections or close idle ones`;
      socket.end(rawAnswer(429, msg, requestId, ['retry-after: 1']));
      socket.destroySoon();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

/**
 * `Expect: 100-continue` is answered by Node; any other expectation gets a 417 in the API's shape
 * (Node's own is an empty body with no request id and no log line).
 */
function refuseUnknownExpectations(app: FastifyInstance): void {
  (app.server as Server).on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const requestId = incomingRequestId(req.headers) ?? randomUUID();
    app.log.info({ reqId: requestId, method: req.method, status: 417, expect: String(req.headers.expect).slice(0, 64) }, 'request');
    const body = JSON.stringify({ msg: 'Expect: only 100-continue is served; send the request without this Expect header' });
    res.writeHead(417, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-request-id': requestId,
      connection: 'close',
    });
    res.end(body);
  });
}

/** HTTP/1.1 requires a Host header (RFC 9112, section 3.2); HTTP/1.0 clients may leave it out. */
async function refuseMissingHost(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.raw.httpVersion === '1.0' || request.headers.host !== undefined) return;
  await reply.code(400).send({ msg: 'The Host header is missing; HTTP/1.1 requests must send one, such as Host: cinode.example:8080' });
}

/** The methods a path is served with, for a 405's `Allow` (empty: no such path). */
export function allowedMethods(app: FastifyInstance, path: string): string[] {
  const url = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  return ['GET', 'HEAD', 'POST'].filter((method) => app.hasRoute({ method: method as 'GET', url }));
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The name of the project whose key the request carried, for the request log. */
    project?: string;
  }
}
