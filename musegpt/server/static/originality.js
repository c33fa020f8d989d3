// The originality guard in the web studio: after a studio task or a composed tune, a line
// under the output says the longest span the work copies from its model's training corpus
// (the server's `longest_copy`, also kept in the work's provenance). It reads the answers
// app.js already asks for (a copy of each response), so app.js needs no change.
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

  async function watchEvents(response) {
    for await (const event of readEvents(response)) {  // app.js's reader
      if (event.type === "work" && event.work) show(event.work.longest_copy);
    }
  }

  const original = window.fetch.bind(window);
  window.fetch = async (input, options) => {
    const response = await original(input, options);
    const url = typeof input === "string" ? input : input.url;
    if (!response.ok || !WATCHED.test(new URL(url, location.href).pathname)) return response;
    const copy = response.clone();
    const type = copy.headers.get("content-type") || "";
    const read = type.includes("event-stream")
      ? watchEvents(copy)
      : copy.json().then((body) => show(body.longest_copy));
    read.catch(() => {});  // the page's own reading reports any failure
    return response;
  };
})();
