/**
 * The OpenAPI 3.1 document served at `GET /openapi.json`: every endpoint of docs/api.md with its
 * parameters, success body and errors, kept beside the routes (app.ts) that answer them.
 * test/openapi.test.ts checks it with an OpenAPI validator, checks that every route the server
 * registers is in it, and validates real answers of the server against it.
 */
import { END_REASONS, NODE_STATES, SESSION_STATES } from '../api/states.js';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (type: string): Schema => ({ type: [type, 'null'] });
const arrayOf = (items: Schema): Schema => ({ type: 'array', items });
/** An object whose listed properties are all present (the server always writes them). */
const record = (properties: Record<string, Schema>, optional: readonly string[] = []): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties).filter((name) => !optional.includes(name)),
});
const ISO_TIME: Schema = { type: 'string', format: 'date-time' };

const SCHEMAS: Record<string, Schema> = {
  Msg: { ...record({ msg: { type: 'string' } }), description: 'Every error but the capacity shortfall of /Node/get: what was wrong and what the caller can do.' },
  Done: { const: 'Done', description: 'The JSON string "Done", quotes included.' },
  NodeGetResult: record({ hosts: arrayOf({ type: 'string' }), ssid: { type: 'string', format: 'uuid' } }),
  SessionGetResult: record({
    ssid: { type: 'string', format: 'uuid' },
    alias: nullable('string'),
    hosts: arrayOf({ type: 'string' }),
    expires_at: { type: ['string', 'null'], format: 'date-time' },
    created: { type: 'boolean' },
  }),
  HostView: record({
    hostname: { type: 'string' },
    ip: nullable('string'),
    state: { enum: NODE_STATES },
    ver: { type: 'string' },
    arch: { type: 'string' },
    flavor: nullable('string'),
  }),
  SessionView: record({
    ssid: { type: 'string', format: 'uuid' },
    alias: nullable('string'),
    state: { enum: SESSION_STATES },
    created_at: ISO_TIME,
    expires_at: { type: ['string', 'null'], format: 'date-time' },
    ended_at: { type: ['string', 'null'], format: 'date-time' },
    end_reason: { enum: [...END_REASONS, null] },
    hosts: arrayOf(ref('HostView')),
    isolation: { type: ['object', 'null'], description: 'What session-setup printed as the last line of its stdout; null without isolation hooks.' },
    teardown: { enum: ['pending', 'failed', 'done', null], description: 'Where session-teardown is; null without isolation hooks.' },
    heartbeat: { ...nullable('string'), description: 'The heartbeat the session was opened with (e.g. 5m), or null.' },
    heartbeat_deadline: { type: ['string', 'null'], format: 'date-time', description: 'When an active session with a heartbeat ends unless pinged before.' },
    waiting: { ...arrayOf(ref('Waiting')), description: "Only while a /Node/get ssid= of the session waits for capacity." },
  }, ['waiting']),
  TeardownView: record({
    ssid: { type: 'string', format: 'uuid' },
    teardown: { enum: ['pending'] },
  }),
  Waiting: record({
    count: { type: 'integer', minimum: 1 },
    since: ISO_TIME,
    position: { type: 'integer', minimum: 1, description: 'In the order the queue would serve now: 1 is next.' },
  }),
  QueueEntry: record(
    {
      count: { type: 'integer', minimum: 1 },
      since: ISO_TIME,
      position: { type: 'integer', minimum: 1, description: 'In the order the queue would serve now: 1 is next.' },
      ssid: { type: ['string', 'null'], format: 'uuid', description: 'The session it adds to; null: it opens one.' },
      project: { type: 'string', description: 'To an admin key only.' },
    },
    ['project'],
  ),
  KeyedInventory: { ...arrayOf({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'string' }], minItems: 2, maxItems: 2 }), description: '[hostname, ssid] per node in the caller\'s active sessions.' },
  PublicInventory: {
    ...arrayOf({
      type: 'array',
      prefixItems: [
        { type: 'integer', description: 'id' },
        { type: 'string', description: 'hostname' },
        { ...nullable('string'), description: 'ip' },
        { ...nullable('string'), description: 'chassis' },
        { type: 'integer', description: 'used_count' },
        { enum: ['Ready', 'Deployed', 'Deprovision', 'Fail', 'Failed', 'Reserved'], description: 'state (legacy names)' },
        { ...nullable('string'), description: 'comment: the ssid while in a session' },
        { ...nullable('string'), description: 'distro' },
        { ...nullable('string'), description: 'rel' },
        { type: 'string', description: 'ver' },
        { type: 'string', description: 'arch' },
        { type: 'integer', enum: [0, 1], description: 'pool: 1 in the allocation pool' },
        { ...nullable('integer'), description: 'console_port' },
        { ...nullable('string'), description: 'flavor' },
      ],
      minItems: 14,
      maxItems: 14,
    }),
    description: 'One 14-element legacy row per node, ordered by id.',
  },
  AdminNodeView: record({
    hostname: { type: 'string' },
    ip: nullable('string'),
    pool: { type: 'string' },
    state: { enum: NODE_STATES },
    ssid: nullable('string'),
    ver: { type: 'string' },
    arch: { type: 'string' },
    flavor: nullable('string'),
    used_count: { type: 'integer' },
    changed_at: ISO_TIME,
    reason: nullable('string'),
  }),
  EventView: record({
    at: ISO_TIME,
    subject: { enum: ['node', 'session', 'pool', 'hook'] },
    hostname: nullable('string'),
    pool: nullable('string'),
    ssid: nullable('string'),
    project: nullable('string'),
    alias: nullable('string'),
    from: nullable('string'),
    to: nullable('string'),
    reason: nullable('string'),
    detail: nullable('string'),
  }),
  UsageRow: {
    ...record(
      {
        project: { type: 'string', description: 'by=project and by=alias' },
        alias: { ...nullable('string'), description: 'by=alias: the alias or its first depth parts; null for sessions without one' },
        pool: { type: 'string', description: 'by=pool' },
        sessions: { type: 'integer' },
        nodes: { type: 'integer', description: 'distinct nodes' },
        node_hours: { type: 'number', description: 'not rounded' },
      },
      ['project', 'alias', 'pool'],
    ),
    additionalProperties: false,
  },
  AdminSessionView: record({
    project: { type: 'string' },
    ssid: { type: 'string', format: 'uuid' },
    alias: nullable('string'),
    created_at: ISO_TIME,
    expires_at: { type: ['string', 'null'], format: 'date-time' },
    hosts: arrayOf({ type: 'string' }),
  }),
  Health: record({ status: { const: 'ok' } }),
};

