"""The audit page for admins: filter the audit log, read each row's details, export, verify.

A single HTML page with no dependencies; it takes the admin's token from its own URL
(``/admin/audit?token=…``) or, opened from the chat page, from that page's local storage, and
reads ``/admin/audit.json`` and ``/admin/audit/verify``.
"""

AUDIT_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Salon · audit log</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
  header { background: #283149; color: #fff; padding: .6rem 1rem; display: flex; gap: 1rem;
           align-items: center; }
  header h1 { font-size: 1.1rem; margin: 0; font-weight: 600; }
  header a { color: #cfe3ff; }
  form { display: flex; flex-wrap: wrap; gap: .5rem; padding: .8rem 1rem; background: #fff;
         border-bottom: 1px solid #ddd; align-items: end; }
  label { display: flex; flex-direction: column; font-size: .75rem; color: #555; }
  input { font: inherit; padding: .25rem .4rem; width: 11rem; }
  button { font: inherit; padding: .3rem .8rem; cursor: pointer; }
  #status { padding: .5rem 1rem; color: #555; }
  #verdict { margin: 0 1rem; padding: .5rem .8rem; border-radius: 4px; display: none; }
  #verdict.ok { background: #e5f6e8; display: block; }
  #verdict.bad { background: #fde8e8; display: block; }
  table { border-collapse: collapse; width: calc(100% - 2rem); margin: .5rem 1rem;
          background: #fff; }
  th, td { border-bottom: 1px solid #eee; padding: .3rem .5rem; text-align: left;
           vertical-align: top; }
  th { background: #f0f0f0; position: sticky; top: 0; }
  td.pos, td.at { white-space: nowrap; font-variant-numeric: tabular-nums; }
  tr.row { cursor: pointer; }
  tr.row:hover { background: #f5f9ff; }
  pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: .8rem; }
  code { font-size: .75rem; color: #777; }
  #more { margin: .5rem 1rem 2rem; }
</style>
</head>
<body>
<header><h1>Salon · audit log</h1><a href="/" id="home">chat</a></header>
<form id="filters">
  <label>agent<input name="agent" placeholder="ada"></label>
  <label>room<input name="room" placeholder="lobby"></label>
  <label>user<input name="user" placeholder="alice"></label>
  <label>action<input name="action" placeholder="model_called"></label>
  <label>since<input name="since" placeholder="2025-01-31"></label>
  <label>until<input name="until" placeholder="2025-02-01T12:00Z"></label>
  <button type="submit">Filter</button>
  <button type="button" id="verify">Verify chain</button>
  <a id="jsonl" href="#">export JSONL</a> <a id="csv" href="#">export CSV</a>
</form>
<div id="verdict"></div>
<div id="status">loading…</div>
<table>
  <thead><tr><th>position</th><th>time</th><th>actor</th><th>action</th><th>target</th>
  <th>agent</th><th>room</th><th>user</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
<button id="more" hidden>Load more</button>
<script>
"use strict";
// The token from the URL, else the one the chat page keeps (same origin).
let token = new URLSearchParams(location.search).get("token") || "";
try { token = token || localStorage.getItem("salon.token") || ""; } catch (_) { /* none */ }
if (location.search) history.replaceState(null, "", location.pathname);
let after = 0;
function filters() {
  const params = new URLSearchParams();
  for (const input of document.querySelectorAll("#filters input")) {
    if (input.value.trim()) params.set(input.name, input.value.trim());
  }
  return params;
}
function url(path, extra) {
  const params = filters();
  params.set("token", token);
  for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
  return path + "?" + params.toString();
}
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
}
function show(entry) {
  const tbody = document.getElementById("rows");
  const tr = document.createElement("tr");
  tr.className = "row";
  cell(tr, entry.position, "pos");
  cell(tr, entry.at.replace("T", " ").slice(0, 23), "at");
  for (const key of ["actor", "action", "target", "agent", "room", "user"]) cell(tr, entry[key]);
  const details = document.createElement("tr");
  details.hidden = true;
  const td = document.createElement("td");
  td.colSpan = 8;
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(entry.details, null, 2);
  const hash = document.createElement("code");
  hash.textContent = "hash " + entry.hash + " · previous " + entry.prev_hash;
  td.append(pre, hash);
  details.appendChild(td);
  tr.addEventListener("click", () => { details.hidden = !details.hidden; });
  tbody.append(tr, details);
}
async function load(reset) {
  const status = document.getElementById("status");
  if (reset) { after = 0; document.getElementById("rows").textContent = ""; }
  document.getElementById("jsonl").href = url("/admin/audit.jsonl");
  document.getElementById("csv").href = url("/admin/audit.csv");
  const response = await fetch(url("/admin/audit.json", {after: after, limit: 200}));
  const data = await response.json();
  if (!response.ok) { status.textContent = data.message || response.statusText; return; }
  data.entries.forEach(show);
  after = data.next_after;
  const shown = document.querySelectorAll("tr.row").length;
  status.textContent = shown + " rows" + (data.entries.length === 200 ? " (more below)" : "");
  document.getElementById("more").hidden = data.entries.length < 200;
}
async function verify() {
  const verdict = document.getElementById("verdict");
  verdict.className = "";
  verdict.textContent = "verifying…";
  verdict.style.display = "block";
  const response = await fetch("/admin/audit/verify?token=" + encodeURIComponent(token));
  const data = await response.json();
  verdict.style.display = "";
  if (!response.ok) { verdict.className = "bad"; verdict.textContent = data.message; return; }
  verdict.className = data.ok ? "ok" : "bad";
  verdict.textContent = data.ok
    ? "The chain is intact: " + data.rows + " rows up to position " + data.up_to + "."
    : data.findings.map(f => f.kind.toUpperCase() + " at position " + f.position + ": "
                             + f.message).join("\\n");
  verdict.style.whiteSpace = "pre-wrap";
}
document.getElementById("filters").addEventListener("submit", e => {
  e.preventDefault(); load(true);
});
document.getElementById("more").addEventListener("click", () => load(false));
document.getElementById("verify").addEventListener("click", verify);
load(true);
</script>
</body>
</html>
"""
