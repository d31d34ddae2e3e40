// jiyi serve: the page. Vanilla JS, no build step, nothing loaded from outside the server.
// Talks to the /v1 API (relative URLs, so the page also works behind a path prefix).
"use strict";

const TOKEN_KEY = "jiyi-serve-token";
const NEIGHBOURS = 5;      // nearest remembered examples shown under a labelled memory
const ASK_TOP_K = 3;       // best answer + up to 2 alternatives
// a NER run: one background per entity type, in the order of /v1/info's entity_types
const ENTITY_COLOURS = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa", "#a5f3fc", "#d9f99d"];
// run: id of the latest Predict, to drop stale answers; label: what that Predict answered
const state = { info: null, run: 0, label: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(x, digits = 3) {
  return x === null || x === undefined ? "n/a" : Number(x).toFixed(digits);
}

function labelText(label) {
  if (Array.isArray(label)) return label.length ? label.join(", ") : "(no label)";
  return label === null || label === undefined ? "—" : String(label);
}

// ---- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// GET (no body) or POST JSON; resolves to the JSON answer, rejects with an ApiError.
async function api(path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${e.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: reported below
  }
  if (!response.ok) {
    const err = data && data.error ? data.error : {};
    if (response.status === 401) askForToken(token ? "That token was refused." : "");
    throw new ApiError(response.status, err.code || `http_${response.status}`,
                       err.message || `${response.status} ${response.statusText}`);
  }
  if (data === null) throw new ApiError(response.status, "bad_response", "the server did not answer JSON");
  return data;
}

// Errors are shown inline, in the section they belong to.
function showError(id, error) {
  const code = error.code && error.status ? ` (${error.status} ${error.code})` : "";
  $(id).textContent = `${error.message}${code}`;
}

function clearError(...ids) {
  for (const id of ids) $(id).textContent = "";
}

// ---- token and model info --------------------------------------------------------------

function askForToken(message) {
  $("token-form").hidden = false;
  $("token-error").textContent = message;
  $("info").textContent = "locked: a token is needed";
  $("token-input").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("token-form").hidden = true;
  if (!state.info) loadInfo();
});

async function loadInfo() {
  clearError("info-error");
  let info;
  try {
    info = await api("v1/info");
  } catch (e) {
    if (e.status !== 401) {
      $("info").textContent = "";
      showError("info-error", new ApiError(e.status, e.code, `Could not load the model: ${e.message}`));
    }
    return;
  }
  state.info = info;
  renderInfo(info);
  setUpSections(info);
  $("app").hidden = false;
  (isQa(info) ? $("qa-context") : $("text")).focus();
}

function renderInfo(info) {
  const line = $("info");
  line.replaceChildren();
  // a NER run lists its entity types (its labels are the tags: O, B-PER, I-PER, ...)
  const labelsName = isNer(info) ? "entity types" : "labels";
  const labels = (isNer(info) ? info.entity_types : info.labels) || [];
  const shown = labels.length > 12 ? `${labels.slice(0, 12).join(", ")}, … (${labels.length})` : labels.join(", ");
  const parts = [
    ["model", info.model],
    ["format", info.format],
    ["task", info.task],
    // a QA run has no labels: its answers are spans of the context
    isQa(info) ? ["max answer", `${info.max_answer_length} tokens`] : [labelsName, shown],
    ["max length", info.max_length],
  ];
  if (info.batching) {
    parts.push(["batching", info.batching.enabled
      ? `≤ ${info.batching.max_batch_size} texts, ${info.batching.max_wait_ms} ms` : "off"]);
  }
  if (info.memory) {
    parts.push(["memory", `${info.memory.rows} rows${info.memory.faq ? ", FAQ" : ""}`]);
  }
  parts.forEach(([name, value], i) => {
    if (i) line.append(" · ");
    const v = el(name === "model" ? "code" : "span", { class: "v" }, String(value ?? "n/a"));
    if (name === labelsName) v.title = labels.join(", ");
    line.append(`${name} `, v);
  });
}

const isNer = (info) => Boolean(info && info.task === "ner");
const isQa = (info) => Boolean(info && info.task === "qa");

