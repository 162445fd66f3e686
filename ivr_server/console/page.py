"""The console's page: one HTML file, its script and style, served from this fixed table (no
file system path is ever built from a request). No external resources: consoles run on
machines without internet access. URLs are built from ``location.origin``: a page opened as
http://user:token@host/ would otherwise hand fetch() URLs with credentials, which it refuses."""

from __future__ import annotations

HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>IVR console</title>
<link rel="stylesheet" href="/console/console.css"></head>
<body>
<header><h1>IVR console</h1><span id="who">…</span><span id="updated"></span></header>
<main>
<section><h2>Calls in progress <span id="live-count"></span></h2>
<table id="calls"><thead><tr><th>Caller</th><th>Flow</th><th>Version</th><th>State</th>
<th>In state</th><th>Duration</th><th class="sup">Last utterance</th></tr></thead><tbody></tbody></table>
</section>
<section id="transcript-box"><h2>Transcript <span id="transcript-call"></span></h2>
<p id="transcript-note">Select a call to follow its transcript.</p>
<ol id="transcript"></ol></section>
<section><h2>Recent calls</h2>
<table id="recent"><thead><tr><th>Caller</th><th>Flow</th><th>Version</th><th>Outcome</th>
<th>End</th><th>Duration</th></tr></thead><tbody></tbody></table></section>
<section><h2>Flow versions</h2>
<table id="flows"><thead><tr><th>Flow</th><th>Version</th><th>Status</th><th>Canary %</th><th>Calls</th>
<th>Contained %</th><th>Transferred %</th><th></th></tr></thead><tbody></tbody></table></section>
<section><h2>Recent errors</h2>
<table id="errors"><thead><tr><th>Time</th><th>Event</th><th>Call</th><th>Detail</th></tr></thead>
<tbody></tbody></table></section>
</main>
<script src="/console/console.js"></script>
</body></html>
"""

JS = r"""'use strict';
const base = location.origin + '/console/api/';
let me = null, selected = null, stream = null;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? '—' : String(text);
  if (cls) td.className = cls;
  return td;
}
function fill(id, rows, make) {
  const body = document.querySelector('#' + id + ' tbody');
  body.replaceChildren();
  for (const r of rows) make(body.insertRow(), r);
  if (!rows.length) { const tr = body.insertRow(); const td = cell(tr, 'none'); td.colSpan = 8; }
}
function secs(s) {
  return s < 60 ? s.toFixed(0) + ' s' : Math.floor(s / 60) + ' min ' + (s % 60).toFixed(0) + ' s';
}
function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }

async function call(path, options) {
  const init = Object.assign({credentials: 'same-origin', cache: 'no-store'}, options);
  const answer = await fetch(base + path, init);
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.status);
  return body;
}

function follow(callId) {
  if (stream) { stream.close(); stream = null; }
  selected = callId;
  document.getElementById('transcript-call').textContent = callId ? callId.slice(0, 8) : '';
  const list = document.getElementById('transcript');
  list.replaceChildren();
  const note = document.getElementById('transcript-note');
  if (!callId) { note.textContent = 'Select a call to follow its transcript.'; return; }
  if (me.role !== 'supervisor') { note.textContent = 'Transcripts need the supervisor role.'; return; }
  note.textContent = 'Following the call…';
  stream = new EventSource(base + 'calls/' + callId + '/events');
  stream.addEventListener('turn', (e) => {
    const t = JSON.parse(e.data);
    const li = document.createElement('li');
    li.className = 'turn ' + t.role;
    li.dataset.seq = t.seq;
    li.textContent = (t.role === 'caller' ? 'Caller: ' : 'IVR: ') + t.text;
    list.append(li);
  });
  stream.addEventListener('ended', (e) => {
    note.textContent = 'The call has ended (' + JSON.parse(e.data).ended + ').';
    stream.close(); stream = null;
  });
  stream.onerror = () => { note.textContent = 'Stream interrupted; retrying…'; };
}

