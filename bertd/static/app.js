// bertd dashboard: a task list kept live over WebSockets, a page per task with curves drawn on
// <canvas>, and the upload / create-task forms. Plain browser JavaScript: no build step, no
// libraries, nothing fetched from outside the server (bertd often runs without internet).
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "bertd.apiToken";
const TERMINAL = new Set(["completed", "failed", "stopped"]);
const ACTIVE = new Set(["queued", "training", "stopping", "paused"]);
// These hyperparameters depend on the chosen file, so the Data section edits them with dropdowns
// instead of the generic fields built from the schema.
const DATA_HYPERPARAMETERS = new Set(["text_column", "label_column", "sheet_name", "validation_sheet_name"]);
// Shown first; every other hyperparameter goes under "More hyperparameters".
const MAIN_HYPERPARAMETERS = ["epochs", "batch_size", "learning_rate", "max_sequence_length"];
const TEXT_COLUMN_HINT = /内容|文本|正文|句子|text|content|sentence|comment/i;
const LABEL_COLUMN_HINT = /标签|类别|分类|类型|label|class|category|target/i;
const CHART_FONT = '12px system-ui, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif';
const COLORS = { train: "#2563eb", val: "#ea580c", f1: "#16a34a", trainAcc: "#93c5fd" };

const state = {
  tasks: new Map(),       // task_id -> task record, plus _seq (last live message applied) and _warnings
  files: [],              // records from GET /files
  schema: null,           // components.schemas.TaskRequest
  viewTaskId: null,       // the task whose page is open, or null for the new-task view
  globalSocket: null,
  globalRetryMs: 1000,
  globalAttempt: 0,       // bumped by every connect, so one still waiting for its ticket gives way
  taskSocket: null,
  taskAttempt: 0,
  chart: emptyChart(null),
};

// ---------------------------------------------------------------- small helpers

function $(id) {
  return document.getElementById(id);
}

// Builds DOM nodes with textContent only, so task names and file contents can never inject HTML.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

// Numbers, dates and durations in the page's locale (i18n.js: Intl).
function fmtNumber(value, digits = 4) {
  return isNumber(value) ? formatNumber(value, { maximumSignificantDigits: digits }) : "–";
}

function fmtFixed(value, digits = 3) {
  return isNumber(value) ? formatNumber(value, { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–";
}

function fmtPercent(value, digits = 1) {
  return isNumber(value) ? formatNumber(value, { style: "percent", minimumFractionDigits: digits,
    maximumFractionDigits: digits }) : "–";
}

// parts: "full" (date and time), "short" (month, day, hours, minutes) or "time".
function fmtTime(iso, parts = "full") {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return formatDateTime(date, parts);
}

function fmtDuration(seconds) {
  return isNumber(seconds) ? formatDuration(seconds) : "–";
}

function fmtBytes(bytes) {
  if (!isNumber(bytes)) return "–";
  if (bytes < 1024) return `${formatNumber(bytes)} B`;
  const [size, unit] = bytes < 1 << 20 ? [bytes / 1024, "KB"] : [bytes / (1 << 20), "MB"];
  return `${formatNumber(size, { minimumFractionDigits: 1, maximumFractionDigits: 1 })} ${unit}`;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function taskPath(taskId, suffix = "") {
  return `/training/tasks/${encodeURIComponent(taskId)}${suffix}`;
}

// ---------------------------------------------------------------- API token and requests

function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";  // storage disabled (some private modes): the token then lasts for this page only
  }
}

function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* see getToken */
  }
}

function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Browsers cannot set headers on a WebSocket or a download link. With a token, such a URL carries
// ?token= with a single-use ticket for that one path from POST /tickets, never the token itself
// (URLs end up in proxy logs and browser history); a ticket lasts a minute, so ask just before use.
async function ticketUrl(path, { websocket = false } = {}) {
  const url = new URL(API + path, location.href);
  if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (getToken()) {
    const { ticket } = await api("POST", "/tickets", { path: url.pathname });
    url.searchParams.set("token", ticket);
  }
  return url.toString();
}

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// Every call goes through here: adds the token, sends JSON or multipart, and turns the API's
// {"error": {code, message, details}} body into an ApiError the forms can show as it is.
async function request(method, path, body) {
  // The API's error messages come back in the page's language.
  const headers = { ...authHeaders(), "Accept-Language": i18n.language === "en" ? "en" : `${i18n.language}, zh;q=0.9` };
  let payload;
  if (body instanceof FormData) payload = body;  // the browser sets the multipart boundary itself
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "network_error", t("Cannot reach the bertd server ({reason}).", { reason: error.message }), null);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error
      : { code: `http_${response.status}`, message: text.slice(0, 300) || response.statusText, details: null };
    if (response.status === 401) showAuthPrompt(error.message);
    throw new ApiError(response.status, error.code, error.message, error.details);
  }
  return { status: response.status, data };
}

async function api(method, path, body) {
  return (await request(method, path, body)).data;
}

function showAuthPrompt(message) {
  $("auth-message").textContent = message ? `(${message})` : "";
  $("auth-prompt").hidden = false;
  $("token-form").classList.add("attention");
  $("token-input").focus();
}

function hideAuthPrompt() {
  $("auth-prompt").hidden = true;
  $("token-form").classList.remove("attention");
}

function onTokenSaved(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  // fetch() refuses header values outside Latin-1, and would report it as a network failure.
  if (!/^[\x21-\x7e]*$/.test(token)) {
    showNotice(t("The API token can only hold printable ASCII characters (it is sent in an HTTP header)."));
    return;
  }
  setToken(token);
  hideAuthPrompt();
  // Everything loaded so far may have failed with 401: load it again and reopen the streams.
  loadTasks();
  loadFiles();
  loadBaseModels();
  if (!state.schema) loadSchema();
  connectGlobalSocket();
  if (state.viewTaskId) openTask(state.viewTaskId);
}

// ---------------------------------------------------------------- error display

