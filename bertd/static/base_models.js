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
    if (error.status !== 401) showNotice(`Could not load the base models: ${error.message}`);
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
function onBaseModelMessage(message) {
  const { type: _type, at: _at, ...entry } = message;
  if (entry.status === "deleted") baseModels.delete(entry.name);
  else baseModels.set(entry.name, { ...entry, _liveAt: performance.now() });
  renderBaseModels();
}

function downloadShare(entry) {
  return isNumber(entry.bytes_total) && entry.bytes_total > 0 ? Math.min(1, (entry.bytes_done || 0) / entry.bytes_total)
    : null;
}

function describeShape(entry) {
  const parts = [];
  if (isNumber(entry.parameters)) parts.push(`${(entry.parameters / 1e6).toFixed(1)}M parameters`);
  if (isNumber(entry.hidden_size) && isNumber(entry.num_layers)) parts.push(`hidden ${entry.hidden_size} × ${entry.num_layers} layers`);
  if (isNumber(entry.vocab_size)) parts.push(`vocab ${entry.vocab_size}`);
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
      el("div", { class: "progress-note muted", text: `${share === null ? "?" : percent.toFixed(1)}% · ` +
        `${fmtBytes(entry.bytes_done)} of ${entry.bytes_total ? fmtBytes(entry.bytes_total) : "?"}` }),
    ];
  }
  if (entry.status === "failed") return errorDetails(entry.error, entry.error_message);
  return [el("div", { text: describeShape(entry) }), el("div", { class: "muted path", text: entry.path })];
}

// A structured error (code, message, hint) as the dashboard shows it everywhere.
function errorDetails(error, fallback) {
  if (!error) return [el("div", { class: "error-text", text: fallback || "failed" })];
  return [
    el("div", { class: "error-text" }, el("strong", { text: error.message }), " ", el("code", { text: error.code })),
    error.hint ? el("div", { class: "error-hint" }, el("span", { class: "muted", text: "What to do: " }), error.hint) : null,
  ];
}

function renderBaseModels() {
  const entries = [...baseModels.values()].sort((a, b) => a.name.localeCompare(b.name));
  $("base-model-list").replaceChildren(...entries.map((entry) => el("tr", {
    class: "base-model-row", dataset: { name: entry.name, status: entry.status },
  },
  el("td", {}, el("div", { class: "task-name", text: entry.name }),
    el("div", { class: "task-sub muted", text: entry.location === "hf_cache" ? `${entry.source} · HF cache` : entry.source })),
  el("td", {}, el("span", { class: "status-badge", dataset: { status: entry.status }, text: entry.status })),
  el("td", { class: "num nowrap", text: entry.status === "ready" ? fmtBytes(entry.size_bytes) : "" }),
  el("td", { class: "base-model-details" }, baseModelDetails(entry)),
  el("td", {}, entry.location === "hf_cache" ? null : el("button", {
    type: "button", class: "danger small", title: entry.status === "downloading" ? "Stop and discard the download" : "Delete",
    text: entry.status === "downloading" ? "Cancel" : "Delete", onclick: () => deleteBaseModel(entry.name),
  })))));
  $("base-models-empty").hidden = entries.length > 0;
  renderBaseModelChoices(entries);
}

// The create form's base_model field: a free-text input with the ready models as suggestions.
function renderBaseModelChoices(entries) {
  const ready = entries.filter((entry) => entry.status === "ready").map((entry) => entry.name);
  $("base-model-options").replaceChildren(...entries.filter((entry) => entry.status !== "failed").map((entry) =>
    el("option", { value: entry.name, label: entry.status === "ready" ? describeShape(entry) || "ready" : entry.status })));
  $("base-model-available").textContent = ready.length
    ? `On this server: ${ready.join(", ")}. Another hub id is downloaded first.`
    : "No base model on this server yet: a hub id is downloaded first (or pull one below).";
}

async function onPull(event) {
  event.preventDefault();
  const box = $("pull-error");
  clearError(box);
  const name = $("pull-name").value.trim();
  if (!name) {
    showError(box, { message: "Type a hub id, e.g. bert-base-chinese or google-bert/bert-base-chinese." });
    return;
  }
  const body = { name, source: $("pull-source").value || null, revision: $("pull-revision").value.trim() || null };
  $("pull-button").disabled = true;
  $("pull-status").textContent = "Starting…";
  const sentAt = performance.now();
  try {
    const { data } = await request("POST", "/base-models", body);
    const { message, ...entry } = data;
    if (!newerThanAnswer(entry.name, sentAt)) baseModels.set(entry.name, entry);
    renderBaseModels();
    $("pull-status").textContent = message || "";
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
  if (!window.confirm(`Delete base model “${name}” from the server?`)) return;
  try {
    const result = await api("DELETE", `/base-models/${encodeURIComponent(name)}`);
    baseModels.delete(name);
    renderBaseModels();
    $("pull-status").textContent = result.message || "Deleted.";
  } catch (error) {
    showError(box, error);
  }
}

function bindBaseModels() {
  $("pull-form").addEventListener("submit", onPull);
}