// A memory may hold labels (kNN-augmented predictions, nearest examples), answers (FAQ), or both.
const hasFaq = () => Boolean(state.info.memory && state.info.memory.faq);
const hasLabelledMemory = () =>
  Boolean(state.info.features.memory && state.info.memory && Object.keys(state.info.memory.labels || {}).length);

function setUpSections(info) {
  $("ask").hidden = !hasFaq();
  if (isQa(info)) {
    $("text-card").hidden = true;
    $("qa").hidden = false;
    $("explain-off").hidden = false;
    $("explain-off").textContent = "A QA run: each answer is a span of the context (or none). Attributions, attention and a memory are for classification runs.";
  } else if (isNer(info)) {
    document.querySelector("label[for=text]").textContent = "Text to tag";
    $("explain-off").hidden = false;
    $("explain-off").textContent = "A NER run: entities with their types and scores. Attributions, attention and a memory are for classification runs.";
  } else if (info.features.explain) {
    $("attention").hidden = false;
    $("attention-note").textContent = "Predict a text to see each head's attention.";
  } else {
    $("explain-off").hidden = false;
    $("explain-off").textContent = `Attributions and attention need a PyTorch model; this one is ${info.format}.`;
  }
}

// ---- predict -----------------------------------------------------------------------------

$("predict-form").addEventListener("submit", (event) => {
  event.preventDefault();
  predict();
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("predict-form").requestSubmit();
  }
});

async function predict() {
  const text = $("text").value;
  clearError("predict-error");
  if (!text.trim()) {
    $("predict-error").textContent = "Type a text first.";
    return;
  }
  const run = ++state.run;
  markStale();
  const button = $("predict-button");
  button.disabled = true;
  $("predict-status").textContent = "predicting…";
  const body = { texts: [text] };
  if (hasLabelledMemory()) body.neighbours = NEIGHBOURS;  // kNN-augmented, as `jiyi predict --memory`
  try {
    const answer = await api("v1/predict", body);
    if (run !== state.run) return;
    if (isNer(state.info)) {
      renderEntities(text, answer.predictions[0]);
      $("predict-status").textContent = "";
      return;
    }
    renderPrediction(answer.predictions[0]);
  } catch (e) {
    if (run === state.run) {
      clearResults();
      showError("predict-error", e);
      $("predict-status").textContent = "";
    }
    return;
  } finally {
    button.disabled = false;
  }

  // the new prediction is shown: nothing of the previous text stays beside it
  const jobs = [];
  if (state.info.features.explain) {
    clearExplanation("Explaining…", "Attention maps come with the explanation…");
    $("explanation").hidden = false;
    jobs.push(explain(text, run));
  }
  if (hasLabelledMemory()) {
    $("neighbours-body").replaceChildren();
    jobs.push(nearest(text, run));
  }
  if (jobs.length) $("predict-status").textContent = "explaining…";
  await Promise.allSettled(jobs);
  if (run === state.run) $("predict-status").textContent = "";
}

// ---- stale results: a new text's panels never show an earlier text's answers -------------

const RESULT_PANELS = ["prediction", "entities", "explanation", "attention", "neighbours"];

// A new text was submitted: what the panels show belongs to the previous one until the new
// answers come (greyed, "previous text"; see .stale in style.css).
function markStale() {
  for (const id of RESULT_PANELS) {
    if ($(id).hidden) continue;
    $(id).classList.add("stale");
    $(id).setAttribute("aria-busy", "true");
  }
  clearError("explain-error", "neighbours-error");
}

function markFresh(id) {
  $(id).classList.remove("stale");
  $(id).removeAttribute("aria-busy");
}

// The explanation panels emptied, with a note in place of the words and of the maps.
function clearExplanation(status, attentionNote) {
  $("words").replaceChildren();
  $("legend").hidden = true;
  $("explain-note").hidden = true;
  $("explain-status").textContent = status;
  $("attention-grid").replaceChildren();
  $("attention-note").textContent = attentionNote;
  markFresh("explanation");
  markFresh("attention");
}

// The prediction failed: its error stands alone, with no earlier text's results under it.
function clearResults() {
  for (const id of ["prediction", "entities", "explanation", "neighbours"]) $(id).hidden = true;
  $("label").textContent = "";
  $("score").textContent = "";
  $("probabilities").replaceChildren();
  $("entity-text").replaceChildren();
  $("entity-body").replaceChildren();
  $("neighbours-body").replaceChildren();
  clearExplanation("", "No attention maps: the prediction failed.");
  for (const id of RESULT_PANELS) markFresh(id);
}

