/**
 * `GET /dashboard`: the operator's read-only page (docs/api.md, "Dashboard"), its style and its
 * script, served from memory under a strict Content-Security-Policy: the page may load only these
 * two files and call only this server.
 */
import type { FastifyInstance } from 'fastify';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard-page.js';

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const FILES: ReadonlyArray<[path: string, type: string, body: string]> = [
  ['/dashboard', 'text/html; charset=utf-8', DASHBOARD_HTML],
  ['/dashboard/style.css', 'text/css; charset=utf-8', DASHBOARD_CSS],
  ['/dashboard/app.js', 'text/javascript; charset=utf-8', DASHBOARD_JS],
];

export function registerDashboard(app: FastifyInstance): void {
  for (const [path, type, body] of FILES) {
    app.get(path, async (_request, reply) =>
      reply
        .type(type)
        .header('content-security-policy', DASHBOARD_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-cache')
        .send(body),
    );
  }
}
