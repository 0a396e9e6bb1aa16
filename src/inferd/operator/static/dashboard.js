// inferd dashboard: polls api/overview (relative: a session's pages are under
// /dashboard/s/<scope>/) and draws everything itself (inline SVG,
// no libraries, no network beyond this listener). Chart elements carry data attributes
// (data-api, data-chart, data-series, data-times, data-points, data-counts) so tests and
// scripts can read exactly what is plotted.
"use strict";

const REFRESH_MS = 2500;
const ANSWER_MS = 10000; // an answer slower than this: the page says the data has stopped, not "updated"
const SVG_NS = "http://www.w3.org/2000/svg";
const MIN_SPAN = 60; // seconds: a young history is not stretched over a wider axis than this
const COLORS = {
  "2XX": "#1f9d55",
  "4XX": "#c98a0b",
  "5XX": "#d64545",
  p50_ms: "#3b7dd8",
  p99_ms: "#8e5bd8",
  queue: "#3b7dd8",
  requested: "#9aa1b0",
  available: "#3b7dd8",
  up_to_date: "#1f9d55",
  failed: "#d64545",
};
const CHARTS = [
  { id: "requests", title: "Requests/s", series: ["2XX", "4XX", "5XX"], format: fmtRate, unit: "/s", counts: true },
  {
    id: "latency",
    title: "Latency",
    series: ["p50_ms", "p99_ms"],
    labels: { p50_ms: "p50", p99_ms: "p99" },
    format: fmtMs,
    unit: " ms",
  },
  { id: "queue", title: "Queue length", series: ["queue"], labels: { queue: "waiting" }, integer: true, step: true },
  {
    id: "replicas",
    title: "Replicas",
    series: ["requested", "available", "up_to_date", "failed"],
    labels: { up_to_date: "up-to-date" },
    integer: true,
    step: true,
  },
];

const sections = new Map(); // api name -> its section's elements
let latest = null;
let busy = false;

// ---------- small DOM helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
}

function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

// ---------- formatting

function fmtNumber(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(digits === undefined ? 2 : digits);
}

function fmtRate(value) {
  return value === null || value === undefined ? "-" : `${fmtNumber(value)}/s`;
}

