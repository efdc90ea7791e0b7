// bertd dashboard, languages: Simplified Chinese when the browser prefers it (navigator.languages)
// or the user picked it with the switch at the top (kept in localStorage), English otherwise.
// t(msgid, params) looks a message (its English text with {name} fields) up in
// /static/i18n/zh-CN.json, made from bertd/locale/zh_CN/LC_MESSAGES/dashboard.po by
// `python -m bertd.i18n.catalogues compile`; the page's own text is marked data-i18n (inner
// HTML) and data-i18n-attrs (attribute names). Numbers, dates and durations go through Intl in
// the chosen locale. Loaded first; no build step.
"use strict";

const LANGUAGE_KEY = "bertd.language";
const LANGUAGES = { en: "English", "zh-CN": "中文" };
const i18n = { language: "en", catalogue: {} };

function storedLanguage() {
  try {
    return localStorage.getItem(LANGUAGE_KEY);
  } catch {
    return null;  // storage disabled: the browser's preference decides on every load
  }
}

// The switch's choice, else the first of the browser's languages that is Chinese or English.
function chooseLanguage() {
  const stored = storedLanguage();
  if (stored && stored in LANGUAGES) return stored;
  for (const tag of navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]) {
    if (/^zh\b/i.test(tag || "")) return "zh-CN";
    if (/^en\b/i.test(tag || "")) return "en";
  }
  return "en";
}

async function loadLanguage() {
  i18n.language = chooseLanguage();
  if (i18n.language !== "en") {
    try {
      const response = await fetch(`/static/i18n/${i18n.language}.json`, { cache: "no-cache" });
      i18n.catalogue = await response.json();
    } catch {
      i18n.language = "en";  // without its catalogue the page stays in English, complete
      i18n.catalogue = {};
    }
  }
  document.documentElement.lang = i18n.language;
  translatePage();
  const select = document.getElementById("language-switch");
  if (select) {
    select.value = i18n.language;
    select.addEventListener("change", () => setLanguage(select.value));
  }
}

function setLanguage(language) {
  try {
    localStorage.setItem(LANGUAGE_KEY, language);
  } catch {
    /* see storedLanguage */
  }
  location.reload();
}

// The text for `msgid` in the chosen language, its {name} fields filled from `params`.
function t(msgid, params = {}) {
  const template = i18n.catalogue[msgid] || msgid;
  return template.replace(/\{(\w+)\}/g, (field, name) => (name in params ? String(params[name]) : field));
}

// Whitespace collapsed, as the extractor (bertd/i18n/extractors.py) reads the page.
function collapse(text) {
  return text.replace(/\s+/g, " ").trim();
}

function translatePage(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.dataset.i18nSource ??= collapse(node.innerHTML);
    node.innerHTML = t(node.dataset.i18nSource);
  }
  for (const node of root.querySelectorAll("[data-i18n-attrs]")) {
    for (const name of node.dataset.i18nAttrs.split(",").map((a) => a.trim())) {
      const key = `i18nSource${name.replace(/(^|-)(\w)/g, (_, _dash, c) => c.toUpperCase())}`;
      if (!(key in node.dataset) && node.hasAttribute(name)) node.dataset[key] = node.getAttribute(name);
      if (key in node.dataset) node.setAttribute(name, t(node.dataset[key]));
    }
  }
}

// Marks a text for the catalogue where it is translated later, with t(text).
function N_(text) {
  return text;
}

// Status and phase identifiers from the API, in words. The identifiers stay in data attributes.
const WORDS = {
  queued: N_("queued"), training: N_("training"), stopping: N_("stopping"), paused: N_("paused"),
  completed: N_("completed"), failed: N_("failed"), stopped: N_("stopped"),
  downloading_base_model: N_("downloading base model"), starting: N_("starting"), loading_data: N_("loading data"),
  loading_model: N_("loading model"), evaluating: N_("evaluating"), saving: N_("saving"), pausing: N_("pausing"),
  downloading: N_("downloading"), ready: N_("ready"), deleted: N_("deleted"),
  local: N_("local"), huggingface: N_("Hugging Face"), modelscope: N_("ModelScope"),
  // A prediction job's status and phases, and its event.
  running: N_("running"), reading: N_("reading"), predicting: N_("predicting"), writing: N_("writing"),
  prediction: N_("prediction"),
  connecting: N_("connecting"), live: N_("live"), offline: N_("offline"),
  status: N_("status"), epoch: N_("epoch"), evaluation: N_("evaluation"), warning: N_("warning"),
  resumed: N_("resumed"), checkpoint: N_("checkpoint"), checkpoint_failed: N_("checkpoint failed"),
  started: N_("started"), callback: N_("callback"),
};

function word(identifier) {
  if (identifier === null || identifier === undefined || identifier === "") return "";
  return identifier in WORDS ? t(WORDS[identifier]) : String(identifier);
}

function locale() {
  return i18n.language === "en" ? "en-US" : i18n.language;
}

const formatters = new Map();

function numberFormat(options) {
  const key = `${locale()} ${JSON.stringify(options)}`;
  if (!formatters.has(key)) formatters.set(key, new Intl.NumberFormat(locale(), options));
  return formatters.get(key);
}

function formatNumber(value, options = {}) {
  return numberFormat(options).format(value);
}

// "2026-11-26 11:22:24" in English, "2026/11/26 11:22:24" in Chinese: the locale's order, 24 hours.
function formatDateTime(date, parts = "full") {
  const options = { hour12: false, hour: "2-digit", minute: "2-digit" };
  if (parts !== "time") Object.assign(options, { month: "2-digit", day: "2-digit" });
  if (parts === "full") Object.assign(options, { year: "numeric" });
  if (parts !== "short") options.second = "2-digit";
  const text = new Intl.DateTimeFormat(locale(), options).format(date);
  return locale() === "en-US" ? text.replace(/^(\d\d)\/(\d\d)\/(\d{4}), /, "$3-$1-$2 ").replace(/^(\d\d)\/(\d\d), /, "$1-$2 ") : text;
}

// "1 min 5 s" / "1分钟5秒": Intl.DurationFormat where the browser has it, else unit formats.
function formatDuration(seconds) {
  const s = Math.round(seconds);
  const parts = s < 60 ? { seconds: s } : s < 3600 ? { minutes: Math.floor(s / 60), seconds: s % 60 }
    : { hours: Math.floor(s / 3600), minutes: Math.floor((s % 3600) / 60) };
  if (typeof Intl.DurationFormat === "function") return new Intl.DurationFormat(locale(), { style: "short" }).format(parts);
  const units = { hours: "hour", minutes: "minute", seconds: "second" };
  return Object.entries(parts).map(([name, value]) =>
    formatNumber(value, { style: "unit", unit: units[name], unitDisplay: "short" })).join(" ");
}