function renderPrediction(p) {
  $("prediction").hidden = false;
  markFresh("prediction");
  state.label = labelText(p.label);
  $("label").textContent = state.label;
  $("score").textContent = `score ${fmt(p.score)}` +
    (p.neighbours ? ` · with ${p.neighbours.length} remembered neighbours` : "");
  const chosen = new Set(Array.isArray(p.label) ? p.label : [p.label]);
  const rows = Object.entries(p.probabilities || {}).sort((a, b) => b[1] - a[1]);
  const box = $("probabilities");
  box.replaceChildren();
  for (const [label, prob] of rows) {
    const row = el("div", chosen.has(label) ? { class: "chosen" } : {});
    const track = el("div", { class: "track" });
    const bar = el("div", { class: "bar" });
    bar.style.width = `${Math.max(0, Math.min(1, prob)) * 100}%`;
    track.append(bar);
    row.append(el("span", { class: "name" }, label), track, el("span", { class: "value" }, fmt(prob)));
    box.append(row);
  }
}

// ---- NER: the text with its entities highlighted, and a table of them ------------------

function entityColour(type) {
  const i = (state.info.entity_types || []).indexOf(type);
  if (i < 0) return "#e5e7eb";
  if (i < ENTITY_COLOURS.length) return ENTITY_COLOURS[i];
  return `hsl(${Math.round((i * 137.5) % 360)}, 85%, 82%)`;  // golden-angle hues beyond the list
}

function swatch(type) {
  const s = el("span", { class: "swatch", "aria-hidden": "true" });
  s.style.setProperty("--ent", entityColour(type));
  return s;
}

// Offsets count code points (Python's str indices), not UTF-16 units: slice Array.from(text).
// Text goes in as text nodes; the type label is drawn by CSS from data-type (see style.css).
function renderEntities(text, p) {
  $("entities").hidden = false;
  markFresh("entities");
  const chars = Array.from(text);
  const entities = (p.entities || []).slice().sort((a, b) => a.start - b.start || b.end - a.end);
  const box = $("entity-text");
  box.replaceChildren();
  let pos = 0;
  for (const e of entities) {
    if (e.start < pos || e.end <= e.start || e.end > chars.length) continue;  // overlapping: table only
    if (e.start > pos) box.append(document.createTextNode(chars.slice(pos, e.start).join("")));
    const mark = el("mark", { class: "ent", "data-type": e.type, title: `${e.type} · score ${fmt(e.score)}` },
                    chars.slice(e.start, e.end).join(""));
    mark.style.setProperty("--ent", entityColour(e.type));
    box.append(mark);
    pos = e.end;
  }
  if (pos < chars.length) box.append(document.createTextNode(chars.slice(pos).join("")));
  const n = entities.length;
  $("entity-count").textContent = n === 1 ? "1 entity" : `${n} entities`;

  const legend = $("entity-legend");
  legend.replaceChildren();
  for (const type of state.info.entity_types || []) {
    const item = el("span", { class: "legend-item" });
    item.append(swatch(type), type);
    legend.append(item);
  }

  const body = $("entity-body");
  body.replaceChildren();
  if (!n) {
    const tr = el("tr");
    tr.append(el("td", { colspan: "4", class: "muted" }, "No entities found."));
    body.append(tr);
  }
  for (const e of entities) {
    const tr = el("tr", { class: "entity" });
    const type = el("td", { class: "type" });
    type.append(swatch(e.type), e.type);
    tr.append(type, el("td", { class: "text" }, e.text ?? ""),
              el("td", { class: "num" }, `${e.start}–${e.end}`), el("td", { class: "num" }, fmt(e.score)));
    body.append(tr);
  }
}

// ---- QA: a question about a context, the answer marked in the context ---------------------

$("qa-form").addEventListener("submit", (event) => {
  event.preventDefault();
  answerQuestion();
});

$("qa-context").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("qa-form").requestSubmit();
  }
});

