"""The dashboard screenshots of README.zh-CN.md (and README.md's, with --locale en-US), taken in
headless Chromium from a real bertd on the demo's data and tiny model, offline:

    python bench/dashboard_screenshots.py                   # docs/dashboard*.zh-CN.png
    python bench/dashboard_screenshots.py --locale en-US    # docs/dashboard*.en-US.png

Four pages: a completed task (curves, metrics, confusion matrix), a task while it trains, a task
that failed (its message and what to do), and the upload and create forms. Needs playwright (the
test extra) and Debian's Chromium with CJK fonts (apt-get install chromium fonts-noto-cjk)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from playwright.sync_api import Page, expect, sync_playwright

from bertd.cli.demo import TINY_BASE_MODEL, demo_rows, write_demo_files
from bertd.testing.server_process import ServerProcess, start_server

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 960}


def task_body(name_cn: str, name_en: str, filename: str, epochs: int, **hyperparameters: Any) -> dict[str, Any]:
    return {"model_name_cn": name_cn, "model_name_en": name_en, "training_data_file": filename,
            "base_model": TINY_BASE_MODEL,
            "hyperparameters": {"text_column": "内容合并", "label_column": "标签列", "sheet_name": "data",
                                "epochs": epochs, "batch_size": 8, "max_sequence_length": 64,
                                "learning_rate": 1e-3, "warmup_ratio": 0.1, **hyperparameters}}


def wait_for(server: ServerProcess, task_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = server.call("GET", f"/api/v1/training/tasks/{task_id}")
        if done(task):
            return task
        time.sleep(0.2)
    raise TimeoutError(f"task {task_id} did not get there in {timeout:g} s: {task['status']}")


def prepare(server: ServerProcess, folder: Path, data: Path) -> dict[str, str]:
    """A completed task, a failed one (a sheet with one label) and one that trains on: their ids."""
    single = folder / "环境保护_单一标签.xlsx"
    pd.DataFrame(demo_rows()).assign(标签列="扬尘").to_excel(single, index=False, sheet_name="data")
    for path in (data, single):
        status, answer = server.upload(path)
        if status != 201:
            raise RuntimeError(f"upload of {path.name} answered {status}: {answer}")
    ids = {}
    ids["completed"] = server.call("POST", "/api/v1/training/tasks",
                                   task_body("空气污染分类", "air-pollution", data.name, 12))["task_id"]
    wait_for(server, ids["completed"], lambda task: task["status"] == "completed")
    ids["failed"] = server.call("POST", "/api/v1/training/tasks",
                                task_body("单一标签", "single-label", single.name, 3))["task_id"]
    wait_for(server, ids["failed"], lambda task: task["status"] == "failed")
    ids["training"] = server.call("POST", "/api/v1/training/tasks",
                                  task_body("扬尘投诉分类", "dust", data.name, 40, evaluation_steps=6))["task_id"]
    # A third of the way: the curves fill part of the charts, whose x axis spans every step.
    wait_for(server, ids["training"], lambda task: (task["progress"] or {}).get("current_epoch", 0) >= 14)
    return ids


def shoot(page: Page, path: Path) -> None:
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)  # the charts redraw on the next animation frame
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def screenshots(server: ServerProcess, ids: dict[str, str], locale: str, out: Path, data: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--headless"])
        context = browser.new_context(viewport=VIEWPORT, locale=locale, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(server.url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")

        page.goto(f"{server.url}/#/tasks/{ids['completed']}")
        expect(page.locator("#per-class-table tbody tr")).to_have_count(3)
        shoot(page, out / f"dashboard.{locale}.png")

        page.goto(f"{server.url}/#/tasks/{ids['training']}")
        expect(page.locator("#task-status")).to_have_attribute("data-status", "training")
        page.wait_for_function("() => Number(document.getElementById('loss-chart').dataset.points) > 20")
        shoot(page, out / f"dashboard-training.{locale}.png")

        page.goto(f"{server.url}/#/tasks/{ids['failed']}")
        expect(page.locator("#task-error code")).to_have_text("single_label")
        shoot(page, out / f"dashboard-failed.{locale}.png")

        # The forms, with the demo sheet chosen and a request the API refuses (the label column is
        # the text column: one label per row) to show an error in the page's language.
        page.goto(f"{server.url}/#/")
        page.set_input_files("#upload-file", str(data))
        page.click("#upload-button")
        expect(page.locator("#upload-sheets")).to_be_visible()
        page.select_option("#sheet-name", "data")
        page.fill("#model-name-cn", "空气污染分类")
        page.fill("#model-name-en", "air-pollution")
        page.fill("#base-model", TINY_BASE_MODEL)
        page.fill("#hp-epochs", "0")
        page.click("#create-button")
        expect(page.locator("#create-error")).to_be_visible()
        path = out / f"dashboard-create.{locale}.png"
        page.locator("#new-task-view").screenshot(path=str(path))
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locale", default="zh-CN", help="the browser's language (zh-CN, en-US)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNG files")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bertd-screenshots-") as scratch:
        folder = Path(scratch)
        data, _model = write_demo_files(folder)
        server = start_server(folder / "data", folder / "base_models", folder / "server.log", start_timeout=90,
                              KEEP_SPARE_WORKER="false")
        try:
            ids = prepare(server, folder, data)
            screenshots(server, ids, arguments.locale, arguments.out, data)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