function fieldElement(field) {
  return field ? document.querySelector(`[data-field="${CSS.escape(field)}"]`) : null;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
  for (const node of document.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
}

// Shows the API's message as it is (it names the field, file or column), plus its code, and
// marks the form field it names, if the form has one.
function showError(box, error) {
  const details = error.details && typeof error.details === "object" ? error.details : null;
  const extra = details ? Object.entries(details).filter(([key]) => key !== "field") : [];
  box.replaceChildren(
    el("strong", { text: error.message || String(error) }),
    el("div", { class: "error-meta" },
      error.code ? el("code", { text: error.code }) : null,
      error.status ? ` HTTP ${error.status}` : null,
      extra.length ? ` · ${extra.map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ")}` : null),
  );
  box.hidden = false;
  const field = fieldElement(details && details.field);
  if (field) {
    field.classList.add("invalid");
    field.closest("details")?.setAttribute("open", "");
    field.scrollIntoView({ block: "center", behavior: "smooth" });
  }
}

function showNotice(message) {
  $("notice-text").textContent = message;
  $("notice").hidden = false;
}

// ---------------------------------------------------------------- server info and live state

async function loadHealth() {
  try {
    const health = await api("GET", "/health");
    const devices = (health.devices || []).map((d) => (d.type === "cuda" ? d.name || "cuda" : "cpu"));
    $("server-info").textContent = `v${health.version} · ${[...new Set(devices)].join(", ") || "cpu"}`;
    $("server-info").setAttribute("translate", "no");
  } catch {
    $("server-info").textContent = "";
  }
}

function setLive(stateName) {
  const indicator = $("live-indicator");
  indicator.dataset.state = stateName;
  indicator.querySelector(".label").textContent = word(stateName);
}

// The database lags the live stream by up to PROGRESS_WRITE_INTERVAL, so a task re-read over
// REST keeps the newer live progress it already has.
function mergeRestTask(record) {
  const known = state.tasks.get(record.task_id);
  // A task never leaves a terminal status: a list fetched before the end arrived is stale.
  if (known && TERMINAL.has(known.status) && !TERMINAL.has(record.status)) return known;
  if (known) {
    const knownStep = (known.progress && known.progress.step) || 0;
    const restStep = (record.progress && record.progress.step) || 0;
    if (known.status === record.status && ACTIVE.has(record.status) && knownStep > restStep) {
      record.progress = known.progress;
    }
    keepClientFields(known, record);
  }
  state.tasks.set(record.task_id, record);
  return record;
}

// Fields starting with "_" are this page's own (last seq applied, live warnings, the latest
// epoch's metrics): a fresh copy of the record from the server keeps them.
function keepClientFields(from, to) {
  for (const [key, value] of Object.entries(from)) {
    if (key.startsWith("_") && !(key in to)) to[key] = value;
  }
}

// Live messages carry a task's error in English (each message is encoded once for every
// subscriber); a task read over REST has it in the page's language. When both name the same
// error, the copy that was read stays; a new error shows in English until the re-read that
// every status change and end triggers (reloadTasksSoon).
function keepReadError(read, record) {
  if (read.error && record.error && read.error.code === record.error.code) {
    record.error = read.error;
    record.error_message = read.error_message;
  }
}

// A snapshot's task is the state as of `seq`: it replaces what we have unless we are further on.
function mergeSnapshotTask(record, seq) {
  const known = state.tasks.get(record.task_id);
  if (known && isNumber(known._seq) && isNumber(seq) && known._seq > seq) return known;
  record._seq = seq;
  if (known) {
    keepClientFields(known, record);
    keepReadError(known, record);
  }
  state.tasks.set(record.task_id, record);
  return record;
}

// Applies one live message to the task it names. Both the global and the per-task socket carry
// the same messages; `seq` increases by one per message per task, so a message seen on one
// socket is skipped on the other. Returns whether the message was new.
function applyLiveMessage(message) {
  const task = state.tasks.get(message.task_id);
  if (!task) return false;
  if (isNumber(message.seq) && isNumber(task._seq) && message.seq <= task._seq) return false;
  if (isNumber(message.seq)) task._seq = message.seq;
  const { type, task_id: _id, seq: _seq, at: _at, ...fields } = message;
  if (type === "progress") {
    task.progress = { ...(task.progress || {}), ...fields };
  } else if (type === "epoch" || type === "evaluation") {
    const { per_class: _pc, confusion_matrix: _cm, is_best: _best, ...numbers } = fields;
    task.progress = { ...(task.progress || {}), ...numbers };
    task._lastEvaluation = fields;
  } else if (type === "status") {
    task.status = fields.status;
    const read = { error: task.error, error_message: task.error_message };
    if (fields.error_message) task.error_message = fields.error_message;
    if (fields.error) task.error = fields.error;
    keepReadError(read, task);
  } else if (type === "warning") {
    // Live messages are in English; in another language the warning is read from the task's events
    // (loadEventsSoon), which the server gives in the page's language.
    if (i18n.language === "en") task._warnings = [...(task._warnings || []), fields.message];
  } else if (type === "end" && fields.task) {
    const read = { error: task.error, error_message: task.error_message };
    Object.assign(task, fields.task);
    keepReadError(read, task);
  }
  renderTask(task);
  return true;
}

// ---------------------------------------------------------------- global WebSocket (task list)

const reloadTasksSoon = debounce(() => loadTasks(), 300);

async function connectGlobalSocket() {
  if (state.globalSocket) {
    state.globalSocket.onclose = null;
    state.globalSocket.close();
    state.globalSocket = null;
  }
  const attempt = ++state.globalAttempt;
  setLive("connecting");
  let url;
  try {
    url = await ticketUrl("/ws", { websocket: true });
  } catch (error) {
    if (attempt !== state.globalAttempt) return;
    setLive("offline");
    if (error.status !== 401) retryGlobalSocket();  // a 401 put up the token prompt; saving reconnects
    return;
  }
  if (attempt !== state.globalAttempt) return;  // a newer connect started while this one waited
  const socket = new WebSocket(url);
  state.globalSocket = socket;
  setLive("connecting");
  socket.onopen = () => {
    setLive("live");
    state.globalRetryMs = 1000;
  };
  socket.onmessage = (event) => onGlobalMessage(JSON.parse(event.data));
  socket.onclose = () => {
    if (state.globalSocket !== socket) return;
    // Closed by a server restart, a proxy, or 4008 (too slow): reconnect for a fresh snapshot,
    // backing off so a server that is down is not hammered. While the token prompt is up the
    // server refuses us anyway; saving a token reconnects.
    setLive("offline");
    if (!$("auth-prompt").hidden) return;
    retryGlobalSocket();
  };
}

function retryGlobalSocket() {
  setTimeout(connectGlobalSocket, jittered(state.globalRetryMs));
  state.globalRetryMs = Math.min(state.globalRetryMs * 2, 15000);
}

function onGlobalMessage(message) {
  // Prediction jobs (predictions.js) have streams of their own; their messages carry prediction_id.
  if (message.type.startsWith("prediction_")) {
    window.onPredictionMessage?.(message);
    return;
  }
  if (message.type === "base_model") {  // a download's state (base_models.js); no task_id
    onBaseModelMessage(message);
    return;
  }
  if (message.type === "snapshot") {
    window.onPredictionMessage?.(message);
    for (const task of message.tasks || []) mergeSnapshotTask(task, task.seq);
    onBaseModelSnapshot(message.base_models || []);
    renderTaskList();
    // Tasks that ended while we were disconnected are not in the snapshot (active ones only).
    reloadTasksSoon();
    return;
  }
  if (!state.tasks.has(message.task_id)) {
    reloadTasksSoon();  // a task created elsewhere (another tab, curl)
    return;
  }
  applyLiveMessage(message);
  if (message.type === "status" || message.type === "end") reloadTasksSoon();
}

// ---------------------------------------------------------------- task list

async function loadTasks() {
  try {
    const page = await api("GET", "/training/tasks?page_size=50");
    const listed = new Set();
    for (const record of page.tasks) {
      mergeRestTask(record);
      listed.add(record.task_id);
    }
    // Deleted elsewhere: drop it, but keep the task whose page is open (it has its own stream).
    for (const taskId of [...state.tasks.keys()]) {
      if (!listed.has(taskId) && taskId !== state.viewTaskId) state.tasks.delete(taskId);
    }
    $("task-count").textContent = page.total > page.tasks.length
      ? t("({shown} of {total})", { shown: formatNumber(page.tasks.length), total: formatNumber(page.total) })
      : `(${formatNumber(page.total)})`;
    hideAuthPrompt();
    renderTaskList();
    // A task that ended is re-read here: its error in the page's language (live messages are English).
    const open = state.tasks.get(state.viewTaskId);
    if (open) renderTaskView(open);
  } catch (error) {
    if (error.status !== 401) showNotice(t("Could not load the task list: {reason}", { reason: error.message }));
  }
}

function waitingForBaseModel(task) {
  return task.status === "queued" && task.progress && task.progress.phase === "downloading_base_model";
}

// While a queued task waits for its base model, the bar shows the download.
function downloadPercent(progress) {
  const { download_bytes_done: done, download_bytes_total: total } = progress || {};
  return isNumber(total) && total > 0 ? Math.max(0, Math.min(100, (100 * (done || 0)) / total)) : 0;
}

function progressPercent(task) {
  if (task.status === "completed") return 100;
  if (waitingForBaseModel(task)) return downloadPercent(task.progress);
  const value = task.progress && task.progress.progress_percentage;
  return isNumber(value) ? Math.max(0, Math.min(100, value)) : 0;
}

function setProgressBar(container, task) {
  const percent = progressPercent(task);
  const bar = container.querySelector(".progress-bar");
  container.dataset.status = task.status;
  bar.style.width = `${percent}%`;
  bar.dataset.value = String(percent);
  bar.setAttribute("aria-valuenow", String(percent));
}

function setStatusBadge(badge, status) {
  badge.dataset.status = status;
  badge.textContent = word(status);
}

function shortProgress(task) {
  const p = task.progress || {};
  if (waitingForBaseModel(task)) {
    return t("downloading base model {percent}", { percent: fmtPercent(downloadPercent(p) / 100, 0) });
  }
  if (task.status === "queued") {
    return task.queue_position ? t("queued #{position}", { position: task.queue_position }) : word("queued");
  }
  if (TERMINAL.has(task.status)) {
    const seconds = (Date.parse(task.finished_at) - Date.parse(task.started_at)) / 1000;
    return isNumber(seconds) ? t("{status} in {duration}", { status: word(task.status), duration: fmtDuration(seconds) })
      : "";
  }
  const epoch = p.total_epochs ? t("epoch {epoch}/{epochs}", { epoch: p.current_epoch || 0, epochs: p.total_epochs }) : "";
  return [p.phase && p.phase !== "training" ? word(p.phase) : null, epoch, fmtPercent(progressPercent(task) / 100, 0)]
    .filter(Boolean).join(" · ");
}

const taskRows = new Map();  // task_id -> <tr>, reused so live updates touch only a few nodes

function taskRow(task) {
  let row = taskRows.get(task.task_id);
  if (!row) {
    const open = () => { location.hash = `#/tasks/${encodeURIComponent(task.task_id)}`; };
    row = el("tr", {
      class: "task-row", tabindex: "0", dataset: { taskId: task.task_id },
      onclick: open, onkeydown: (e) => { if (e.key === "Enter") open(); },
    },
    el("td", { translate: "no" }, el("div", { class: "task-name" }), el("div", { class: "task-sub muted" })),
    el("td", {}, el("span", { class: "status-badge" })),
    el("td", { class: "progress-col" },
      el("div", { class: "progress" }, el("div", { class: "progress-bar", role: "progressbar" })),
      el("div", { class: "progress-note muted" })),
    el("td", { class: "muted nowrap" }));
    taskRows.set(task.task_id, row);
  }
  updateTaskRow(row, task);
  return row;
}

function updateTaskRow(row, task) {
  row.dataset.status = task.status;
  row.classList.toggle("selected", task.task_id === state.viewTaskId);
  row.querySelector(".task-name").textContent = task.model_name_cn;
  row.querySelector(".task-sub").textContent = `${task.model_name_en} · ${task.base_model}`;
  setStatusBadge(row.querySelector(".status-badge"), task.status);
  setProgressBar(row.querySelector(".progress"), task);
  row.querySelector(".progress-note").textContent = shortProgress(task);
  row.cells[3].textContent = fmtTime(task.created_at, "short");
}

function renderTaskList() {
  const tasks = [...state.tasks.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  for (const taskId of [...taskRows.keys()]) {
    if (!state.tasks.has(taskId)) taskRows.delete(taskId);
  }
  $("task-list").replaceChildren(...tasks.map(taskRow));
  $("task-empty").hidden = tasks.length > 0;
  $("task-table").hidden = tasks.length === 0;
}

// Called on every change of one task: its row, and its page when that is open.
function renderTask(task) {
  const row = taskRows.get(task.task_id);
  if (row) updateTaskRow(row, task);
  else renderTaskList();
  if (task.task_id === state.viewTaskId) renderTaskView(task);
}

// ---------------------------------------------------------------- routing

function route() {
  const match = location.hash.match(/^#\/tasks\/([^/?]+)/);
  if (match) openTask(decodeURIComponent(match[1]));
  else showNewTaskView();
}

function showNewTaskView() {
  closeTaskSocket();
  state.viewTaskId = null;
  $("task-view").hidden = true;
  $("new-task-view").hidden = false;
  for (const row of taskRows.values()) row.classList.remove("selected");
}

// ---------------------------------------------------------------- upload form

// The chosen file's name beside the chooser (the browser's own input is hidden: see style.css).
function showChosenFile() {
  const file = $("upload-file").files[0];
  const chosen = $("upload-chosen");
  chosen.textContent = file ? file.name : t("No file chosen");
  if (file) chosen.setAttribute("translate", "no");
  else chosen.removeAttribute("translate");
}

async function onUpload(event) {
  event.preventDefault();
  const box = $("upload-error");
  clearError(box);
  const file = $("upload-file").files[0];
  if (!file) {
    showError(box, { message: t("Choose a .xlsx or .csv file first.") });
    return;
  }
  const button = $("upload-button");
  button.disabled = true;
  button.textContent = t("Uploading…");
  try {
    const form = new FormData();
    form.append("file", file, file.name);
    const { status, data } = await request("POST", "/files", form);
    showUploadResult(data, status === 200);
    await loadFiles(data.filename);
  } catch (error) {
    $("upload-result").hidden = true;
    showError(box, error);
  } finally {
    button.disabled = false;
    button.textContent = t("Upload");
  }
}

function showUploadResult(record, alreadyThere) {
  const rows = record.sheets.map((sheet) => el("tr", {
    class: "sheet-row", dataset: { sheet: sheet.name }, title: t("Use this sheet"),
    onclick: () => { selectValue($("sheet-name"), sheet.name); onSheetChange(); },
  },
  el("td", { text: sheet.name, translate: "no" }),
  el("td", { class: "num", text: formatNumber(sheet.rows) }),
  el("td", { translate: "no" }, sheet.columns.map((column) => el("span", { class: "chip", text: column })))));
  $("upload-result").replaceChildren(
    el("div", { class: "upload-summary" },
      el("strong", { text: record.filename, translate: "no" }),
      " · " + fmtBytes(record.size_bytes) + " · " + t("{count} sheet(s)", { count: record.sheets.length }),
      alreadyThere ? el("span", { class: "muted", text: " · " + t("already uploaded with the same content") }) : null),
    el("table", { class: "data-table", id: "upload-sheets" },
      el("thead", {}, el("tr", {}, el("th", { text: t("Sheet") }), el("th", { text: t("Rows") }),
        el("th", { text: t("Columns") }))),
      el("tbody", {}, rows)),
  );
  $("upload-result").hidden = false;
}

// ---------------------------------------------------------------- create form: files, sheets, columns

async function loadFiles(preferred) {
  try {
    state.files = (await api("GET", "/files")).files;
  } catch (error) {
    if (error.status !== 401) showNotice(t("Could not load the uploaded files: {reason}", { reason: error.message }));
    return;
  }
  const training = $("training-file");
  const current = preferred || training.value;
  fillSelect(training, state.files.map((f) => [f.filename, f.filename]), current,
    state.files.length ? null : t("(upload a file first)"));
  const validation = $("validation-file");
  fillSelect(validation, [["", t("(none: split the training data)")],
    ...state.files.map((f) => [f.filename, f.filename])], validation.value);
  onTrainingFileChange();
  onValidationFileChange();
  window.fillPredictionFiles?.();
}

function fillSelect(select, options, wanted, emptyLabel = null) {
  const values = options.map(([value]) => value);
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  if (!options.length && emptyLabel) select.append(el("option", { value: "", text: emptyLabel }));
  select.value = values.includes(wanted) ? wanted : (values[0] ?? "");
}

function selectValue(select, value) {
  if ([...select.options].some((option) => option.value === value)) select.value = value;
}

function fileRecord(filename) {
  return state.files.find((f) => f.filename === filename) || null;
}

function onTrainingFileChange() {
  const record = fileRecord($("training-file").value);
  const sheets = record ? record.sheets : [];
  fillSelect($("sheet-name"), sheets.map((s) => [s.name, sheetLabel(s)]), $("sheet-name").value);
  $("sheet-hint").textContent = record && record.filename.toLowerCase().endsWith(".csv")
    ? t("A CSV file has one sheet.") : t("Sheet to read.");
  onSheetChange();
  suggestModelNames(record);
}

function sheetLabel(sheet) {
  return t("{name} ({rows} rows)", { name: sheet.name, rows: formatNumber(sheet.rows) });
}

function onSheetChange() {
  const record = fileRecord($("training-file").value);
  const sheet = record && record.sheets.find((s) => s.name === $("sheet-name").value);
  const columns = sheet ? sheet.columns : [];
  const options = columns.map((c) => [c, c]);
  const textSelect = $("text-column");
  const labelSelect = $("label-column");
  const text = columns.includes(textSelect.value) ? textSelect.value : guessColumn(columns, "text_column", TEXT_COLUMN_HINT);
  fillSelect(textSelect, options, text);
  const others = columns.filter((c) => c !== textSelect.value);
  const label = columns.includes(labelSelect.value) && labelSelect.value !== textSelect.value
    ? labelSelect.value : guessColumn(others, "label_column", LABEL_COLUMN_HINT, true);
  fillSelect(labelSelect, options, label);
}

// The schema's default column name when the sheet has it, else a column whose name looks right.
function guessColumn(columns, hyperparameter, hint, preferLast = false) {
  const fallback = schemaDefault(hyperparameter);
  if (columns.includes(fallback)) return fallback;
  const hinted = columns.find((c) => hint.test(c));
  if (hinted) return hinted;
  return preferLast ? columns[columns.length - 1] : columns[0];
}

function onValidationFileChange() {
  const record = fileRecord($("validation-file").value);
  $("validation-sheet-field").hidden = !record;
  fillSelect($("validation-sheet-name"), record ? record.sheets.map((s) => [s.name, sheetLabel(s)]) : [],
    $("validation-sheet-name").value);
}

// Fills the model names from the file name until the user types their own.
function suggestModelNames(record) {
  if (!record) return;
  const stem = record.filename.replace(/\.[^.]+$/, "");
  const cn = $("model-name-cn");
  const en = $("model-name-en");
  if (!cn.dataset.touched) cn.value = stem.slice(0, 200);
  if (!en.dataset.touched) {
    const ascii = stem.normalize("NFKD").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+|-+$/g, "");
    en.value = (ascii.length >= 3 ? ascii : `model-${new Date().toISOString().slice(0, 10)}`).slice(0, 100);
  }
}

// ---------------------------------------------------------------- create form: hyperparameters from the schema

async function loadSchema() {
  try {
    // The field descriptions in the page's language: the OpenAPI document served translated.
    const document_ = await api("GET", `/openapi.json?lang=${i18n.language === "en" ? "en" : "zh"}`);
    state.schema = document_.components.schemas.TaskRequest;
  } catch (error) {
    showNotice(t("Could not read the API schema ({reason}); the create form is incomplete.", { reason: error.message }));
    return;
  }
  const properties = state.schema.properties;
  $("base-model").value = properties.base_model.default ?? "";
  $("base-model-hint").textContent = properties.base_model.description || "";
  buildHyperparameterFields(properties.hyperparameters.properties || {});
  onSheetChange();  // the default column names come from the schema
}

function schemaDefault(hyperparameter) {
  const spec = state.schema && state.schema.properties.hyperparameters.properties[hyperparameter];
  return spec ? spec.default : undefined;
}

function buildHyperparameterFields(properties) {
  const main = $("hyperparameters-main");
  const advanced = $("hyperparameters-advanced");
  main.replaceChildren();
  advanced.replaceChildren();
  // Nested settings (lora) become dotted fields, "lora.r", after the flat ones.
  const flat = {};
  const nested = {};
  for (const [name, spec] of Object.entries(properties)) {
    if (DATA_HYPERPARAMETERS.has(name)) continue;
    if (primaryType(spec) !== "object") flat[name] = spec;
    else for (const [inner, innerSpec] of Object.entries(spec.properties || {})) nested[`${name}.${inner}`] = innerSpec;
  }
  const names = Object.keys(flat);
  const rank = (name) => (MAIN_HYPERPARAMETERS.includes(name) ? MAIN_HYPERPARAMETERS.indexOf(name) : 100);
  names.sort((a, b) => rank(a) - rank(b));
  for (const name of names) {
    (MAIN_HYPERPARAMETERS.includes(name) ? main : advanced).append(hyperparameterField(name, flat[name]));
  }
  for (const [name, spec] of Object.entries(nested)) advanced.append(hyperparameterField(name, spec));
  linkLoraLearningRate();
  $("hyperparameters-more").querySelector("summary").textContent =
    t("More hyperparameters ({count})", { count: advanced.children.length });
}

// With LoRA the server picks a larger learning rate when none is sent (see the field's hint), so
// ticking lora.enabled empties a learning rate still at the full fine-tuning default.
function linkLoraLearningRate() {
  const enabled = document.querySelector('[data-hp="lora.enabled"]');
  const rate = document.querySelector('[data-hp="learning_rate"]');
  if (!enabled || !rate) return;
  const fullDefault = String(schemaDefault("learning_rate"));
  enabled.addEventListener("change", () => {
    if (enabled.checked && rate.value === fullDefault) {
      rate.value = "";
      rate.placeholder = t("LoRA default");
    } else if (!enabled.checked && rate.value === "") {
      rate.value = fullDefault;
      rate.placeholder = "";
    }
  });
}

function primaryType(spec) {
  const types = [].concat(spec.type || "string");
  return types.find((t) => t !== "null") || "string";
}

function isNullable(spec) {
  return [].concat(spec.type || []).includes("null");
}

function hyperparameterField(name, spec) {
  const type = primaryType(spec);
  const nullable = isNullable(spec);
  const control = hyperparameterControl(name, spec, type, nullable);
  control.id = `hp-${name}`;
  control.dataset.hp = name;
  control.dataset.type = type;
  if (nullable) control.dataset.nullable = "true";
  const range = [
    isNumber(spec.minimum) ? `≥ ${spec.minimum}` : null,
    isNumber(spec.exclusiveMinimum) ? `> ${spec.exclusiveMinimum}` : null,
    isNumber(spec.maximum) ? `≤ ${spec.maximum}` : null,
  ].filter(Boolean).join(", ");
  const fallback = JSON.stringify(spec.default ?? null);
  const hint = [spec.description, t("Default: {value}", { value: fallback }), range].filter(Boolean).join(" ");
  const label = el("label", { class: `field${type === "boolean" ? " field-check" : ""}`, dataset: { field: `hyperparameters.${name}` }, title: hint },
    el("span", { class: "name", text: name, translate: "no" }),
    control,
    el("span", { class: "hint" }, spec.description || "", " ",
      el("span", { class: "default", text: range ? t("default {value}; {range}", { value: fallback, range })
        : t("default {value}", { value: fallback }) })));
  return label;
}

function hyperparameterControl(name, spec, type, nullable) {
  if (spec.enum) {
    const options = spec.enum.map((value) => el("option", { value: String(value), text: String(value) }));
    if (nullable) options.unshift(el("option", { value: "", text: "(null)" }));
    for (const option of options) option.setAttribute("translate", "no");
    const select = el("select", {}, options);
    select.value = spec.default === null || spec.default === undefined ? "" : String(spec.default);
    return select;
  }
  if (type === "boolean") {
    const box = el("input", { type: "checkbox" });
    box.checked = Boolean(spec.default);
    return box;
  }
  if (type === "integer" || type === "number") {
    const input = el("input", {
      type: "number", step: type === "integer" ? "1" : "any", inputmode: type === "integer" ? "numeric" : "decimal",
      min: isNumber(spec.minimum) ? spec.minimum : null, max: isNumber(spec.maximum) ? spec.maximum : null,
      placeholder: nullable ? "null" : "",
    });
    input.value = isNumber(spec.default) ? String(spec.default) : "";
    return input;
  }
  if (type === "array") {
    const input = el("input", { type: "text", spellcheck: "false", placeholder: t("comma-separated") });
    input.value = (spec.default || []).join(", ");
    return input;
  }
  const input = el("input", { type: "text", spellcheck: "false", placeholder: nullable ? "null" : "" });
  input.value = spec.default ?? "";
  return input;
}

class FormError extends Error {
  constructor(field, message) {
    super(message);
    this.details = { field };
    this.code = "form";
  }
}

// Reads one generated control as the JSON type the schema wants: numbers as numbers, booleans
// as booleans, null for an empty nullable field. An empty non-nullable field is left out, so
// the server applies its default.
function controlValue(control) {
  const { type, nullable, hp } = control.dataset;
  if (type === "boolean") return control.checked;
  if (control.validity && control.validity.badInput) {
    throw new FormError(`hyperparameters.${hp}`, t("hyperparameters.{name}: not a number", { name: hp }));
  }
  const raw = control.value.trim();
  if (raw === "") return nullable ? null : undefined;
  if (type === "array") return raw.split(",").map((item) => item.trim()).filter(Boolean);
  if (type === "integer" || type === "number") {
    const value = Number(raw);
    if (!Number.isFinite(value)) {
      throw new FormError(`hyperparameters.${hp}`, t("hyperparameters.{name}: not a number", { name: hp }));
    }
    return value;
  }
  return raw;
}

function readTaskRequest() {
  const trainingFile = $("training-file").value;
  if (!trainingFile) throw new FormError("training_data_file", t("Upload a training file first (step 1)."));
  const hyperparameters = {};
  for (const control of document.querySelectorAll("[data-hp]")) {
    const value = controlValue(control);
    if (value === undefined) continue;
    const [name, inner] = control.dataset.hp.split(".");
    if (inner === undefined) hyperparameters[name] = value;
    else (hyperparameters[name] ??= {})[inner] = value;
  }
  hyperparameters.sheet_name = $("sheet-name").value || null;
  hyperparameters.text_column = $("text-column").value;
  hyperparameters.label_column = $("label-column").value;
  const validationFile = $("validation-file").value || null;
  hyperparameters.validation_sheet_name = validationFile ? $("validation-sheet-name").value || null : null;
  const body = {
    model_name_cn: $("model-name-cn").value.trim(),
    model_name_en: $("model-name-en").value.trim(),
    training_data_file: trainingFile,
    validation_data_file: validationFile,
    callback_url: $("callback-url").value.trim() || null,
    hyperparameters,
  };
  const baseModel = $("base-model").value.trim();
  if (baseModel) body.base_model = baseModel;
  return body;
}

async function onCreate(event) {
  event.preventDefault();
  const box = $("create-error");
  clearError(box);
  const button = $("create-button");
  let body;
  try {
    body = readTaskRequest();
  } catch (error) {
    showError(box, error);
    return;
  }
  button.disabled = true;
  $("create-status").textContent = t("Creating…");
  try {
    const task = await api("POST", "/training/tasks", body);
    $("create-status").textContent = serverNote(task.message, t("Task created."));
    mergeRestTask(task);
    renderTaskList();
    location.hash = `#/tasks/${encodeURIComponent(task.task_id)}`;
  } catch (error) {
    $("create-status").textContent = "";
    showError(box, error);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- one task's page

async function openTask(taskId) {
  const switching = state.viewTaskId !== taskId;
  state.viewTaskId = taskId;
  $("new-task-view").hidden = true;
  $("task-view").hidden = false;
  for (const row of taskRows.values()) row.classList.toggle("selected", row.dataset.taskId === taskId);
  if (switching) {
    state.chart = emptyChart(taskId);
    for (const id of ["task-action-error", "predict-error"]) clearError($(id));
    $("predict-results").hidden = true;
    $("task-action-status").textContent = "";
    $("task-events").replaceChildren();
  }
  closeTaskSocket();
  const known = state.tasks.get(taskId);
  if (known) renderTaskView(known);
  try {
    const record = mergeRestTask(await api("GET", taskPath(taskId)));
    if (state.viewTaskId !== taskId) return;  // the user moved on while this loaded
    addHistoryToChart(record);
    renderTask(record);
  } catch (error) {
    if (state.viewTaskId !== taskId) return;
    if (!known) {
      $("task-title").textContent = t("Task not found");
      $("task-subtitle").textContent = taskId;
    }
    showError($("task-action-error"), error);
    if (error.status === 404) return;
  }
  loadEvents(taskId);
  connectTaskSocket(taskId);
}

function closeTaskSocket() {
  state.taskAttempt++;  // a connect still waiting for its ticket gives way
  if (state.taskSocket) {
    state.taskSocket.onclose = null;
    state.taskSocket.close();
    state.taskSocket = null;
  }
}

async function connectTaskSocket(taskId, retryMs = 1000) {
  closeTaskSocket();
  const attempt = state.taskAttempt;
  let url;
  try {
    url = await ticketUrl(taskPath(taskId, "/ws"), { websocket: true });
  } catch (error) {
    if (attempt === state.taskAttempt && error.status !== 401) reconnectTaskSocket(taskId, retryMs);
    return;
  }
  if (attempt !== state.taskAttempt || state.viewTaskId !== taskId) return;
  const socket = new WebSocket(url);
  state.taskSocket = socket;
  socket.onmessage = (event) => onTaskMessage(taskId, JSON.parse(event.data));
  socket.onclose = (event) => {
    if (state.taskSocket !== socket) return;
    state.taskSocket = null;
    const task = state.tasks.get(taskId);
    // 1000 means the task ended. Anything else (4008 too slow, 1001 shutdown, network) while
    // the page is still open: reconnect, and the next snapshot fills in what was missed.
    const waitingForToken = !$("auth-prompt").hidden;
    if (event.code !== 1000 && state.viewTaskId === taskId && !(task && TERMINAL.has(task.status)) && !waitingForToken) {
      reconnectTaskSocket(taskId, retryMs);
    }
  };
}

function reconnectTaskSocket(taskId, retryMs) {
  const attempt = state.taskAttempt;
  setTimeout(() => {
    if (state.viewTaskId === taskId && attempt === state.taskAttempt) {
      connectTaskSocket(taskId, Math.min(retryMs * 2, 15000));
    }
  }, jittered(retryMs));
}

// Every open dashboard loses its sockets at the same moment when the server restarts; spreading
// the reconnects (0.5x to 1.5x the back-off) keeps them from arriving as one storm of handshakes.
function jittered(delayMs) {
  return delayMs * (0.5 + Math.random());
}

function onTaskMessage(taskId, message) {
  if (state.viewTaskId !== taskId) return;
  // A completed task's stream also carries its prediction jobs' messages (numbered per job); the
  // global socket hands those to predictions.js already.
  if (message.type.startsWith("prediction_")) return;
  if (message.type === "snapshot") {
    const task = mergeSnapshotTask(message.task, message.seq);
    addProgressToChart(task.progress);
    renderTask(task);
    return;
  }
  addMessageToChart(message);
  applyLiveMessage(message);
  if (message.type === "end") {
    addHistoryToChart(state.tasks.get(taskId));
    // The stream's messages are in English; the task's error is re-read in the page's language.
    if (i18n.language !== "en" && message.task && message.task.error) reloadTasksSoon();
    loadEvents(taskId);
    renderTask(state.tasks.get(taskId));
  } else if (message.type === "warning" || message.type === "status" || message.type === "resumed") {
    loadEventsSoon(taskId);
  }
  scheduleChartDraw();
}

function renderTaskView(task) {
  const p = task.progress || {};
  $("task-title").textContent = task.model_name_cn;
  $("task-subtitle").textContent =
    `${task.model_name_en} · ${task.base_model} · ${task.training_data_file} · id ${task.task_id}`;
  $("task-title").setAttribute("translate", "no");
  $("task-subtitle").setAttribute("translate", "no");
  setStatusBadge($("task-status"), task.status);
  setProgressBar($("task-progress"), task);
  $("task-progress-text").replaceChildren(...progressFacts(task, p).map(([label, value]) =>
    el("span", { class: "fact" }, el("span", { class: "muted", text: `${t(label)} ` }), String(value))));
  const errorBox = $("task-error");
  errorBox.hidden = !task.error_message && !task.error;
  errorBox.replaceChildren(...(task.error || task.error_message
    ? [el("div", { class: "muted", text: t("Failed") }), ...errorDetails(task.error, task.error_message)] : []));
  renderWarnings(task);
  renderActions(task);
  renderMetrics(task);
  renderHyperparameters(task);
  $("predict-card").hidden = task.status !== "completed";
  window.renderPredictionCard?.(task);
  scheduleChartDraw();
}

// [label (a msgid), value] pairs under the task's progress bar.
function progressFacts(task, p) {
  const facts = [];
  if (task.status === "queued") facts.push([N_("queue position"), task.queue_position ?? "–"]);
  if (p.phase) facts.push([N_("phase"), word(p.phase)]);
  if (waitingForBaseModel(task)) {
    facts.push([N_("base model download"), t("{percent} · {done} of {total}", {
      percent: fmtPercent(downloadPercent(p) / 100), done: fmtBytes(p.download_bytes_done),
      total: isNumber(p.download_bytes_total) ? fmtBytes(p.download_bytes_total) : "?" })]);
  }
  if (p.total_epochs) facts.push([N_("epoch"), `${p.current_epoch || 0} / ${p.total_epochs}`]);
  if (p.total_steps) facts.push([N_("step"), `${formatNumber(p.step || 0)} / ${formatNumber(p.total_steps)}`]);
  facts.push([N_("progress"), fmtPercent(progressPercent(task) / 100)]);
  if (isNumber(p.train_loss)) facts.push([N_("train loss"), fmtNumber(p.train_loss)]);
  if (isNumber(p.val_accuracy)) facts.push([N_("val accuracy"), fmtPercent(p.val_accuracy)]);
  if (isNumber(p.samples_per_second)) facts.push([N_("samples/s"), fmtNumber(p.samples_per_second, 3)]);
  if (ACTIVE.has(task.status) && isNumber(p.eta_seconds)) facts.push([N_("ETA"), fmtDuration(p.eta_seconds)]);
  if (task.checkpoint) {
    facts.push([N_("checkpoint"), t("epoch {epoch}, step {step}", { epoch: task.checkpoint.epoch, step: task.checkpoint.step })]);
  }
  if (task.interruptions) facts.push([N_("restarts survived"), task.interruptions]);
  if (task.started_at) facts.push([N_("started"), fmtTime(task.started_at)]);
  if (task.finished_at) facts.push([N_("finished"), fmtTime(task.finished_at)]);
  return facts;
}

function renderWarnings(task) {
  const messages = [...new Set([...(task._eventWarnings || []), ...(task._warnings || [])])];
  $("task-warnings").replaceChildren(...messages.map((m) => el("div", { class: "warning-box", text: `⚠ ${m}` })));
}

function renderActions(task) {
  if (state.actionStatusFor && state.actionStatusFor !== task.status) {
    $("task-action-status").textContent = "";
    state.actionStatusFor = null;
  }
  $("stop-button").disabled = !["queued", "training", "paused"].includes(task.status);
  // Pause while queued or training (not once a pause or stop is under way); resume while paused.
  const pausing = (task.progress || {}).phase === "pausing";
  $("pause-button").hidden = task.status === "paused";
  $("pause-button").disabled = !(task.status === "queued" || task.status === "training") || pausing;
  $("resume-button").hidden = task.status !== "paused";
  const link = $("download-link");
  const downloadable = task.status === "completed";
  link.hidden = !downloadable;
  // With a token, a click fetches a ticket first (onDownload): a link cannot send the header.
  link.href = downloadable ? API + taskPath(task.task_id, "/download") : "#";
}

async function onDownload(event) {
  const link = event.currentTarget;
  if (!getToken() || link.getAttribute("href") === "#") return;  // without a token the plain link works
  event.preventDefault();
  try {
    const url = await ticketUrl(link.pathname.slice(API.length));
    const once = el("a", { href: url, download: true, hidden: true });
    document.body.append(once);
    once.click();
    once.remove();
  } catch (error) {
    showError($("task-action-error"), error);
  }
}

function renderHyperparameters(task) {
  const rows = Object.entries(task.hyperparameters || {}).map(([key, value]) =>
    el("tr", {}, el("th", { text: key }), el("td", { text: JSON.stringify(value) })));
  rows.push(el("tr", {}, el("th", { text: "callback_url" }), el("td", { text: JSON.stringify(task.callback_url) })));
  $("task-hyperparameters").replaceChildren(el("tbody", { translate: "no" }, rows));
}

// Metrics of the best epoch once completed; while training, those of the latest epoch.
function renderMetrics(task) {
  const card = $("metrics");
  const m = task.metrics;
  const live = task._lastEvaluation && task._lastEvaluation.per_class ? task._lastEvaluation : null;
  if (!m && !live) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  const source = m || live;
  const labels = (m && m.labels) || Object.keys(source.per_class || {});
  // train_val_split 0 without a validation file: nothing was held out, the last epoch was saved.
  const unvalidated = Boolean(m && m.model_selection === "last_epoch");
  $("metrics-note").textContent = unvalidated ? t("no validation rows · last epoch ({epoch}) saved", { epoch: m.best_epoch })
    : m ? t("best epoch {epoch}", { epoch: m.best_epoch ?? "–" })
      : ACTIVE.has(task.status) ? t("latest epoch {epoch} (live)", { epoch: live.epoch })
        : t("latest epoch {epoch}", { epoch: live.epoch });
  const summary = [
    [t("accuracy"), fmtPercent(source.val_accuracy)],
    [t("macro-F1"), fmtPercent(source.val_macro_f1)],
    [t("val loss"), fmtNumber(source.val_loss)],
  ];
  if (m) {
    const rowsCount = (value) => (isNumber(value) ? formatNumber(value) : "–");
    summary.push([t("train / val rows"), `${rowsCount(m.train_rows)} / ${rowsCount(m.validation_rows)}`],
      [t("training time"), fmtDuration(m.training_seconds)], [t("device"), `${m.device ?? "–"} ${m.precision ?? ""}`]);
  }
  $("metrics-summary").replaceChildren(...summary.map(([label, value]) =>
    el("div", { class: "stat" }, el("div", { class: "stat-value", text: value }), el("div", { class: "stat-label muted", text: label }))));
  if (unvalidated) {
    $("metrics-summary").prepend(el("div", { class: "warning-box no-validation", id: "no-validation-note",
      text: t("No validation metrics: train_val_split was 0 and there was no validation_data_file, so every row trained and the last epoch was saved.") }));
  }
  renderPerClass(unvalidated ? [] : labels, source.per_class || {});
  renderConfusion(unvalidated ? [] : labels, source.confusion_matrix || []);
}

function renderPerClass(labels, perClass) {
  const head = el("thead", {}, el("tr", {}, [t("label"), t("precision"), t("recall"), "F1", t("support")]
    .map((h) => el("th", { text: h }))));
  const rows = labels.map((label) => {
    const c = perClass[label] || {};
    return el("tr", { dataset: { label } }, el("th", { text: label, translate: "no" }),
      el("td", { class: "num", text: fmtFixed(c.precision) }), el("td", { class: "num", text: fmtFixed(c.recall) }),
      el("td", { class: "num", text: fmtFixed(c.f1) }), el("td", { class: "num", text: isNumber(c.support) ? formatNumber(c.support) : "–" }));
  });
  $("per-class-table").replaceChildren(head, el("tbody", {}, rows));
}

function renderConfusion(labels, matrix) {
  const head = el("thead", {}, el("tr", {}, el("th", { class: "corner", text: t("true \\ predicted") }),
    labels.map((l) => el("th", { text: l, translate: "no" }))));
  const rows = labels.map((label, i) => {
    const counts = matrix[i] || [];
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, el("th", { text: label, translate: "no" }), labels.map((_, j) => {
      const count = counts[j] ?? 0;
      const share = count / total;
      // Shade by the share of the true label's rows: the diagonal in blue, mistakes in red.
      const colour = i === j ? `rgba(37, 99, 235, ${0.08 + share * 0.6})` : `rgba(220, 38, 38, ${share * 0.6})`;
      return el("td", { class: `num${i === j ? " diagonal" : ""}`, style: `background:${count ? colour : "transparent"}`, text: count });
    }));
  });
  $("confusion-matrix").replaceChildren(head, el("tbody", {}, rows));
}

// ---------------------------------------------------------------- events

const loadEventsSoon = debounce((taskId) => loadEvents(taskId), 500);

async function loadEvents(taskId) {
  let events;
  try {
    events = (await api("GET", `${taskPath(taskId, "/events")}?limit=1000`)).events;
  } catch {
    return;  // optional: the page works without the history
  }
  if (state.viewTaskId !== taskId) return;
  const task = state.tasks.get(taskId);
  for (const event of events) {
    if (event.type === "epoch" || event.type === "evaluation") addEvaluationToChart(event.data, task);
  }
  if (task) {
    task._eventWarnings = events.filter((e) => e.type === "warning").map((e) => e.data.message);
    renderWarnings(task);
  }
  $("task-events").replaceChildren(...events.slice(-200).reverse().map((event) =>
    el("li", { dataset: { type: event.type } },
      el("span", { class: "muted nowrap", text: fmtTime(event.at, "time") }), " ",
      el("span", { class: "event-type", text: word(event.type) }), " ",
      el("span", { text: describeEvent(event, task) }))));
  scheduleChartDraw();
}

function describeEvent(event, task) {
  const d = event.data || {};
  if (event.type === "status") {
    // The event keeps the error as it was recorded, in English; the task read over REST has the
    // same error in the page's language.
    const sameError = d.error && task && task.error && task.error.code === d.error.code;
    const message = sameError ? task.error_message : d.error_message;
    return message ? t("{status}: {message}", { status: word(d.status), message }) : word(d.status);
  }
  if (event.type === "epoch" && !isNumber(d.val_accuracy)) {
    return t("epoch {epoch}: train loss {loss}, train accuracy {accuracy} (no validation rows)", {
      epoch: d.epoch, loss: fmtNumber(d.train_loss), accuracy: fmtPercent(d.train_accuracy) });
  }
  if (event.type === "epoch" || event.type === "evaluation") {
    const values = { epoch: d.epoch, step: d.step, accuracy: fmtPercent(d.val_accuracy), f1: fmtPercent(d.val_macro_f1),
      loss: fmtNumber(d.val_loss) };
    return isNumber(d.step)
      ? t("epoch {epoch} step {step}: val accuracy {accuracy}, macro-F1 {f1}, val loss {loss}", values)
      : t("epoch {epoch}: val accuracy {accuracy}, macro-F1 {f1}, val loss {loss}", values);
  }
  if (event.type === "warning") return d.message ?? "";
  if (event.type === "prediction") {
    const values = { id: String(d.prediction_id).slice(0, 8), file: d.file, sheet: d.sheet_name, status: word(d.status),
      rows: isNumber(d.rows_total) ? formatNumber(d.rows_total) : "" };
    const what = !d.file ? t("prediction job {id} {status}", values)
      : d.sheet_name ? t("prediction job {id} of {file} ({sheet}) {status}", values)
        : t("prediction job {id} of {file} {status}", values);
    const counted = isNumber(d.rows_total) ? t("{what}: {rows} rows", { what, rows: values.rows }) : what;
    return d.error_message ? t("{what}: {message}", { what: counted, message: d.error_message }) : counted;
  }
  if (event.type === "resumed") {
    const where = d.epoch_complete
      ? t("continues from its checkpoint at the end of epoch {epoch} (step {step})", { epoch: d.epoch, step: d.step })
      : t("continues from its checkpoint within epoch {epoch} (step {step})", { epoch: d.epoch, step: d.step });
    return d.interruptions ? t("{what} after {count} restart(s)", { what: where, count: d.interruptions }) : where;
  }
  return JSON.stringify(d);
}

// ---------------------------------------------------------------- task actions

async function onStop() {
  const taskId = state.viewTaskId;
  await runAction(async () => {
    const task = await api("POST", taskPath(taskId, "/stop"));
    mergeRestTask(task);
    renderTask(task);
    return serverNote(task.message, t("Stop requested."));
  });
}

async function onPause() {
  const taskId = state.viewTaskId;
  await runAction(async () => {
    const task = await api("POST", taskPath(taskId, "/pause"));
    mergeRestTask(task);
    renderTask(task);
    return serverNote(task.message, t("Pause requested."));
  });
}

async function onResume() {
  const taskId = state.viewTaskId;
  await runAction(async () => {
    const task = await api("POST", taskPath(taskId, "/resume"));
    mergeRestTask(task);
    renderTask(task);
    return serverNote(task.message, t("Queued again."));
  });
}

async function onDelete() {
  const taskId = state.viewTaskId;
  const task = state.tasks.get(taskId);
  const name = task ? task.model_name_cn : taskId;
  if (!window.confirm(t("Delete task “{name}” with its events and its model? This cannot be undone.", { name }))) return;
  await runAction(async () => {
    await api("DELETE", taskPath(taskId));
    state.tasks.delete(taskId);
    renderTaskList();
    location.hash = "#/";
    return t("Deleted.");
  });
}

// A success message from the server (English, as every non-error body is) in English; in another
// language the page's own words for the same outcome.
function serverNote(message, own) {
  return i18n.language === "en" && message ? message : own;
}

async function runAction(action) {
  const box = $("task-action-error");
  clearError(box);
  $("task-action-status").textContent = "…";
  try {
    const message = await action();
    // Cleared by renderActions once the task's status moves on (e.g. stopping -> stopped).
    const task = state.tasks.get(state.viewTaskId);
    state.actionStatusFor = task ? task.status : null;
    $("task-action-status").textContent = message;
  } catch (error) {
    $("task-action-status").textContent = "";
    showError(box, error);
  }
}

async function onPredict(event) {
  event.preventDefault();
  const box = $("predict-error");
  clearError(box);
  const texts = $("predict-input").value.split("\n").map((t) => t.trim()).filter(Boolean);
  if (!texts.length) {
    showError(box, { message: t("Type at least one text (one per line).") });
    return;
  }
  $("predict-button").disabled = true;
  try {
    const result = await api("POST", taskPath(state.viewTaskId, "/predict"), { texts, top_k: 3 });
    renderPredictions(texts, result.predictions);
  } catch (error) {
    showError(box, error);
  } finally {
    $("predict-button").disabled = false;
  }
}

function renderPredictions(texts, predictions) {
  const table = $("predict-results");
  const rows = predictions.map((prediction, i) => {
    const top = prediction.top_k || [{ label: prediction.label, score: prediction.score }];
    return el("tr", {}, el("td", { class: "predict-text", text: texts[i], translate: "no" }),
      el("td", { translate: "no" }, top.map((entry, rank) => el("span", { class: `chip${rank === 0 ? " chip-top" : ""}`, dataset: { label: entry.label } },
        `${entry.label} `, el("span", { class: "score", text: fmtPercent(entry.score) })))));
  });
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", { text: t("text") }), el("th", { text: t("label (score)") }))),
    el("tbody", {}, rows));
  table.hidden = false;
}

// ---------------------------------------------------------------- charts (data)

function emptyChart(taskId) {
  return { taskId, trainLoss: [], valLoss: [], trainAcc: [], valAcc: [], valF1: [], lastStep: 0 };
}

// Keeps points sorted by x with one point per x: the two sockets, a reconnect snapshot and the
// events history may all report the same step.
function addPoint(series, x, y) {
  if (!isNumber(x) || !isNumber(y)) return;
  let i = series.length;
  while (i > 0 && series[i - 1].x > x) i -= 1;
  if (i > 0 && series[i - 1].x === x) series[i - 1].y = y;
  else series.splice(i, 0, { x, y });
}

function addProgressToChart(progress) {
  if (!progress || !(progress.step > 0)) return;
  const chart = state.chart;
  chart.lastStep = Math.max(chart.lastStep, progress.step);
  if (progress.phase === "training" || progress.phase === "evaluating") {
    addPoint(chart.trainLoss, progress.step, progress.train_loss);
    addPoint(chart.trainAcc, progress.step, progress.train_accuracy);
  }
}

// Epoch ends and mid-epoch evaluations. Older servers leave out `step`; then the point goes
// where the epoch ends, estimated from the steps per epoch.
function addEvaluationToChart(entry, task) {
  const chart = state.chart;
  let x = entry.step;
  if (!isNumber(x)) {
    const p = (task && task.progress) || {};
    const perEpoch = p.total_steps && p.total_epochs ? p.total_steps / p.total_epochs : null;
    x = perEpoch ? Math.round(entry.epoch * perEpoch) : chart.lastStep;
  }
  addPoint(chart.valLoss, x, entry.val_loss);
  addPoint(chart.valAcc, x, entry.val_accuracy);
  addPoint(chart.valF1, x, entry.val_macro_f1);
  // An epoch's train metrics equal the last progress of that epoch: only fill in missing points.
  if (!chart.trainLoss.some((pt) => pt.x === x)) addPoint(chart.trainLoss, x, entry.train_loss);
  if (!chart.trainAcc.some((pt) => pt.x === x)) addPoint(chart.trainAcc, x, entry.train_accuracy);
}

function addMessageToChart(message) {
  if (message.type === "progress") addProgressToChart(message);
  else if (message.type === "epoch" || message.type === "evaluation") {
    addEvaluationToChart(message, state.tasks.get(message.task_id));
  }
}

// A finished task's metrics keep the history per epoch (with its step): enough to draw the
// curves of a task that trained before this page was opened.
function addHistoryToChart(task) {
  if (!task || !task.metrics || !Array.isArray(task.metrics.history)) return;
  for (const entry of task.metrics.history) addEvaluationToChart(entry, task);
  scheduleChartDraw();
}

// ---------------------------------------------------------------- charts (drawing)

let drawPending = false;

// Progress arrives several times a second: draw at most once per animation frame.
function scheduleChartDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    drawCharts();
  });
}