// ---- parameters --------------------------------------------------------------------------------

interface Param {
  name: string;
  description: string;
  schema: Schema;
  required?: boolean;
}

const ALIAS: Schema = { type: 'string', pattern: '^[A-Za-z0-9._:/@-]{1,128}$' };
const HOSTNAME: Schema = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,253}$' };
const DURATION: Schema = { type: 'string', pattern: '^(never|(\\d+d)?(\\d+h)?(\\d+m)?(\\d+s)?)$', examples: ['6h', '1h30m', 'never'] };
const TIME: Schema = { type: 'string', examples: ['2026-01-31', '2026-01-31T12:00:00Z'] };

const P = {
  key: { name: 'key', description: "The project's API key (or the Authorization: Bearer header). An empty key is no key.", schema: { type: 'string' } },
  ssid: { name: 'ssid', description: "A session of the caller's project: its ssid, or its alias.", schema: ALIAS },
  alias: { name: 'alias', description: "The session's name; unique among the project's active sessions.", schema: ALIAS },
  lifetime: { name: 'lifetime', description: "How long the session lives (capped by the project's maximum); never where the policy allows.", schema: DURATION },
  heartbeat: { name: 'heartbeat', description: 'The session ends (heartbeat-lost) unless it hears from its client this often: 10s to 1h (docs/api.md, Heartbeats).', schema: { type: 'string', pattern: '^(\\d+h)?(\\d+m)?(\\d+s)?$' } },
  ver: { name: 'ver', description: 'The OS version (default from the configuration).', schema: { type: 'string' } },
  arch: { name: 'arch', description: 'The architecture (default from the configuration).', schema: { type: 'string' } },
  flavor: { name: 'flavor', description: 'The node size; empty is no flavor.', schema: { type: 'string' } },
  count: { name: 'count', description: "How many nodes: 1 to the project's max-count.", schema: { type: 'integer', minimum: 1, default: 1 } },
  wait: {
    name: 'wait',
    description: "How long to wait in the server's queue when too few nodes are ready: 0 or a duration, capped by the project's max-wait; default the project's default-wait (none unless configured).",
    schema: { type: 'string', pattern: '^(0|(\\d+d)?(\\d+h)?(\\d+m)?(\\d+s)?)$', examples: ['10m', '1h', '0'] },
  },
  node: { name: 'node', description: 'Hostnames of the session: the parameter may repeat or hold a comma-separated list.', schema: arrayOf(HOSTNAME) },
  hostname: { name: 'hostname', description: "The node's hostname.", schema: HOSTNAME },
  state: { name: 'state', description: 'Only nodes in this state.', schema: { enum: NODE_STATES } },
  session: { name: 'session', description: 'The history of the sessions of this ssid or alias.', schema: ALIAS },
  limit: { name: 'limit', description: 'How many of the latest events.', schema: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } },
  from: { name: 'from', description: 'Start of the range, an ISO 8601 date or time (UTC unless an offset is given); default 30 days before to.', schema: TIME },
  to: { name: 'to', description: 'End of the range; default now.', schema: TIME },
  by: { name: 'by', description: 'One row per project, per project and alias, or per pool.', schema: { enum: ['project', 'alias', 'pool'], default: 'project' } },
  depth: { name: 'depth', description: 'With by=alias: group aliases by their first N /-separated parts.', schema: { type: 'integer', minimum: 1, maximum: 32 } },
} satisfies Record<string, Param>;

