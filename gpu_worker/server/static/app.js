// The page of the local endpoint: build a job from the operations' parameter schemas (GET /ops),
// run it through RunPod's API (POST /v2/local/run, then GET /v2/local/status/{id}), and show the
// results. Plain JavaScript, nothing loaded from the network.
"use strict";

const API = "/v2/local";
const FINAL = ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"];
// The operations a fresh page starts with: the tutorial's example (resize to a width, sharpen).
const STARTER = [
  { type: "resize", params: { width: 512 } },
  { type: "filter", params: { name: "sharpen" } },
];
const CHANNEL_COLOURS = { r: "#c62828", g: "#2e7d32", b: "#1565c0", l: "#424242", a: "#9e9e9e" };
const STAGES = ["fetch", "decode", "ops", "encode", "upload", "total"];

// output: the output settings beyond format and quality, edited like an operation's params.
const state = { catalogue: null, sources: [], ops: [], nextOpId: 1, jobId: null, output: { id: "out", params: {} } };
const $ = (id) => document.getElementById(id);

document.addEventListener("DOMContentLoaded", init);

async function init() {
  const response = await fetch("/ops");
  state.catalogue = await response.json();
  const cat = state.catalogue;
  $("server-info").textContent =
    `Device ${cat.device}, ${cat.max_concurrency} job(s) at once. ` +
    `Jobs go to RunPod's API on this server (${location.origin}${API}/…).`;
  fillSelect($("op-type"), cat.operations.map((op) => [op.type, op.type]));
  showOpSummary();
  fillSelect($("out-format"), cat.output_formats.map((f) => [f, f]));
  $("out-quality").max = cat.output.properties.quality.maximum;
  $("out-quality").min = cat.output.properties.quality.minimum;
  // The other output settings, from the output's schema (as an operation's fields are).
  for (const [name, prop] of Object.entries(cat.output.properties)) {
    if (!["format", "quality", "upload"].includes(name)) $("out-more").append(field(state.output, name, prop, false));
  }
  if (cat.api_key_required) {
    $("key-row").hidden = false;
    $("api-key").value = sessionStorage.getItem("apiKey") || "";
  }
  STARTER.forEach((op) => addOp(op.type, op.params));
  bindEvents();
  updateJob();
}

function bindEvents() {
  $("file-input").addEventListener("change", (e) => addFiles(e.target.files));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("url-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("url-input");
    if (!input.value || !input.reportValidity()) return;
    state.sources.push({ name: input.value, image: { url: input.value }, preview: input.value });
    input.value = "";
    renderSources();
  });
  $("op-type").addEventListener("change", showOpSummary);
  $("add-op").addEventListener("click", () => addOp($("op-type").value, {}, true));
  for (const id of ["out-format", "out-quality", "analysis"]) $(id).addEventListener("input", updateJob);
  $("api-key").addEventListener("input", () => { sessionStorage.setItem("apiKey", $("api-key").value); updateJob(); });
  $("run").addEventListener("click", run);
  $("cancel").addEventListener("click", cancel);
  $("copy-json").addEventListener("click", () => copy("job-json", "JSON"));
  $("copy-curl").addEventListener("click", () => copy("job-curl", "curl command"));
}

function fillSelect(select, options) {
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
}

// --- images -----------------------------------------------------------------------------------

function addFiles(files) {
  const reads = [...files].map((file) => new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, image: { base64: reader.result }, preview: reader.result });
    reader.onerror = () => resolve(null);
    reader.readAsDataURL(file);
  }));
  Promise.all(reads).then((sources) => {
    state.sources.push(...sources.filter(Boolean));
    renderSources();
  });
}