function drawCharts() {
  if ($("task-view").hidden) return;
  const chart = state.chart;
  const task = state.tasks.get(chart.taskId);
  const totalSteps = task && task.progress && task.progress.total_steps;
  const emptyText = task && TERMINAL.has(task.status) ? t("No training steps were recorded.")
    : t("Waiting for the first training step…");
  drawLineChart($("loss-chart"), [
    { name: t("train loss"), color: COLORS.train, points: chart.trainLoss },
    { name: t("val loss"), color: COLORS.val, points: chart.valLoss, dots: true },
  ], { xMax: totalSteps, yFromZero: true, emptyText });
  drawLineChart($("accuracy-chart"), [
    { name: t("train accuracy"), color: COLORS.trainAcc, points: chart.trainAcc },
    { name: t("val accuracy"), color: COLORS.val, points: chart.valAcc, dots: true },
    { name: t("val macro-F1"), color: COLORS.f1, points: chart.valF1, dots: true },
  ], { xMax: totalSteps, yMin: 0, yMax: 1, percent: true, emptyText });
}

// Round tick values (1, 2, 2.5, 5 × 10^n) covering [min, max].
function niceTicks(min, max, count = 5) {
  const span = max - min || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// Sizes the canvas to its CSS box at the screen's pixel ratio, so lines stay sharp.
function prepareCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth);
  const height = Math.max(140, canvas.clientHeight);
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = CHART_FONT;
  return { ctx, width, height };
}