function fmtMs(value) {
  if (value === null || value === undefined) return "-";
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${fmtNumber(value, value < 1 ? 3 : 2)} ms`;
}

function fmtTick(value, unit) {
  // Axis labels: three significant digits at most, no trailing zeros ("0", "2.5/s", "0.25 ms").
  const text = value === 0 ? "0" : String(Number(value.toPrecision(3)));
  return value === 0 ? text : `${text}${unit}`;
}

function lastValue(series) {
  for (let i = series.length - 1; i >= 0; i--) if (series[i] !== null && series[i] !== undefined) return series[i];
  return null;
}

function fmtInt(value) {
  return value === null || value === undefined ? "-" : String(Math.round(value));
}

function fmtAge(seconds) {
  if (!(seconds >= 0)) return "-";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

function fmtClock(epoch, zone) {
  // The browser's time zone; the page's header names it ("updated 14:03:47 UTC").
  return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false, timeZoneName: zone ? "short" : undefined });
}

function fmtRelative(seconds) {
  if (seconds === 0) return "now";
  return seconds % 60 === 0 ? `-${seconds / 60}m` : `-${seconds}s`;
}

// ---------- polling

async function refresh() {
  if (busy) return;
  busy = true;
  const waited = new AbortController();
  const timer = setTimeout(() => waited.abort(), ANSWER_MS);
  try {
    const response = await fetch("api/overview", {
      cache: "no-store",
      credentials: "same-origin",
      signal: waited.signal,
    });
    if (response.status === 401) {
      setState("expired", "signed out: run `inferd dashboard` for a new link");
    } else if (!response.ok) {
      setState("offline", `the operator answered ${response.status}`);
    } else {
      latest = await response.json();
      render(latest);
      setState("ok", `updated ${fmtClock(latest.now, true)}`);
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    }
  } catch (error) {
    if (waited.signal.aborted) setState("offline", `the operator has not answered for ${ANSWER_MS / 1000} s`);
    // A restarted operator listens on another port and knows no session: a new link is needed.
    else setState("offline", "the operator is not reachable: once it runs (`inferd up`), `inferd dashboard` prints a new link");
  } finally {
    clearTimeout(timer);
    busy = false;
  }
}

function setState(state, text) {
  const node = document.getElementById("state");
  // A screen reader is told when the page loses or finds the operator again, not every refresh.
  if (node.dataset.state !== state && (state !== "ok" || node.dataset.state !== "loading")) {
    setText(document.getElementById("announce"), text);
  }
  node.dataset.state = state;
  setText(node, text);
}

// ---------- rendering

function render(data) {
  const gateway = document.getElementById("gateway");
  setText(gateway, data.operator.gateway);
  gateway.href = data.operator.gateway + "/docs";
  setText(document.getElementById("version"), `inferd ${data.operator.version}`);
  setText(
    document.getElementById("sampling"),
    `sampled every ${data.sample_seconds}s over ${Math.round(data.window_seconds / 60)} min`,
  );
  renderOverview(data);
  renderSplitters(data.splitters || []);
  const details = document.getElementById("details");
  const names = new Set(data.apis.map((api) => api.name));
  for (const [name, section] of sections) {
    if (!names.has(name)) {
      section.root.remove();
      sections.delete(name);
    }
  }
  const shown = data.apis.map((api, index) => {
    let section = sections.get(api.name);
    if (!section) {
      section = buildSection(api.name);
      sections.set(api.name, section);
    }
    if (details.children[index] !== section.root) details.insertBefore(section.root, details.children[index] || null);
    return section;
  });
  // The page's geometry is read for every section first, then every section is drawn: a read
  // after each write made the browser lay the whole page out again, four times an API a refresh.
  const layouts = shown.map(measure);
  shown.forEach((section, index) => updateSection(section, data.apis[index], data, layouts[index]));
  for (const section of shown) {
    if (section.scrollLogs) section.logs.scrollTop = section.logs.scrollHeight;
    section.scrollLogs = false;
  }
}

function measure(section) {
  const widths = {};
  for (const [id, chart] of Object.entries(section.charts)) widths[id] = chart.svg.getBoundingClientRect().width;
  const pre = section.logs;
  return { widths, logsAtBottom: pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8 };
}

function renderOverview(data) {
  const body = document.querySelector("#apis tbody");
  document.getElementById("empty").hidden = data.apis.length > 0;
  // Each API keeps its row (and the link in it) from one refresh to the next, its cells redrawn:
  // a row drawn anew every refresh took the keyboard focus from the link the user had tabbed to.
  const rows = new Map([...body.rows].map((row) => [row.dataset.api, row]));
  data.apis.forEach((api, index) => {
    const metrics = api.metrics || { latency: {} };
    let row = rows.get(api.name);
    rows.delete(api.name);
    if (!row) {
      row = el("tr", { "data-api": api.name }, el("td", { class: "wraps" }, el("a", { href: `#api-${api.name}` }, api.name)));
    }
    const cell = (field, value, cls) => el("td", { "data-field": field, class: cls }, value);
    const cells = [
      cell("status", badge(api.status)),
      cell("requested", fmtInt(api.requested), "num"),
      cell("available", fmtInt(api.available), "num"),
      cell("up_to_date", fmtInt(api.up_to_date), "num"),
      el("td", { "data-field": "failed", class: "num failed-count", "data-value": api.failed }, fmtInt(api.failed)),
      cell("requests_per_second", fmtRate(metrics.requests_per_second), "num"),
      cell("p50", fmtMs(metrics.latency.p50_ms), "num"),
      cell("p99", fmtMs(metrics.latency.p99_ms), "num"),
      cell("endpoint", el("code", {}, api.endpoint), "wraps"),
      cell("last_update", api.last_update ? `${fmtAge(api.updated_ago ?? data.now - api.last_update)} ago` : "-"),
    ];
    while (row.cells.length > 1) row.lastChild.remove(); // the link's cell stays: removing it blurs the link
    row.append(...cells);
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
  });
  for (const gone of rows.values()) gone.remove();
}