async function answerQuestion() {
  const context = $("qa-context").value;
  const question = $("qa-question").value;
  clearError("qa-error");
  if (!context.trim() || !question.trim()) {
    $("qa-error").textContent = context.trim() ? "Type a question first." : "Paste a context first.";
    return;
  }
  const run = ++state.run;
  const button = $("qa-button");
  button.disabled = true;
  $("qa-status").textContent = "answering…";
  try {
    const r = await api("v1/ask", { question, context });
    if (run === state.run) renderAnswer(context, r);
  } catch (e) {
    if (run === state.run) {
      $("qa-result").hidden = true;  // no answer of an earlier question under the error
      showError("qa-error", e);
    }
  } finally {
    button.disabled = false;
    if (run === state.run) $("qa-status").textContent = "";
  }
}

// Offsets count code points (Python's str indices), as for entities: slice Array.from(context).
// The context goes in as text nodes; only the answer is wrapped in a <mark>.
function renderAnswer(context, r) {
  $("qa-result").hidden = false;
  const chars = Array.from(context);
  const box = $("qa-context-view");
  box.replaceChildren();
  const found = r.answer !== "" && Number.isInteger(r.start) && Number.isInteger(r.end) &&
    r.start >= 0 && r.start < r.end && r.end <= chars.length;
  const answer = $("qa-answer");
  if (!found) {
    answer.className = "answer none";
    answer.textContent = "No answer in this context.";
    $("qa-score").textContent = `no-answer score ${fmt(r.score)}`;
    box.append(document.createTextNode(context));
    return;
  }
  answer.className = "answer";
  answer.textContent = r.answer;
  $("qa-score").textContent = `score ${fmt(r.score)} · characters ${r.start}–${r.end}`;
  if (r.start > 0) box.append(document.createTextNode(chars.slice(0, r.start).join("")));
  box.append(el("mark", { class: "answer-span", title: `answer · score ${fmt(r.score)}` },
                chars.slice(r.start, r.end).join("")));
  if (r.end < chars.length) box.append(document.createTextNode(chars.slice(r.end).join("")));
}

// ---- explain: shaded words and the attention grid ----------------------------------------

async function explain(text, run) {
  clearError("explain-error");
  try {
    const r = await api("v1/explain", { text });
    if (run !== state.run) return;
    renderWords(text, r);
    renderAttention(r);
    $("explain-status").textContent = r.steps < r.steps_requested
      ? `${r.steps} integrated-gradients steps (${r.steps_requested} asked: fewer for a long text)`
      : "";
  } catch (e) {
    if (run !== state.run) return;
    // no stale explanation of an earlier text: clear the words and the grid
    $("explanation").hidden = false;
    clearExplanation("", "No attention maps: the explanation failed.");
    showError("explain-error", e);
  }
}

// Green supports the explained label, red speaks against it; alpha = |score| / max.
function shade(score, max) {
  if (!max) return "transparent";
  const a = (Math.min(1, Math.abs(score) / max) * 0.85).toFixed(3);
  return score >= 0 ? `rgba(22,163,74,${a})` : `rgba(220,38,38,${a})`;
}

// Finds each word in the original text, to keep its spacing and case; null when a word
// cannot be found (the tokenizer normalised it), and the words are then joined by spaces.
function segments(text, words) {
  const lower = text.toLowerCase();
  if (lower.length !== text.length) return null;
  const out = [];
  let pos = 0;
  for (let i = 0; i < words.length; i++) {
    const w = words[i].word.toLowerCase();
    const at = lower.indexOf(w, pos);
    if (!w || at < 0) return null;
    if (at > pos) out.push([text.slice(pos, at), null]);
    out.push([text.slice(at, at + w.length), i]);
    pos = at + w.length;
  }
  if (pos < text.length) out.push([text.slice(pos), null]);
  return out;
}

