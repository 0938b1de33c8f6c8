/**
 * The operator's dashboard (docs/api.md, "Dashboard") as three static texts: the page, its style
 * and its script. No build step and nothing from outside the server, so the page runs under a
 * Content-Security-Policy that allows only its own two files. The script writes every value with
 * textContent, never as HTML.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cinode dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/style.css">
<script src="/dashboard/app.js" defer></script>
</head>
<body>
<header>
  <h1>cinode</h1>
  <p id="status" role="status" aria-live="polite">Not connected</p>
</header>
<main>
  <form id="key-form">
    <label for="key">Admin key</label>
    <input id="key" name="key" type="password" autocomplete="off" required placeholder="the key of a project with admin: true">
    <button type="submit">Show</button>
    <button type="button" id="forget" hidden>Forget key</button>
    <p class="hint">Kept in this tab only (sessionStorage) and sent to this server's admin API.</p>
  </form>
  <p id="error" role="alert" hidden></p>
  <div id="panels" hidden>
    <section aria-labelledby="h-nodes"><h2 id="h-nodes">Nodes by pool and state</h2><div class="scroll" id="nodes"></div></section>
    <section aria-labelledby="h-queue"><h2 id="h-queue">Waiting queue</h2><div id="queue"></div></section>
    <section class="wide" aria-labelledby="h-sessions"><h2 id="h-sessions">Active sessions</h2><div class="scroll" id="sessions"></div></section>
    <section class="wide" aria-labelledby="h-failed"><h2 id="h-failed">Quarantined nodes</h2><div class="scroll" id="failed"></div></section>
    <section class="wide" aria-labelledby="h-events"><h2 id="h-events">Latest events</h2><div class="scroll" id="events"></div></section>
  </div>
</main>
</body>
</html>
`;

export const DASHBOARD_CSS = `:root { color-scheme: light dark; --line: #8884; --muted: #777; --bad: #c0392b; --accent: #2c6fbb; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 1rem; padding: .5rem 1rem; border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 1.3rem; }
h2 { font-size: 1.05rem; margin: 0 0 .4rem; }
main { padding: 1rem; display: grid; gap: 1rem; max-width: 90rem; }
#panels { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 22rem), 1fr)); }
section { border: 1px solid var(--line); border-radius: 6px; padding: .75rem; min-width: 0; }
form { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
input { flex: 1 1 16rem; padding: .4rem; font: inherit; }
button { padding: .4rem .8rem; font: inherit; cursor: pointer; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.hint, .empty, #status { color: var(--muted); margin: 0; font-size: .9rem; }
.hint { flex-basis: 100%; }
#error { color: var(--bad); font-weight: 600; margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td { white-space: nowrap; }
td.reason { white-space: normal; min-width: 12rem; }
section.wide { grid-column: 1 / -1; }
`;

export const DASHBOARD_JS = `'use strict';
(function () {
  var KEY_STORAGE = 'cinode-admin-key';
  // ?refresh=N: every N seconds (at least 2), else every 10.
  var REFRESH_MS = Math.max(2, Number(new URLSearchParams(location.search).get('refresh')) || 10) * 1000;
  var EVENTS_SHOWN = 25;
  var timer = null;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  /** A table of rows (arrays of cell texts); columns whose header ends in '#' are numbers. */
  function table(headers, rows, empty) {
    if (rows.length === 0) return el('p', empty, 'empty');
    var t = el('table');
    var head = el('tr');
    headers.forEach(function (h) { head.appendChild(el('th', h.replace('#', ''), h.slice(-1) === '#' ? 'num' : '')); });
    t.appendChild(el('thead')).appendChild(head);
    var body = t.appendChild(el('tbody'));
    rows.forEach(function (row) {
      var tr = body.appendChild(el('tr'));
      row.forEach(function (cell, i) {
        var h = headers[i];
        tr.appendChild(el('td', cell === null || cell === '' ? '-' : cell, h.slice(-1) === '#' ? 'num' : h === 'reason' ? 'reason' : ''));
      });
    });
    return t;
  }

  function show(id, content) { var box = $(id); box.replaceChildren(content); }

  function age(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
    return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function call(path, key) {
    return fetch(path, { headers: { authorization: 'Bearer ' + key }, cache: 'no-store' }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) {
          var msg = body && body.msg ? body.msg : 'HTTP ' + response.status;
          var error = new Error(msg);
          error.status = response.status;
          throw error;
        }
        return body;
      });
    });
  }

  function renderNodes(nodes) {
    var states = [];
    var pools = {};
    nodes.forEach(function (n) {
      if (states.indexOf(n.state) < 0) states.push(n.state);
      pools[n.pool] = pools[n.pool] || {};
      pools[n.pool][n.state] = (pools[n.pool][n.state] || 0) + 1;
    });
    states.sort();
    var rows = Object.keys(pools).sort().map(function (pool) {
      var total = 0;
      var cells = states.map(function (s) { total += pools[pool][s] || 0; return pools[pool][s] || 0; });
      return [pool].concat(cells, [total]);
    });
    show('nodes', table(['pool'].concat(states.map(function (s) { return s + '#'; }), ['total#']), rows, 'No nodes in service.'));
    var failed = nodes.filter(function (n) { return n.state === 'failed'; });
    show('failed', table(['hostname', 'pool', 'since', 'reason'], failed.map(function (n) {
      return [n.hostname, n.pool, n.changed_at.replace('T', ' ').slice(0, 19), n.reason];
    }), 'No node is quarantined.'));
  }

  function renderSessions(sessions) {
    var byProject = sessions.slice().sort(function (a, b) { return a.project < b.project ? -1 : a.project > b.project ? 1 : 0; });
    show('sessions', table(['project', 'alias', 'ssid', 'age', 'hosts'], byProject.map(function (s) {
      return [s.project, s.alias, s.ssid, age(s.created_at), s.hosts.join(', ')];
    }), 'No active session.'));
  }

  function renderQueue(waiting) {
    show('queue', table(['#', 'project', 'count#', 'session', 'waiting'], waiting.map(function (w) {
      return [w.position, w.project, w.count, w.ssid || 'new session', age(w.since)];
    }), 'No request is waiting for capacity.'));
  }

  function renderEvents(events) {
    show('events', table(['at', 'subject', 'host / pool', 'project', 'alias', 'change', 'reason'], events.slice().reverse().map(function (e) {
      var change = (e.from || '') + (e.to ? ' \\u2192 ' + e.to : '');
      return [e.at.replace('T', ' ').slice(0, 19), e.subject, e.hostname || e.pool, e.project, e.alias, change, e.reason];
    }), 'No events yet.'));
  }

  function clearData() {
    $('panels').hidden = true;
    ['nodes', 'queue', 'sessions', 'failed', 'events'].forEach(function (id) { $(id).replaceChildren(); });
  }

  function fail(message) {
    clearData();
    $('error').textContent = message;
    $('error').hidden = false;
    $('status').textContent = 'Not connected';
  }

  function refresh() {
    var key = sessionStorage.getItem(KEY_STORAGE);
    if (!key) return;
    Promise.all([
      call('/Admin/nodes', key),
      call('/Admin/sessions', key),
      call('/Admin/events?limit=' + EVENTS_SHOWN, key),
      call('/Queue', key),
    ]).then(function (results) {
      renderNodes(results[0]);
      renderSessions(results[1]);
      renderEvents(results[2]);
      renderQueue(results[3]);
      $('error').hidden = true;
      $('panels').hidden = false;
      $('forget').hidden = false;
      $('status').textContent = 'Last refreshed ' + new Date().toLocaleTimeString() + ' (every ' + REFRESH_MS / 1000 + 's)';
    }, function (error) {
      if (error.status === 403) {
        sessionStorage.removeItem(KEY_STORAGE);
        stop();
        fail('The key was refused: ' + error.message + '. Enter the key of a project with admin: true.');
      } else {
        fail('Could not refresh: ' + error.message + '. Trying again in ' + REFRESH_MS / 1000 + 's.');
      }
    });
  }

  function stop() { if (timer !== null) clearInterval(timer); timer = null; }

  function start() {
    stop();
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('key-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var key = $('key').value.trim();
      $('key').value = '';
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      start();
    });
    $('forget').addEventListener('click', function () {
      sessionStorage.removeItem(KEY_STORAGE);
      stop();
      clearData();
      $('forget').hidden = true;
      $('status').textContent = 'Not connected';
      $('key').focus();
    });
    if (sessionStorage.getItem(KEY_STORAGE)) start();
  });
})();
`;