// ---------- traffic: splitters and shadows

// With as many decimals as keep a disagreement from reading 100% (3,999 of 4,000 read "100.0%"),
// and an agreement from reading 0%.
function fmtAgreement(agreed, answered) {
  if (!answered) return "-";
  const value = (100 * agreed) / answered;
  let text = fmtNumber(value, 1);
  for (let digits = 2; digits <= 6; digits++) {
    const misread = (agreed < answered && Number(text) >= 100) || (agreed > 0 && Number(text) === 0);
    if (!misread) break;
    text = value.toFixed(digits);
  }
  return `${text}%`;
}

function fmtShadow(shadow) {
  if (!shadow) return "-";
  const agreement = fmtAgreement(shadow.agreed, shadow.answered);
  return `→ ${shadow.api} ${shadow.percent}% · sent ${fmtInt(shadow.sent)} · dropped ${fmtInt(shadow.dropped)} · agreement ${agreement} · errors ${fmtInt(shadow.errors)}`;
}

function renderSplitters(splitters) {
  document.getElementById("traffic").hidden = !splitters.length;
  const rows = splitters.flatMap((splitter) => {
    const total = splitter.apis.reduce((sum, entry) => sum + entry.requests, 0);
    return splitter.apis.map((entry, i) =>
      el(
        "tr",
        { "data-splitter": splitter.name, "data-api": entry.name },
        el("td", {}, i ? "" : splitter.name),
        el("td", {}, i ? "" : el("code", {}, splitter.endpoint)),
        el("td", {}, entry.name),
        el("td", { class: "num", "data-field": "weight" }, `${entry.weight}%`),
        el("td", { class: "num", "data-field": "requests" }, fmtInt(entry.requests)),
        el("td", { class: "num" }, total ? `${fmtNumber((100 * entry.requests) / total, 1)}%` : "-"),
        el("td", { "data-field": "shadow" }, i ? "" : fmtShadow(splitter.shadow)),
      ),
    );
  });
  document.querySelector("#splitters tbody").replaceChildren(...rows);
}

function drawPayloads(section, api) {
  const samples = api.payloads || [];
  section.payloads.hidden = !samples.length && !api.shadow && !api.payload_log;
  if (section.payloads.hidden) return;
  // The shadow's column only where there is (or was) a shadow.
  const shadowed = Boolean(api.shadow) || samples.some((sample) => sample.shadow);
  const rows = samples.map((sample) =>
    el(
      "tr",
      { "data-request": sample.request_id, "data-agrees": sample.shadow ? String(sample.shadow.agrees) : "" },
      el("td", { class: "mono" }, String(sample.status)),
      el("td", { class: "mono num" }, `${fmtNumber(sample.latency_ms, 3)} ms`),
      el("td", { class: "mono", "data-field": "request" }, sample.request),
      el("td", { class: "mono", "data-field": "response" }, sample.response),
      ...(shadowed
        ? [el("td", { class: "mono", "data-field": "shadow" }, sample.shadow ? `${sample.shadow.status} ${sample.shadow.response}` : "")]
        : []),
    ),
  );
  const titles = ["status", "latency", "request", "answer", ...(shadowed ? ["shadow's answer"] : [])];
  const head = el("tr", {}, ...titles.map((title) => el("th", title === "latency" ? { class: "num" } : {}, title)));
  const table = samples.length
    ? el("table", { class: "sig" }, el("thead", {}, head), el("tbody", {}, ...rows))
    : el("p", { class: "muted", "data-field": "empty" }, "No request recorded yet: the API's payload log is empty.");
  section.payloads.replaceChildren(
    el("h3", {}, "Payloads ", el("span", {}, "latest recorded")),
    el("p", { class: "muted", "data-field": "shadow" }, api.shadow ? `shadow ${fmtShadow(api.shadow)}` : ""),
    table,
  );
}