async function rollback(flow) {
  if (!confirm('Withdraw the canary of ' + flow + '? New calls get the active version.')) return;
  try {
    const done = await call('flows/' + encodeURIComponent(flow) + '/rollback',
                            {method: 'POST', headers: {'X-Console-Request': '1'}});
    alert(flow + ': new calls now get ' + (done.now_serving || 'the flow file'));
  } catch (err) { alert('Rollback failed: ' + err.message); }
  refresh();
}

async function refresh() {
  let o;
  try { o = await call('calls'); } catch (err) {
    document.getElementById('updated').textContent = 'not updated: ' + err.message; return;
  }
  document.getElementById('updated').textContent = 'updated ' + clock(o.now);
  document.getElementById('live-count').textContent = '(' + o.calls.length + ')';
  const sup = me.role === 'supervisor';
  fill('calls', o.calls, (tr, c) => {
    tr.dataset.call = c.call_id;
    if (c.call_id === selected) tr.className = 'selected';
    cell(tr, c.caller, 'caller'); cell(tr, c.flow, 'flow');
    cell(tr, (c.version || 'file') + (c.canary ? ' (canary)' : ''));
    cell(tr, c.state, 'state'); cell(tr, secs(c.in_state_s)); cell(tr, secs(c.duration_s));
    if (sup) cell(tr, c.last_utterance || '', 'utterance'); else cell(tr, 'hidden', 'hidden');
    tr.onclick = () => follow(c.call_id);
  });
  if (!selected && o.calls.length) follow(o.calls[0].call_id);
  fill('recent', o.recent, (tr, c) => {
    cell(tr, c.caller); cell(tr, c.flow); cell(tr, c.version || 'file');
    cell(tr, c.outcome || '—'); cell(tr, c.end_reason); cell(tr, secs(c.duration_s));
  });
  fill('flows', o.flows, (tr, f) => {
    cell(tr, f.flow); cell(tr, f.version); cell(tr, f.status); cell(tr, f.canary_percent);
    cell(tr, f.calls); cell(tr, f.containment_pct); cell(tr, f.transfer_pct);
    const td = tr.insertCell();
    if (sup && f.status === 'candidate') {
      const b = document.createElement('button');
      b.textContent = 'Roll back canary'; b.onclick = () => rollback(f.flow); td.append(b);
    }
  });
  fill('errors', o.errors, (tr, e) => {
    cell(tr, clock(e.at)); cell(tr, e.event); cell(tr, e.call_id ? e.call_id.slice(0, 8) : '—');
    cell(tr, e.detail);
  });
}

(async () => {
  try { me = await call('me'); } catch (err) {
    document.getElementById('who').textContent = 'not logged in: ' + err.message; return;
  }
  document.getElementById('who').textContent = me.user + ' (' + me.role + ')';
  document.body.classList.add(me.role);
  await refresh();
  document.body.dataset.loadedMs = Math.round(performance.now());  // read by the end-to-end test
  setInterval(refresh, 1000);
})();
"""

CSS = """body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1em;
         background: #1f3a5f; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; padding: 1em; }
section { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: .5em 1em; }
h2 { font-size: 1em; margin: .3em 0 .6em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #eee; vertical-align: top; }
tr.selected { background: #e8f0fe; }
#calls tbody tr { cursor: pointer; }
td.hidden { color: #999; font-style: italic; }
ol#transcript { list-style: none; padding: 0; max-height: 22em; overflow-y: auto; }
li.turn { margin: .3em 0; padding: .3em .6em; border-radius: 6px; }
li.caller { background: #eef7ee; }
li.system { background: #eef1f7; }
"""

ASSETS = {
    "/console/": ("text/html; charset=utf-8", HTML.encode()),
    "/console/console.js": ("text/javascript; charset=utf-8", JS.encode()),
    "/console/console.css": ("text/css; charset=utf-8", CSS.encode()),
}
