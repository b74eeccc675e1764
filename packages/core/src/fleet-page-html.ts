// The deploy page's markup. The server renders every part of the page (so it reads the same
// without JavaScript, and untrusted text is escaped in exactly one place); the page's small
// script swaps those server-rendered fragments in as they change and draws the chart of live
// calls per version from the samples. No build step, no external assets: the CSS and the script
// are inline, allowed by their hashes in the Content-Security-Policy.
import { createHash } from "node:crypto";
import { formatAge, type DeployStatus, type FleetReport, type FleetWorker, type VersionSummary } from "./fleet.ts";
import type { AuditTrail } from "./fleet-page-audit.ts";

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Everything the page shows, as the server knows it now. */
export interface PageModel {
  report: FleetReport;
  /** Unix seconds of the last successful read of the fleet, null before the first. */
  polledAt: number | null;
  source: string;
  /** Why the last read of the fleet failed (the report is then the last good one). */
  sourceError: string | null;
  /** null: no audit log configured; "pending": not read yet. */
  audit: AuditTrail | null | "pending";
  /** The hint shown when no audit log is configured (the flag or option to set). */
  auditHint: string;
}

/** The parts of the page the script replaces, by element id (`title` is the document's title, as text). */
export interface PageFragments {
  title: string;
  updated: string;
  banner: string;
  state: string;
  reasons: string;
  fleet: string;
  audit: string;
}

/** Worker rows rendered at most; the rest are in state.json. */
export const MAX_WORKER_ROWS = 200;
/** The chart's size in SVG user units; the script draws into the same box. */
const CHART_W = 720;
const CHART_H = 240;

const STATUS_TEXT: Record<DeployStatus, string> = { done: "DONE", in_progress: "IN PROGRESS", stuck: "STUCK", dropped: "CALLS DROPPED" };
const label = (v: string | null): string => v ?? "(untagged)";

function utc(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
}

function timeTag(seconds: number): string {
  return `<time datetime="${new Date(seconds * 1000).toISOString()}">${utc(seconds)}</time>`;
}

const age = (s: number | null): string => (s === null ? "–" : formatAge(s));

export function renderFragments(m: PageModel): PageFragments {
  const r = m.report;
  const deploy = `deploy${r.target === null ? "" : ` → ${r.target}`}`;
  return {
    title: `${m.polledAt === null ? "reading the fleet…" : `${deploy}: ${STATUS_TEXT[r.status]}`} · openrtc`,
    updated:
      m.polledAt === null
        ? `Reading ${escapeHtml(m.source)}…`
        : `${escapeHtml(m.source)} · ${r.totals.workers} worker(s) · read ${timeTag(m.polledAt)} UTC`,
    banner: m.sourceError === null ? "" : `<p class="banner" role="alert"><strong>Could not read the fleet</strong>: ${escapeHtml(m.sourceError)}${m.polledAt === null ? "" : " (showing the last good read)"}</p>`,
    state: renderState(m, deploy),
    reasons: r.reasons.length === 0 ? "" : `<ul class="reasons">${r.reasons.map((x) => `<li>${escapeHtml(x)}</li>`).join("")}</ul>`,
    fleet: renderFleetTables(r),
    audit: renderAudit(m.audit, m.auditHint),
  };
}

function renderState(m: PageModel, deploy: string): string {
  const r = m.report;
  if (m.polledAt === null) return `<p class="headline status-pending">Reading the fleet…</p>`;
  const t = r.target ?? "the new version";
  const fact = (key: string, met: boolean, text: string) =>
    `<li class="fact ${met ? "met" : "unmet"}" data-fact="${key}" data-met="${met}"><span class="mark" aria-hidden="true">${met ? "✓" : "✗"}</span><span class="sr">${met ? "met: " : "not met: "}</span>${escapeHtml(text)}</li>`;
  return (
    `<p class="headline status-${r.status}" data-status="${r.status}"><span class="badge">${STATUS_TEXT[r.status]}</span> ${escapeHtml(deploy)}</p>` +
    `<ul class="facts">` +
    fact("all_on_target", r.facts.allOnTarget, `every worker reports ${t}`) +
    fact("old_drained_and_exited", r.facts.oldDrainedAndExited, "old-version workers drained to zero and exited") +
    fact("no_call_dropped", r.facts.noCallDropped, `no call dropped${r.totals.droppedCalls > 0 ? ` (${r.totals.droppedCalls} dropped)` : ""}`) +
    `</ul>`
  );
}

