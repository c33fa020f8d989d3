// The originality guard in the web studio: after a studio task or a composed tune, a line
// under the output says the longest span the work copies from its model's training corpus
// (the server's `longest_copy`, also kept in the work's provenance). It listens for the
// `musegpt:work` event that app.js sends when a work is finished.
(() => {
  const WATCHED = /\/v1\/(studio\/(?!tasks|context)[\w-]+|music\/compose)$/;

  function line() {
    let element = document.getElementById("longest-copy");
    if (!element) {
      element = document.createElement("p");
      element.id = "longest-copy";
      element.className = "longest-copy";
      const output = document.getElementById("output");
      output.insertAdjacentElement("afterend", element);
    }
    return element;
  }

  function show(copy) {
    const element = line();
    if (!copy || !copy.indexed) {
      element.textContent = copy ? "originality: this model's corpus is not indexed" : "";
      element.title = copy ? "musegpt originality index --model NAME" : "";
      return;
    }
    const source = copy.tokens
      ? ` — from “${copy.first_line}”, line ${copy.line}` +
        (copy.occurrences > 1 ? ` (one of ${copy.occurrences} places)` : "")
      : "";
    element.textContent =
      `longest span copied from the training corpus: ${copy.tokens} tokens, ` +
      `${copy.characters} characters${source}`;
    element.title = copy.text || "";
  }

  // app.js announces every finished studio work and composed tune.
  document.addEventListener("musegpt:work", (event) => show(event.detail.longest_copy));
})();