function drawLineChart(canvas, series, options) {
  const { ctx, width, height } = prepareCanvas(canvas);
  const pointCount = series.reduce((n, s) => n + s.points.length, 0);
  canvas.dataset.points = String(pointCount);
  const area = { left: 46, right: width - 12, top: 0, bottom: height - 26 };
  area.top = drawLegend(ctx, series, area) + 10;
  if (!pointCount) {
    ctx.fillStyle = "#94a3b8";
    ctx.textAlign = "center";
    ctx.fillText(options.emptyText, width / 2, height / 2);
    return;
  }
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(options.xMax || 0, ...all.map((p) => p.x), 1);
  let yMin = options.yMin ?? Math.min(...all.map((p) => p.y));
  let yMax = options.yMax ?? Math.max(...all.map((p) => p.y));
  if (options.yFromZero) yMin = Math.min(0, yMin);
  if (options.yMax === undefined) yMax += (yMax - yMin) * 0.08 || 0.1;
  const yTicks = niceTicks(yMin, yMax, 4);
  yMax = Math.max(yMax, yTicks[yTicks.length - 1]);
  const sx = (x) => area.left + (x / xMax) * (area.right - area.left);
  const sy = (y) => area.bottom - ((y - yMin) / (yMax - yMin || 1)) * (area.bottom - area.top);
  drawAxes(ctx, area, yTicks, niceTicks(0, xMax, 6).filter((t) => t <= xMax), sx, sy, options.percent);
  for (const s of series) drawSeries(ctx, s, sx, sy);
}

