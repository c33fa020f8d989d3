// MuseGPT Studio, pictures: a Draw view beside Text and Story. A caption, a style, how many
// and a seed draw a grid of pictures (POST /v1/images/generations); each can be drawn again
// on its own (re-roll), varied (its top half kept and the rest redrawn, as many times as the
// form asks: POST /v1/images/variations) or saved into the open project as an image document.
"use strict";

state.pictures = [];  // the grid: one answer item of /v1/images/generations per cell
let drawStyles = null;  // the image model's styles, asked for when the view first opens

function drawPanel() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/draw.css";
  document.head.appendChild(link);

  const button = document.createElement("button");
  button.id = "view-draw";
  button.type = "button";
  button.setAttribute("aria-pressed", "false");
  button.textContent = "Draw";
  let views = document.querySelector("#writing .views");
  if (!views) {  // a page without view buttons: Draw starts the group
    views = document.createElement("div");
    views.className = "views";
    views.setAttribute("role", "group");
    $("writing").prepend(views);
  }
  views.appendChild(button);

  const view = document.createElement("div");
  view.id = "draw-view";
  view.className = "view";
  view.hidden = true;
  view.innerHTML = `
    <h2>Draw</h2>
    <div class="draw-form">
      <label class="wide">Caption <input id="draw-prompt" placeholder="a red apple"></label>
      <label>Style <select id="draw-style"><option value="">any</option></select></label>
      <label>Pictures <input id="draw-n" type="number" min="1" max="10" value="4"></label>
      <label>Seed <input id="draw-seed" type="number" min="0" placeholder="random"></label>
      <label>Size <select id="draw-size">
        <option>256x256</option><option>512x512</option><option>1024x1024</option>
      </select></label>
      <button id="draw" type="button" class="primary">Draw</button>
    </div>
    <p id="draw-error" class="error-line" role="alert"></p>
    <ul id="draw-grid" aria-label="Pictures"></ul>`;
  $("writing").appendChild(view);

  button.addEventListener("click", showDraw);
  views.addEventListener("click", (e) => {  // another view's button: Draw steps aside
    const other = e.target.closest("button");
    if (!other || other === button) return;
    view.hidden = true;
    button.setAttribute("aria-pressed", "false");
  });
  $("draw").addEventListener("click", drawPictures);
  $("draw-prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter") drawPictures();
  });
}

async function showDraw() {
  for (const view of document.querySelectorAll("#writing .view")) view.hidden = view.id !== "draw-view";
  for (const b of document.querySelectorAll("#writing .views button")) {
    b.setAttribute("aria-pressed", String(b.id === "view-draw"));
  }
  if (drawStyles !== null) return;
  try {
    const listing = await api("/v1/images/models");
    const model = listing.data.find((m) => m.id === listing.default) || listing.data[0];
    drawStyles = model ? model.styles : [];
    for (const style of drawStyles) $("draw-style").add(new Option(style, style));
  } catch (err) {
    showError("draw-error", `no image model: ${err.message}`);
  }
}

// The request for `n` pictures of the caption, with the form's style, size and `seed`.
function drawRequest(n, seed) {
  const prompt = $("draw-prompt").value.trim();
  if (!prompt) throw new Error("write a caption first, e.g. 'a red apple'");
  const body = { prompt, n, size: $("draw-size").value, response_format: "url" };
  if ($("draw-style").value) body.style = $("draw-style").value;
  if (seed !== null) body.seed = seed;
  if (state.project !== null) body.project_id = state.project;  // provenance in the project
  return body;
}

async function drawn(body, signal) {
  const answer = await api("/v1/images/generations",
    { method: "POST", body: JSON.stringify(body), signal });
  return answer.data.map((item) => ({ ...item, prompt: body.prompt }));
}

function drawPictures() {
  return busy("drawing", async (signal) => {
    const n = Math.max(1, Math.min(10, Number($("draw-n").value) || 1));
    const seed = $("draw-seed").value === "" ? null : Number($("draw-seed").value);
    state.pictures = await drawn(drawRequest(n, seed), signal);
    renderPictures();
  }, "draw-error");
}

