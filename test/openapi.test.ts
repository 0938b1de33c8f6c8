/**
 * `GET /openapi.json`: an OpenAPI validator accepts the document the server serves, every
 * endpoint the server names is in it, and the real answers of a representative set of calls
 * (successes and errors, GET and POST) validate against the schema it gives for their path,
 * method, status and content type.
 */
import { createRequire } from 'node:module';
import { Validator } from '@seriousme/openapi-schema-validator';
import { KEYS, removeDir, startTestServer, type Reply, type TestServer } from './support/server.js';

// The JSON Schema 2020-12 validator (and its formats) the OpenAPI validator itself uses: OpenAPI
// 3.1's schemas are that dialect.
const requireFromValidator = createRequire(createRequire(import.meta.url).resolve('@seriousme/openapi-schema-validator'));
type AjvInstance = {
  addSchema(schema: object, key: string): void;
  validate(schema: object, data: unknown): boolean;
  errorsText(errors?: unknown): string;
  errors?: unknown;
};
const Ajv2020 = requireFromValidator('ajv/dist/2020').default as new (options: object) => AjvInstance;
const addFormats = requireFromValidator('ajv-formats').default as (ajv: AjvInstance) => void;

interface OpenApi {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>>;
}

let server: TestServer;
let doc: OpenApi;
let ajv: AjvInstance;
/** Every answer checked, as "METHOD path status". */
const checked: string[] = [];

/** A JSON pointer segment: `/` and `~` escaped. */
const pointer = (segment: string) => segment.replaceAll('~', '~0').replaceAll('/', '~1');

/** Checks the answer against the document's schema for it. */
function conforms(method: 'get' | 'post', path: string, reply: Reply): void {
  const operation = doc.paths[path]?.[method];
  expect([method, path, operation !== undefined]).toEqual([method, path, true]);
  const response = operation!.responses[String(reply.status)];
  expect([method, path, reply.status, response !== undefined]).toEqual([method, path, reply.status, true]);
  const type = (reply.headers.get('content-type') ?? '').split(';')[0]!;
  expect([path, reply.status, type, Object.keys(response!.content ?? {})]).toEqual([path, reply.status, type, expect.arrayContaining([type])]);
  const body = type === 'application/json' ? reply.json : reply.text;
  const where = `openapi.json#/paths/${pointer(path)}/${method}/responses/${reply.status}/content/${pointer(type)}/schema`;
  const valid = ajv.validate({ $ref: where }, body);
  expect([method, path, reply.status, valid ? 'valid' : ajv.errorsText(ajv.errors)]).toEqual([method, path, reply.status, 'valid']);
  checked.push(`${method.toUpperCase()} ${path} ${reply.status}`);
}

async function get(path: string, query: Record<string, string | number> = {}, headers: Record<string, string> = {}): Promise<Reply> {
  const reply = await server.get(path, query, headers);
  conforms('get', path, reply);
  return reply;
}

async function post(path: string, body: Record<string, unknown>): Promise<Reply> {
  const reply = await server.post(path, JSON.stringify(body), 'application/json');
  conforms('post', path, reply);
  return reply;
}