function renderWords(text, r) {
  $("explanation").hidden = false;
  markFresh("explanation");
  const words = r.words || [];
  const max = Math.max(0, ...words.map((w) => Math.abs(w.score)));
  const pieces = segments(text, words) || words.flatMap((w, i) => (i ? [[" ", null], [w.word, i]] : [[w.word, i]]));
  const box = $("words");
  box.replaceChildren();
  for (const [piece, i] of pieces) {
    if (i === null) {
      box.append(document.createTextNode(piece));
      continue;
    }
    const score = words[i].score;
    const span = el("span", { class: "w", "data-score": String(score),
                              title: `${words[i].word}: ${score >= 0 ? "+" : ""}${fmt(score, 4)}` }, piece);
    span.style.backgroundColor = shade(score, max);
    box.append(span);
  }
  $("legend").hidden = false;
  const target = labelText(r.label);
  $("legend-against").textContent = `against ${target}`;
  $("legend-for").textContent = `supports ${target}`;
  // with a labelled memory the prediction may differ from the model's own, which is explained
  const note = $("explain-note");
  note.hidden = target === state.label;
  note.textContent = `Explains the model's own prediction, ${target}; the label above also weighs the remembered neighbours.`;
}

// One map (T × T) into a T × T canvas, white to blue, scaled to the map's own maximum;
// CSS enlarges it with `image-rendering: pixelated`.
function drawThumb(canvas, map) {
  const n = map.length;
  canvas.width = n;
  canvas.height = n;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(n, n);
  const max = Math.max(1e-12, ...map.flat());
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const [r, g, b] = heat(map[i][j] / max);
      const k = 4 * (i * n + j);
      image.data.set([r, g, b, 255], k);
    }
  }
  ctx.putImageData(image, 0, 0);
}

function heat(a) {
  const t = Math.max(0, Math.min(1, a));
  return [255 - t * (255 - 29), 255 - t * (255 - 78), 255 - t * (255 - 216)];  // to #1d4ed8
}

function renderAttention(r) {
  const section = $("attention");
  const grid = $("attention-grid");
  const note = $("attention-note");
  section.hidden = false;
  markFresh("attention");
  grid.replaceChildren();
  const att = r.attention;
  if (!att || !att.maps) {
    note.textContent = `Attention maps are kept for short texts only (this one has ${(r.tokens || []).length} tokens).`;
    return;
  }
  const { layers, heads, maps } = att;
  // thumbnails sized so the whole grid fits the card (scrolls beyond 20 px a map)
  const compact = heads > 6 || layers > 6;
  const width = Math.floor((grid.clientWidth - (compact ? 30 : 50)) / heads) - 6;
  const height = Math.floor(400 / layers) - 6;
  const size = Math.max(20, Math.min(72, width, height));  // CSS px per thumbnail
  const table = el("table", { class: "grid" });
  const head = el("tr");
  head.append(el("th"));
  for (let h = 0; h < heads; h++) {
    head.append(el("th", { scope: "col", title: `head ${h + 1}` }, compact ? `h${h + 1}` : `head ${h + 1}`));
  }
  table.append(head);
  for (let l = 0; l < layers; l++) {
    const tr = el("tr");
    tr.append(el("th", { scope: "row", title: `layer ${l + 1}` }, compact ? `L${l + 1}` : `layer ${l + 1}`));
    for (let h = 0; h < heads; h++) {
      const name = `layer ${l + 1}, head ${h + 1}`;
      const button = el("button", { type: "button", class: "head", title: `${name} (click to enlarge)`,
                                    "aria-label": `${name}: enlarge` });
      const canvas = el("canvas", { "aria-hidden": "true", "data-layer": String(l), "data-head": String(h) });
      canvas.style.width = canvas.style.height = `${size}px`;
      drawThumb(canvas, maps[l][h]);
      button.append(canvas);
      button.addEventListener("click", () => openMap(name, r.tokens, maps[l][h]));
      const td = el("td");
      td.append(button);
      tr.append(td);
    }
    table.append(tr);
  }
  grid.append(table);
  note.textContent = `${r.tokens.length} tokens · rows = queries, columns = keys, each map scaled to its own maximum · click a map to enlarge it`;
}