const required = (param: Param): Param => ({ ...param, required: true });

// ---- responses ---------------------------------------------------------------------------------

const json = (schema: Schema, description: string) => ({ description, content: { 'application/json': { schema } } });
const msg = (description: string) => json(ref('Msg'), description);

const ERRORS = {
  400: msg('A malformed parameter: which one, what was wrong, what is accepted.'),
  403: msg('Invalid duffy key (no key, or a key no project has), Invalid session ID, or a policy or quota refusal.'),
  404: msg('No such node.'),
  409: msg('The session is not active, or the node is not in a state the action applies to.'),
  429: { ...msg('Too many new sessions in the rate window, or too many failed authentications from this address.'), headers: { 'Retry-After': { schema: { type: 'integer' } } } },
  503: { ...msg('The database is unavailable right now; try again.'), headers: { 'Retry-After': { schema: { type: 'integer' } } } },
} as const;

type ErrorStatus = keyof typeof ERRORS;

/** One operation of a call that takes its parameters in the query (GET) or a form or JSON body (POST). */
function operation(method: 'get' | 'post', id: string, summary: string, tag: string, params: readonly Param[], ok: unknown, errors: readonly ErrorStatus[], keyed: boolean) {
  const op: Record<string, unknown> = {
    operationId: `${id}${method === 'get' ? '' : 'Post'}`,
    summary,
    tags: [tag],
    responses: { 200: ok, ...Object.fromEntries(errors.map((status) => [status, ERRORS[status]])) },
  };
  const all: readonly Param[] = keyed ? [P.key, ...params] : params;
  if (method === 'get') {
    op.parameters = all.map((p) => ({ in: 'query', ...p, ...(p.schema.type === 'array' ? { style: 'form', explode: true } : {}) }));
  } else {
    const schema = {
      type: 'object',
      properties: Object.fromEntries(all.map((p) => [p.name, { ...p.schema, description: p.description }])),
      required: all.filter((p) => p.required).map((p) => p.name),
    };
    op.requestBody = { content: { 'application/x-www-form-urlencoded': { schema }, 'application/json': { schema } } };
  }
  if (keyed) op.security = [{ bearer: [] }, { key: [] }];
  return op;
}

function call(id: string, summary: string, tag: string, params: readonly Param[], ok: unknown, errors: readonly ErrorStatus[], keyed = true) {
  return { get: operation('get', id, summary, tag, params, ok, errors, keyed), post: operation('post', id, summary, tag, params, ok, errors, keyed) };
}