// One line of swatches and names, wrapped when the canvas is narrow. Returns its bottom edge.
function drawLegend(ctx, series, area) {
  let x = area.left;
  let y = 12;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  for (const s of series) {
    const itemWidth = 19 + ctx.measureText(s.name).width;
    if (x > area.left && x + itemWidth > area.right) {
      x = area.left;
      y += 18;
    }
    ctx.fillStyle = s.color;
    ctx.fillRect(x, y - 2, 14, 3);
    ctx.fillStyle = "#334155";
    ctx.fillText(s.name, x + 19, y);
    x += itemWidth + 16;
  }
  return y + 8;
}

function drawAxes(ctx, area, yTicks, xTicks, sx, sy, percent) {
  ctx.strokeStyle = "#e2e8f0";
  ctx.fillStyle = "#64748b";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const tick of yTicks) {
    const y = Math.round(sy(tick)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.right, y);
    ctx.stroke();
    ctx.fillText(percent ? `${Math.round(tick * 100)}%` : String(tick), area.left - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const tick of xTicks) ctx.fillText(String(tick), sx(tick), area.bottom + 6);
  // The axis title sits under the y labels, where no tick label can collide with it.
  ctx.textAlign = "right";
  ctx.fillText(t("step"), area.left - 6, area.bottom + 6);
  ctx.strokeStyle = "#94a3b8";
  ctx.beginPath();
  ctx.moveTo(area.left + 0.5, area.top);
  ctx.lineTo(area.left + 0.5, area.bottom + 0.5);
  ctx.lineTo(area.right, area.bottom + 0.5);
  ctx.stroke();
}