function renderSources() {
  const list = $("source-list");
  list.replaceChildren(...state.sources.map((source, index) => {
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = source.preview;
    img.alt = "";
    const name = document.createElement("span");
    name.textContent = source.name;
    const remove = button("Remove", `Remove image ${source.name}`, () => {
      state.sources.splice(index, 1);
      renderSources();
    });
    item.append(img, name, remove);
    return item;
  }));
  updateJob();
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

// --- operations: forms made from each operation's JSON schema ---------------------------------

function addOp(type, params, focus = false) {
  state.ops.push({ id: state.nextOpId++, type, params: { ...params } });
  renderOps();
  if (focus) document.querySelector("#op-list li:last-child input, #op-list li:last-child select")?.focus();
}

function showOpSummary() {
  const op = state.catalogue.operations.find((o) => o.type === $("op-type").value);
  $("op-summary").textContent = op ? op.summary.replaceAll("`", "") : "";
}

function schemaOf(type) {
  return state.catalogue.operations.find((op) => op.type === type).schema;
}

// Rebuilds the list; focus goes to ``focusSelector`` (a moved operation's button, or the other
// move button when that one is now disabled at the end of the list).
function renderOps(focusSelector = null) {
  $("op-list").replaceChildren(...state.ops.map((op, index) => opItem(op, index)));
  const target = focusSelector && document.querySelector(focusSelector);
  if (target) (target.disabled ? target.parentElement.querySelector("button:not(:disabled)") : target).focus();
  updateJob();
}

function opItem(op, index) {
  const item = document.createElement("li");
  item.dataset.opId = op.id;
  const fieldset = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = `${index + 1}. ${op.type}`;
  fieldset.append(legend);
  const schema = schemaOf(op.type);
  const required = schema.required || [];
  for (const [name, prop] of Object.entries(schema.properties)) {
    fieldset.append(field(op, name, prop, required.includes(name)));
  }
  const tools = document.createElement("div");
  tools.className = "op-tools";
  const where = `operation ${index + 1} (${op.type})`;
  const up = moveButton("Move up", `Move ${where} up`, op, -1);
  const down = moveButton("Move down", `Move ${where} down`, op, +1);
  up.disabled = index === 0;
  down.disabled = index === state.ops.length - 1;
  tools.append(
    up,
    down,
    button("Remove", `Remove ${where}`, () => {
      state.ops = state.ops.filter((o) => o !== op);
      renderOps("#add-op");
    }),
  );
  fieldset.append(tools);
  item.append(fieldset);
  return item;
}

function moveButton(text, label, op, step) {
  const b = button(text, label, () => {
    const from = state.ops.indexOf(op);
    const to = from + step;
    if (to < 0 || to >= state.ops.length) return;
    state.ops.splice(from, 1);
    state.ops.splice(to, 0, op);
    renderOps(`li[data-op-id="${op.id}"] button[data-move="${step}"]`);
  });
  b.dataset.move = step;
  return b;
}

// A JSON-schema property as {type, json, nullable, minimum, maximum, enum, default}; json: some of
// its forms are objects or lists (a colour as [r, g, b], an overlay's {"url": ...}), typed as JSON.
function describe(prop) {
  const nonNull = (prop.anyOf || [prop]).filter((p) => p.type !== "null");
  const base = nonNull[0] || {};
  const json = nonNull.some((p) => p.type === "object" || p.type === "array" || p.$ref !== undefined);
  return {
    type: base.type, json, enum: base.enum, minimum: base.minimum, maximum: base.maximum,
    nullable: Boolean(prop.anyOf && prop.anyOf.some((p) => p.type === "null")),
    default: prop.default, title: prop.title || "", description: prop.description || "",
  };
}

function field(op, name, prop, required) {
  const d = describe(prop);
  const id = `op${op.id}-${name}`;
  const wrap = document.createElement("div");
  wrap.className = "field";
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = name;
  const input = inputFor(d, op.params[name], required);
  input.id = id;
  input.name = name;
  const hint = hintFor(d, required);
  if (hint) {
    const note = document.createElement("small");
    note.id = `${id}-hint`;
    note.textContent = hint;
    input.setAttribute("aria-describedby", note.id);
    wrap.append(label, input, note);
  } else {
    wrap.append(label, input);
  }
  input.addEventListener("input", () => {
    const value = readInput(input, d);
    if (value === undefined) delete op.params[name]; else op.params[name] = value;
    updateJob();
  });
  const initial = readInput(input, d);
  if (initial !== undefined && op.params[name] === undefined && required) op.params[name] = initial;
  return wrap;
}

function inputFor(d, value, required) {
  if (d.enum) {
    const select = document.createElement("select");
    const options = d.enum.map((v) => [v, v]);
    fillSelect(select, d.nullable || (!required && d.default === undefined) ? [["", "(none)"], ...options] : options);
    select.value = value ?? d.default ?? (required ? d.enum[0] : "");
    return select;
  }
  const input = document.createElement("input");
  if (d.type === "boolean") {
    input.type = "checkbox";
    input.checked = value ?? d.default ?? false;
    return input;
  }
  if (d.type === "integer" || d.type === "number") {
    input.type = "number";
    input.step = d.type === "integer" ? "1" : "0.01";
    if (d.minimum !== undefined) input.min = d.minimum;
    if (d.maximum !== undefined) input.max = d.maximum;
    input.required = required && !d.nullable;
  }
  const shown = value ?? d.default;
  input.value = shown === null || shown === undefined ? "" : (typeof shown === "object" ? JSON.stringify(shown) : shown);
  if (d.nullable) input.placeholder = "not set";
  return input;
}

function hintFor(d, required) {
  const parts = [];
  if (d.minimum !== undefined && d.maximum !== undefined) parts.push(`${d.minimum} to ${d.maximum}`);
  if (d.default !== undefined && d.default !== null) parts.push(`default ${d.default}`);
  else if (d.nullable) parts.push("optional");
  if (required) parts.push("required");
  if (d.json) parts.push("a list or object is typed as JSON");
  if (d.description) parts.push(d.description.replaceAll("`", ""));
  return parts.join("; ");
}

// The input's value as the job's JSON wants it; undefined when left out.
function readInput(input, d) {
  if (d.type === "boolean") return input.checked;
  if (input.value === "") return undefined;
  if (d.type === "integer") return Number.parseInt(input.value, 10);
  if (d.type === "number") return Number.parseFloat(input.value);
  const text = input.value.trim();
  if (d.json && (text.startsWith("{") || text.startsWith("["))) {
    try { return JSON.parse(text); } catch { /* sent as typed: the worker names what is wrong */ }
  }
  return input.value;
}

// --- the job -----------------------------------------------------------------------------------

function buildJob() {
  const common = {
    operations: state.ops.map((op) => ({ type: op.type, params: { ...op.params } })),
    output: { format: $("out-format").value, quality: Number.parseInt($("out-quality").value, 10) || 85,
              ...state.output.params },
  };
  if ($("analysis").value) common.analysis = $("analysis").value;
  if (state.sources.length === 1) return { input: { image: state.sources[0].image, ...common } };
  return { input: { images: state.sources.map((s) => ({ image: s.image })), ...common } };
}

function curlCommand(json) {
  const auth = state.catalogue && state.catalogue.api_key_required ? ' -H "Authorization: Bearer $API_KEY"' : "";
  return `curl -s -X POST "${location.origin}${API}/runsync" -H "Content-Type: application/json"${auth} ` +
    `-d @- <<'JSON'\n${json}\nJSON`;
}

function updateJob() {
  const json = JSON.stringify(buildJob(), null, 2);
  $("job-json").value = json;
  $("job-curl").value = curlCommand(json);
}

async function copy(id, what) {
  const text = $(id).value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $(id).select();
    document.execCommand("copy");
  }
  $("copy-status").textContent = `Copied the job as ${what} (${text.length.toLocaleString()} characters).`;
}

