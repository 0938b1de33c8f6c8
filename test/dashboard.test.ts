/**
 * The operator's dashboard in real headless Chromium (Debian's chromium, driven by
 * playwright-core; CINODE_CHROMIUM overrides the path): a strict Content-Security-Policy, key
 * entry by keyboard, a wrong key and a non-admin key showing an error and no data, every panel
 * showing the server's state, the key in sessionStorage only, a refresh by itself, a phone-sized
 * screen without sideways scrolling, and no console error. Screenshots go to .ci/results/.
 */
/// <reference lib="dom" />
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO_ROOT } from './support/process.js';
import { KEYS, removeDir, startTestServer, waitFor, type TestServer } from './support/server.js';

const CHROMIUM = process.env.CINODE_CHROMIUM ?? '/usr/bin/chromium';
const RESULTS = join(REPO_ROOT, '.ci', 'results');

let server: TestServer;
let browser: Browser;
let page: Page;
/** Console errors, page errors and failed requests of the page, none expected. */
const problems: string[] = [];
let session: { ssid: string; hosts: string[] };
let quarantined: string;

async function enterKey(key: string): Promise<void> {
  await page.focus('#key');
  await page.keyboard.type(key);
  await page.keyboard.press('Enter');
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (CI installs it in .ci/run), or set CINODE_CHROMIUM`);
  mkdirSync(RESULTS, { recursive: true });
  server = await startTestServer({
    projects: { beta: { admin: true } },
    defaults: { 'rate-limit': '1000/5m' },
    pools: [
      { name: 'c7', ver: '7', nodes: 4 },
      { name: 'c9s', ver: '9-stream', nodes: 2 },
    ],
  });
  await server.get('/Session/get', { key: KEYS.alpha, alias: 'org/repo/17/1/build' });
  session = (await server.get('/Node/get', { key: KEYS.alpha, ver: '7', count: 2, ssid: 'org/repo/17/1/build' })).json as typeof session;
  const broken = (await server.get('/Node/get', { key: KEYS.alpha, ver: '9-stream' })).json as typeof session;
  quarantined = broken.hosts[0]!;
  expect((await server.get('/Node/fail', { key: KEYS.alpha, ssid: broken.ssid, node: quarantined })).text).toBe('"Done"');
  // A request waiting for capacity (3 c7 nodes, 2 ready) until the server closes.
  void server.get('/Node/get', { key: KEYS.never, ver: '7', count: 3, wait: '10m' });
  await waitFor('the request to wait', async () => ((await server.get('/Queue', { key: KEYS.beta })).json as unknown[]).length === 1);

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (server) removeDir(server.dir);
});

test('the page comes with a strict CSP and loads nothing from outside the server', async () => {
  const requested: string[] = [];
  page.on('request', (request) => requested.push(request.url()));
  const response = await page.goto(`${server.url}/dashboard?refresh=2`);
  expect(response?.status()).toBe(200);
  const csp = response?.headers()['content-security-policy'] ?? '';
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("script-src 'self'");
  expect(csp).not.toContain('unsafe-inline');
  await page.waitForSelector('#key');
  expect(requested.every((url) => url.startsWith(server.url) || url.startsWith('data:'))).toBe(true);
  expect(await page.isVisible('#panels')).toBe(false);
});

test('a wrong key, and the key of a project without admin: true, show an error and no data', async () => {
  for (const key of ['wrong-key-0123456789abcdef', KEYS.alpha]) {
    await enterKey(key);
    await page.waitForSelector('#error:not([hidden])');
    expect(await page.textContent('#error')).toContain('The key was refused');
    expect(await page.isVisible('#panels')).toBe(false);
    const text = (await page.textContent('body')) ?? '';
    expect(text).not.toContain(session.hosts[0]!);
    expect(text).not.toContain(session.ssid);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  }
  await page.screenshot({ path: join(RESULTS, 'dashboard-wrong-key.png') });
  // The browser logs each refused call's 403 as a console error: those are the point here, nothing else.
  expect(problems.filter((p) => !p.includes('status of 403'))).toEqual([]);
  problems.splice(0);
});

test("with an admin key every panel shows the server's current state", async () => {
  await enterKey(KEYS.beta);
  await page.waitForSelector('#panels:not([hidden])');
  expect(await page.isVisible('#error')).toBe(false);

  // Nodes by pool and state: the same counts as /Admin/nodes.
  const nodes = (await server.get('/Admin/nodes', { key: KEYS.beta })).json as Array<{ pool: string; state: string }>;
  const headers = await page.$$eval('#nodes th', (cells) => cells.map((c) => c.textContent));
  const rows = await page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => Array.from(tr.children).map((td) => (td as Element).textContent)));
  expect(rows.map((r) => r[0])).toEqual(['c7', 'c9s']);
  for (const row of rows) {
    headers.slice(1, -1).forEach((state, i) => {
      expect([row[0], state, Number(row[i + 1])]).toEqual([row[0], state, nodes.filter((n) => n.pool === row[0] && n.state === state).length]);
    });
    expect(Number(row[row.length - 1])).toBe(nodes.filter((n) => n.pool === row[0]).length);
  }
  expect(headers).toEqual(expect.arrayContaining(['deployed', 'failed', 'ready']));

  // Active sessions by project, with alias, age and hosts.
  const sessions = await page.textContent('#sessions');
  for (const text of ['alpha', 'org/repo/17/1/build', session.ssid, ...session.hosts]) expect(sessions).toContain(text);
  expect(await page.$$eval('#sessions tbody tr', (trs) => trs.length)).toBe(2);

  // The waiting queue, every project's (the admin key's /Queue).
  const queue = await page.$$eval('#queue tbody tr', (trs) => trs.map((tr) => Array.from(tr.children).map((td) => (td as Element).textContent)));
  expect(queue).toEqual([['1', 'never', '3', 'new session', expect.stringMatching(/^\d+[smhd]/)]]);

  // Quarantined nodes with their reasons.
  const failed = await page.textContent('#failed');
  expect(failed).toContain(quarantined);
  expect(failed).toContain('reported broken');

  // The latest events, newest first.
  const events = (await server.get('/Admin/events', { key: KEYS.beta, limit: 1 })).json as Array<{ reason: string }>;
  expect(await page.textContent('#events tbody tr:first-child')).toContain(events[0]!.reason);

  expect(await page.textContent('#status')).toMatch(/^Last refreshed /);
  await page.screenshot({ path: join(RESULTS, 'dashboard-laptop.png'), fullPage: true });
});

test('the key is kept in sessionStorage only', async () => {
  expect(await page.evaluate(() => sessionStorage.getItem('cinode-admin-key'))).toBe(KEYS.beta);
  expect(await page.evaluate(() => localStorage.length)).toBe(0);
  expect(await page.context().cookies()).toEqual([]);
  expect(await page.inputValue('#key')).toBe('');
});

test('it refreshes by itself', async () => {
  await server.get('/Session/get', { key: KEYS.beta, alias: 'appeared-later' });
  await page.waitForFunction(() => document.querySelector('#sessions')?.textContent?.includes('appeared-later'), undefined, { timeout: 10_000 });
});

test('readable on a phone: no sideways scrolling of the page', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.waitForSelector('#panels:not([hidden])');
  expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
  await page.screenshot({ path: join(RESULTS, 'dashboard-phone.png'), fullPage: true });
});

test('"Forget key" clears the key and the data; no console error all along', async () => {
  await page.focus('#forget');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#panels', { state: 'hidden' });
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  expect(await page.textContent('#sessions')).toBe('');
  expect(problems).toEqual([]);
});