// The enlarged map: one square per (query, key) with the tokens on both axes.
function openMap(name, tokens, map) {
  const n = tokens.length;
  const cell = Math.max(8, Math.min(40, Math.floor(560 / n)));
  const font = Math.max(8, Math.min(13, cell - 2));
  const canvas = $("map-canvas");
  const ctx = canvas.getContext("2d");
  ctx.font = `${font}px system-ui, sans-serif`;
  const margin = 10 + Math.max(...tokens.map((t) => ctx.measureText(t).width));
  canvas.width = margin + n * cell + 4;
  canvas.height = margin + n * cell + 4;
  ctx.font = `${font}px system-ui, sans-serif`;  // resizing the canvas resets its state
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const max = Math.max(1e-12, ...map.flat());
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const [r, g, b] = heat(map[i][j] / max);
      ctx.fillStyle = `rgb(${r | 0},${g | 0},${b | 0})`;
      ctx.fillRect(margin + j * cell, margin + i * cell, cell, cell);
    }
  }
  ctx.fillStyle = "#222";
  tokens.forEach((t, i) => {
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(t, margin - 4, margin + (i + 0.5) * cell);  // queries down the left
    ctx.save();
    ctx.translate(margin + (i + 0.5) * cell, margin - 4);    // keys along the top
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(t, 0, 0);
    ctx.restore();
  });
  // hover: which query attends to which key, and how much
  canvas.onmousemove = (event) => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left - margin) / cell);
    const i = Math.floor((event.clientY - box.top - margin) / cell);
    canvas.title = i >= 0 && j >= 0 && i < n && j < n ? `${tokens[i]} → ${tokens[j]}: ${fmt(map[i][j])}` : "";
  };
  canvas.setAttribute("aria-label", `attention of ${name} over ${n} tokens`);
  $("map-caption").textContent = `${name} · rows = queries, columns = keys · Esc to close`;
  $("map-dialog").showModal();
}

$("map-close").addEventListener("click", () => $("map-dialog").close());
$("map-dialog").addEventListener("click", (event) => {
  if (event.target === $("map-dialog")) $("map-dialog").close();  // a click on the backdrop
});

// ---- memory: nearest examples and FAQ answers --------------------------------------------

async function nearest(text, run) {
  clearError("neighbours-error");
  $("neighbours").hidden = false;
  const body = $("neighbours-body");
  try {
    const r = await api("v1/memory/query", { texts: [text], k: NEIGHBOURS });
    if (run !== state.run) return;
    markFresh("neighbours");
    body.replaceChildren();
    for (const hit of r.results[0]) {
      const tr = el("tr");
      tr.append(el("td", { class: "num" }, fmt(hit.score)), el("td", {}, labelText(hit.label)),
                el("td", { class: "text" }, hit.text ?? ""));
      body.append(tr);
    }
  } catch (e) {
    if (run !== state.run) return;
    markFresh("neighbours");
    body.replaceChildren();
    showError("neighbours-error", e);
  }
}

$("ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  ask();
});

// A payload answer may be a string or an object: objects are shown as JSON.
function answerText(answer) {
  if (answer === null || answer === undefined) return "(no answer)";
  return typeof answer === "string" ? answer : JSON.stringify(answer, null, 2);
}

async function ask() {
  const question = $("question").value;
  const out = $("answer");
  clearError("ask-error");
  if (!question.trim()) {
    $("ask-error").textContent = "Type a question first.";
    return;
  }
  const button = $("ask-button");
  button.disabled = true;
  try {
    const r = await api("v1/ask", { question, top_k: ASK_TOP_K });
    out.replaceChildren();
    const threshold = r.threshold === null || r.threshold === undefined ? "" : ` · threshold ${fmt(r.threshold)}`;
    if (r.answered) {
      out.append(el("p", { class: "answer" }, answerText(r.answer)),
                 el("p", { class: "muted small" }, `score ${fmt(r.score)}${threshold} · matched “${r.matched_question}”`));
    } else {
      out.append(el("p", { class: "answer none" }, "No confident answer."),
                 el("p", { class: "muted small" }, `closest question “${r.matched_question}” scored ${fmt(r.score)}${threshold}`));
    }
    const alternatives = r.alternatives || [];
    if (alternatives.length) {
      out.append(el("p", { class: "muted small" }, r.answered ? "Other candidates:" : "Other close questions:"));
      const list = el("ol", { class: "alternatives" });
      for (const alt of alternatives) {
        const li = el("li", {}, answerText(alt.answer));
        li.append(el("span", { class: "muted" }, ` · “${alt.matched_question}” · ${fmt(alt.score)}`));
        list.append(li);
      }
      out.append(list);
    }
  } catch (e) {
    out.replaceChildren();
    showError("ask-error", e);
  } finally {
    button.disabled = false;
  }
}

loadInfo();