// One picture drawn again with a fresh seed; the others stay.
function reroll(index) {
  return busy(`drawing picture ${index + 1} again`, async (signal) => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const [picture] = await drawn(drawRequest(1, seed), signal);
    state.pictures[index] = picture;
    renderPictures();
  }, "draw-error");
}

// The grid becomes variations of one picture: its top half kept, the rest redrawn for the
// same caption; the picture itself stays first.
function varyPicture(index) {
  return busy(`varying picture ${index + 1}`, async (signal) => {
    const source = state.pictures[index];
    const png = await fetch(source.url, { signal });
    if (!png.ok) throw new Error(`picture ${index + 1} is no longer on the server`);
    const n = Math.max(1, Math.min(9, (Number($("draw-n").value) || 4) - 1));
    const form = new FormData();
    form.append("image", await png.blob(), `${source.id}.png`);
    form.append("prompt", source.prompt);
    form.append("n", String(n));
    form.append("size", $("draw-size").value);
    form.append("keep", "0.5");
    form.append("seed", String(Math.floor(Math.random() * 2 ** 31)));
    if (source.style) form.append("style", source.style);
    if (state.project !== null) form.append("project_id", String(state.project));
    const auth = headers();
    delete auth["Content-Type"];  // the browser writes the multipart boundary itself
    const response = await fetch("/v1/images/variations",
      { method: "POST", headers: auth, body: form, signal });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error ? answer.error.message : response.statusText);
    const variations = answer.data.map((item) => ({ ...item, prompt: source.prompt }));
    state.pictures = [source, ...variations];
    renderPictures();
  }, "draw-error");
}

function savePicture(index) {
  return busy(`saving picture ${index + 1}`, async () => {
    const picture = state.pictures[index];
    if (state.project === null) {
      if (!$("title").value.trim()) $("title").value = picture.prompt;
      await ensureProject();
    }
    await api(`/v1/images/files/${picture.id}/save`,
      { method: "POST", body: JSON.stringify({ project_id: state.project }) });
    picture.saved = true;
    renderPictures();
    await loadDocuments();
  }, "draw-error");
}

function renderPictures() {
  const grid = $("draw-grid");
  grid.textContent = "";
  state.pictures.forEach((picture, i) => {
    const cell = document.createElement("li");
    cell.className = "picture";
    const img = document.createElement("img");
    img.src = picture.url;
    img.alt = `${picture.prompt} (picture ${i + 1})`;
    const about = document.createElement("p");
    about.className = "picture-about";
    about.textContent = `seed ${picture.seed}${picture.style ? " · " + picture.style : ""}`;
    if (picture.revised_prompt && picture.revised_prompt !== picture.prompt) {
      about.textContent += ` · drawn as “${picture.revised_prompt}”`;  // caption expansion
    }
    const again = document.createElement("button");
    again.type = "button";
    again.className = "draw-reroll";
    again.textContent = "Re-roll";
    again.title = `Draw picture ${i + 1} again`;
    again.addEventListener("click", () => reroll(i));
    const vary = document.createElement("button");
    vary.type = "button";
    vary.className = "draw-vary";
    vary.textContent = "Vary";
    vary.title = `Keep the top half of picture ${i + 1} and redraw the rest`;
    vary.addEventListener("click", () => varyPicture(i));
    const keep = document.createElement("button");
    keep.type = "button";
    keep.className = "draw-save";
    keep.textContent = picture.saved ? "Saved" : "Save to project";
    keep.disabled = Boolean(picture.saved);
    keep.addEventListener("click", () => savePicture(i));
    const file = document.createElement("a");
    file.className = "draw-download";
    file.href = picture.url;
    file.download = `${picture.prompt.replace(/[^\p{L}\p{N}]+/gu, "-")}-${picture.seed}.png`;
    file.textContent = "PNG";
    const tools = document.createElement("div");
    tools.className = "toolbar";
    tools.append(again, vary, keep, file);
    cell.append(img, about, tools);
    grid.appendChild(cell);
  });
}

drawPanel();
