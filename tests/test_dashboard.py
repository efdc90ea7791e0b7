"""The web dashboard at /, driven in headless Chromium against a real bertd server process:
upload, create a task through the form, watch it train live, read its metrics, predict texts and a
whole file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from browser import NEEDS_CHROMIUM, Browser, Page, expect, launch_chromium
from processes import ServerProcess, start_server, stop_server

from bertd.testing.hub_standin import HubStandin, run_hub_standin

REPO = Path(__file__).resolve().parent.parent

pytestmark = NEEDS_CHROMIUM

# JavaScript run in the page: pixels of the train-loss colour (#2563eb) inside the plot area of
# the loss chart, below the legend, so an empty chart with only its legend counts 0.
CURVE_PIXELS = """() => {
  const canvas = document.getElementById("loss-chart");
  const ratio = canvas.width / canvas.clientWidth;
  const top = Math.ceil(30 * ratio);
  const data = canvas.getContext("2d").getImageData(0, top, canvas.width, canvas.height - top).data;
  let count = 0;
  const near = (value, target) => Math.abs(value - target) < 30;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 200 && near(data[i], 37) && near(data[i + 1], 99) && near(data[i + 2], 235)) count++;
  }
  return count;
}"""


# JavaScript run in the page before the task is created: records every value the task page's
# progress bar takes and the loss chart's point count while the status is "training", so that
# the test sees the live updates however fast the training runs.
WATCH_WHILE_TRAINING = """() => {
  const seen = window.seenWhileTraining = {bar: [], points: [0]};
  const status = document.getElementById("task-status");
  const bar = document.querySelector("#task-progress .progress-bar");
  const chart = document.getElementById("loss-chart");
  new MutationObserver(() => {
    const value = Number(bar.dataset.value);
    if (seen.bar[seen.bar.length - 1] !== value) seen.bar.push(value);
  }).observe(bar, {attributes: true, attributeFilter: ["data-value"]});
  new MutationObserver(() => {
    if (status.dataset.status === "training") seen.points.push(Number(chart.dataset.points));
  }).observe(chart, {attributes: true, attributeFilter: ["data-points"]});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # English: these tests read the page's English words (test_dashboard_languages.py reads the Chinese).
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def js_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of the page, collected from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    # The browser logs every 4xx as "Failed to load resource"; the test provokes one on purpose.
    page.on("console", lambda message: errors.append(f"console: {message.text}")
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    return errors


def start(tmp_path: Path, base_models_dir: Path, **environment: str) -> ServerProcess:
    return start_server(tmp_path / "data", base_models_dir, tmp_path / "server.log", **environment)


def bar_value(page: Page) -> float:
    return float(page.locator("#task-progress .progress-bar").get_attribute("data-value") or 0)


def test_dashboard_uploads_creates_and_watches_a_task(page: Page, js_errors: list[str], tmp_path: Path,
                                                      base_models_dir: Path, xlsx_file: Path) -> None:
    server = start(tmp_path, base_models_dir)
    try:
        page.goto(server.url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
        expect(page.locator("#hp-epochs")).to_have_value("3")  # defaults come from openapi.json

        # Upload through the form: the sheets and their columns come back.
        page.set_input_files("#upload-file", str(xlsx_file))
        page.click("#upload-button")
        sheets = page.locator("#upload-sheets")
        expect(sheets).to_contain_text("data")
        expect(sheets).to_contain_text("内容")
        expect(sheets).to_contain_text("标签")
        expect(page.locator("#training-file")).to_have_value(xlsx_file.name)

        page.select_option("#sheet-name", "data")
        page.select_option("#text-column", "内容")
        page.select_option("#label-column", "内容")
        page.fill("#model-name-cn", "空气污染分类")
        page.fill("#model-name-en", "air-pollution")
        page.fill("#base-model", "tiny-bert")
        page.fill("#hp-epochs", "6")
        page.fill("#hp-batch_size", "8")
        page.fill("#hp-learning_rate", "0.003")
        page.fill("#hp-max_sequence_length", "32")
        # Nested settings are dotted fields under "More hyperparameters"; a list is comma-separated.
        page.click("#hyperparameters-more summary")
        expect(page.locator('[data-hp="lora.target_modules"]')).to_have_value("query, value")
        # Ticking LoRA empties a learning rate left at the full fine-tuning default (the server then
        # picks LoRA's), and leaves one the user typed.
        lora_box, rate = page.locator('[data-hp="lora.enabled"]'), page.locator("#hp-learning_rate")
        rate.fill("0.00002")
        lora_box.check()
        expect(rate).to_have_value("")
        lora_box.uncheck()
        expect(rate).to_have_value("0.00002")
        rate.fill("0.003")
        lora_box.check()
        expect(rate).to_have_value("0.003")
        lora_box.uncheck()
        page.fill('[data-hp="lora.r"]', "4")
        page.fill('[data-hp="lora.target_modules"]', "query, key ,value,")

        # A request the API refuses shows its message, and marks the field it names.
        page.click("#create-button")
        expect(page.locator("#create-error")).to_contain_text("label_column")
        expect(page.locator('[data-field="hyperparameters.label_column"]')).to_have_class(re.compile(r"\binvalid\b"))

        page.select_option("#label-column", "标签")
        page.evaluate(WATCH_WHILE_TRAINING)
        page.click("#create-button")
        page.wait_for_url("**/#/tasks/*")
        task_id = page.url.rsplit("/", 1)[1]
        expect(page.locator(f'.task-row[data-task-id="{task_id}"]')).to_be_visible()
        expect(page.locator("#task-title")).to_have_text("空气污染分类")

        # The JSON the form sent has the right types: the server stored exactly these values.
        _, task = server.request("GET", f"/api/v1/training/tasks/{task_id}")
        hyperparameters = task["hyperparameters"]
        assert task["base_model"] == "tiny-bert" and task["callback_url"] is None
        assert (hyperparameters["epochs"], hyperparameters["batch_size"], hyperparameters["learning_rate"],
                hyperparameters["max_sequence_length"]) == (6, 8, 0.003, 32)
        assert (hyperparameters["sheet_name"], hyperparameters["text_column"], hyperparameters["label_column"]) == \
            ("data", "内容", "标签")
        assert hyperparameters["lora"] == {"enabled": False, "r": 4, "lora_alpha": 16, "lora_dropout": 0.1,
                                           "target_modules": ["query", "key", "value"]}

        # Live progress over the WebSocket: the bar moves and the loss curve grows while training.
        expect(page.locator("#task-status")).to_have_attribute("data-status", "completed", timeout=90_000)
        seen = page.evaluate("() => window.seenWhileTraining")
        moving = [value for value in seen["bar"] if 0 < value < 100]
        assert len(moving) >= 2 and moving == sorted(moving), f"the progress bar did not move: {seen['bar']}"
        assert seen["bar"][-1] == 100
        assert max(seen["points"]) > 2, f"no loss curve while training: {seen['points']}"
        page.wait_for_function(f"() => ({CURVE_PIXELS})() > 30")  # the loss curve is drawn on the canvas
        expect(page.locator(f'.task-row[data-task-id="{task_id}"] .status-badge')).to_have_attribute(
            "data-status", "completed")
        assert bar_value(page) == 100
        assert page.locator("#task-progress .progress-bar").evaluate("bar => bar.style.width") == "100%"
        assert page.get_attribute(f'.task-row[data-task-id="{task_id}"] .progress-bar', "data-value") == "100"

        # Metrics of the completed task: per-class table and confusion matrix with the label strings.
        labels = ["工业废气", "扬尘", "油烟"]
        expect(page.locator("#per-class-table tbody tr")).to_have_count(3)
        for label in labels:
            expect(page.locator("#per-class-table")).to_contain_text(label)
        expect(page.locator("#confusion-matrix tbody tr")).to_have_count(3)
        expect(page.locator("#confusion-matrix tbody td")).to_have_count(9)
        cells = page.locator("#confusion-matrix tbody td").all_inner_texts()
        assert sum(int(cell) for cell in cells) == 18  # the validation rows: 20% of 88
        assert int(page.get_attribute("#accuracy-chart", "data-points") or 0) > 0
        expect(page.locator("#download-link")).to_have_attribute("href", f"/api/v1/training/tasks/{task_id}/download")

        # Predict box: label and score for each text.
        page.fill("#predict-input", "工厂烟囱排放废气，车间化工味道严重\n工地施工尘土飞扬")
        page.click("#predict-button")
        expect(page.locator("#predict-results tbody tr")).to_have_count(2)
        expect(page.locator("#predict-results .chip-top").first).to_contain_text("%")

        # Predict a file: an upload, its sheet and text column; the job's row goes live to completed
        # and downloads the sheet with the prediction columns, under the input's name.
        expect(page.locator("#predict-file-card")).to_be_visible()
        page.select_option("#predict-file", xlsx_file.name)
        page.select_option("#predict-sheet", "data")
        expect(page.locator("#predict-column")).to_have_value("内容")  # the column the model was trained on
        # A request the API refuses names its field on the form.
        page.fill("#predict-top-k", "9")
        page.click("#predict-file-button")
        expect(page.locator("#predict-file-error")).to_contain_text("top_k must be at most 3")
        expect(page.locator('#predict-file-form [data-field="top_k"]')).to_have_class(re.compile(r"\binvalid\b"))
        page.fill("#predict-top-k", "2")
        page.click("#predict-file-button")
        job_row = page.locator("#prediction-jobs tbody tr.prediction-row").first
        expect(job_row).to_have_attribute("data-status", "completed", timeout=60_000)
        expect(page.locator("#predict-file-error")).to_be_hidden()
        expect(job_row).to_contain_text("90 / 90 rows")
        expect(job_row).to_contain_text("empty text 2")
        with page.expect_download() as download:
            job_row.locator("a.prediction-download").click()
        assert download.value.suggested_filename == f"{xlsx_file.stem}-predicted.xlsx"
        download.value.save_as(tmp_path / download.value.suggested_filename)
        result = openpyxl.load_workbook(tmp_path / download.value.suggested_filename)
        assert result.sheetnames == ["data", "notes"]
        assert [cell.value for cell in result["data"][1]] == ["编号", "内容", "标签", "predicted_label",
                                                            "predicted_score", "predicted_label_2", "predicted_score_2"]

        assert js_errors == []
        save_screenshot(page, tmp_path)
    finally:
        stop_server(server)


def test_dashboard_asks_for_the_api_token(page: Page, tmp_path: Path, base_models_dir: Path) -> None:
    server = start(tmp_path, base_models_dir, API_TOKEN="s3cret-token", KEEP_SPARE_WORKER="false")
    try:
        page.goto(server.url + "/")
        expect(page.locator("#auth-prompt")).to_be_visible()
        expect(page.locator("#auth-prompt")).to_contain_text("API token")
        page.fill("#token-input", "s3cret-token")
        page.click("#token-save")
        expect(page.locator("#auth-prompt")).to_be_hidden()
        expect(page.locator("#task-empty")).to_be_visible()
        expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")  # a ticket on the WebSocket
        assert page.evaluate("() => localStorage.getItem('bertd.apiToken')") == "s3cret-token"

        # Kept across reloads: no prompt the second time.
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#auth-prompt")).to_be_hidden()
        expect(page.locator("#task-empty")).to_be_visible()
    finally:
        stop_server(server)


def save_screenshot(page: Page, tmp_path: Path) -> None:
    """Into the test's temp folder always; into docs/ only when BERTD_SAVE_SCREENSHOTS is set."""
    page.evaluate("() => window.scrollTo(0, 0)")
    path = tmp_path / "dashboard.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("BERTD_SAVE_SCREENSHOTS"):
        target = REPO / "docs" / "dashboard.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)


@contextlib.contextmanager
def hub_in_a_thread(repos: dict[str, Path], **options: object) -> Iterator[HubStandin]:
    """The stand-in hub served from a thread of its own (playwright's sync API owns this one)."""
    started: queue.Queue = queue.Queue()
    stop: list[asyncio.Event] = []
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        loop_holder.append(asyncio.get_running_loop())
        async with run_hub_standin(repos, **options) as hub:
            started.put(hub)
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="hub-standin", daemon=True)
    thread.start()
    hub = started.get(timeout=30)
    try:
        yield hub
    finally:
        loop_holder[0].call_soon_threadsafe(stop[0].set)
        thread.join(timeout=30)


# JavaScript run in the page: every status the pulled model's row shows, and its bar's values.
WATCH_PULL = """(name) => {
  const seen = window.seenPull = {statuses: [], bars: []};
  const list = document.getElementById("base-model-list");
  new MutationObserver(() => {
    const row = [...list.querySelectorAll("tr")].find((tr) => tr.dataset.name === name);
    if (!row) return;
    if (seen.statuses[seen.statuses.length - 1] !== row.dataset.status) seen.statuses.push(row.dataset.status);
    const bar = row.querySelector(".progress-bar");
    if (bar) seen.bars.push(Number(bar.dataset.value));
  }).observe(list, {childList: true, subtree: true, attributes: true});
}"""


def test_dashboard_pulls_base_models_and_shows_what_to_do_when_one_fails(page: Page, js_errors: list[str],
                                                                         tmp_path: Path, base_models_dir: Path,
                                                                         xlsx_file: Path) -> None:
    own = tmp_path / "base_models"
    own.mkdir()
    (own / "tiny-bert").symlink_to(base_models_dir / "tiny-bert", target_is_directory=True)
    model = "google-bert/bert-base-chinese"
    with hub_in_a_thread({model: base_models_dir / "tiny-bert"}, chunk_delay=0.05, chunk_size=16 * 1024) as hub:
        server = start_server(tmp_path / "data", own, tmp_path / "server.log", HF_HUB_OFFLINE="0",
                              HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp_path / "hf-home"),
                              KEEP_SPARE_WORKER="false")
        try:
            assert server.upload(xlsx_file)[0] == 201
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(server.url + "/")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            rows = page.locator("#base-model-list tr")
            expect(rows).to_have_count(1)
            expect(rows.first).to_have_attribute("data-status", "ready")
            expect(rows.first).to_contain_text("tiny-bert")
            expect(rows.first).to_contain_text("hidden 64 × 2 layers")
            expect(page.locator("#base-model-options option")).to_have_count(1)
            expect(page.locator("#base-model-available")).to_contain_text("On this server: tiny-bert.")

            # Pull through the form: the row shows the download live, then the model.
            page.evaluate(WATCH_PULL, model)
            page.fill("#pull-name", model)
            page.click("#pull-button")
            expect(page.locator("#pull-status")).to_contain_text(f"downloading '{model}' from the Hugging Face Hub")
            row = page.locator(f'#base-model-list tr[data-name="{model}"]')
            expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
            seen = page.evaluate("() => window.seenPull")
            assert seen["statuses"][0] == "downloading" and seen["statuses"][-1] == "ready", seen
            moving = [value for value in seen["bars"] if 0 < value < 100]
            assert moving and moving == sorted(moving), seen["bars"]
            expect(page.locator("#base-model-options option")).to_have_count(2)
            expect(page.locator("#base-model-available")).to_contain_text(f"On this server: {model}, tiny-bert.")

            # A repository that does not exist: the row says what went wrong and what to do.
            page.fill("#pull-name", "nobody/no-such-bert")
            page.click("#pull-button")
            failed = page.locator('#base-model-list tr[data-name="nobody/no-such-bert"]')
            expect(failed).to_have_attribute("data-status", "failed")
            expect(failed.locator(".error-text")).to_contain_text("no such repository")
            expect(failed.locator(".error-hint")).to_contain_text("What to do: check the name on")
            failed.locator("button").click()
            expect(failed).to_have_count(0)

            # A task on a model the hub does not have fails; its page shows the error and the hint.
            page.fill("#base-model", "nobody/other-bert")
            page.select_option("#text-column", "内容")
            page.select_option("#label-column", "标签")
            page.click("#create-button")
            page.wait_for_url("**/#/tasks/*")
            expect(page.locator("#task-status")).to_have_attribute("data-status", "failed")
            error = page.locator("#task-error")
            expect(error).to_contain_text("could not download 'nobody/other-bert'")
            expect(error.locator("code")).to_have_text("base_model_download_failed")
            expect(error.locator(".error-hint")).to_contain_text("HF_ENDPOINT")

            # train_val_split 0: the page says there are no validation metrics and the last epoch was saved.
            body = {"model_name_cn": "全部训练", "model_name_en": "all-rows", "training_data_file": xlsx_file.name,
                    "base_model": "tiny-bert", "hyperparameters": {
                        "text_column": "内容", "label_column": "标签", "sheet_name": "data", "epochs": 2,
                        "batch_size": 16, "max_sequence_length": 32, "train_val_split": 0}}
            task = server.call("POST", "/api/v1/training/tasks", body)
            page.goto(f"{server.url}/#/tasks/{task['task_id']}")
            expect(page.locator("#task-status")).to_have_attribute("data-status", "completed", timeout=90_000)
            expect(page.locator("#no-validation-note")).to_contain_text("No validation metrics")
            expect(page.locator("#metrics-note")).to_have_text("no validation rows · last epoch (2) saved")
            expect(page.locator("#per-class-table tbody tr")).to_have_count(0)
            assert js_errors == []
        finally:
            stop_server(server)
