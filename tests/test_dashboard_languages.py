"""The dashboard in the browser's language, in headless Chromium against a real bertd process:
with locale zh-CN the task list, a running task's page, the create form and the API's errors are
Chinese and no English label is left; with en-US they are English; the language switch is
remembered. One server (a failed task and one that keeps training) serves every test here."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import NEEDS_CHROMIUM, Browser, Page, expect, launch_chromium
from processes import ServerProcess, start_server, stop_server

from datagen import labelled_frame, write_xlsx

pytestmark = NEEDS_CHROMIUM

ZH = {"Accept-Language": "zh-CN"}
CJK = re.compile(r"[\u4e00-\u9fff]")

# Every visible text of the page that is the page's own words: not inside translate="no" (user
# data, file names, field names, codes, numbers the server sent), <code>, or <option>s of a
# select that lists data (enum values, files, columns), and not hidden.
VISIBLE_TEXTS = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    const text = node.textContent.trim();
    if (!text || parent.closest('[translate="no"], code, script, style, select')) continue;
    if (!parent.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    texts.push(text);
  }
  for (const node of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (node.closest('[translate="no"]') || !node.checkVisibility()) continue;
    for (const name of ["placeholder", "title", "aria-label"]) {
      if (node.hasAttribute(name)) texts.push(node.getAttribute(name));
    }
  }
  return texts;
}"""

# Words a Chinese page keeps in Latin letters: names of things (bertd, BERT, Hugging Face, ...),
# units and technical terms written the same in Chinese, and the values the API's field
# descriptions name (they are values to type, not words to read).
KEPT_WORDS = {
    "bertd", "BERT", "API", "WebSocket", "HTTP", "POST", "CSV", "Excel", "xlsx", "csv", "LoRA", "HF", "Hugging",
    "Face", "Hub", "ModelScope", "ID", "AdamW", "KB", "MB", "cpu", "fp", "bf", "torch", "compile", "auto", "on",
    "off", "none", "balanced", "null", "true", "false", "https", "peft", "NumPy", "GPU", "CPU", "TF", "M", "F",
    "LayerNorm", "main", "query", "key", "value", "dense", "ASCII",
}


def english_words(texts: list[str]) -> list[str]:
    """The Latin words of the texts that are not names, values or identifiers (a_b, a.b, a-b, a1,
    https://..., 'quoted'), each with the text it is in."""
    found = []
    for text in texts:
        # Names in quotes are the user's data ('data', a sheet), as the API's messages quote them.
        for token in re.findall(r"[A-Za-z0-9_.\-/:]+", re.sub(r"'[^']*'", "", text)):
            word = token.strip(".:")
            if re.fullmatch(r"[A-Za-z]+", word) and word not in KEPT_WORDS:
                found.append(f"{word} ({text[:80]})")
    return found


@dataclass
class Scene:
    server: ServerProcess
    failed_id: str
    training_id: str


def wait_for_task(server: ServerProcess, task_id: str, done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = server.call("GET", f"/api/v1/training/tasks/{task_id}")
        if done(task):
            return task
        assert time.monotonic() < deadline, f"task {task_id} is still {task['status']}: {task['progress']}"
        time.sleep(0.2)


def task_body(filename: str, epochs: int) -> dict[str, Any]:
    return {"model_name_cn": "空气污染分类", "model_name_en": "air-pollution", "training_data_file": filename,
            "base_model": "tiny-bert",
            "hyperparameters": {"text_column": "内容", "label_column": "标签", "sheet_name": "data", "epochs": epochs,
                                "batch_size": 8, "max_sequence_length": 32, "learning_rate": 0.003}}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, base_models_dir: Path) -> Iterator[Scene]:
    """A server with a task that failed (one label) and one that trains on (1000 epochs, on one CPU)."""
    folder = tmp_path_factory.mktemp("languages")
    frame = labelled_frame(rows_per_label=12, seed=3)
    data = write_xlsx(folder / "环境保护_测试数据.xlsx", {"data": frame})
    single = write_xlsx(folder / "单一标签.xlsx", {"data": frame.assign(标签="扬尘")})
    server = start_server(folder / "data", base_models_dir, folder / "server.log", WORKER_CPUS="0")
    try:
        for path in (data, single):
            assert server.upload(path)[0] == 201
        failed = server.call("POST", "/api/v1/training/tasks", task_body(single.name, 2))["task_id"]
        wait_for_task(server, failed, lambda task: task["status"] == "failed")
        training = server.call("POST", "/api/v1/training/tasks", task_body(data.name, 1000))["task_id"]
        wait_for_task(server, training, lambda task: task["progress"]["current_epoch"] >= 1)
        yield Scene(server, failed, training)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


def open_page(browser: Browser, locale: str) -> Page:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