function drainCell(v: VersionSummary): string {
  if (v.drainProgress === null) return "–";
  const pct = Math.round(v.drainProgress * 100);
  const left = v.drainingCalls === 0 ? "drained, waiting for exit" : `${v.drainingCalls} call(s) left`;
  return `<progress max="100" value="${pct}" aria-label="drain of ${escapeHtml(label(v.version))}"></progress> ${pct}% · ${left}`;
}

function renderFleetTables(r: FleetReport): string {
  const th = (names: string[]) => `<thead><tr>${names.map((n) => `<th scope="col">${n}</th>`).join("")}</tr></thead>`;
  const versions = r.versions
    .map(
      (v) =>
        `<tr data-version="${escapeHtml(label(v.version))}"><th scope="row">${escapeHtml(label(v.version))}${v.version !== null && v.version === r.target ? ' <span class="tag">target</span>' : ""}</th>` +
        [v.workers, v.serving, v.draining, v.exited, v.unreachable, v.liveCalls].map((n) => `<td class="num">${n}</td>`).join("") +
        `<td class="num">${age(v.oldestCallSeconds)}</td><td class="num">${v.rejectedJobs}</td><td class="num${v.droppedCalls > 0 ? " bad" : ""}">${v.droppedCalls}</td><td>${drainCell(v)}</td></tr>`,
    )
    .join("");
  const versionTable =
    `<div class="scroll" tabindex="0" role="region" aria-labelledby="versions-caption"><table id="versions">` +
    `<caption id="versions-caption">Workers and live calls per version</caption>` +
    th(["Version", "Workers", "Serving", "Draining", "Exited", "Unreachable", "Live calls", "Oldest call", "Rejected", "Dropped", "Drain"]) +
    `<tbody>${versions === "" ? `<tr><td colspan="11">No workers seen yet.</td></tr>` : versions}</tbody></table></div>`;
  const warnings =
    r.warnings.length === 0 ? "" : `<ul class="warnings">${r.warnings.map((w) => `<li class="warn-${w.kind}"><strong>${w.kind}</strong>: ${escapeHtml(w.message)}</li>`).join("")}</ul>`;
  const shown = r.workers.slice(0, MAX_WORKER_ROWS);
  const workerRow = (w: FleetWorker) =>
    `<tr data-worker="${escapeHtml(w.workerId ?? w.key)}" data-phase="${w.phase}"><th scope="row">${escapeHtml(w.workerId ?? w.key)}</th><td>${escapeHtml(label(w.version))}</td><td>${w.phase}</td><td>${escapeHtml(w.state ?? "–")}</td>` +
    `<td class="num">${w.activeSessions}</td><td class="num">${age(w.oldestCallSeconds)}</td><td class="num">${w.rejectedJobs}</td><td class="num${w.droppedSessions > 0 ? " bad" : ""}">${w.droppedSessions}</td><td>${escapeHtml(w.url ?? w.key)}</td><td>${escapeHtml(w.note)}</td></tr>`;
  const workerTable =
    `<div class="scroll" tabindex="0" role="region" aria-labelledby="workers-caption"><table id="workers">` +
    `<caption id="workers-caption">Workers${r.workers.length > shown.length ? ` (the first ${shown.length} of ${r.workers.length}; all are in state.json)` : ""}</caption>` +
    th(["Worker", "Version", "Phase", "State", "Live calls", "Oldest call", "Rejected", "Dropped", "Address", "Note"]) +
    `<tbody>${shown.length === 0 ? `<tr><td colspan="10">No workers seen yet.</td></tr>` : shown.map(workerRow).join("")}</tbody></table></div>`;
  return versionTable + warnings + workerTable;
}