function drawSeries(ctx, series, sx, sy) {
  if (!series.points.length) return;
  ctx.strokeStyle = series.color;
  ctx.fillStyle = series.color;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  ctx.beginPath();
  series.points.forEach((p, i) => (i ? ctx.lineTo(sx(p.x), sy(p.y)) : ctx.moveTo(sx(p.x), sy(p.y))));
  ctx.stroke();
  if (series.dots || series.points.length === 1) {
    for (const p of series.points) {
      ctx.beginPath();
      ctx.arc(sx(p.x), sy(p.y), 3.5, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}

// ---------------------------------------------------------------- start

function bindEvents() {
  $("token-form").addEventListener("submit", onTokenSaved);
  $("notice-close").addEventListener("click", () => { $("notice").hidden = true; });
  $("upload-form").addEventListener("submit", onUpload);
  $("create-form").addEventListener("submit", onCreate);
  $("training-file").addEventListener("change", onTrainingFileChange);
  $("sheet-name").addEventListener("change", onSheetChange);
  $("text-column").addEventListener("change", onSheetChange);
  $("validation-file").addEventListener("change", onValidationFileChange);
  $("upload-file").addEventListener("change", showChosenFile);
  for (const id of ["model-name-cn", "model-name-en"]) {
    $(id).addEventListener("input", (event) => { event.target.dataset.touched = "true"; });
  }
  $("stop-button").addEventListener("click", onStop);
  $("pause-button").addEventListener("click", onPause);
  $("resume-button").addEventListener("click", onResume);
  $("delete-button").addEventListener("click", onDelete);
  $("download-link").addEventListener("click", onDownload);
  $("predict-form").addEventListener("submit", onPredict);
  bindBaseModels();
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", debounce(scheduleChartDraw, 100));
}

async function init() {
  await loadLanguage();  // first: everything below writes text in the chosen language
  bindEvents();
  $("token-input").value = getToken();
  loadHealth();
  route();
  connectGlobalSocket();
  await Promise.allSettled([loadSchema(), loadFiles(), loadTasks(), loadBaseModels()]);
  document.body.dataset.ready = "true";  // for tests and scripts: the forms are filled in
}

init();