# What each language shows: the task list's headings, two statuses, a form legend and a label
# under the progress bar; the time format of the task list's "created" column.
EXPECTED = {
    "zh-CN": {"lang": "zh-CN", "headings": ["模型", "状态", "进度", "创建时间"], "failed": "失败", "training": "训练中",
              "legends": ["数据", "模型", "超参数"], "facts": ["阶段", "轮次", "步", "进度"], "hint": "处理办法：",
              "created": r"\d\d/\d\d \d\d:\d\d", "switch": "zh-CN"},
    "en-US": {"lang": "en", "headings": ["Model", "Status", "Progress", "Created"], "failed": "failed",
              "training": "training", "legends": ["Data", "Model", "Hyperparameters"],
              "facts": ["phase", "epoch", "step", "progress"], "hint": "What to do: ", "created": r"\d\d-\d\d \d\d:\d\d",
              "switch": "en"},
}


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_dashboard_speaks_the_browsers_language(browser: Browser, scene: Scene, locale: str) -> None:
    expected = EXPECTED[locale]
    chinese = locale == "zh-CN"
    page = open_page(browser, locale)
    server = scene.server
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("html")).to_have_attribute("lang", expected["lang"])
    expect(page.locator("#language-switch")).to_have_value(expected["switch"])

    # The task list: headings, status names from the API in words, times in the locale's format.
    expect(page.locator("#task-table thead th")).to_have_text(expected["headings"])
    failed_row = page.locator(f'.task-row[data-task-id="{scene.failed_id}"]')
    training_row = page.locator(f'.task-row[data-task-id="{scene.training_id}"]')
    expect(failed_row.locator(".status-badge")).to_have_text(expected["failed"])
    expect(training_row.locator(".status-badge")).to_have_text(expected["training"])
    assert re.fullmatch(expected["created"], training_row.locator("td").nth(3).inner_text()), \
        training_row.locator("td").nth(3).inner_text()

    # The create form: legends, help texts, and the hyperparameters' descriptions from the
    # OpenAPI document in the same language.
    expect(page.locator("#create-form legend")).to_have_text(expected["legends"])
    epochs_hint = page.locator('[data-field="hyperparameters.epochs"] .hint').inner_text()
    assert bool(CJK.search(epochs_hint)) == chinese, epochs_hint
    words = english_words(page.evaluate(VISIBLE_TEXTS))
    if chinese:
        assert words == [], "\n".join(words)
    else:
        assert {"Tasks (Tasks)", "Upload (Upload)", "Pull (Pull)"} <= set(words), words

    # An error the API answers: shown as the server words it for this language, code unchanged.
    body = task_body("环境保护_测试数据.xlsx", 0)
    status, answer = server.request("POST", "/api/v1/training/tasks", body,
                                    headers=ZH if chinese else {"Accept-Language": "en-US"})
    assert status == 400 and answer["error"]["details"]["field"] == "hyperparameters.epochs"
    assert bool(CJK.search(answer["error"]["message"])) == chinese
    page.select_option("#training-file", "环境保护_测试数据.xlsx")
    page.select_option("#text-column", "内容")
    page.select_option("#label-column", "标签")
    page.fill("#hp-epochs", "0")
    page.click("#create-button")
    expect(page.locator("#create-error strong")).to_have_text(answer["error"]["message"])
    expect(page.locator("#create-error code")).to_have_text("validation_error")
    # An error of the page's own, before any request.
    page.fill("#hp-batch_size", "")
    page.locator("#hp-batch_size").press_sequentially("1e")
    page.click("#create-button")
    expect(page.locator("#create-error strong")).to_have_text(
        "hyperparameters.batch_size：不是数字" if chinese else "hyperparameters.batch_size: not a number")

    # A running task's page: status and phase in words, the labels of its figures.
    page.goto(f"{server.url}/#/tasks/{scene.training_id}")
    expect(page.locator("#task-status")).to_have_text(expected["training"])
    expect(page.locator("#task-progress-text")).to_contain_text(expected["facts"][0])
    labels = [label.strip() for label in page.locator("#task-progress-text .fact > .muted").all_inner_texts()]
    assert all(label in labels for label in expected["facts"]), labels
    expect(page.locator("#metrics-summary .stat")).not_to_have_count(0)
    page.click("#task-details summary")
    expect(page.locator("#task-events li").first).to_be_visible()
    if chinese:
        assert english_words(page.evaluate(VISIBLE_TEXTS)) == []

    # A failed task's page: its message and what to do as the API words them in this language.
    _, failed = server.request("GET", f"/api/v1/training/tasks/{scene.failed_id}",
                               headers=ZH if chinese else {})
    assert failed["error"]["code"] == "single_label" and bool(CJK.search(failed["error"]["hint"])) == chinese
    page.goto(f"{server.url}/#/tasks/{scene.failed_id}")
    expect(page.locator("#task-status")).to_have_text(expected["failed"])
    expect(page.locator("#task-error strong")).to_have_text(failed["error"]["message"])
    expect(page.locator("#task-error .error-hint")).to_have_text(expected["hint"] + failed["error"]["hint"])
    expect(page.locator("#task-error code")).to_have_text("single_label")
    if chinese:
        assert english_words(page.evaluate(VISIBLE_TEXTS)) == []
    assert page.js_errors == []  # type: ignore[attr-defined]
    page.context.close()


def test_the_language_switch_is_remembered(browser: Browser, scene: Scene) -> None:
    page = open_page(browser, "zh-CN")
    page.goto(scene.server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#new-task-link")).to_have_text("+ 新建任务")
    page.select_option("#language-switch", "en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#new-task-link")).to_have_text("+ New task")
    assert page.evaluate("() => localStorage.getItem('bertd.language')") == "en"

    # Another page of the same browser (same storage), on a Chinese-preferring browser: English.
    again = page.context.new_page()
    again.goto(scene.server.url + "/")
    expect(again.locator("body")).to_have_attribute("data-ready", "true")
    expect(again.locator("#new-task-link")).to_have_text("+ New task")
    expect(again.locator(f'.task-row[data-task-id="{scene.failed_id}"] .status-badge')).to_have_text("failed")

    again.select_option("#language-switch", "zh-CN")
    expect(again.locator("#new-task-link")).to_have_text("+ 新建任务")
    expect(again.locator(f'.task-row[data-task-id="{scene.failed_id}"] .status-badge')).to_have_text("失败")
    assert again.evaluate("() => localStorage.getItem('bertd.language')") == "zh-CN"
    assert page.js_errors == []  # type: ignore[attr-defined]
    page.context.close()