function badge(status) {
  return el("span", { class: "badge", "data-status": status }, status);
}

function buildSection(name) {
  const root = el("section", { class: "api", id: `api-${name}`, "data-api": name });
  const title = el("h2", {}, name);
  const status = el("span", {});
  const info = el("span", { class: "muted" });
  const replicas = el("span", { class: "replicas" });
  const error = el("div", { class: "api-error", hidden: "" });
  // The boxes that scroll take the keyboard focus (tabindex 0), so arrow keys scroll them.
  const curl = el("code", { "data-field": "curl", tabindex: 0, "aria-label": `curl command for ${name}` });
  const copy = el("button", { class: "copy", type: "button", title: "Copy the curl line" }, "Copy");
  copy.addEventListener("click", () => copyText(curl.textContent, copy));
  const charts = {};
  const chartRow = el("div", { class: "charts" });
  for (const spec of CHARTS) {
    const legend = el("div", { class: "legend" });
    const svg = svgEl("svg", { "data-api": name, "data-chart": spec.id, role: "img", "aria-label": spec.title });
    const tooltip = el("div", { class: "tooltip", hidden: "" });
    const figure = el(
      "figure",
      { class: "chart", "data-chart": spec.id },
      el("figcaption", {}, el("div", { class: "title" }, spec.title), legend),
      svg,
      tooltip,
    );
    const chart = { spec, figure, svg, legend, tooltip, data: null };
    svg.addEventListener("mousemove", (event) => hover(chart, event));
    svg.addEventListener("mouseleave", () => unhover(chart));
    charts[spec.id] = chart;
    chartRow.append(figure);
  }
  const tracker = el("div", { class: "panel tracker" });
  const region = (label) => ({ role: "region", tabindex: 0, "aria-label": `${label} of ${name}` });
  const signature = el("div", { class: "panel signature", ...region("signature") });
  const gpus = el("div", { class: "panel gpus", "data-api": name, hidden: "", ...region("GPUs") });
  const payloads = el("div", { class: "panel payloads", "data-api": name, hidden: "", ...region("payloads") });
  const logs = el("pre", { class: "logs", "data-api": name, "data-logs": "", tabindex: 0, "aria-label": `logs of ${name}` });
  root.append(
    el("div", { class: "api-head" }, title, status, info, replicas),
    error,
    el("div", { class: "curl" }, curl, copy),
    chartRow,
    el(
      "div",
      { class: "lower" },
      tracker,
      signature,
      gpus,
      el("div", { class: "panel logs-panel" }, el("h3", {}, "Logs ", el("span", {}, "last 50 lines")), logs),
      payloads,
    ),
  );
  return { root, status, info, replicas, error, curl, charts, tracker, signature, gpus, payloads, logs, logText: null, sigKey: null, scrollLogs: false };
}

function updateSection(section, api, data, layout) {
  section.status.replaceChildren(badge(api.status));
  setText(section.info, `deployment ${api.deployment} · ${api.model_format}`);
  section.replicas.replaceChildren(
    ...["requested", "available", "up_to_date", "failed"].flatMap((key, i) => [
      i ? " · " : "",
      `${key.replace(/_/g, "-")} `,
      el("b", { "data-field": key }, fmtInt(api[key])),
    ]),
  );
  section.error.hidden = !api.error;
  setText(section.error, api.error || "");
  setText(section.curl, api.curl);
  for (const chart of Object.values(section.charts)) {
    chart.data = { history: api.history, now: data.now, window: data.window_seconds, period: data.sample_seconds };
    chart.width = layout.widths[chart.spec.id];
    drawChart(chart);
  }
  drawTracker(section.tracker, api);
  drawSignature(section, api);
  drawGpus(section, api.gpus || []);
  drawPayloads(section, api);
  drawLogs(section, api.logs || [], layout.logsAtBottom);
}

