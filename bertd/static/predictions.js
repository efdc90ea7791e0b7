// bertd dashboard: "Predict a file" on a completed task's page. Pick an upload, its sheet and text
// column, start a prediction job (it runs in the training pool), watch it live, download the result.
// Uses app.js's helpers ($, el, api, state ...); app.js calls renderPredictionCard, fillPredictionFiles
// and onPredictionMessage when they exist. Plain browser JavaScript, no build step.
"use strict";

const predictionJobs = new Map();  // prediction_id -> job record, for the task whose page is open
let predictionTaskId = null;

function predictionPath(taskId, predictionId = "", suffix = "") {
  return taskPath(taskId, `/predictions${predictionId ? `/${encodeURIComponent(predictionId)}` : ""}${suffix}`);
}

// Called whenever the task's page renders: shown for a completed task only.
function renderPredictionCard(task) {
  const card = $("predict-file-card");
  card.hidden = task.status !== "completed";
  if (card.hidden || predictionTaskId === task.task_id) return;
  predictionTaskId = task.task_id;
  predictionJobs.clear();
  clearError($("predict-file-error"));
  renderPredictionJobs();
  fillPredictionFiles();
  loadPredictionJobs(task.task_id);
}

function fillPredictionFiles() {
  const select = $("predict-file");
  fillSelect(select, state.files.map((f) => [f.filename, f.filename]), select.value,
    state.files.length ? null : t("(upload a file first)"));
  onPredictionFileChange();
}

function onPredictionFileChange() {
  const record = fileRecord($("predict-file").value);
  fillSelect($("predict-sheet"), (record ? record.sheets : []).map((s) => [s.name, sheetLabel(s)]),
    $("predict-sheet").value);
  onPredictionSheetChange();
}

function onPredictionSheetChange() {
  const record = fileRecord($("predict-file").value);
  const sheet = record && record.sheets.find((s) => s.name === $("predict-sheet").value);
  const columns = sheet ? sheet.columns : [];
  const current = $("predict-column").value;
  const task = state.tasks.get(predictionTaskId);
  const trainedOn = task && task.hyperparameters ? task.hyperparameters.text_column : null;
  // The column picked before, else the one the model was trained on, else one that looks like text.
  const wanted = [current, trainedOn].find((c) => columns.includes(c))
    || columns.find((c) => TEXT_COLUMN_HINT.test(c)) || columns[0];
  fillSelect($("predict-column"), columns.map((c) => [c, c]), wanted);
}

async function loadPredictionJobs(taskId) {
  try {
    const { predictions } = await api("GET", predictionPath(taskId));
    if (predictionTaskId !== taskId) return;
    predictionJobs.clear();
    for (const job of predictions) predictionJobs.set(job.prediction_id, job);
    renderPredictionJobs();
  } catch (error) {
    if (error.status !== 401 && predictionTaskId === taskId) showError($("predict-file-error"), error);
  }
}

const loadPredictionJobsSoon = debounce(() => predictionTaskId && loadPredictionJobs(predictionTaskId), 300);

async function onPredictFile(event) {
  event.preventDefault();
  const box = $("predict-file-error");
  clearError(box);
  const threshold = $("predict-threshold").value.trim();
  const body = {
    file: $("predict-file").value,
    sheet_name: $("predict-sheet").value || null,
    text_column: $("predict-column").value,
    top_k: Number($("predict-top-k").value || 1),
    threshold: threshold === "" ? null : Number(threshold),
  };
  $("predict-file-button").disabled = true;
  try {
    const job = await api("POST", predictionPath(predictionTaskId), body);
    predictionJobs.set(job.prediction_id, job);
    renderPredictionJobs();
  } catch (error) {
    showError(box, error);
  } finally {
    $("predict-file-button").disabled = false;
  }
}

// Prediction jobs' live messages arrive on the global WebSocket; app.js hands them here.
function onPredictionMessage(message) {
  if (message.type === "snapshot") {  // (re)connected: whatever was missed is in the list
    loadPredictionJobsSoon();
    return;
  }
  if (message.task_id !== predictionTaskId) return;
  const job = predictionJobs.get(message.prediction_id);
  if (!job) {
    loadPredictionJobsSoon();  // created elsewhere (another tab, the command line)
    return;
  }
  if (message.type === "prediction_progress") {
    for (const key of ["phase", "progress", "rows_done", "rows_total", "rows_per_second", "eta_seconds"]) {
      if (key in message) job[key] = message[key];
    }
  } else if (message.type === "prediction_status") {
    job.status = message.status;
    if (message.error_message && i18n.language === "en") job.error_message = message.error_message;
  } else if (message.type === "prediction_end") {
    const read = job.error_message;
    Object.assign(job, message.prediction);
    // Live messages are in English: a job that ended with an error is read again in the page's language.
    if (i18n.language !== "en" && job.error_message) {
      job.error_message = read;
      loadPredictionJobsSoon();
    }
  }
  renderPredictionJobs();
}

