"""The `bertd` client commands and `bertd demo`, as real subprocesses against a real server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from processes import start_server, stop_server


def bertd(*arguments: str, url: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if url:
        environment["BERTD_URL"] = url
    return subprocess.run([sys.executable, "-m", "bertd", *arguments], env=environment, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_client_drives_the_whole_flow(tmp_path: Path, base_models_dir: Path, xlsx_file: Path) -> None:
    server = start_server(tmp_path / "data", base_models_dir, tmp_path / "server.log")
    url = server.url
    try:
        uploaded = bertd("upload", str(xlsx_file), url=url)
        assert uploaded.returncode == 0, uploaded.stderr
        assert "sheet 'data': 90 rows, columns 编号, 内容, 标签" in uploaded.stdout

        # Ten epochs: the tiny model learns all three labels whatever the random draw.
        trained = bertd("train", str(xlsx_file), "--text-column", "内容", "--label-column", "标签", "--sheet", "data",
                        "--epochs", "10", "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "32",
                        "--base-model", "tiny-bert", "--name-en", "cli-model", "--watch", "--json", url=url)
        assert trained.returncode == 0, trained.stderr
        task = json.loads(trained.stdout)
        assert task["status"] == "completed" and task["model_name_en"] == "cli-model"
        task_id = task["task_id"]

        listing = json.loads(bertd("tasks", "--json", url=url).stdout)
        assert [t["task_id"] for t in listing["tasks"]] == [task_id]
        shown = bertd("show", task_id, url=url)
        assert shown.returncode == 0 and f"task {task_id}  completed" in shown.stdout and "best epoch" in shown.stdout

        predicted = bertd("predict", task_id, "工厂烟囱排放化工废气。", "饭店厨房油烟烧烤排烟。", "--json", url=url)
        labels = [p["label"] for p in json.loads(predicted.stdout)["predictions"]]
        assert labels == ["工业废气", "油烟"]
        human = bertd("predict", task_id, "工地渣土施工尘土飞扬。", url=url)
        assert human.stdout.startswith("扬尘\t")

        # A whole sheet: uploaded (the same bytes again: 200), predicted on the server, saved.
        result = tmp_path / "预测结果.xlsx"
        sheet = bertd("predict", task_id, "--file", str(xlsx_file), "--sheet", "data", "--text-column", "内容",
                      "--top-k", "2", "-o", str(result), url=url)
        assert sheet.returncode == 0, sheet.stderr
        assert f"saved {result}: 90 rows" in sheet.stdout and "2 with an empty text" in sheet.stdout
        workbook = pd.read_excel(result, sheet_name=None, engine="calamine")
        assert list(workbook) == ["data", "notes"]
        assert list(workbook["data"].columns) == ["编号", "内容", "标签", "predicted_label", "predicted_score",
                                                  "predicted_label_2", "predicted_score_2"]
        assert (workbook["data"]["predicted_label"] == workbook["data"]["标签"]).mean() >= 0.8
        # Another file under a name already taken goes up under <stem>-<sha256 prefix>.
        other = tmp_path / "other" / xlsx_file.name
        other.parent.mkdir()
        workbook["data"].head(5).to_excel(other, sheet_name="data", index=False)
        (tmp_path / "results").mkdir()
        renamed = bertd("predict", task_id, "--file", str(other), "--text-column", "内容", "--json",
                        "-o", str(tmp_path / "results"), url=url)
        assert renamed.returncode == 0, renamed.stderr
        digest = hashlib.sha256(other.read_bytes()).hexdigest()[:8]
        saved = Path(json.loads(renamed.stdout)["path"])
        assert saved == tmp_path / "results" / f"{other.stem}-{digest}-predicted.xlsx" and saved.is_file()

        downloaded = bertd("download", task_id, "-o", str(tmp_path / "out"), url=url)
        assert downloaded.returncode == 0, downloaded.stderr
        archive = tmp_path / "out" / f"cli-model-{task_id[:8]}.tar.gz"
        assert tarfile.is_tarfile(archive)

        watched = bertd("watch", task_id, url=url)
        assert watched.returncode == 0 and "completed" in watched.stdout

        removed = bertd("rm", task_id, url=url)
        assert removed.returncode == 0 and f"task {task_id} deleted" in removed.stdout

        missing = bertd("show", task_id, url=url)
        assert missing.returncode == 1 and missing.stdout == ""
        assert missing.stderr.strip() == f"bertd: no training task with task_id '{task_id}' (HTTP 404)"
        bad = bertd("train", str(xlsx_file), "--text-column", "正文", "--label-column", "标签", "--sheet", "data",
                    url=url)
        assert bad.returncode == 1 and "column '正文' not found" in bad.stderr and len(bad.stderr.splitlines()) == 1
    finally:
        stop_server(server)


def test_predict_needs_texts_or_a_file_with_its_column() -> None:
    for arguments, message in ((("predict", "t"), "needs texts to classify, or --file"),
                               (("predict", "t", "--file", "x.xlsx"), "needs --text-column"),
                               (("predict", "t", "a", "--file", "x.xlsx"), "texts or --file, not both"),
                               (("predict", "t", "a", "--threshold", "0.5"), "go with --file")):
        result = bertd(*arguments)
        assert result.returncode == 2 and result.stderr.strip() == f"bertd: {message}" or message in result.stderr, \
            result.stderr


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = bertd("tasks", "--url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.startswith("bertd: cannot reach bertd at http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_demo_runs_end_to_end_offline(tmp_path: Path) -> None:
    result = bertd("demo", "--dir", str(tmp_path / "demo"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "best epoch" in result.stdout
    model_line = next(line for line in result.stdout.splitlines() if line.startswith("model: "))
    model_dir = Path(model_line.removeprefix("model: "))
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "labels.json").is_file()
    predicted = [line.split("\t")[0].strip() for line in result.stdout.splitlines() if line.startswith("  ")
                 and "\t" in line]
    assert predicted == ["工业废气", "扬尘", "油烟"]


async def bertd_async(*arguments: str, url: str, timeout: float = 120) -> tuple[int, str, str]:
    """`bertd ...` as a subprocess while this test's event loop keeps serving the stand-in hub."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bertd", *arguments, env={**os.environ, "BERTD_URL": url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def test_pull_and_base_models_from_the_command_line(tmp_path: Path, base_models_dir: Path) -> None:
    import asyncio

    from bertd.testing.hub_standin import run_hub_standin

    model = "google-bert/bert-base-chinese"
    async with run_hub_standin({model: base_models_dir / "tiny-bert"}, chunk_delay=0.05, chunk_size=32 * 1024) as hub:
        own = tmp_path / "base_models"
        own.mkdir()
        server = await asyncio.to_thread(
            start_server, tmp_path / "data", own, tmp_path / "server.log", HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url,
            HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp_path / "hf-home"), BASE_MODEL_DOWNLOAD_BACKOFF_SECONDS="0.05")
        try:
            code, out, err = await bertd_async("base-models", url=server.url)
            assert (code, out.strip()) == (0, "no base models yet; add one with: bertd pull bert-base-chinese"), err

            code, out, err = await bertd_async("pull", model, url=server.url)
            assert code == 0, out + err
            lines = out.splitlines()
            assert lines[0] == f"downloading '{model}' from the Hugging Face Hub at {hub.url} into " \
                               f"{own / 'google-bert' / 'bert-base-chinese'}"
            assert any(line.startswith(f"{model}  downloading  [") for line in lines[1:-1])  # the bar, as a log
            assert lines[-1].startswith(f"{model}  ready  huggingface  ") and "hidden 64 x 2 layers" in lines[-1]

            code, out, _ = await bertd_async("pull", model, "--json", url=server.url)
            pulled = json.loads(out)
            assert code == 0 and pulled["status"] == "ready" and "already on this server" in pulled["message"]
            listing = json.loads((await bertd_async("base-models", "--json", url=server.url))[1])
            assert [entry["name"] for entry in listing["base_models"]] == [model]

            code, out, _ = await bertd_async("pull", "nobody/no-such-bert", url=server.url)
            assert code == 1
            assert f"failed: could not download 'nobody/no-such-bert' from the Hugging Face Hub at {hub.url}: " \
                   "no such repository" in out
            assert "\nwhat to do: check the name on https://huggingface.co/models" in out
            code, out, _ = await bertd_async("base-models", url=server.url)
            assert "nobody/no-such-bert  failed       could not download" in out
        finally:
            await asyncio.to_thread(stop_server, server)


def test_show_puts_the_error_and_what_to_do_on_lines_of_their_own() -> None:
    from bertd.cli.client import progress_line
    from bertd.cli.commands import describe_task

    task = {"task_id": "t1", "status": "failed", "model_name_cn": "模型", "model_name_en": "m",
            "training_data_file": "a.csv", "base_model": "bert-base-chinese", "created_at": "2026-01-01T00:00:00Z",
            "started_at": None, "finished_at": "2026-01-01T00:00:05Z", "metrics": None, "artifacts": None,
            "progress": {"phase": "failed"}, "error_message": "x went wrong; do y",
            "error": {"code": "base_model_download_failed", "message": "x went wrong", "hint": "do y"}}
    lines = describe_task(task).splitlines()
    assert lines[-2:] == ["  error [base_model_download_failed]: x went wrong", "  what to do: do y"]

    waiting = {**task, "status": "queued", "progress": {"phase": "downloading_base_model",
                                                        "download_bytes_done": 3 << 20,
                                                        "download_bytes_total": 12 << 20}}
    assert progress_line(waiting, width=8) == ("queued     downloading base model bert-base-chinese  [##------]  "
                                               "25.0%  3.0 MB of 12.0 MB")
