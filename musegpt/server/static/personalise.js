// "Train my voice": an adapter trained on the open project's text, as a background job of
// the server (POST /v1/projects/{id}/adapter), its progress polled until it ends, and a
// Cancel button (DELETE /v1/adapter-jobs/{id}). The finished adapter joins the model menu.
// It lives in the works panel, under the projects; it uses app.js's `api`, `state` and `$`.
(() => {
  const POLL_MS = 1500;
  const ACTIVE = ["running", "cancelling"];
  let job = null;  // the job shown: the server's running one, or the last one started here
  let timer = null;

  const style = document.createElement("style");
  style.textContent = `
    #personalise { margin: .6rem 0; display: flex; flex-wrap: wrap; gap: .3rem; }
    #train-progress { flex-basis: 100%; margin: 0; font-size: .85rem; color: var(--muted); }
    #train-progress:empty { display: none; }`;
  document.head.appendChild(style);

  const panel = document.createElement("div");
  panel.id = "personalise";
  panel.innerHTML = `
    <button id="train-voice" type="button" disabled
      title="Train an adapter on this project's text, so the model writes more like it">Train my voice</button>
    <button id="train-cancel" type="button" hidden>Cancel training</button>
    <p id="train-progress" role="status" aria-live="polite"></p>
    <p id="train-error" class="error-line" role="alert"></p>`;
  $("projects").insertAdjacentElement("afterend", panel);

  const minutes = (s) => (s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

  function describe(j) {
    if (j.state === "running" && j.step > 0 && j.message.startsWith("step")) {
      const parts = [`${j.model}: step ${j.step}/${j.steps}`, `loss ${j.loss.toFixed(2)}`];
      if (j.heldout_perplexity !== null) {
        parts.push(`held-out perplexity ${j.heldout_perplexity.toFixed(1)}`);
      }
      parts.push(`${Math.round(j.tokens_per_second)} tokens/s`);
      parts.push(`about ${minutes(j.eta_seconds)} of training left`);
      return parts.join(" · ");
    }
    if (j.state === "failed") return "";
    return `${j.model}: ${j.message}`;
  }

  function show() {
    const active = job !== null && ACTIVE.includes(job.state);
    $("train-voice").disabled = active || !state.project;
    $("train-cancel").hidden = !active;
    $("train-cancel").disabled = job !== null && job.state === "cancelling";
    $("train-progress").textContent = job ? describe(job) : "";
    $("train-error").textContent = job && job.state === "failed" ? job.error : "";
  }

  function offerModel(name) {
    const menu = $("model");
    if (![...menu.options].some((o) => o.value === name)) menu.add(new Option(name, name));
    menu.value = name;
  }

  async function poll() {
    timer = null;
    try {
      job = await api(`/v1/adapter-jobs/${job.id}`);
    } catch (err) {
      $("train-error").textContent = err.message;
      timer = setTimeout(poll, POLL_MS * 2);
      return;
    }
    if (job.state === "done") offerModel(job.model);
    show();
    if (ACTIVE.includes(job.state)) timer = setTimeout(poll, POLL_MS);
  }

  function follow(started) {
    job = started;
    show();
    if (timer === null && ACTIVE.includes(job.state)) timer = setTimeout(poll, POLL_MS);
  }

  async function train() {
    $("train-error").textContent = "";
    if (!state.project) return;
    $("train-voice").disabled = true;
    try {
      follow(await api(`/v1/projects/${state.project}/adapter`, { method: "POST" }));
    } catch (err) {
      show();
      $("train-error").textContent = err.message;
    }
  }

  async function cancel() {
    if (!job) return;
    try {
      follow(await api(`/v1/adapter-jobs/${job.id}`, { method: "DELETE" }));
    } catch (err) {
      $("train-error").textContent = err.message;
    }
  }

  // A job the server is already running (started before this page was opened).
  async function findRunning() {
    try {
      const running = (await api("/v1/adapter-jobs")).data.filter((j) => ACTIVE.includes(j.state));
      if (running.length) follow(running[0]);
    } catch (err) {
      // a server without the works library or a wrong key: the status line says so already
    }
  }

  $("train-voice").addEventListener("click", train);
  $("train-cancel").addEventListener("click", cancel);
  // app.js redraws the project list whenever a project is opened or made.
  new MutationObserver(show).observe($("projects"), { childList: true });
  findRunning();
})();