function jobFacts(job) {
  const facts = [];
  if (job.status === "queued" && job.queue_position) facts.push(t("queue position {position}", { position: job.queue_position }));
  if (job.rows_total) {
    facts.push(t("{done} / {total} rows", { done: formatNumber(job.rows_done), total: formatNumber(job.rows_total) }));
  }
  if (isNumber(job.rows_per_second)) facts.push(t("{rate} rows/s", { rate: fmtNumber(job.rows_per_second, 3) }));
  if (job.status === "running" && isNumber(job.eta_seconds)) facts.push(t("ETA {duration}", { duration: fmtDuration(job.eta_seconds) }));
  if (job.status === "running" && job.phase) facts.push(word(job.phase));
  return facts.join(" · ");
}

function labelSummary(job) {
  if (job.error_message) return job.error_message;
  const counts = Object.entries(job.label_counts || {}).filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1]);
  const parts = counts.map(([label, count]) => `${label} ${formatNumber(count)}`);
  if (job.rows_below_threshold) parts.push(t("below threshold {count}", { count: formatNumber(job.rows_below_threshold) }));
  if (job.rows_empty) parts.push(t("empty text {count}", { count: formatNumber(job.rows_empty) }));
  return parts.join(", ");
}

function predictionRow(job) {
  const bar = el("div", { class: "progress", dataset: { status: job.status } },
    el("div", { class: "progress-bar", dataset: { value: String(job.progress) } }));
  bar.firstChild.style.width = `${job.progress}%`;
  const actions = [];
  if (job.status === "completed") {
    actions.push(el("a", { class: "button secondary prediction-download", href: API + predictionPath(job.task_id,
      job.prediction_id, "/download"), download: job.download_name || true, onclick: onDownload, text: t("Download") }));
  }
  if (job.status === "queued" || job.status === "running") {
    actions.push(el("button", { type: "button", class: "secondary", text: t("Stop"),
      onclick: () => predictionAction(job, "POST", "/stop") }));
  }
  actions.push(el("button", { type: "button", class: "danger", text: t("Delete"),
    onclick: () => window.confirm(t("Delete the prediction of {file} and its result?", { file: job.file }))
      && predictionAction(job, "DELETE", "") }));
  return el("tr", { class: "prediction-row", dataset: { predictionId: job.prediction_id, status: job.status } },
    el("td", {}, fmtTime(job.created_at)),
    el("td", {}, el("span", { translate: "no", text: `${job.file} · ${job.sheet_name} · ${job.text_column}` }),
      el("div", { class: "muted", translate: "no",
        text: `top_k ${job.top_k}${job.threshold !== null ? ` · threshold ${job.threshold}` : ""}` })),
    el("td", {}, el("span", { class: "status-badge", dataset: { status: job.status }, text: word(job.status) })),
    el("td", {}, bar, el("div", { class: "progress-note muted", text: jobFacts(job) })),
    el("td", { text: labelSummary(job) }),
    el("td", { class: "actions-cell" }, actions));
}

function renderPredictionJobs() {
  const table = $("prediction-jobs");
  const jobs = [...predictionJobs.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  table.hidden = !jobs.length;
  table.replaceChildren(
    el("thead", {}, el("tr", {}, [t("created"), t("file · sheet · column"), t("status"), t("progress"), t("labels"), ""]
      .map((name) => el("th", { text: name })))),
    el("tbody", {}, jobs.map(predictionRow)));
}

async function predictionAction(job, method, suffix) {
  const box = $("predict-file-error");
  clearError(box);
  try {
    const result = await api(method, predictionPath(job.task_id, job.prediction_id, suffix));
    if (method === "DELETE") predictionJobs.delete(job.prediction_id);
    else Object.assign(job, result);
    renderPredictionJobs();
  } catch (error) {
    showError(box, error);
  }
}

$("predict-file-form").addEventListener("submit", onPredictFile);
$("predict-file").addEventListener("change", onPredictionFileChange);
$("predict-sheet").addEventListener("change", onPredictionSheetChange);
