/**
 * The HTTP face of cinode: the legacy admin.ci calls and the session calls of docs/api.md, each
 * answered with exactly its legacy body, every error as `{"msg": ...}` (but the capacity answer).
 */
import { parse as parseQueryString } from 'node:querystring';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CICO_USER_AGENT, DONE_BODY, INVALID_KEY_MESSAGE, NOT_IN_PROD_MESSAGE } from '../api/messages.js';
import { badRequest, CinodeError } from '../core/errors.js';
import type { Project } from '../core/model.js';
import type { AdminService } from '../core/admin.js';
import type { AllocationService } from '../core/allocation.js';
import { registerDashboard } from './dashboard.js';
import type { Metrics } from './metrics.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { readUsageRequest } from './usage-params.js';
import { allowedMethods, createHttpStack, DEFAULT_HTTP_LIMITS, type HttpLimits } from './http.js';
import { DEFAULT_FAILED_KEY_LIMITS, FailedKeyThrottle, type FailedKeyLimits } from './throttle.js';
import {
  checkShapes,
  collectParams,
  hasCredentials,
  readAlias,
  readArch,
  readCount,
  readFlavor,
  readHostname,
  readKey,
  readLimit,
  readNodeState,
  readSessionFilter,
  readHeartbeat,
  readLifetime,
  readNodes,
  readSessionRef,
  readVer,
  readWait,
  type Params,
} from './params.js';

export interface AppOptions {
  service: AllocationService;
  admin: AdminService;
  logger: FastifyBaseLogger | false;
  /** Whether `/Inventory` without a key lists every node (public in the legacy API). */
  publicInventory: () => boolean;
  /** Checks the database for `/healthz`. */
  healthCheck: () => Promise<void>;
  /** Whether an error means the database cannot be reached or used right now (503, try again). */
  databaseUnavailable: (error: unknown) => boolean;
  /** The server's metrics; `GET /metrics` serves them. */
  metrics: Metrics;
  /** Whether `GET /metrics` needs an admin project's key. */
  metricsKeyRequired: () => boolean;
  /** Milliseconds since the epoch: the end of `/Admin/usage`'s default range, and the failed-key throttle's clock. */
  clock: () => number;
  /** The HTTP limits (README, "Security and limits"); the defaults unless a test needs others. */
  httpLimits?: HttpLimits;
  failedKeyLimits?: FailedKeyLimits;
}



const STATUS: Record<CinodeError['kind'], number> = {
  'invalid-key': 403,
  'bad-request': 400,
  'invalid-session': 403,
  'not-active': 409,
  'node-not-in-session': 400,
  policy: 403,
  'no-pool': 400,
  'count-too-large': 400,
  'rate-limit': 429,
  capacity: 503,
  unavailable: 503,
  'setup-failed': 503,
  'no-node': 404,
  'wrong-state': 409,
};

function sendError(reply: FastifyReply, error: CinodeError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  reply.code(STATUS[error.kind]);
  // cico retries a capacity shortfall only when the body is not JSON: keep the legacy plain text.
  if (error.kind === 'capacity') return reply.type('text/plain; charset=utf-8').send(error.message);
  return sendMessage(reply, error.message);
}

/**
 * An error's `{"msg": ...}` body; to cico's `/Node/get`, the message as a JSON string instead:
 * cico 0.4.7 prints only a key name (`'hosts'`) for an object, but raises a string whole
 * (docs/api.md, "cico").
 */
function sendMessage(reply: FastifyReply, msg: string): FastifyReply {
  const { request } = reply;
  const cico = request.routeOptions.url === '/Node/get' && (request.headers['user-agent'] ?? '').startsWith(CICO_USER_AGENT);
  if (cico) return reply.type('application/json; charset=utf-8').send(JSON.stringify(msg));
  return reply.send({ msg });
}

