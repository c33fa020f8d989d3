// MuseGPT Studio: one page over the server's own API (no build step, no framework).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  project: null, document: null, abort: null, tune: null,
  node: null,  // the generation shown (a node of the project's tree), with its siblings
  suffix: "",  // the text after the cursor while the node's alternatives are shown
  undo: [], redo: [],  // the editor before / after each generation, flip or take
  used: null,  // the task's work last put into the editor: {id, upTo: the text up to its end}
};

// -- talking to the server -------------------------------------------------------------

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body.error ? body.error.message : String(body));
  return body;
}

// Server-sent events from a POST: yields each `data:` payload parsed, until [DONE].
async function* events(path, payload, signal) {
  const response = await fetch(path, {
    method: "POST", headers: headers(), body: JSON.stringify(payload), signal,
  });
  if (!response.ok) {
    const body = await response.json();
    throw new Error(body.error ? body.error.message : response.statusText);
  }
  yield* readEvents(response);
}

// The JSON events of a server-sent-event response, until `[DONE]`; an error event throws.
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new Error(parsed.error.message);
      yield parsed;
    }
  }
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// The sampler fields of the parameters panel: each input's id is its SamplingParams name.
const SAMPLERS = [
  "dry_multiplier", "dry_penalty_last_n", "xtc_probability", "xtc_threshold", "mirostat",
  "mirostat_tau", "dynatemp_range", "top_n_sigma",
];

function params() {
  const p = { temperature: Number($("temperature").value) };
  const seed = $("seed").value;
  if (seed !== "") p.seed = Number(seed);
  const banned = $("banned").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (banned.length) p.banned = banned;
  for (const name of SAMPLERS) {  // llama.cpp's samplers: sent only when set
    const value = $(name).value;
    if (value !== "") p[name] = Number(value);
  }
  return p;
}

const maxTokens = () => Number($("max-tokens").value) || 120;
const alternatives = () => Math.max(1, Math.min(8, Number($("alternatives").value) || 1));

// An error where the action was taken (`where`: that place's error line), and in the status.
function showError(where, message) {
  status(message, true);
  if (where) $(where).textContent = message;
}

const STOP_BUTTONS = ["stop", "story-stop"];

// Runs one generation at a time; a Stop button aborts it (the server then stops too).
async function busy(label, work, where = "writing-error") {
  if (state.abort) return;
  state.abort = new AbortController();
  for (const id of STOP_BUTTONS) $(id).disabled = false;
  for (const line of document.querySelectorAll(".error-line")) line.textContent = "";
  status(label + "…");
  try {
    await work(state.abort.signal);
    status("done");
  } catch (err) {
    if (err.name === "AbortError") status("stopped");
    else showError(where, err.message);
  } finally {
    state.abort = null;
    for (const id of STOP_BUTTONS) $(id).disabled = true;
  }
}

// -- output ----------------------------------------------------------------------------

function clearOutput() {
  $("output").textContent = "";
  $("output").classList.remove("abc");
  $("alternatives-list").textContent = "";
  $("report").hidden = true;
  $("music").hidden = true;
  $("token-choices").hidden = true;
}

// A token with its probability (and the likeliest alternatives) on hover; a token of the
// shown generation (its `index`) offers its alternatives on a click.
function tokenSpan(text, logprob, top, index) {
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = text;
  if (index !== undefined && Object.keys(top || {}).length) {
    span.dataset.index = index;
    span.tabIndex = 0;
    span.setAttribute("role", "button");
    span.addEventListener("click", () => offerAlternatives(index));
    span.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); offerAlternatives(index); }
    });
  }
  if (logprob !== undefined && logprob !== null) {
    const p = Math.exp(logprob);
    span.dataset.prob = p.toFixed(4);
    const others = Object.entries(top || {})
      .map(([t, lp]) => `${JSON.stringify(t)} ${(100 * Math.exp(lp)).toFixed(1)}%`).join("\n");
    span.title = `${(100 * p).toFixed(1)}%` + (others ? `\n${others}` : "");
    if (p < 0.1) span.classList.add("p-low");
    else if (p < 0.4) span.classList.add("p-mid");
  }
  $("output").appendChild(span);
}

