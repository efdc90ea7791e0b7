// bertd dashboard, base models: the models this server can train from, pulling one with live
// progress (the `base_model` messages of /api/v1/ws), deleting one, and the create form's list of
// models to pick from. Loaded before app.js; its helpers ($, el, api, showError, clearError,
// showNotice, fmtBytes, isNumber) are used only when these functions run, after both have loaded.
"use strict";

const baseModels = new Map();  // name -> a line of GET /base-models, kept live from /api/v1/ws

// A live message may overtake the answer of a request sent before it (a pull that fails at once
// is announced before the POST's 202 arrives): what came live after a request was sent is newer
// than its answer, so the answer does not overwrite it. `_liveAt` marks when a message came.
function newerThanAnswer(name, sentAt) {
  const known = baseModels.get(name);
  return Boolean(known && known._liveAt >= sentAt);
}

async function loadBaseModels() {
  const sentAt = performance.now();
  let listing;
  try {
    listing = await api("GET", "/base-models");
  } catch (error) {
    if (error.status !== 401) showNotice(t("Could not load the base models: {reason}", { reason: error.message }));
    return;
  }
  const listed = new Set(listing.base_models.map((entry) => entry.name));
  for (const name of [...baseModels.keys()]) {
    if (!listed.has(name) && !newerThanAnswer(name, sentAt)) baseModels.delete(name);
  }
  for (const entry of listing.base_models) {
    if (!newerThanAnswer(entry.name, sentAt)) baseModels.set(entry.name, entry);
  }
  renderBaseModels();
}

// The global stream's snapshot lists the downloads running or failed; ready models come from
// the list (a download that ended while we were away is found there).
function onBaseModelSnapshot(entries) {
  for (const entry of entries) baseModels.set(entry.name, entry);
  loadBaseModels();
}

// A `base_model` message carries the model's whole state, or {name, status: "deleted"}.
// Its error is in English (one message for every subscriber): the copy read in the page's
// language stays when it names the same error; a new one is read again, in the page's language.
function onBaseModelMessage(message) {
  const { type: _type, at: _at, ...entry } = message;
  const known = baseModels.get(entry.name);
  if (entry.status === "deleted") baseModels.delete(entry.name);
  else {
    if (entry.error && known && known.error && known.error.code === entry.error.code) {
      entry.error = known.error;
      entry.error_message = known.error_message;
    } else if (entry.error && i18n.language !== "en") {
      reloadBaseModelsSoon();
    }
    baseModels.set(entry.name, { ...entry, _liveAt: performance.now() });
  }
  renderBaseModels();
}

let baseModelsReload = null;

function reloadBaseModelsSoon() {
  clearTimeout(baseModelsReload);
  baseModelsReload = setTimeout(loadBaseModels, 300);
}

function downloadShare(entry) {
  return isNumber(entry.bytes_total) && entry.bytes_total > 0 ? Math.min(1, (entry.bytes_done || 0) / entry.bytes_total)
    : null;
}

function describeShape(entry) {
  const parts = [];
  if (isNumber(entry.parameters)) {
    parts.push(t("{millions}M parameters", { millions: formatNumber(entry.parameters / 1e6, {
      minimumFractionDigits: 1, maximumFractionDigits: 1 }) }));
  }
  if (isNumber(entry.hidden_size) && isNumber(entry.num_layers)) {
    parts.push(t("hidden {hidden} × {layers} layers", { hidden: entry.hidden_size, layers: entry.num_layers }));
  }
  if (isNumber(entry.vocab_size)) parts.push(t("vocab {size}", { size: entry.vocab_size }));
  return parts.join(" · ");
}

function baseModelDetails(entry) {
  if (entry.status === "downloading") {
    const share = downloadShare(entry);
    const percent = share === null ? 0 : share * 100;
    return [
      el("div", { class: "progress", dataset: { status: "training" } },
        el("div", { class: "progress-bar", role: "progressbar", style: `width:${percent}%`,
          dataset: { value: String(Math.round(percent * 10) / 10) } })),
      el("div", { class: "progress-note muted", text: t("{percent} · {done} of {total}", {
        percent: share === null ? "?%" : fmtPercent(share), done: fmtBytes(entry.bytes_done),
        total: entry.bytes_total ? fmtBytes(entry.bytes_total) : "?" }) }),
    ];
  }
  if (entry.status === "failed") return errorDetails(entry.error, entry.error_message);
  return [el("div", { text: describeShape(entry) }), el("div", { class: "muted path", text: entry.path, translate: "no" })];
}