const done = json(ref('Done'), '"Done"');
const SESSION_ERRORS: ErrorStatus[] = [400, 403, 409, 503];
const ADMIN_ERRORS: ErrorStatus[] = [400, 403, 503];
const NODE_ACTION_ERRORS: ErrorStatus[] = [400, 403, 404, 409, 503];

const PATHS = {
  '/Node/get': call('nodeGet', 'Nodes in a new session, or more nodes in a live one (ssid=)', 'legacy', [P.ver, P.arch, P.count, P.flavor, P.wait, P.ssid], json(ref('NodeGetResult'), 'The new hosts and the session'), [400, 403, 409, 429]),
  '/Node/done': call('nodeDone', 'End the session, or release some of its nodes (node=)', 'legacy', [required(P.ssid), P.node], json({ oneOf: [ref('Done'), ref('Msg')] }, '"Done"; {"msg": "Session not in Prod"} for a session that was already done'), SESSION_ERRORS),
  '/Node/fail': call('nodeFail', "Keep the session's nodes for debugging, or report some broken (node=)", 'legacy', [required(P.ssid), P.node], done, SESSION_ERRORS),
  '/Session/get': call('sessionGet', 'A session without nodes; idempotent by alias', 'sessions', [P.alias, P.lifetime, P.heartbeat], json(ref('SessionGetResult'), 'The session, created or found by alias'), [400, 403, 429, 503]),
  '/Session/done': call('sessionDone', 'End a session (idempotent)', 'sessions', [required(P.ssid)], done, [400, 403, 503]),
  '/Session/show': call('sessionShow', 'A session with its hosts', 'sessions', [required(P.ssid)], json(ref('SessionView'), 'The session'), [400, 403, 503]),
  '/Session/ping': call('sessionPing', 'Tell a session with a heartbeat that its job is alive', 'sessions', [required(P.ssid)], json(ref('SessionView'), 'The session'), [400, 403, 503]),
  '/Session/list': call('sessionList', "The project's active sessions, newest first", 'sessions', [], json(arrayOf(ref('SessionView')), 'The active sessions'), [403, 503]),
  '/Session/extend': call('sessionExtend', "Move a session's expiry later (never earlier)", 'sessions', [required(P.ssid), required(P.lifetime)], json(ref('SessionView'), 'The session'), SESSION_ERRORS),
  '/Queue': call('queue', "The caller's project's requests waiting for capacity, in the order they would be served; an admin key sees every project's", 'sessions', [], json(arrayOf(ref('QueueEntry')), 'The waiting requests'), [403, 503]),
  '/Inventory': call(
    'inventory',
    "With a key: the caller's nodes; without: every node as a legacy row (unless public-inventory is off)",
    'legacy',
    [],
    json({ oneOf: [ref('KeyedInventory'), ref('PublicInventory')] }, 'Keyed: [hostname, ssid] pairs; unkeyed: 14-element rows'),
    [403, 503],
  ),
  '/Admin/nodes': call('adminNodes', 'Every node in service (admin key)', 'admin', [P.state], json(arrayOf(ref('AdminNodeView')), 'The nodes'), ADMIN_ERRORS),
  '/Admin/events': call('adminEvents', 'The latest events, oldest first: of a node, of sessions, or all (admin key)', 'admin', [P.hostname, P.session, P.limit], json(arrayOf(ref('EventView')), 'The events'), [...ADMIN_ERRORS, 404]),
  '/Admin/usage': call('adminUsage', 'Node-hours within a range, each stay clipped to it (admin key)', 'admin', [P.from, P.to, P.by, P.depth], json(arrayOf(ref('UsageRow')), 'One row per project, project and alias, or pool'), ADMIN_ERRORS),
  '/Admin/sessions': call('adminSessions', "Every project's active sessions with their hosts, newest first (admin key)", 'admin', [], json(arrayOf(ref('AdminSessionView')), 'The active sessions'), [403, 503]),
  '/Admin/node/release': call('adminRelease', 'Return a failed or held node to service, through reclaim (admin key)', 'admin', [required(P.hostname)], json(ref('AdminNodeView'), 'The node after the action'), NODE_ACTION_ERRORS),
  '/Admin/node/disable': call('adminDisable', 'Take a ready, failed or held node out of service (admin key)', 'admin', [required(P.hostname)], json(ref('AdminNodeView'), 'The node after the action'), NODE_ACTION_ERRORS),
  '/Admin/node/enable': call('adminEnable', 'Return a disabled node to service, through reclaim (admin key)', 'admin', [required(P.hostname)], json(ref('AdminNodeView'), 'The node after the action'), NODE_ACTION_ERRORS),
  '/Admin/session/teardown': call(
    'adminSessionTeardown',
    "Run a done session's session-teardown hook again now (admin key)",
    'admin',
    [required({ ...P.ssid, description: "The session's full ssid (any project's)." })],
    json(ref('TeardownView'), 'The teardown is due now'),
    NODE_ACTION_ERRORS,
  ),
  '/healthz': { get: { operationId: 'healthz', summary: 'The server and its database answer', tags: ['operations'], responses: { 200: json(ref('Health'), 'Healthy'), 503: ERRORS[503] } } },
  '/metrics': {
    get: {
      operationId: 'metrics',
      summary: 'Prometheus text exposition; an admin key only when metrics: {key-required: true}',
      tags: ['operations'],
      security: [{}, { bearer: [] }, { key: [] }],
      parameters: [{ in: 'query', ...P.key }],
      responses: { 200: { description: 'The metrics', content: { 'text/plain': { schema: { type: 'string' } } } }, 403: ERRORS[403] },
    },
  },
  '/dashboard': {
    get: {
      operationId: 'dashboard',
      summary: "The operator's read-only page; it asks for an admin key and calls the admin API",
      tags: ['operations'],
      responses: { 200: { description: 'The page (its style and script at /dashboard/style.css and /dashboard/app.js)', content: { 'text/html': { schema: { type: 'string' } } } } },
    },
  },
  '/dashboard/style.css': { get: { operationId: 'dashboardStyle', summary: "The dashboard's style", tags: ['operations'], responses: { 200: { description: 'CSS', content: { 'text/css': { schema: { type: 'string' } } } } } } },
  '/dashboard/app.js': { get: { operationId: 'dashboardScript', summary: "The dashboard's script", tags: ['operations'], responses: { 200: { description: 'JavaScript', content: { 'text/javascript': { schema: { type: 'string' } } } } } } },
  '/openapi.json': { get: { operationId: 'openapi', summary: 'This document', tags: ['operations'], responses: { 200: json({ type: 'object' }, 'The OpenAPI 3.1 document') } } },
};