function insertAtCursor(text) {
  const editor = $("editor");
  const at = editor.selectionEnd;
  editor.setRangeText(text, at, at, "end");
}

// Ends a sentence (a rewrite usually does, even of a passage that stopped mid-sentence).
const SENTENCE_END = /[.!?。！？…]+$/u;
// What follows a selection when its sentence goes on: punctuation or a lower-case word.
const GOES_ON = /^\s*(?:[.!?,;:。！？，；：…]|\p{Ll})/u;

// A replacement fitted into the text around the passage it replaces: the passage's own
// leading and trailing spaces kept, and the replacement's closing "." dropped where the
// passage did not end its sentence, so no ".." or ". and" is left behind.
function fitted(text, start, end) {
  const value = $("editor").value;
  const passage = value.slice(start, end);
  if (!passage) return text;
  let body = text.trim();
  if (!SENTENCE_END.test(passage.trimEnd()) && GOES_ON.test(value.slice(end))) {
    body = body.replace(SENTENCE_END, "");
  }
  return passage.match(/^\s*/u)[0] + body + passage.match(/\s*$/u)[0];
}

function replaceSelection(start, end, text) {
  $("editor").setRangeText(fitted(text, start, end), start, end, "select");
  $("editor").focus();
}

// The finished texts, each with its button; the streamed draft of them is cleared so that
// no text is shown twice.
// `ids[i]` is the generation (node) texts[i] came from.
function showAlternatives(texts, start, end, ids = []) {
  const list = $("alternatives-list");
  list.textContent = "";
  $("output").textContent = "";
  for (const [i, text] of texts.entries()) {
    const li = document.createElement("li");
    li.textContent = text;
    const use = document.createElement("button");
    use.type = "button";
    use.textContent = start === end ? "Insert" : "Replace selection";
    use.addEventListener("click", () => {
      replaceSelection(start, end, text);
      const editor = $("editor");  // text written on from here comes from that node
      state.used = ids[i] ? { id: ids[i], upTo: editor.value.slice(0, editor.selectionEnd) } : null;
    });
    li.appendChild(use);
    list.appendChild(li);
  }
  list.scrollIntoView({ block: "nearest" });  // below the editor on a narrow screen
}

