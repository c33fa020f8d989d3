// MuseGPT Studio, stories: premise → bible and outline (editable) → chapters one at a time,
// streamed, each re-rollable and editable. The story is the CLI's story.json, kept in the
// works library; Export gives that file for `musegpt write story --project FOLDER`.
"use strict";

state.story = null;  // the open project's story.json content, as last saved

function showView(name) {
  for (const view of ["text", "story"]) {
    $(`${view}-view`).hidden = view !== name;
    $(`view-${view}`).setAttribute("aria-pressed", String(view === name));
  }
}

// The project's story, shown when it has one (a story project opens in the story view).
async function openStory(project) {
  state.story = null;
  try {
    state.story = await api(`/v1/projects/${project.id}/story`);
  } catch (err) {
    // no story in this project: the text view, and the story view offers to start one
  }
  renderStory();
  if (state.story) showView("story");
}

function characterLines(characters) {
  return characters.map((c) => `${c.name}: ${c.description}`).join("\n");
}

function parseCharacters(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const cut = line.indexOf(":");
    return cut < 0 ? { name: line, description: "" }
      : { name: line.slice(0, cut).trim(), description: line.slice(cut + 1).trim() };
  });
}

function labelled(text, control) {
  const label = document.createElement("label");
  label.append(text, control);
  return label;
}

function renderStory() {
  const story = state.story;
  $("story-body").hidden = story === null;
  if (story === null) return;
  const bible = story.bible || { title: "", setting: "", style: "", synopsis: "", characters: [] };
  $("story-premise").value = story.premise;
  $("bible-title").value = bible.title;
  $("bible-setting").value = bible.setting;
  $("bible-style").value = bible.style;
  $("bible-synopsis").value = bible.synopsis;
  $("bible-characters").value = characterLines(bible.characters);
  const list = $("story-chapter-list");
  list.textContent = "";
  story.scenes.forEach((scene, i) => {
    const li = document.createElement("li");
    li.className = "chapter";
    const beat = document.createElement("input");
    beat.className = "beat";
    beat.value = scene.beat;
    const text = document.createElement("textarea");
    text.className = "chapter-text";
    text.rows = scene.text ? 8 : 2;
    text.value = scene.text;
    const write = document.createElement("button");
    write.type = "button";
    write.className = "write-chapter";
    write.textContent = scene.text ? `Re-roll chapter ${i + 1}` : `Write chapter ${i + 1}`;
    write.addEventListener("click", () => writeChapter(i + 1));
    li.append(labelled(`Chapter ${i + 1} beat`, beat), labelled(`Chapter ${i + 1} text`, text), write);
    list.appendChild(li);
  });
  const written = story.scenes.filter((s) => s.text).length;
  $("story-progress").max = Math.max(story.chapters, 1);
  $("story-progress").value = written;
  $("story-status").textContent = story.bible
    ? `${written} of ${story.chapters} chapters written`
    : "not planned yet: Plan writes the bible and the outline";
  const file = new Blob([JSON.stringify(story, null, 2)], { type: "application/json" });
  URL.revokeObjectURL($("story-export").href);
  $("story-export").href = URL.createObjectURL(file);
}

// The story as the page shows it, the writer's edits included.
function editedStory() {
  const story = structuredClone(state.story);
  story.premise = $("story-premise").value.trim() || story.premise;
  if (story.bible) {
    Object.assign(story.bible, {
      title: $("bible-title").value, setting: $("bible-setting").value,
      style: $("bible-style").value, synopsis: $("bible-synopsis").value,
      characters: parseCharacters($("bible-characters").value),
    });
  }
  const chapters = $("story-chapter-list").querySelectorAll("li.chapter");
  chapters.forEach((li, i) => {
    story.scenes[i].beat = li.querySelector(".beat").value;
    story.scenes[i].text = li.querySelector(".chapter-text").value;
  });
  return story;
}

async function saveStoryEdits() {
  state.story = await api(`/v1/projects/${state.project}/story`,
    { method: "PUT", body: JSON.stringify(editedStory()) });
  renderStory();
}

function newStory() {
  return busy("starting a story", async () => {
    const premise = $("story-premise").value.trim();
    if (!premise) throw new Error("write a premise first, e.g. 'a lighthouse keeper who befriends a whale'");
    const started = await api("/v1/stories", {
      method: "POST",
      body: JSON.stringify({
        premise, chapters: Number($("story-chapters").value) || 3,
        scene_tokens: Number($("story-tokens").value) || 450,
      }),
    });
    await openProject(started.project);
  }, "story-error");
}

// A long step on the story, streamed: status lines, the story as it grows, chapter text.
async function storyStep(path, onText, signal) {
  const payload = { model: $("model").value, params: params(), stream: true };
  let said = "";
  for await (const event of events(path, payload, signal)) {
    if (event.type === "status") said = event.text;
    if (event.type === "text") onText(event.text);
    if (event.type === "story") {
      state.story = event.story;
      renderStory();
    }
    if (said) $("story-status").textContent = said;  // what is being done, while it runs
  }
  renderStory();
}

function planStory() {
  return busy("planning the story", async (signal) => {
    await saveStoryEdits();
    await storyStep(`/v1/projects/${state.project}/story/plan`, () => {}, signal);
    await loadProjects();  // a story is named by its bible's title once planned
  }, "story-error");
}

function writeChapter(number) {
  return busy(`writing chapter ${number}`, async (signal) => {
    await saveStoryEdits();
    let streamed = "";
    await storyStep(`/v1/projects/${state.project}/story/chapters/${number}`, (piece) => {
      streamed += piece;  // the list may have been drawn again since the last piece
      const text = $("story-chapter-list").querySelectorAll(".chapter-text")[number - 1];
      text.value = streamed;
      text.rows = 8;
    }, signal);
  }, "story-error");
}

function saveEdits() {
  return busy("saving the story", saveStoryEdits, "story-error");
}

async function importStory(file) {
  await busy("importing the story", async () => {
    let story;
    try {
      story = JSON.parse(await file.text());
    } catch (err) {
      throw new Error(`${file.name} is not JSON: choose a story folder's story.json`);
    }
    const imported = await api("/v1/stories/import",
      { method: "POST", body: JSON.stringify({ story }) });
    await openProject(imported.project);
  }, "story-error");
  $("story-import").value = "";
}

$("view-text").addEventListener("click", () => showView("text"));
$("view-story").addEventListener("click", () => showView("story"));
$("story-new").addEventListener("click", newStory);
$("story-plan").addEventListener("click", planStory);
$("story-save").addEventListener("click", saveEdits);
$("story-stop").addEventListener("click", () => state.abort && state.abort.abort());
$("story-import").addEventListener("change", (e) => {
  if (e.target.files.length) importStory(e.target.files[0]);
});