// The capacity shortfall of /Node/get keeps the legacy plain-text body: cico retries only on a body that is not JSON.
for (const method of ['get', 'post'] as const) {
  (PATHS['/Node/get'][method].responses as Record<string, unknown>)[503] = {
    description: 'Insufficient Nodes in READY State (text/plain), or the database is unavailable ({"msg"})',
    headers: { 'Retry-After': { schema: { type: 'integer' } } },
    content: { 'text/plain': { schema: { const: 'Insufficient Nodes in READY State' } }, 'application/json': { schema: ref('Msg') } },
  };
}

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'cinode',
    version: '1',
    summary: 'Lends test machines to CI jobs: the admin.ci API with job sessions',
    description:
      'Every call answers GET with its parameters in the query string (legacy clients do not URL-encode) and POST with the same parameters as a form or JSON body. Errors are {"msg": ...} with a 4xx or 5xx status, but the capacity shortfall of /Node/get. Every response carries X-Request-Id. docs/api.md is the full contract.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  tags: [
    { name: 'legacy', description: "admin.ci's calls, unchanged for existing scripts" },
    { name: 'sessions', description: 'Sessions apart from their nodes' },
    { name: 'admin', description: 'Operators: the key of a project with admin: true (403 for any other)' },
    { name: 'operations', description: 'Health, metrics, the dashboard and this document' },
  ],
  paths: PATHS,
  components: {
    schemas: SCHEMAS,
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: "A project's API key" },
      key: { type: 'apiKey', in: 'query', name: 'key', description: "A project's API key (legacy)" },
    },
  },
} as const;