function showReport(report) {
  const table = $("report");
  const body = table.querySelector("tbody");
  body.textContent = "";
  $("report-summary").textContent = report.summary;
  for (const line of report.lines) {
    const tr = document.createElement("tr");
    if (line.problems.length) tr.className = "bad";
    const rhyme = line.rhyme_letter ? `${line.rhyme_letter} ${line.end} ${line.rhyme_kind}` : line.end;
    for (const cell of [line.number, line.text, line.units, rhyme, line.problems.join("; ") || "ok"]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  table.hidden = false;
}

// -- writing ---------------------------------------------------------------------------

// -- generations as a tree --------------------------------------------------------------
// Each continuation is a node in the works library: `prompt` is the text it continues,
// `parent_id` the node that text came from; alternatives share both (siblings). The studio's
// other tasks (rewrite, describe, brainstorm, poem...) are nodes too, under the continuation
// whose text they worked on; `prompt` is then the passage or topic they were given.

// Tasks whose works are not text for the editor: kept in the library, not in this tree.
const NOT_IN_TREE = new Set(["image", "compose"]);

// The node `text` comes from: the shown continuation, or the task's work last put into the
// editor, whichever `text` still begins with (the longer if both); null when neither.
function currentNodeId(text) {
  const node = state.node;
  const candidates = [
    node && [node.prompt + node.output, node.id],
    state.used && [state.used.upTo, state.used.id],
  ].filter((c) => c && text.startsWith(c[0]));
  candidates.sort((a, b) => b[0].length - a[0].length);
  return candidates.length ? candidates[0][1] : null;
}

// The project generations are kept in (made from the title when none is open).
async function ensureProject() {
  if (state.project !== null) return;
  const name = $("title").value.trim() || "Untitled";
  state.project = (await api("/v1/projects", { method: "POST", body: JSON.stringify({ name }) })).id;
  await loadProjects();
  // A new project has no memory or note yet: it takes what the page holds, so what the
  // writer typed before the project existed is kept, not replaced by empty fields.
  await api(`/v1/projects/${state.project}/bible`,
    { method: "PUT", body: JSON.stringify(contextBlocks()) });
  await loadLore();
}

// The memory, note and lorebook fields as the page shows them (unsaved edits count).
function contextBlocks() {
  return {
    memory: $("memory").value, authors_note: $("authors-note").value,
    note_depth: Math.max(0, Math.min(100, Number($("note-depth").value) || 0)),
  };
}

async function assembleContext(text) {
  const context = await api("/v1/studio/context", {
    method: "POST",
    body: JSON.stringify({
      model: $("model").value, text, max_tokens: maxTokens(), project_id: state.project,
      ...contextBlocks(),
    }),
  });
  showContext(context);
  return context;
}

function showContext(context) {
  $("context-view").textContent = context.prompt;
  $("context-tokens").textContent = `(${context.tokens} of ${context.budget} tokens` +
    (context.dropped_chars ? `, the first ${context.dropped_chars} characters left out)` : ")");
  $("active-lore").textContent = context.active.length ? context.active.join(", ") : "none";
  $("context-box").hidden = false;
}

function snapshot() {
  return { text: $("editor").value, node: state.node, suffix: state.suffix };
}

function remember() {
  state.undo.push(snapshot());
  state.redo = [];
  updateBranchBar();
}

function restore(shot) {
  $("editor").value = shot.text;
  state.node = shot.node;
  state.suffix = shot.suffix;
  renderNode();
}

function undoGeneration() {
  if (!state.undo.length || state.abort) return;
  state.redo.push(snapshot());
  restore(state.undo.pop());
}

function redoGeneration() {
  if (!state.redo.length || state.abort) return;
  state.undo.push(snapshot());
  restore(state.redo.pop());
}

// A continuation of `prefix` (the text before the cursor), begun with `lead` (tokens
// already chosen), streamed into the editor, then kept as a node under `parentId`.
async function generate(prefix, parentId, lead, signal) {
  await ensureProject();
  clearOutput();
  const leadText = lead.map((t) => t[0]).join("");
  const context = await assembleContext(prefix + leadText);
  const tokens = lead.slice();
  const show = () => {
    $("editor").value = prefix + tokens.map((t) => t[0]).join("") + state.suffix;
    const at = $("editor").value.length - state.suffix.length;
    $("editor").setSelectionRange(at, at);
  };
  tokens.forEach((t, i) => tokenSpan(t[0], t[1], t[2], i));
  show();
  const payload = {
    model: $("model").value, prompt: context.prompt, max_tokens: maxTokens(), stream: true,
    logprobs: 5, ...params(),
  };
  for await (const chunk of events("/v1/completions", payload, signal)) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    const lp = choice.logprobs;
    const pieces = lp && lp.tokens.length
      ? lp.tokens.map((t, i) => [t, lp.token_logprobs[i], lp.top_logprobs[i]])
      : choice.text ? [[choice.text, null, {}]] : [];
    for (const piece of pieces) {
      tokenSpan(piece[0], piece[1], piece[2], tokens.length);
      tokens.push(piece);
    }
    show();
  }
  const node = await api(`/v1/projects/${state.project}/generations`, {
    method: "POST",
    body: JSON.stringify({
      model: $("model").value, prompt: prefix, output: tokens.map((t) => t[0]).join(""),
      document_id: state.document, parent_id: parentId,
      params: { ...params(), max_tokens: maxTokens(), tokens, context_tokens: context.tokens,
        lore: context.active },
    }),
  });
  state.node = node;
  updateBranchBar();
  await loadGenerations();
}

// The project's continuations as a tree (children under their parent, alternatives side by
// side in order); a click shows that node, to flip from or continue.
async function loadGenerations() {
  const list = $("generations");
  list.textContent = "";
  if (state.project === null) return;
  const nodes = (await api(`/v1/projects/${state.project}/generations`)).data
    .filter((g) => !NOT_IN_TREE.has(g.task));
  const children = new Map();
  for (const g of nodes) {
    const key = g.parent_id ?? 0;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(g);
  }
  const grow = (into, parent) => {
    for (const g of children.get(parent) || []) {
      const li = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "node" + (state.node && state.node.id === g.id ? " selected" : "");
      open.dataset.id = g.id;
      const task = g.task === "continue" ? "" : `${g.task}: `;
      open.textContent = `#${g.id} ${task}${g.output.trim().slice(0, 40) || "(empty)"}`;
      open.title = g.output;
      open.addEventListener("click", () => showGeneration(g.id));
      li.appendChild(open);
      if (children.has(g.id)) {
        const sub = document.createElement("ul");
        grow(sub, g.id);
        li.appendChild(sub);
      }
      into.appendChild(li);
    }
  };
  grow(list, 0);
}

async function showGeneration(id) {
  if (state.abort) return;
  try {
    const node = await api(`/v1/generations/${id}`);
    if (node.task !== "continue") {  // a task's work: offered again, to insert at the cursor
      const at = $("editor").selectionEnd;
      const parts = node.params.parts || [];
      const texts = parts.length ? parts : [node.output];
      showAlternatives(texts, at, at, texts.map(() => node.id));
      status(`${node.task} #${node.id}, of ${JSON.stringify(node.prompt.slice(0, 60))}`);
      return;
    }
    remember();
    state.node = node;
    state.suffix = "";
    $("editor").value = node.prompt + node.output;
    renderNode();
  } catch (err) {
    showError("writing-error", err.message);
  }
}

function continueAtCursor() {
  return busy("writing", async (signal) => {
    const editor = $("editor");
    const prefix = editor.value.slice(0, editor.selectionEnd) || $("title").value || "\n";
    // The node the text before the cursor still begins with is continued.
    const parent = currentNodeId(prefix);
    remember();
    state.suffix = editor.value.slice(editor.selectionEnd);
    await generate(prefix, parent, [], signal);
  });
}

// Another alternative of the shown continuation: a sibling, shown in its place.
function retry() {
  if (!state.node) return Promise.resolve();
  return busy("writing another", async (signal) => {
    const node = state.node;
    remember();
    await generate(node.prompt, node.parent_id, [], signal);
  });
}

// The token at `index` replaced by `choice` and the text continued from there: a new
// alternative (the generation as it was stays a sibling to flip back to).
function takeAlternative(index, choice, logprob) {
  return busy("continuing from your choice", async (signal) => {
    const node = state.node;
    const lead = [...node.params.tokens.slice(0, index), [choice, logprob, {}]];
    remember();
    await generate(node.prompt, node.parent_id, lead, signal);
  });
}

function offerAlternatives(index) {
  if (!state.node || state.abort) return;
  const [token, , top] = state.node.params.tokens[index];
  const list = $("token-choices-list");
  list.textContent = "";
  $("token-choices-label").textContent = `Replace ${JSON.stringify(token)} and continue with:`;
  for (const [choice, logprob] of Object.entries(top || {})) {
    if (choice === token) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choice";
    button.textContent = `${JSON.stringify(choice)} ${(100 * Math.exp(logprob)).toFixed(1)}%`;
    button.addEventListener("click", () => {
      $("token-choices").hidden = true;
      takeAlternative(index, choice, logprob);
    });
    list.appendChild(button);
  }
  $("token-choices").hidden = false;
}

// The shown node's tokens in the output panel, and where it stands among its siblings.
function renderNode() {
  clearOutput();
  if (state.node) {
    (state.node.params.tokens || []).forEach((t, i) => tokenSpan(t[0], t[1], t[2], i));
  }
  updateBranchBar();
}

function updateBranchBar() {
  const node = state.node;
  const at = node ? node.siblings.indexOf(node.id) : -1;
  $("alt-position").textContent = node ? `alternative ${at + 1} of ${node.siblings.length}` : "";
  $("prev-alt").disabled = !node || at <= 0;
  $("next-alt").disabled = !node || at >= node.siblings.length - 1;
  $("retry").disabled = !node;
  $("accept").disabled = !node;
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
  for (const button of document.querySelectorAll("#generations button.node")) {
    button.classList.toggle("selected", node !== null && Number(button.dataset.id) === node.id);
  }
}

// Flips to the sibling `step` places on (← -1, → +1); the text after the cursor stays.
async function flip(step) {
  const node = state.node;
  if (!node || state.abort) return;
  const at = node.siblings.indexOf(node.id) + step;
  if (at < 0 || at >= node.siblings.length) return;
  try {
    const sibling = await api(`/v1/generations/${node.siblings[at]}`);
    remember();
    state.node = sibling;
    $("editor").value = sibling.prompt + sibling.output + state.suffix;
    renderNode();
  } catch (err) {
    showError("writing-error", err.message);
  }
}

// Keeps the text with the shown generation as a new version of the document.
function accept() {
  if (!state.node) return Promise.resolve();
  return save(state.node.id);
}

// A studio task streamed into the output panel; resolves to its finished work.
async function studio(task, body, signal) {
  await ensureProject();  // every generation is kept, as a node of the project's tree
  let work = null;
  const payload = {
    model: $("model").value, stream: true, params: { ...params(), max_new_tokens: maxTokens() },
    project_id: state.project, document_id: state.document,
    parent_id: currentNodeId($("editor").value), ...body,
  };
  for await (const event of events(`/v1/studio/${task}`, payload, signal)) {
    if (event.type === "text") tokenSpan(event.text);
    if (event.type === "work") work = event.work;
  }
  announceWork(work);
  await loadGenerations();
  return work;
}

// Other views (originality.js) learn of each finished work from this page event.
function announceWork(work) {
  if (work) document.dispatchEvent(new CustomEvent("musegpt:work", { detail: work }));
}

function selection() {
  const editor = $("editor");
  const start = editor.selectionStart;
  const end = editor.selectionEnd;
  return { start, end, text: editor.value.slice(start, end) };
}

function onSelection(task, label, body) {
  const sel = selection();
  if (!sel.text.trim()) {
    status("select a passage first", true);
    return Promise.resolve();
  }
  return busy(label, async (signal) => {
    clearOutput();
    let texts;
    let ids;
    if (task === "rewrite") {
      const work = await studio("rewrite", { text: sel.text, alternatives: alternatives(), ...body }, signal);
      texts = work.parts.length ? work.parts : [work.text];
      ids = texts.map(() => work.generation_id);
    } else {
      texts = [];
      ids = [];
      for (let i = 0; i < alternatives() && !signal.aborted; i++) {
        const work = await studio(task, { text: sel.text, ...body }, signal);
        texts.push(work.text);
        ids.push(work.generation_id);
      }
    }
    showAlternatives(texts, sel.start, sel.end, ids);
  });
}

function brainstorm() {
  const sel = selection();
  const topic = sel.text.trim() || $("title").value.trim() || $("editor").value.slice(-400);
  return busy("brainstorming", async (signal) => {
    clearOutput();
    const work = await studio("brainstorm", { text: topic, count: Math.max(3, alternatives()) }, signal);
    const at = $("editor").selectionEnd;
    const texts = work.parts.length ? work.parts : [work.text];
    showAlternatives(texts, at, at, texts.map(() => work.generation_id));
  });
}

function poem() {
  return busy("writing a poem", async (signal) => {
    clearOutput();
    const topic = $("poem-topic").value.trim() || $("title").value.trim();
    const work = await studio("poem", { text: topic, form: $("form").value }, signal);
    const at = $("editor").selectionEnd;
    showAlternatives([work.text], at, at, [work.generation_id]);
    showReport(work.report);
  });
}

// -- music -----------------------------------------------------------------------------

// The file of a tune (midi, wav, svg) as an object URL, or null where the server cannot
// make it (e.g. FluidSynth is not installed: the server's message is added to `notes`).
async function renderTune(abc, format, signal, notes) {
  const response = await fetch("/v1/music/render", {
    method: "POST", headers: headers(), body: JSON.stringify({ abc, format }), signal,
  });
  if (!response.ok) {
    const body = await response.json();
    notes.push(body.error ? body.error.message : response.statusText);
    return null;
  }
  return URL.createObjectURL(await response.blob());
}

function offerFile(id, url) {
  const link = $(id);
  link.hidden = url === null;
  if (url !== null) link.href = url;
}

function compose() {
  return busy("composing", async (signal) => {
    clearOutput();
    const payload = {
      request: $("tune-request").value.trim() || "a tune in D major",
      model: $("tune-model").value || null,
      bars: Number($("tune-bars").value) || 16,
      constrained: $("tune-constrained").checked,
      temperature: Number($("temperature").value),
      project_id: state.project, document_id: state.document,
    };
    const seed = $("seed").value;
    if (seed !== "") payload.seed = Number(seed);
    const tune = await api("/v1/music/compose", { method: "POST", body: JSON.stringify(payload), signal });
    announceWork(tune);
    $("output").textContent = tune.abc;  // the tune's one copy on the page
    $("output").classList.add("abc");
    state.tune = tune.abc;
    const c = tune.check;
    $("tune-check").textContent = `${tune.title}: ${tune.metre} in ${tune.key}, ` +
      `${c.bars_right}/${c.bars} bars of the right length` + (c.parses ? "" : ", does not parse");
    offerFile("tune-abc", URL.createObjectURL(new Blob([tune.abc], { type: "text/plain" })));
    const notes = [];
    const svg = await renderTune(tune.abc, "svg", signal, notes);
    const midi = await renderTune(tune.abc, "midi", signal, notes);
    const wav = await renderTune(tune.abc, "wav", signal, notes);
    if (notes.length) $("tune-check").textContent += ". " + notes.join(" ");
    $("score-frame").hidden = svg === null;
    if (svg !== null) {
      $("score").src = svg;
      $("score").alt = `Score of ${tune.title}`;
    }
    $("player").hidden = wav === null;
    if (wav !== null) $("player").src = wav;
    offerFile("tune-svg", svg);
    offerFile("tune-midi", midi);
    offerFile("tune-wav", wav);
    $("music").hidden = false;
  });
}

function showScoreFullSize() {
  if (!$("score").src) return;
  $("score-full").src = $("score").src;
  $("score-dialog-title").textContent = $("score").alt;
  $("score-dialog").showModal();
}

// -- the works library -----------------------------------------------------------------

function listItems(list, items, label, selected, onClick) {
  list.textContent = "";
  for (const item of items) {
    const li = document.createElement("li");
    li.className = "item" + (selected(item) ? " selected" : "");
    li.textContent = label(item);
    li.addEventListener("click", () => onClick(item));
    list.appendChild(li);
  }
}

async function loadProjects() {
  const projects = (await api("/v1/projects")).data;
  listItems($("projects"), projects, (p) => p.name, (p) => p.id === state.project, openProject);
}

async function openProject(project) {
  state.project = project.id;
  state.document = null;
  forgetGenerations();
  await loadProjects();
  await loadDocuments();
  $("versions").textContent = "";
  await loadContextBlocks();
  await loadGenerations();
  await openStory(project);  // story.js: the project's story, when it has one
}

function forgetGenerations() {
  state.node = null;
  state.used = null;
  state.suffix = "";
  state.undo = [];
  state.redo = [];
  updateBranchBar();
}

// -- memory, author's note and lorebook ------------------------------------------------

async function loadContextBlocks() {
  if (state.project === null) return;
  const bible = await api(`/v1/projects/${state.project}/bible`);
  $("memory").value = bible.memory;
  $("authors-note").value = bible.authors_note;
  $("note-depth").value = bible.note_depth;
  await loadLore();
}

async function loadLore() {
  const entries = (await api(`/v1/projects/${state.project}/lore`)).data;
  const list = $("lore-list");
  list.textContent = "";
  for (const entry of entries) {
    const li = document.createElement("li");
    li.className = "lore-entry";
    const head = document.createElement("strong");
    head.textContent = entry.name;
    const keys = document.createElement("span");
    keys.textContent = ` (${entry.keys.join(", ")}) `;
    const text = document.createElement("p");
    text.textContent = entry.text;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete ${entry.name}`);
    remove.addEventListener("click", () => contextAction(async () => {
      await api(`/v1/lore/${entry.id}`, { method: "DELETE" });
      await loadLore();
    }));
    li.append(head, keys, remove, text);
    list.appendChild(li);
  }
}

// A change to the context blocks; its error is shown beside them.
async function contextAction(action) {
  $("context-error").textContent = "";
  try {
    await ensureProject();
    await action();
  } catch (err) {
    showError("context-error", err.message);
  }
}

function addLore() {
  return contextAction(async () => {
    const name = $("lore-name").value.trim();
    if (!name) throw new Error("a lorebook entry needs a name");
    const keys = $("lore-keys").value.split(",").map((k) => k.trim()).filter(Boolean);
    await api(`/v1/projects/${state.project}/lore`, {
      method: "POST",
      body: JSON.stringify({ name, text: $("lore-text").value, keys: keys.length ? keys : null }),
    });
    for (const id of ["lore-name", "lore-keys", "lore-text"]) $(id).value = "";
    await loadLore();
  });
}

function saveContextBlocks() {
  return contextAction(async () => {
    await api(`/v1/projects/${state.project}/bible`,
      { method: "PUT", body: JSON.stringify(contextBlocks()) });
    status("memory and note saved");
  });
}

function showContextNow() {
  return contextAction(async () => {
    const editor = $("editor");
    await assembleContext(editor.value.slice(0, editor.selectionEnd));
    $("context-box").scrollIntoView({ block: "nearest" });
  });
}

// -- theme and shortcuts ---------------------------------------------------------------

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("musegpt-theme", theme);
  const dark = theme === "dark";
  $("theme").setAttribute("aria-pressed", String(dark));
  $("theme").textContent = dark ? "Light theme" : "Dark theme";
}

const SHORTCUTS = {
  "Alt+r": retry, "Alt+ArrowLeft": () => flip(-1), "Alt+ArrowRight": () => flip(1),
  "Alt+Enter": accept, "Alt+z": undoGeneration, "Alt+y": redoGeneration,
  "Ctrl+Enter": continueAtCursor, "Ctrl+s": () => save(),
};

function shortcut(e) {
  const mod = e.altKey ? "Alt+" : e.ctrlKey || e.metaKey ? "Ctrl+" : "";
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const action = mod && SHORTCUTS[mod + key];
  if (!action) return;
  e.preventDefault();
  action();
}

async function loadDocuments() {
  if (state.project === null) return;
  const docs = (await api(`/v1/projects/${state.project}/documents`)).data;
  listItems($("documents"), docs, (d) => `${d.title} (v${d.version})`,
    (d) => d.id === state.document, openDocument);
}

async function openDocument(doc) {
  const full = await api(`/v1/documents/${doc.id}`);
  state.document = full.id;
  forgetGenerations();
  $("title").value = full.title;
  $("editor").value = full.text;
  await loadDocuments();
  await loadVersions(full.version);
  status(`opened ${full.title}, version ${full.version}`);
}

async function loadVersions(current) {
  const versions = (await api(`/v1/documents/${state.document}/versions`)).data;
  listItems($("versions"), versions.slice().reverse(),
    (v) => `v${v.number} · ${v.created.slice(0, 19).replace("T", " ")}${v.note ? " · " + v.note : ""}`,
    (v) => v.number === current, openVersion);
}

async function openVersion(version) {
  const v = await api(`/v1/documents/${state.document}/versions/${version.number}`);
  $("editor").value = v.text;
  await loadVersions(v.number);
  status(`showing version ${v.number}; Save makes it the newest`);
}

async function save(generationId = null) {
  const title = $("title").value.trim() || "Untitled";
  try {
    if (state.project === null) {
      state.project = (await api("/v1/projects", { method: "POST", body: JSON.stringify({ name: title }) })).id;
    }
    let created = false;
    if (state.document === null) {
      const doc = await api(`/v1/projects/${state.project}/documents`,
        { method: "POST", body: JSON.stringify({ title, text: $("editor").value }) });
      state.document = doc.id;
      created = true;
      await loadVersions(doc.version);
    }
    // an accepted generation is a version of its own, linked to it (provenance)
    if (!created || generationId !== null) {
      const version = { text: $("editor").value };
      if (generationId !== null) {
        Object.assign(version, { generation_id: generationId, note: `accepted generation ${generationId}` });
      }
      const saved = await api(`/v1/documents/${state.document}`,
        { method: "PUT", body: JSON.stringify(version) });
      await loadVersions(saved.version);
    }
    await loadProjects();
    await loadDocuments();
    status(generationId === null ? "saved" : "accepted");
  } catch (err) {
    showError("writing-error", err.message);
  }
}

async function newProject() {
  const name = prompt("Project name");
  if (!name) return;
  const project = await api("/v1/projects", { method: "POST", body: JSON.stringify({ name }) });
  await openProject(project);
  newDocument();
}

function newDocument() {
  state.document = null;
  forgetGenerations();
  $("title").value = "";
  $("editor").value = "";
  $("versions").textContent = "";
  loadDocuments();
}

async function exportProject(format) {
  if (state.project === null) return status("open a project first", true);
  const response = await fetch(`/v1/projects/${state.project}/export?format=${format}`, { headers: headers() });
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `project-${state.project}.${{ markdown: "md", fountain: "fountain", json: "json" }[format]}`;
  link.click();
  URL.revokeObjectURL(link.href);
}

// -- start -----------------------------------------------------------------------------

async function start() {
  try {
    // Each menu lists the models of its kind (the server reads it from the model itself):
    // text models write, ABC models compose (image models are draw.js's).
    const listed = (await api("/v1/models")).data;
    const menus = [["model", "text", "(no text model)"], ["tune-model", "music", "(no music model)"]];
    for (const [menu, kind, none] of menus) {
      const models = listed.filter((m) => m.kind === kind);
      $(menu).textContent = "";
      for (const m of models) $(menu).add(new Option(m.id, m.id));
      if (!models.length) $(menu).add(new Option(none, ""));
    }
    const tasks = await api("/v1/studio/tasks");
    $("form").textContent = "";
    for (const f of tasks.forms) $("form").add(new Option(f.display_name, f.name));
    await loadProjects();
    status("ready");
  } catch (err) {
    status(err.message, true);
  }
}

$("apikey").value = localStorage.getItem("musegpt-key") || "";
$("apikey").addEventListener("change", () => {
  localStorage.setItem("musegpt-key", $("apikey").value);
  start();
});
$("continue").addEventListener("click", continueAtCursor);
$("rewrite").addEventListener("click", () =>
  onSelection("rewrite", "rewriting", { style: $("style").value.trim() || "vivid" }));
$("describe").addEventListener("click", () => onSelection("describe", "describing", {}));
$("expand").addEventListener("click", () =>
  onSelection("rewrite", "expanding", { style: "expanded, with more vivid detail" }));
$("brainstorm").addEventListener("click", brainstorm);
$("poem").addEventListener("click", poem);
$("compose").addEventListener("click", compose);
$("insert-tune").addEventListener("click", () => state.tune && insertAtCursor(state.tune));
$("score").addEventListener("click", showScoreFullSize);
$("score-dialog").addEventListener("click", (e) => {
  if (e.target === $("score-dialog")) $("score-dialog").close();  // a click beside the score
});
$("save").addEventListener("click", () => save());
$("undo").addEventListener("click", undoGeneration);
$("redo").addEventListener("click", redoGeneration);
$("prev-alt").addEventListener("click", () => flip(-1));
$("next-alt").addEventListener("click", () => flip(1));
$("retry").addEventListener("click", retry);
$("accept").addEventListener("click", accept);
$("lore-add").addEventListener("click", addLore);
$("context-save").addEventListener("click", saveContextBlocks);
$("context-show").addEventListener("click", showContextNow);
$("theme").addEventListener("click", () =>
  setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));
setTheme(localStorage.getItem("musegpt-theme") ||
  (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
$("stop").addEventListener("click", () => state.abort && state.abort.abort());
$("new-project").addEventListener("click", newProject);
$("new-document").addEventListener("click", newDocument);
for (const b of document.querySelectorAll(".export button")) {
  b.addEventListener("click", () => exportProject(b.dataset.format));
}
document.addEventListener("keydown", shortcut);
start();