// --- running ------------------------------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function say(text) {
  $("status").textContent = text;
}

async function run() {
  if (!state.sources.length) return say("Choose an image first (a file or a URL).");
  const invalid = [...document.querySelectorAll("#op-list input, #out-quality, #out-more input")].find((i) => !i.checkValidity());
  if (invalid) {
    invalid.reportValidity();
    return say(`Check the field "${invalid.name || invalid.id}": ${invalid.validationMessage}`);
  }
  const body = JSON.stringify(buildJob());
  const limits = state.catalogue.limits;
  if (body.length > limits.runsync_body_bytes) {
    return say(`The job is ${body.length.toLocaleString()} bytes, over RunPod's 20 MiB limit: use image URLs.`);
  }
  // /run takes 10 MiB; between 10 and 20 MiB the job goes to /runsync (no progress meanwhile).
  const route = body.length > limits.run_body_bytes ? "runsync" : "run";
  setRunning(true, state.sources.length);
  say("Submitting…");
  try {
    const answer = await call(`${API}/${route}`, { method: "POST", body });
    state.jobId = answer.id;
    const final = FINAL.includes(answer.status) ? answer : await poll(answer.id);
    finish(final);
  } catch (err) {
    say(`Error: ${err.message}`);
  } finally {
    setRunning(false);
  }
}