function renderAudit(audit: AuditTrail | null | "pending", hint: string): string {
  if (audit === null) return `<p class="verdict">No audit log given (${escapeHtml(hint)}).</p>`;
  if (audit === "pending") return `<p class="verdict">Reading the audit log…</p>`;
  let verdict: string;
  if (audit.error !== null) verdict = `<p class="verdict bad" data-verdict="error"><strong>Audit trail unavailable</strong>: ${escapeHtml(audit.error)}</p>`;
  else if (audit.verify?.ok === true)
    verdict = `<p class="verdict ok" data-verdict="intact"><strong>Chains intact</strong>: ${audit.verify.records} record(s), ${audit.verify.origins} origin(s) in ${escapeHtml(audit.source)} (read ${timeTag(audit.readAt)} UTC)</p>`;
  else if (audit.verify?.ok === false) {
    const v = audit.verify;
    verdict = `<p class="verdict bad" data-verdict="${escapeHtml(v.fault)}"><strong>Chain check failed</strong>: ${escapeHtml(v.fault)} at line ${v.line}${v.file === null ? "" : ` of ${escapeHtml(v.file)}`} (${v.seq === null ? "no seq" : `seq ${v.seq}`}): ${escapeHtml(v.message)}</p>`;
  } else verdict = "";
  const note = audit.note === null ? "" : `<p class="note">${escapeHtml(audit.note)}</p>`;
  if (audit.latest.length === 0) return verdict + note;
  const rows = audit.latest
    .map(
      (x) =>
        `<tr><td>${x.timestamp === null ? "–" : timeTag(x.timestamp)}</td><td>${escapeHtml(x.event)}</td><td>${escapeHtml(x.actor)}</td><td>${escapeHtml(x.version ?? "–")}</td><td>${escapeHtml(x.reason)}</td></tr>`,
    )
    .join("");
  return (
    verdict +
    note +
    `<div class="scroll" tabindex="0" role="region" aria-labelledby="audit-caption"><table id="audit-records"><caption id="audit-caption">Latest audit records, newest first (${audit.latest.length} of ${audit.records})</caption>` +
    `<thead><tr><th scope="col">Time (UTC)</th><th scope="col">Event</th><th scope="col">Actor</th><th scope="col">Version</th><th scope="col">Reason</th></tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

const CSS = `
:root{color-scheme:light dark;--fg:#1a1a1a;--bg:#fff;--muted:#4d4d4d;--line:#c8c8c8;--head:#f2f2f2;--focus:#0b57d0;
--ok-fg:#0a5c27;--ok-bg:#e3f3e8;--run-fg:#0b4a85;--run-bg:#e6eefa;--warn-fg:#6e4400;--warn-bg:#fff1d6;--bad-fg:#9d1019;--bad-bg:#fde7e9;
--c0:#0072b2;--c1:#c54a00;--c2:#007a5a;--c3:#b4457f;--c4:#8a6d00;--c5:#3d3d9e}
@media (prefers-color-scheme:dark){:root{--fg:#ececec;--bg:#141414;--muted:#b8b8b8;--line:#4a4a4a;--head:#222;--focus:#8ab4f8;
--ok-fg:#8fe0a6;--ok-bg:#12301c;--run-fg:#9cc3ff;--run-bg:#132640;--warn-fg:#ffd27a;--warn-bg:#3a2a00;--bad-fg:#ff9ea5;--bad-bg:#3d1216;
--c0:#56b4e9;--c1:#ff8c42;--c2:#3ccf9e;--c3:#f08cc4;--c4:#f0d14a;--c5:#a9a9ff}}
*{box-sizing:border-box}
body{margin:0;padding:1rem 1.25rem 2rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.35rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
header p{margin:.2rem 0;color:var(--muted)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
button{font:inherit;padding:.25rem .75rem;border:1px solid var(--line);border-radius:4px;background:var(--head);color:var(--fg);cursor:pointer}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.25rem 0 1rem;min-width:40rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid var(--line);padding:.3rem .55rem;text-align:left;vertical-align:top}
thead th{background:var(--head)}tbody th{font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:var(--bad-fg);font-weight:600}
.tag{font-size:.8em;border:1px solid var(--line);border-radius:3px;padding:0 .3em;font-weight:400}
.headline{font-size:1.15rem;margin:.25rem 0 .5rem}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:4px;font-weight:700;margin-right:.35rem}
.status-done .badge{color:var(--ok-fg);background:var(--ok-bg)}
.status-in_progress .badge,.status-pending .badge{color:var(--run-fg);background:var(--run-bg)}
.status-stuck .badge{color:var(--warn-fg);background:var(--warn-bg)}
.status-dropped .badge{color:var(--bad-fg);background:var(--bad-bg)}
.facts{list-style:none;padding:0;margin:0 0 .5rem}.facts li{margin:.15rem 0}
.mark{display:inline-block;width:1.4em;font-weight:700}.met .mark{color:var(--ok-fg)}.unmet .mark{color:var(--bad-fg)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.reasons{margin:.25rem 0;color:var(--muted)}
.warnings{padding-left:1.2rem}.warn-dropped,.warn-stuck{color:var(--bad-fg)}
.banner{padding:.5rem .75rem;border-left:4px solid var(--bad-fg);background:var(--bad-bg);color:var(--bad-fg)}
.verdict.ok strong{color:var(--ok-fg)}.verdict.bad strong{color:var(--bad-fg)}
.note{color:var(--muted)}
progress{vertical-align:middle;width:6rem}
#chart{width:100%;max-width:${CHART_W}px;height:auto;border:1px solid var(--line);background:var(--bg)}
#chart .grid{stroke:var(--line);stroke-width:1}#chart text{fill:var(--muted);font-size:12px}
.series{fill:none;stroke-width:2.5}.s0{stroke:var(--c0)}.s1{stroke:var(--c1);stroke-dasharray:8 4}.s2{stroke:var(--c2);stroke-dasharray:2 3}
.s3{stroke:var(--c3);stroke-dasharray:10 3 2 3}.s4{stroke:var(--c4)}.s5{stroke:var(--c5);stroke-dasharray:4 4}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4rem 1.25rem}.legend svg{vertical-align:middle;margin-right:.35rem}
`;

// Plain ES2017 for any current browser. It only swaps in fragments the server escaped, and builds
// the chart with DOM calls (textContent, setAttribute), never from strings.
const SCRIPT = String.raw`(function () {
  "use strict";
  var d = document, body = d.body, data = body.dataset;
  var interval = Number(data.interval) || 2000, capacity = Number(data.capacity) || 720;
  var samples = [], colors = Object.create(null), nextColor = 0, shown = Object.create(null), paused = false, latest = null, source = null, timer = null;
  var conn = d.getElementById("conn"), pause = d.getElementById("pause");
  var NS = "http://www.w3.org/2000/svg", W = ${CHART_W}, H = ${CHART_H};
  function setConn(text) { conn.textContent = text; }
  function el(name, attrs, parent) {
    var e = d.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function colorOf(v) { if (!(v in colors)) colors[v] = nextColor++ % 6; return colors[v]; }
  function apply(html) {
    for (var id in html) {
      if (shown[id] === html[id]) continue;
      shown[id] = html[id];
      if (id === "title") d.title = html[id];
      else { var node = d.getElementById(id); if (node) node.innerHTML = html[id]; }
    }
  }
  function age(s) { s = Math.max(0, Math.round(s)); return s < 120 ? s + " s" : Math.round(s / 60) + " min"; }
  function draw() {
    var svg = d.getElementById("chart"), desc = d.getElementById("chart-desc"), legend = d.getElementById("legend");
    while (svg.lastChild && svg.lastChild !== desc) svg.removeChild(svg.lastChild);
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    var L = 44, R = 12, T = 12, B = 28, pw = W - L - R, ph = H - T - B;
    if (samples.length === 0) { desc.textContent = "No samples yet."; return; }
    var t0 = samples[0].timestamp, t1 = samples[samples.length - 1].timestamp, span = Math.max(t1 - t0, 1e-3);
    var versions = [], max = 1, i, j, v;
    for (i = 0; i < samples.length; i++) for (v in samples[i].live_calls) {
      if (versions.indexOf(v) < 0) versions.push(v);
      max = Math.max(max, samples[i].live_calls[v]);
    }
    versions.sort(function (a, b) { return colorOf(a) - colorOf(b); });
    var top = max <= 4 ? max : Math.ceil(max / 4) * 4;
    var x = function (t) { return L + ((t - t0) / span) * pw; }, y = function (n) { return T + ph - (n / top) * ph; };
    var ticks = top <= 4 ? top : 4;
    for (j = 0; j <= ticks; j++) {
      var n = Math.round((top * j) / ticks), yy = y(n);
      el("line", { "class": "grid", x1: L, x2: W - R, y1: yy, y2: yy }, svg);
      el("text", { x: L - 6, y: yy + 4, "text-anchor": "end" }, svg).textContent = String(n);
    }
    el("text", { x: L, y: H - 8 }, svg).textContent = "-" + age(t1 - t0);
    el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, svg).textContent = "now";
    var now = samples[samples.length - 1].live_calls, parts = [];
    for (i = 0; i < versions.length; i++) {
      v = versions[i];
      var path = "", cls = "series s" + colorOf(v);
      for (j = 0; j < samples.length; j++) {
        var calls = samples[j].live_calls[v];
        if (calls === undefined) continue;
        // Steps, not slopes: a call count changes at a poll, it does not glide between two.
        var px = x(samples[j].timestamp).toFixed(1), py = y(calls).toFixed(1);
        path += path === "" ? "M" + px + " " + py : "H" + px + "V" + py;
      }
      var current = now[v] === undefined ? 0 : now[v];
      var p = el("path", { "class": cls, d: path, "data-version": v }, svg);
      el("title", {}, p).textContent = v + ": " + current + " live call(s) now";
      var li = d.createElement("li"), key = el("svg", { width: 28, height: 10, "aria-hidden": "true" });
      el("line", { "class": cls, x1: 0, x2: 28, y1: 5, y2: 5 }, key);
      li.appendChild(key);
      li.appendChild(d.createTextNode(v + ": " + current + " live call(s)"));
      li.setAttribute("data-version", v);
      legend.appendChild(li);
      parts.push(v + " " + current);
    }
    desc.textContent = "Live calls per version over the last " + age(t1 - t0) + ". Now: " + (parts.join(", ") || "no versions") + ".";
  }
  function receive(msg) {
    if (msg.series) samples = msg.series.slice(-capacity);
    else if (msg.sample) { samples.push(msg.sample); if (samples.length > capacity) samples.splice(0, samples.length - capacity); }
    latest = msg.html;
    if (!paused) { apply(latest); draw(); }
  }
  function poll() {
    fetch(data.view, { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (msg) { receive(msg); setConn(paused ? "paused" : "live (polling every " + interval + " ms)"); }, function (e) {
      setConn("cannot reach the page's server (" + e.message + "); retrying");
    }).then(function () { timer = setTimeout(poll, interval); });
  }
  function startPolling() { if (source) { source.close(); source = null; } if (timer === null) poll(); }
  if (typeof EventSource === "function") {
    source = new EventSource(data.events);
    source.addEventListener("view", function (e) { receive(JSON.parse(e.data)); if (!paused) setConn("live"); });
    source.onerror = function () {
      // EventSource retries by itself; once it gives up (the server refused), poll instead.
      if (source && source.readyState === EventSource.CLOSED) startPolling();
      else setConn("reconnecting…");
    };
  } else startPolling();
  pause.hidden = false;
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume live updates" : "Pause live updates";
    setConn(paused ? "paused" : "live");
    if (!paused && latest) { apply(latest); draw(); }
  });
  setConn("connecting…");
})();`;

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/** Allows exactly the page's own inline style and script; fetches only go back to the page's server. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(CSS)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

export interface PageLinks {
  events: string;
  view: string;
  intervalMs: number;
  capacity: number;
}

/** The whole page, current state server-rendered. */
export function renderPage(m: PageModel, links: PageLinks): string {
  const f = renderFragments(m);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${escapeHtml(f.title)}</title>
<style>${CSS}</style>
</head>
<body data-events="${escapeHtml(links.events)}" data-view="${escapeHtml(links.view)}" data-interval="${links.intervalMs}" data-capacity="${links.capacity}">
<header>
<h1>Is the deploy done?</h1>
<p id="updated">${f.updated}</p>
<p><span id="conn">static page: reload for the latest state</span> <button id="pause" type="button" aria-pressed="false" hidden>Pause live updates</button></p>
</header>
<div id="banner">${f.banner}</div>
<main>
<section aria-labelledby="state-h"><h2 id="state-h">Deploy state</h2>
<div id="state" role="status" aria-live="polite" aria-atomic="true">${f.state}</div>
<div id="reasons">${f.reasons}</div>
</section>
<section aria-labelledby="fleet-h"><h2 id="fleet-h">Fleet</h2><div id="fleet">${f.fleet}</div></section>
<section aria-labelledby="chart-h"><h2 id="chart-h">Live calls per version</h2>
<svg id="chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 ${CHART_W} ${CHART_H}"><title id="chart-title">Live calls per version over time</title><desc id="chart-desc">Drawn by the page's script; the fleet table has the live calls per version.</desc></svg>
<ul id="legend" class="legend"></ul>
</section>
<section aria-labelledby="audit-h"><h2 id="audit-h">Audit trail</h2><div id="audit">${f.audit}</div></section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
