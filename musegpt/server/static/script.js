// Screenplay scenes in the web studio: a situation and an adapter choice -> POST
// /v1/studio/script, the scene (Fountain) offered to insert like the other tasks' work and
// kept as a node of the project's tree. The model menu chooses the model as for every task
// (a project's own adapter, works-NAME, is a model there); the Adapter menu adds the shipped
// `stage` adapter on the default model, as `musegpt write script --adapter stage` does.
// It uses app.js's `$`, `busy`, `clearOutput`, `studio` and `showAlternatives`.
(() => {
  const ADAPTERS = [
    ["none", "none"],
    ["stage", "stage (Shakespeare's register, default model)"],
  ];

  const bar = document.createElement("div");
  bar.className = "toolbar";
  bar.id = "script-bar";
  bar.innerHTML = `
    <input id="script-situation" placeholder="Scene: the situation" aria-label="Scene situation" size="28">
    <label title="The model menu's works-… models write in a project's own voice; stage writes in Shakespeare's register">Adapter
      <select id="script-adapter"></select></label>
    <button id="script" type="button">Write scene</button>`;
  $("poem").closest(".toolbar").insertAdjacentElement("afterend", bar);
  for (const [value, label] of ADAPTERS) $("script-adapter").add(new Option(label, value));

  function writeScene() {
    return busy("writing a scene", async (signal) => {
      clearOutput();
      const situation = $("script-situation").value.trim() || $("title").value.trim();
      const body = { text: situation, adapter: $("script-adapter").value };
      if ($("title").value.trim()) body.title = $("title").value.trim();
      const work = await studio("script", body, signal);
      const at = $("editor").selectionEnd;
      showAlternatives([work.text], at, at, [work.generation_id]);
    });
  }

  $("script").addEventListener("click", writeScene);
})();