// A structured error (code, message, hint) as the dashboard shows it everywhere.
function errorDetails(error, fallback) {
  if (!error) return [el("div", { class: "error-text", text: fallback || word("failed") })];
  return [
    el("div", { class: "error-text" }, el("strong", { text: error.message }), " ",
      el("code", { text: error.code, translate: "no" })),
    error.hint ? el("div", { class: "error-hint" }, el("span", { class: "muted", text: t("What to do: ") }), error.hint) : null,
  ];
}

function renderBaseModels() {
  const entries = [...baseModels.values()].sort((a, b) => a.name.localeCompare(b.name));
  $("base-model-list").replaceChildren(...entries.map((entry) => el("tr", {
    class: "base-model-row", dataset: { name: entry.name, status: entry.status },
  },
  el("td", {}, el("div", { class: "task-name", text: entry.name, translate: "no" }),
    el("div", { class: "task-sub muted", text: entry.location === "hf_cache"
      ? t("{source} · HF cache", { source: word(entry.source) }) : word(entry.source) })),
  el("td", {}, el("span", { class: "status-badge", dataset: { status: entry.status }, text: word(entry.status) })),
  el("td", { class: "num nowrap", text: entry.status === "ready" ? fmtBytes(entry.size_bytes) : "" }),
  el("td", { class: "base-model-details" }, baseModelDetails(entry)),
  el("td", {}, entry.location === "hf_cache" ? null : el("button", {
    type: "button", class: "danger small", title: entry.status === "downloading" ? t("Stop and discard the download") : t("Delete"),
    text: entry.status === "downloading" ? t("Cancel") : t("Delete"), onclick: () => deleteBaseModel(entry.name),
  })))));
  $("base-models-empty").hidden = entries.length > 0;
  renderBaseModelChoices(entries);
}

// The create form's base_model field: a free-text input with the ready models as suggestions.
function renderBaseModelChoices(entries) {
  const ready = entries.filter((entry) => entry.status === "ready").map((entry) => entry.name);
  $("base-model-options").replaceChildren(...entries.filter((entry) => entry.status !== "failed").map((entry) =>
    el("option", { value: entry.name, label: entry.status === "ready" ? describeShape(entry) || word("ready") : word(entry.status) })));
  $("base-model-available").textContent = ready.length
    ? t("On this server: {names}. Another hub id is downloaded first.", { names: ready.join(", ") })
    : t("No base model on this server yet: a hub id is downloaded first (or pull one below).");
}

async function onPull(event) {
  event.preventDefault();
  const box = $("pull-error");
  clearError(box);
  const name = $("pull-name").value.trim();
  if (!name) {
    showError(box, { message: t("Type a hub id, e.g. bert-base-chinese or google-bert/bert-base-chinese.") });
    return;
  }
  const body = { name, source: $("pull-source").value || null, revision: $("pull-revision").value.trim() || null };
  $("pull-button").disabled = true;
  $("pull-status").textContent = t("Starting…");
  const sentAt = performance.now();
  try {
    const { data } = await request("POST", "/base-models", body);
    const { message, ...entry } = data;
    if (!newerThanAnswer(entry.name, sentAt)) baseModels.set(entry.name, entry);
    renderBaseModels();
    $("pull-status").textContent = serverNote(message, entry.status === "ready"
      ? t("{name} is already on this server.", { name: entry.name }) : t("Downloading {name}…", { name: entry.name }));
  } catch (error) {
    $("pull-status").textContent = "";
    showError(box, error);
  } finally {
    $("pull-button").disabled = false;
  }
}

async function deleteBaseModel(name) {
  const box = $("pull-error");
  clearError(box);
  if (!window.confirm(t("Delete base model “{name}” from the server?", { name }))) return;
  try {
    const result = await api("DELETE", `/base-models/${encodeURIComponent(name)}`);
    baseModels.delete(name);
    renderBaseModels();
    $("pull-status").textContent = serverNote(result.message, t("Deleted."));
  } catch (error) {
    showError(box, error);
  }
}

function bindBaseModels() {
  $("pull-form").addEventListener("submit", onPull);
}