// ---------- line charts

function chartDomain(chart) {
  const { history, now, window, period } = chart.data;
  const first = history.t.length ? history.t[0] - period : now;
  const span = Math.min(window, Math.max(MIN_SPAN, now - first));
  return [now - span, now];
}

function drawChart(chart) {
  const { spec, svg } = chart;
  const { history } = chart.data;
  const width = Math.max(160, Math.round(chart.width) || 300); // measured by render()
  const height = 130;
  const pad = { left: 40, right: 6, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const [start, end] = chartDomain(chart);
  const times = history.t;
  const values = spec.series.flatMap((key) => history[key] || []).filter((v) => v !== null);
  let top = Math.max(0, ...values);
  top = spec.integer ? Math.max(1, Math.ceil(top)) : niceMax(top);
  const x = (t) => pad.left + ((t - start) / (end - start)) * plotW;
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const nodes = [];
  const ticks = spec.integer && top % 2 ? [0, top] : [0, top / 2, top];
  for (const tick of ticks) {
    nodes.push(svgEl("line", { class: tick ? "gridline" : "baseline", x1: pad.left, x2: width - pad.right, y1: y(tick), y2: y(tick) }));
    const label = spec.integer ? fmtInt(tick) : fmtTick(tick, spec.unit);
    nodes.push(svgEl("text", { class: "axis", x: pad.left - 4, y: y(tick) + 3, "text-anchor": "end" }, label));
  }
  const step = timeStep(end - start);
  for (let ago = 0; ago <= end - start + 1e-9; ago += step) {
    const anchor = ago === 0 ? "end" : "middle";
    nodes.push(svgEl("text", { class: "axis", x: x(end - ago), y: height - 4, "text-anchor": anchor }, fmtRelative(ago)));
  }
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("data-times", JSON.stringify(times));
  if (!times.length) {
    nodes.push(
      svgEl("text", { class: "nodata", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" }, "collecting the first sample…"),
    );
  }
  const legend = [];
  for (const key of spec.series) {
    const series = history[key] || [];
    const attrs = {
      class: "series",
      stroke: COLORS[key],
      d: linePath(times, series, x, y, spec.step),
      "data-api": svg.dataset.api,
      "data-series": key,
      "data-points": JSON.stringify(series),
    };
    if (spec.counts) attrs["data-counts"] = JSON.stringify(history[`count_${key}`] || []);
    nodes.push(svgEl("path", attrs));
    for (let i = 0; i < times.length; i++) {
      // A point with no neighbour draws no line: a dot shows it (a burst between two idle samples).
      const lone = series[i] !== null && (i === 0 || series[i - 1] === null) && (i + 1 === times.length || series[i + 1] === null);
      if (lone && series[i] !== undefined) nodes.push(svgEl("circle", { cx: x(times[i]), cy: y(series[i]), r: 2, fill: COLORS[key] }));
    }
    const last = spec.id === "latency" ? lastValue(series) : series.length ? series[series.length - 1] : null;
    legend.push(
      el(
        "span",
        { class: "legend-item", "data-series": key },
        el("i", { style: null, "data-color": key }),
        `${(spec.labels && spec.labels[key]) || key} ${spec.format ? spec.format(last) : fmtInt(last)}`,
      ),
    );
  }
  chart.cursor = svgEl("line", { class: "cursor", y1: pad.top, y2: pad.top + plotH, visibility: "hidden" });
  nodes.push(chart.cursor);
  chart.geometry = { x, start, end, pad, plotW };
  svg.replaceChildren(...nodes);
  chart.legend.replaceChildren(...legend);
  // A screen reader reads the chart (an image) by its label: what it plots and the latest values.
  const latest = times.length ? legend.map((item) => item.textContent).join(", ") : "collecting the first sample";
  svg.setAttribute("aria-label", `${spec.title} of ${svg.dataset.api}, over the last ${fmtAge(end - start)}: ${latest}`);
  for (const swatch of chart.legend.querySelectorAll("i[data-color]")) {
    swatch.style.background = COLORS[swatch.dataset.color]; // CSSOM, allowed by the page's CSP
  }
}

function linePath(times, values, x, y, step) {
  let d = "";
  let open = false;
  for (let i = 0; i < times.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) {
      open = false;
      continue;
    }
    const px = x(times[i]).toFixed(1);
    const py = y(value).toFixed(1);
    if (!open) d += `M${px},${py}`;
    else if (step) d += `H${px}V${py}`;
    else d += `L${px},${py}`;
    open = true;
  }
  return d || "M0,0";
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  const scaled = value / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function timeStep(span) {
  for (const step of [10, 15, 30, 60, 120, 300, 600]) {
    if (span / step <= 4) return step;
  }
  return 900;
}

function hover(chart, event) {
  if (!chart.data || !chart.geometry) return;
  const { history } = chart.data;
  const times = history.t;
  if (!times.length) return;
  const box = chart.svg.getBoundingClientRect();
  const scale = box.width ? Number(chart.svg.viewBox.baseVal.width) / box.width : 1;
  const px = (event.clientX - box.left) * scale;
  const { start, end, pad, plotW, x } = chart.geometry;
  const t = start + ((px - pad.left) / plotW) * (end - start);
  let best = 0;
  for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
  const spec = chart.spec;
  const parts = spec.series.map((key) => {
    const value = (history[key] || [])[best];
    const label = (spec.labels && spec.labels[key]) || key;
    const count = spec.counts ? ` (${history[`count_${key}`][best]})` : "";
    return `${label} ${spec.format ? spec.format(value) : fmtInt(value)}${count}`;
  });
  chart.tooltip.textContent = `${fmtClock(times[best])}  ${parts.join("  ")}`;
  chart.tooltip.hidden = false;
  const left = (x(times[best]) / scale) - chart.tooltip.offsetWidth / 2;
  chart.tooltip.style.left = `${Math.max(0, Math.min(box.width - chart.tooltip.offsetWidth, left))}px`;
  chart.cursor.setAttribute("x1", x(times[best]));
  chart.cursor.setAttribute("x2", x(times[best]));
  chart.cursor.setAttribute("visibility", "visible");
}

function unhover(chart) {
  chart.tooltip.hidden = true;
  if (chart.cursor) chart.cursor.setAttribute("visibility", "hidden");
}

// ---------- tracker

function drawTracker(panel, api) {
  const tracker = (api.metrics && api.metrics.tracker) || {};
  const heading = el("h3", {}, "Tracker ", el("span", {}, api.tracker_type || "none"));
  if (!api.tracker_type) {
    panel.replaceChildren(heading, el("p", { class: "muted" }, "No tracker: add tracker: {model_type: classification} to the api."));
  } else if (api.tracker_type === "classification") {
    panel.replaceChildren(heading, classChart(api.name, tracker.classes || {}));
  } else {
    panel.replaceChildren(heading, regressionSummary(api.name, tracker.regression));
  }
}

function classChart(name, classes) {
  const entries = Object.entries(classes).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const shown = entries.slice(0, 12);
  const total = entries.reduce((sum, [, count]) => sum + count, 0);
  const row = 20;
  const width = 300;
  const labelW = 104;
  const valueW = 70;
  const height = Math.max(1, shown.length) * row + 4;
  const svg = svgEl("svg", {
    "data-api": name,
    "data-chart": "classes",
    "data-points": JSON.stringify(classes),
    viewBox: `0 0 ${width} ${height}`,
    height,
    role: "img",
    "aria-label": `predicted classes of ${name}: ${
      entries.length ? entries.map(([label, count]) => `${label} ${count}`).join(", ") : "no predictions yet"
    }`,
  });
  if (!shown.length) {
    svg.append(svgEl("text", { class: "value", x: 0, y: 14 }, "no predictions yet"));
    return svg;
  }
  const most = shown[0][1];
  shown.forEach(([label, count], i) => {
    const top = i * row + 2;
    const barW = ((width - labelW - valueW) * count) / most;
    const text = label.length > 16 ? `${label.slice(0, 15)}…` : label;
    svg.append(
      svgEl("text", { class: "label", x: 0, y: top + 13 }, text),
      svgEl("rect", { class: "track", x: labelW, y: top + 3, width: width - labelW - valueW, height: 12, rx: 2 }),
      svgEl("rect", { class: "bar", x: labelW, y: top + 3, width: Math.max(1, barW), height: 12, rx: 2, "data-class": label, "data-count": count }),
      svgEl("text", { class: "value", x: width, y: top + 13, "text-anchor": "end" }, `${count} · ${Math.round((100 * count) / total)}%`),
    );
    svg.lastChild.previousSibling.append(svgEl("title", {}, `${label}: ${count}`));
  });
  if (entries.length > shown.length) {
    const more = el("div", { class: "muted" }, `and ${entries.length - shown.length} more classes`);
    return el("div", {}, svg, more);
  }
  return svg;
}

function regressionSummary(name, regression) {
  if (!regression) return el("p", { class: "muted", "data-api": name, "data-chart": "regression" }, "no predictions yet");
  const { min, max, avg, count } = regression;
  const width = 300;
  const span = max - min || 1;
  const at = (v) => 8 + ((v - min) / span) * (width - 16);
  const svg = svgEl("svg", {
    "data-api": name,
    "data-chart": "regression",
    "data-points": JSON.stringify(regression),
    viewBox: `0 0 ${width} 34`,
    height: 34,
  });
  svg.append(
    svgEl("rect", { class: "track", x: 8, y: 8, width: width - 16, height: 8, rx: 4 }),
    svgEl("circle", { class: "bar", cx: at(avg), cy: 12, r: 6, "data-field": "avg" }),
    svgEl("text", { class: "value", x: 8, y: 31 }, fmtNumber(min, 3)),
    svgEl("text", { class: "value", x: at(avg), y: 31, "text-anchor": "middle" }, `avg ${fmtNumber(avg, 3)}`),
    svgEl("text", { class: "value", x: width - 8, y: 31, "text-anchor": "end" }, fmtNumber(max, 3)),
  );
  const table = el(
    "table",
    { class: "kv" },
    ...[["min", min], ["max", max], ["avg", avg], ["count", count]].map(([key, value]) =>
      el("tr", {}, el("td", { class: "muted" }, key), el("td", { class: "mono", "data-field": key }, fmtNumber(value, 4))),
    ),
  );
  return el("div", {}, svg, table);
}

// ---------- signature and logs

function drawSignature(section, api) {
  const signature = api.signature || {};
  const key = JSON.stringify(signature);
  if (section.sigKey === key) return;
  section.sigKey = key;
  const heading = el("h3", {}, "Signature ", el("span", {}, signature.signature_key || api.model_format || ""));
  if (!signature.inputs && !signature.outputs) {
    const note = api.model_format === "predictor" ? "Python predictor: any JSON in, any JSON out." : "Known once a replica has loaded the model.";
    section.signature.replaceChildren(heading, el("p", { class: "muted" }, note));
    return;
  }
  const rows = [];
  for (const [kind, specs] of [["in", signature.inputs || []], ["out", signature.outputs || []]]) {
    for (const spec of specs) {
      const shape = spec.shape ? `[${spec.shape.map((d) => (d === -1 ? "?" : d)).join(", ")}]` : "?";
      rows.push(
        el(
          "tr",
          { "data-kind": kind === "in" ? "input" : "output" },
          el("td", { class: "sig-kind" }, kind),
          el("td", { class: "mono", "data-field": "name" }, spec.name),
          el("td", { class: "mono" }, spec.dtype || spec.type || ""),
          el("td", { class: "mono" }, shape),
        ),
      );
    }
  }
  const head = el("tr", {}, el("th", {}, "in/out"), el("th", {}, "name"), el("th", {}, "type"), el("th", {}, "shape"));
  section.signature.replaceChildren(heading, el("table", { class: "sig", "data-api": api.name }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

// ---------- GPUs (only on machines that have them)

function drawGpus(section, gpus) {
  section.gpus.hidden = !gpus.length;
  if (!gpus.length) return;
  const mib = (bytes) => (bytes === null || bytes === undefined ? "-" : `${Math.round(bytes / 2 ** 20)} MiB`);
  const rows = gpus.map((gpu) =>
    el(
      "tr",
      { "data-replica": gpu.replica },
      el("td", { class: "mono" }, gpu.replica),
      el("td", { class: "mono" }, gpu.index === undefined ? "-" : String(gpu.index)),
      el("td", { class: "mono", "data-field": "utilization" }, gpu.utilization === null || gpu.utilization === undefined ? "-" : `${Math.round(gpu.utilization)}%`),
      el("td", { class: "mono", "data-field": "memory" }, `${mib(gpu.memory_used)} / ${mib(gpu.memory_total)}`),
      el("td", { class: "mono" }, gpu.device || "-"),
    ),
  );
  const head = el("tr", {}, ...["replica", "gpu", "util", "memory", "runs on"].map((title) => el("th", {}, title)));
  section.gpus.replaceChildren(el("h3", {}, "GPUs"), el("table", { class: "sig" }, el("thead", {}, head), el("tbody", {}, ...rows)));
}

const ERROR_LINE = /ERROR|Traceback|error/;

function accessRecord(line) {
  if (!line.startsWith('{"time":')) return null;
  try {
    const record = JSON.parse(line);
    return typeof record.status === "number" && typeof record.route === "string" ? record : null;
  } catch (error) {
    return null;
  }
}

function fmtClockMs(epoch) {
  const millis = String(Math.round((epoch % 1) * 1000) % 1000).padStart(3, "0");
  return `${fmtClock(Math.floor(epoch))}.${millis}`;
}

function drawLogs(section, lines, atBottom) {
  const text = lines.join("\n");
  if (section.logText === text) return;
  const first = section.logText === null;
  section.logText = text;
  const pre = section.logs;
  let inTraceback = false;
  const rows = lines.map((line) => {
    const access = accessRecord(line);
    if (access) {
      // The gateway's access lines, one JSON object each: shown as a compact row, raw on hover.
      const level = access.status >= 500 ? "error" : access.status >= 400 ? "warn" : null;
      const text = [
        fmtClockMs(access.time),
        access.status,
        access.route,
        `${fmtNumber(access.latency_ms, 3)} ms`,
        access.replica || "-",
        access.id,
      ].join("  ");
      return el("div", { class: "access", "data-status": access.status, "data-level": level, title: line }, text);
    }
    // A traceback's indented frames and its closing exception line belong to the error too.
    let error = ERROR_LINE.test(line);
    if (line.includes("Traceback")) inTraceback = true;
    else if (inTraceback) {
      error = true;
      if (!/^\s/.test(line)) inTraceback = false;
    }
    return el("div", error ? { "data-level": "error" } : {}, line || " ");
  });
  if (!rows.length) rows.push(el("div", { class: "muted" }, "no log lines yet"));
  pre.replaceChildren(...rows);
  section.scrollLogs = atBottom || first; // scrolled once every section is drawn (render)
}

// ---------- copy

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // Older browsers, or clipboard permission refused: select the text for a manual copy.
    const range = document.createRange();
    range.selectNodeContents(button.previousSibling);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand && document.execCommand("copy");
  }
  button.textContent = "Copied";
  button.dataset.copied = "";
  setTimeout(() => {
    button.textContent = "Copy";
    delete button.dataset.copied;
  }, 1500);
}

// ---------- start

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => latest && render(latest), 150);
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
refresh();
setInterval(() => {
  if (!document.hidden) refresh();
}, REFRESH_MS);