type Handler = (request: FastifyRequest, params: Params, project: Project) => Promise<unknown>;

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { service } = options;
  const app = createHttpStack(options.logger, options.httpLimits ?? DEFAULT_HTTP_LIMITS);
  options.metrics.observeRequests(app);
  const throttle = new FailedKeyThrottle(options.failedKeyLimits ?? DEFAULT_FAILED_KEY_LIMITS, options.clock);

  /** The key's project; a wrong key counts against the client's address (429 past its allowance). */
  function authenticate(request: FastifyRequest, params: Params): Project {
    try {
      const project = service.authenticate(readKey(params, request.headers.authorization));
      request.project = project.name;
      return project;
    } catch (error) {
      if (!(error instanceof CinodeError && error.kind === 'invalid-key')) throw error;
      const waitSeconds = throttle.fail(request.ip);
      if (waitSeconds === undefined) throw error;
      throw new CinodeError('rate-limit', `Too many wrong keys from ${request.ip}; try again in ${waitSeconds} s with a valid key (a valid key is never throttled)`, waitSeconds);
    }
  }

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, parseQueryString(body as string));
  });

  app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (error instanceof CinodeError) return sendError(reply, error);
    if (options.databaseUnavailable(error)) {
      request.log.error({ err: error }, 'database unavailable');
      return sendError(reply, new CinodeError('unavailable', 'The database is unavailable right now; try again in a few seconds'));
    }
    const status = error.statusCode ?? 500;
    if (status < 500) {
      // Fastify's own 4xx (bad JSON body, body too large, unsupported content type).
      return sendMessage(reply.code(status), `${error.message}; send parameters in the query string, a form or a JSON object body`);
    }
    request.log.error({ err: error }, 'unexpected error');
    return sendMessage(reply.code(500), `Internal error (request id ${request.id}); the operator can find it in the server log`);
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = allowedMethods(app, path);
    if (allowed.length > 0) {
      const method = request.method.slice(0, 16);
      const msg = `Method ${method} is not served on ${path}; use ${allowed.join(' or ')}${allowed.includes('HEAD') ? '' : ' (HEAD only on calls that change nothing)'}`;
      return reply.code(405).header('allow', allowed.join(', ')).send({ msg });
    }
    reply.code(404).send({ msg: `No such endpoint ${request.url.split('?')[0]}; the API serves ${ENDPOINTS.join(', ')}` });
  });

  /**
   * Registers a keyed call for GET (what legacy clients send) and POST, and for HEAD when it
   * changes nothing (`readOnly`).
   */
  function keyed(path: string, handler: Handler, readOnly = false): void {
    const route = async (request: FastifyRequest, reply: FastifyReply) => {
      const params = collectParams(request.query, request.body);
      const project = authenticate(request, params);
      checkShapes(params);
      const result = await handler(request, params, project);
      if (result === DONE_BODY) return reply.type('application/json; charset=utf-8').send(DONE_BODY);
      return reply.send(result);
    };
    app.get(path, { exposeHeadRoute: readOnly }, route);
    app.post(path, route);
  }

  keyed('/Node/get', async (httpRequest, params, project) => {
    const request = {
      ver: readVer(params),
      arch: readArch(params),
      count: readCount(params, project.policy.maxCount),
      flavor: readFlavor(params),
      wait: readWait(params),
      ssid: readSessionRef(params, false),
    };
    // A client that disconnects while its request waits for capacity leaves the queue at once.
    const left = new AbortController();
    const socket = httpRequest.raw.socket;
    const leave = () => left.abort();
    socket.once('close', leave);
    try {
      return await service.getNodes(project, request, left.signal);
    } finally {
      socket.off('close', leave);
    }
  });

  // Malformed parameters (400) answer before a bad session reference (403): read the ssid last.
  keyed('/Node/done', async (_request, params, project) => {
    const nodes = readNodes(params);
    const ssid = readSessionRef(params, true);
    const outcome = await service.doneNodes(project, ssid, nodes);
    return outcome === 'done' ? DONE_BODY : { msg: NOT_IN_PROD_MESSAGE };
  });

  keyed('/Node/fail', async (_request, params, project) => {
    const nodes = readNodes(params);
    const ssid = readSessionRef(params, true);
    await service.failNodes(project, ssid, nodes);
    return DONE_BODY;
  });

  keyed('/Session/get', async (_request, params, project) => {
    const request = { alias: readAlias(params), lifetime: readLifetime(params, false), heartbeatMs: readHeartbeat(params) };
    return service.getSession(project, request);
  });

  keyed('/Session/done', async (_request, params, project) => {
    await service.endSession(project, readSessionRef(params, true));
    return DONE_BODY;
  });

  keyed('/Session/show', async (_request, params, project) => service.showSession(project, readSessionRef(params, true)), true);

  // A ping is a show that changes something (the heartbeat deadline): no HEAD.
  keyed('/Session/ping', async (_request, params, project) => service.showSession(project, readSessionRef(params, true)));

  keyed('/Session/list', async (_request, _params, project) => service.listSessions(project), true);

  keyed('/Queue', async (_request, _params, project) => service.queue(project), true);

  keyed('/Session/extend', async (_request, params, project) => {
    const lifetime = readLifetime(params, true)!;
    const ssid = readSessionRef(params, true);
    return service.extendSession(project, ssid, lifetime);
  });

  // Operators' calls: the same keys, of projects with `admin: true`.
  function adminCall(path: string, handler: Handler): void {
    keyed(path, async (request, params, project) => {
      options.admin.authorize(project);
      return handler(request, params, project);
    });
  }

  adminCall('/Admin/nodes', async (_request, params) => options.admin.nodes(readNodeState(params)));
  adminCall('/Admin/events', async (_request, params) => {
    const hostname = params.has('hostname') ? readHostname(params) : undefined;
    const session = readSessionFilter(params);
    if (hostname !== undefined && session !== undefined) throw badRequest('hostname and session: give one of them, or neither for every event');
    return options.admin.events({ hostname, session }, readLimit(params));
  });
  adminCall('/Admin/usage', async (_request, params) => options.admin.usage(readUsageRequest(params, options.clock())));
  adminCall('/Admin/sessions', async () => options.admin.sessions());
  adminCall('/Admin/node/release', async (_request, params, project) => options.admin.release(readHostname(params), project));
  adminCall('/Admin/node/disable', async (_request, params, project) => options.admin.disable(readHostname(params), project));
  adminCall('/Admin/node/enable', async (_request, params, project) => options.admin.enable(readHostname(params), project));
  adminCall('/Admin/session/teardown', async (_request, params) => options.admin.teardown(readSessionRef(params, true)));

  // `/Inventory` answers without a key too: the legacy public listing that cico's `node get` reads.
  const inventory = async (request: FastifyRequest, reply: FastifyReply) => {
    const params = collectParams(request.query, request.body);
    if (hasCredentials(params, request.headers.authorization)) {
      const project = authenticate(request, params);
      checkShapes(params);
      return reply.send(await service.projectInventory(project));
    }
    if (!options.publicInventory()) {
      return reply.code(403).send({ msg: `${INVALID_KEY_MESSAGE}: this server lists its inventory only to a key (public-inventory is off); pass key=` });
    }
    checkShapes(params);
    return reply.send(await service.publicInventory());
  };
  app.get('/Inventory', { exposeHeadRoute: true }, inventory);
  app.post('/Inventory', inventory);

  app.get('/healthz', { exposeHeadRoute: true }, async (_request, reply) => {
    await options.healthCheck();
    return reply.send({ status: 'ok' });
  });

  options.metrics.register(app, (request) => {
    if (!options.metricsKeyRequired()) return;
    options.admin.authorize(authenticate(request, collectParams(request.query, undefined)));
  });
  registerDashboard(app);
  app.get('/openapi.json', async (_request, reply) => reply.send(OPENAPI_DOCUMENT));

  return app;
}

const ENDPOINTS = [
  '/Node/get',
  '/Node/done',
  '/Node/fail',
  '/Inventory',
  '/Session/get',
  '/Session/done',
  '/Session/show',
  '/Session/list',
  '/Session/extend',
  '/Queue',
  '/Session/ping',
  '/Admin/nodes',
  '/Admin/events',
  '/Admin/usage',
  '/Admin/sessions',
  '/Admin/node/release',
  '/Admin/node/disable',
  '/Admin/node/enable',
  '/Admin/session/teardown',
  '/healthz',
  '/metrics',
  '/dashboard',
  '/openapi.json',
];