async function call(url, options = {}) {
  const response = await fetch(url, { headers: headers(), ...options });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

async function poll(id) {
  for (;;) {
    const job = await call(`${API}/status/${encodeURIComponent(id)}`);
    if (FINAL.includes(job.status)) return job;
    const p = job.output;
    if (job.status === "IN_PROGRESS" && p && p.total) {
      $("progress").max = p.total;
      $("progress").value = p.processed;
      say(`Running job ${id}: ${p.processed} of ${p.total} images processed…`);
    } else {
      say(job.status === "IN_QUEUE" ? `Job ${id} is waiting in the queue…` : `Running job ${id}…`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

async function cancel() {
  if (state.jobId) await call(`${API}/cancel/${encodeURIComponent(state.jobId)}`, { method: "POST" }).catch(() => {});
}

function setRunning(running, total = 1) {
  $("run").disabled = running;
  $("cancel").disabled = !running;
  const progress = $("progress");
  progress.hidden = !running && progress.value === 0;
  if (running) { progress.max = total; progress.value = 0; }
}

function finish(job) {
  const output = job.output || {};
  const results = Array.isArray(output.results) ? output.results : [output];
  const ok = results.filter((r) => r && r.success).length;
  $("progress").value = $("progress").max;
  if (job.status === "COMPLETED") {
    say(`Completed job ${job.id} in ${job.executionTime} ms: ${ok} of ${results.length} image(s) processed.`);
  } else {
    say(`Job ${job.id} ${job.status}${job.error ? `: ${job.error}` : ""}`);
  }
  renderResults(results, job);
}

// --- results ------------------------------------------------------------------------------------

function renderResults(results, job) {
  const box = $("results");
  if (job.status !== "COMPLETED" && !results.some((r) => r && r.success !== undefined && r.metadata)) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = `${job.status}: ${job.error || "no output"}`;
    box.replaceChildren(p);
    return;
  }
  box.replaceChildren(...results.map((result, i) => resultCard(result, state.sources[i], i, results.length)));
}

function resultCard(result, source, index, count) {
  const card = $("result-template").content.firstElementChild.cloneNode(true);
  const name = source ? source.name : `image ${index + 1}`;
  card.querySelector(".result-title").textContent = count > 1 ? `${index + 1}. ${name}` : name;
  const sourceImg = card.querySelector(".source-img");
  sourceImg.src = source ? source.preview : "";
  sourceImg.alt = `Source: ${name}`;
  if (!result || !result.success) {
    const error = card.querySelector(".error");
    error.hidden = false;
    error.textContent = `Failed: ${(result && result.error) || "no result"}`;
    card.querySelector(".result-img").closest("figure").hidden = true;
    return card;
  }
  const img = card.querySelector(".result-img");
  img.src = result.processed_image || result.processed_image_url;
  img.alt = `Result: ${name}, ${result.metadata.width} by ${result.metadata.height}`;
  fillMetadata(card.querySelector(".meta tbody"), result);
  card.querySelector(".timings").append(timingsChart(result.metadata.timings_ms || {}));
  const analysis = result.analysis || {};
  for (const which of ["source", "result"]) {
    if (analysis[which]) card.querySelector(".histograms").append(histogramFigure(which, analysis[which]));
  }
  return card;
}

function fillMetadata(tbody, result) {
  const m = result.metadata;
  const rows = [
    ["Result", `${m.width} × ${m.height} ${m.format} (quality ${m.quality}), ${kb(m.bytes)}`],
    ["Source", `${m.source.width} × ${m.source.height} ${m.source.format} ${m.source.mode}, ${kb(m.source.bytes)}`],
    ["Device", m.device],
    ["Stacked with", `${m.stacked} image(s)`],
    ["From the cache", m.cached ? "yes" : "no"],
  ];
  for (const [which, a] of Object.entries(result.analysis || {})) {
    rows.push([`Brightness (${which})`, a.brightness.toFixed(1)]);
  }
  tbody.replaceChildren(...rows.map(([key, value]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = key;
    const td = document.createElement("td");
    td.textContent = value;
    tr.append(th, td);
    return tr;
  }));
}

function kb(bytes) {
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} bytes`;
}

const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// Per-stage timings as horizontal bars (an inline SVG, with a text summary for screen readers).
function timingsChart(timings) {
  const stages = STAGES.filter((s) => typeof timings[s] === "number");
  const longest = Math.max(1e-9, ...stages.map((s) => timings[s]));
  const rowHeight = 20;
  const summary = stages.map((s) => `${s} ${timings[s].toFixed(1)} ms`).join(", ");
  const svg = svgElement("svg", { class: "timings-chart", role: "img", "aria-label": `Stage timings: ${summary}`,
    viewBox: `0 0 360 ${rowHeight * stages.length}`, width: 360, height: rowHeight * stages.length });
  svg.append(svgElement("title", {}, `Stage timings: ${summary}`));
  stages.forEach((stage, i) => {
    const y = i * rowHeight;
    const width = Math.max(1, (timings[stage] / longest) * 200);
    svg.append(
      svgElement("text", { x: 0, y: y + 14, class: "label" }, stage),
      svgElement("rect", { x: 60, y: y + 4, width, height: 12, class: stage === "total" ? "bar total" : "bar" }),
      svgElement("text", { x: 66 + width, y: y + 14, class: "value" }, `${timings[stage].toFixed(1)} ms`),
    );
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = "Stage timings (ms)";
  figure.append(svg, caption);
  return figure;
}

// A 256-bin histogram per channel, drawn on a canvas as lines.
function histogramFigure(which, analysis) {
  const canvas = document.createElement("canvas");
  canvas.width = 256;
  canvas.height = 120;
  canvas.className = "histogram";
  canvas.dataset.which = which;
  const channels = Object.keys(analysis.histograms);
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Histogram of the ${which} (${analysis.mode}, channels ${channels.join(", ")}), ` +
    `mean brightness ${analysis.brightness.toFixed(1)}`);
  drawHistogram(canvas, analysis.histograms);
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = `Histogram of the ${which}: ${channels.join(", ")} (square-root scale)`;
  figure.append(canvas, caption);
  return figure;
}

function drawHistogram(canvas, histograms) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fafafa";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  // Counts on a square-root scale, so that a few full bins (pure black or white) do not flatten the rest.
  const peak = Math.sqrt(Math.max(1, ...Object.values(histograms).flat()));
  for (const [channel, counts] of Object.entries(histograms)) {
    ctx.strokeStyle = CHANNEL_COLOURS[channel] || "#000";
    ctx.lineWidth = 1;
    ctx.beginPath();
    counts.forEach((count, x) => {
      const y = canvas.height - (Math.sqrt(count) / peak) * (canvas.height - 4);
      if (x === 0) ctx.moveTo(x + 0.5, y); else ctx.lineTo(x + 0.5, y);
    });
    ctx.stroke();
  }
}