beforeAll(async () => {
  server = await startTestServer({
    projects: { beta: { admin: true } },
    defaults: { 'rate-limit': '1000/5m' },
    pools: [
      { name: 'c7', ver: '7', nodes: 3 },
      { name: 'arm', ver: '9-stream', arch: 'aarch64', flavor: 'tiny', nodes: 1 },
    ],
  });
  doc = (await server.get('/openapi.json')).json as OpenApi;
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'openapi.json');
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

test('an OpenAPI validator accepts the served document as OpenAPI 3.1', async () => {
  const validator = new Validator();
  const result = await validator.validate(doc as unknown as Parameters<Validator['validate']>[0]);
  expect(result.errors ?? []).toEqual([]);
  expect(result.valid).toBe(true);
  expect(validator.version).toBe('3.1');
});

test('every endpoint the server names (in its 404 answer) is in the document, and every path of the document is served', async () => {
  const notFound = await server.get('/no-such-call');
  const named = (notFound.json as { msg: string }).msg.split('the API serves ')[1]!.split(', ');
  expect(named.length).toBeGreaterThan(15);
  for (const path of named) expect([path, path in doc.paths]).toEqual([path, true]);
  for (const path of Object.keys(doc.paths)) {
    const reply = await server.get(path);
    expect([path, reply.status]).not.toEqual([path, 404]);
  }
});

test('the answers of legacy, session and admin calls validate against the document', async () => {
  const got = (await get('/Node/get', { key: KEYS.alpha, ver: '7', count: 2 })).json as { ssid: string; hosts: string[] };
  await get('/Node/get', { key: KEYS.alpha, ver: '7', count: 2 }); // 503, plain text
  await get('/Node/get', { key: KEYS.alpha, count: 'two' }); // 400
  await get('/Node/get', { key: 'no-such-key-0123456789' }); // 403
  await get('/Node/get', { key: KEYS.alpha, ver: '7', count: 9 }); // 400 count too large
  await get('/Inventory', { key: KEYS.alpha });
  await get('/Inventory');
  await get('/Session/show', { key: KEYS.alpha, ssid: got.ssid });
  await get('/Session/list', { key: KEYS.alpha });
  await get('/Queue', { key: KEYS.alpha });
  await get('/Queue', { key: KEYS.beta });
  await get('/Node/get', { key: KEYS.alpha, ver: '7', count: 2, wait: '1s' }); // 503 after the wait
  await get('/Node/done', { key: KEYS.alpha, ssid: got.ssid, node: got.hosts[0]! });
  await get('/Node/done', { key: KEYS.alpha, ssid: got.ssid, node: 'elsewhere.example' }); // 400 not in session
  await get('/Node/fail', { key: KEYS.alpha, ssid: got.ssid, node: got.hosts[1]! });
  await get('/Node/done', { key: KEYS.alpha, ssid: got.ssid });
  await get('/Node/done', { key: KEYS.alpha, ssid: got.ssid }); // {"msg": "Session not in Prod"}
  await get('/Session/extend', { key: KEYS.alpha, ssid: got.ssid, lifetime: '1h' }); // 409 not active
  await get('/Session/show', { key: KEYS.alpha, ssid: 'nobody' }); // 403 invalid session

  await post('/Session/get', { key: KEYS.alpha, alias: 'openapi/run', lifetime: '2h', heartbeat: '5m' });
  await get('/Session/ping', { key: KEYS.alpha, ssid: 'openapi/run' });
  await get('/Session/get', { key: KEYS.alpha, heartbeat: '2h' }); // 400 out of range
  await post('/Node/get', { key: KEYS.alpha, ver: '9-stream', arch: 'aarch64', ssid: 'openapi/run' });
  await post('/Session/extend', { key: KEYS.alpha, ssid: 'openapi/run', lifetime: '3h' });
  await post('/Session/get', { key: KEYS.alpha, lifetime: 'never' }); // 403 policy
  await get('/Node/fail', { key: KEYS.alpha, ssid: 'openapi/run' });
  await get('/Session/done', { key: KEYS.alpha, ssid: 'openapi/run' });

  await get('/Admin/nodes', { key: KEYS.beta });
  await get('/Admin/nodes', { key: KEYS.beta, state: 'failed' });
  await get('/Admin/nodes', { key: KEYS.alpha }); // 403 not an admin
  await get('/Admin/events', { key: KEYS.beta, limit: 10 });
  await get('/Admin/events', { key: KEYS.beta, hostname: 'nowhere.example' }); // 404
  await get('/Admin/sessions', { key: KEYS.beta });
  for (const by of ['project', 'alias', 'pool']) await get('/Admin/usage', { key: KEYS.beta, by });
  await get('/Admin/usage', { key: KEYS.beta, by: 'alias', depth: 1 });
  await get('/Admin/usage', { key: KEYS.beta, from: 'soon' }); // 400
  await get('/Admin/node/release', { key: KEYS.beta, hostname: got.hosts[1]! });
  await get('/Admin/node/enable', { key: KEYS.beta, hostname: got.hosts[1]! }); // 409 wrong state
  await get('/Admin/node/disable', { key: KEYS.beta, hostname: 'arm-1.test.example' }, {});
  await post('/Admin/node/enable', { key: KEYS.beta, hostname: 'arm-1.test.example' });
  await get('/Admin/node/disable', { key: KEYS.beta, hostname: 'nowhere.example' }); // 404
  await get('/Admin/session/teardown', { key: KEYS.beta, ssid: got.ssid }); // 409: opened without isolation hooks
  await get('/Admin/session/teardown', { key: KEYS.beta, ssid: '00000000-0000-4000-8000-000000000000' }); // 404

  await get('/healthz');
  await get('/metrics');
  await get('/dashboard');
  await get('/dashboard/app.js');
  await get('/dashboard/style.css');
  await get('/openapi.json');

  // Both sides of every kind of answer were met.
  for (const expected of ['GET /Node/get 503', 'GET /Node/done 400', 'GET /Session/extend 409', 'GET /Admin/events 404', 'POST /Session/get 403', 'GET /Admin/node/enable 409', 'GET /Admin/session/teardown 409']) {
    expect(checked).toContain(expected);
  }
});
