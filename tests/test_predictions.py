"""Prediction jobs for real: a `bertd serve` process, a tiny model trained once for the module, real
workers running the real engine. The result must be the input file with columns appended and
everything else as it was, with the labels transformers.pipeline() gives on the same texts."""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest
from processes import ServerProcess, start_server, stop_server

from datagen import labelled_frame, write_xlsx
from helpers import TASKS, predictions_path, task_body

# The module trains one real model (about 10 s on an idle 2-core machine) and runs real jobs.
pytestmark = pytest.mark.slow
MAX_LENGTH = 32  # the task's max_sequence_length (task_body): predictions truncate the same way


@dataclass
class Trained:
    server: ServerProcess
    task_id: str
    model_dir: Path
    data_dir: Path
    work: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_models_dir: Path) -> Iterator[Trained]:
    work = tmp_path_factory.mktemp("predictions")
    server = start_server(work / "data", base_models_dir, work / "server.log")
    try:
        data = write_xlsx(work / "训练.xlsx", {"data": labelled_frame(rows_per_label=20, seed=1)})
        assert server.upload(data)[0] == 201
        # Ten epochs: the tiny model learns the three labels, so scores fall on both sides of a threshold.
        task = server.call("POST", TASKS, task_body(data.name, epochs=10))
        task = server.wait_for(task["task_id"], lambda t: t["status"] in ("completed", "failed"), timeout=150)
        assert task["status"] == "completed", task["error_message"]
        yield Trained(server, task["task_id"], Path(task["artifacts"]["model_path"]), work / "data", work)
    finally:
        stop_server(server)
    assert "unhandled error" not in server.log()


def run_job(trained: Trained, path: Path, **request: Any) -> tuple[dict[str, Any], bytes, str]:
    """Upload, create the job, wait for it to end; (the job, the downloaded bytes, the download's name)."""
    server = trained.server
    assert server.upload(path)[0] in (200, 201)
    status, job = server.request("POST", predictions_path(trained.task_id), {"file": path.name, **request})
    assert status == 202, job
    deadline = time.monotonic() + 120
    while job["status"] not in ("completed", "failed", "stopped") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = server.call("GET", predictions_path(trained.task_id, job["prediction_id"]))
    assert job["status"] == "completed", job
    url = server.url + predictions_path(trained.task_id, job["prediction_id"], "/download")
    with urllib.request.urlopen(url, timeout=30) as response:
        disposition = response.headers["Content-Disposition"]
        # The UTF-8 name (RFC 5987), as browsers and aiohttp read it; `filename` is an ASCII stand-in.
        name = re.search(r"filename\*=UTF-8''([^;]+)", disposition)
        assert name is not None and 'filename="' in disposition, disposition
        return job, response.read(), unquote(name.group(1))


def pipeline_top(model_dir: Path, texts: list[str], top_k: int) -> list[list[dict[str, Any]]]:
    from transformers import pipeline

    classifier = pipeline("text-classification", model=str(model_dir), device="cpu")
    return classifier(texts, top_k=top_k, truncation=True, max_length=MAX_LENGTH, batch_size=32)


def sheet_values(sheet: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in sheet.iter_rows(values_only=True)]


def test_an_xlsx_sheet_gets_ranked_labels_and_every_other_sheet_stays(trained: Trained) -> None:
    frame = labelled_frame(rows_per_label=12, seed=7)
    long_text = "工厂烟囱排放废气" * 20  # longer than max_sequence_length: truncated as in training
    workbook = openpyxl.Workbook()
    notes = workbook.active
    notes.title = "说明"
    notes.append(["字段", "含义"])
    notes.append(["内容", "投诉内容"])
    notes.append([3, "=1+2"])
    data = workbook.create_sheet("data")
    data.append(["编号", "内容", "标签", "备注"])
    for index, row in enumerate(frame.itertuples(index=False)):
        data.append([index, row.内容, row.标签, f"备注{index}"])
    data.append([100, None, "扬尘", "无内容"])
    data.append([101, "   ", "扬尘", "空白"])
    data.append([])  # a blank row inside the sheet: a data row with an empty text, as pandas reads it
    data.append([103, long_text, "工业废气", "很长"])
    workbook.create_sheet("附录").append(["保留", 1.5])
    path = trained.work / "投诉-十二月.xlsx"
    workbook.save(path)

    job, body, name = run_job(trained, path, sheet_name="data", text_column="内容", top_k=3, threshold=0.5)
    assert name == "投诉-十二月-predicted.xlsx"
    rows = len(frame) + 4
    assert (job["rows_total"], job["rows_done"], job["rows_empty"], job["progress"]) == (rows, rows, 3, 100.0)
    columns = ["predicted_label", "predicted_score", "predicted_label_2", "predicted_score_2", "predicted_label_3",
               "predicted_score_3"]
    assert job["output_columns"] == columns
    assert sum(job["label_counts"].values()) + job["rows_below_threshold"] == rows - 3
    assert set(job["label_counts"]) == {"工业废气", "扬尘", "油烟"}

    result_path = trained.work / "result.xlsx"
    result_path.write_bytes(body)
    original, result = openpyxl.load_workbook(path), openpyxl.load_workbook(result_path)
    assert result.sheetnames == ["说明", "data", "附录"]
    for kept in ("说明", "附录"):
        assert sheet_values(result[kept]) == sheet_values(original[kept])
    got = sheet_values(result["data"])
    expected = sheet_values(original["data"])
    assert len(got) == len(expected) and [row[:4] for row in got] == [row[:4] for row in expected]
    assert got[0][4:] == tuple(columns)

    texts = [row[1] for row in expected[1:]]
    filled = [index for index, text in enumerate(texts) if text and text.strip()]
    ranked = pipeline_top(trained.model_dir, [texts[index] for index in filled], 3)
    for index, top in zip(filled, ranked, strict=True):
        cells = got[index + 1][4:]
        for rank in range(3):
            label, score = cells[2 * rank], cells[2 * rank + 1]
            assert abs(score - top[rank]["score"]) < 1e-3
            assert label == (top[rank]["label"] if top[rank]["score"] >= 0.5 else None), (index, cells, top)
    for index in set(range(len(texts))) - set(filled):
        assert got[index + 1][4:] in ((None,) * 6, ())  # empty text: an empty prediction
    assert sum(1 for index in filled if got[index + 1][4] is None) == job["rows_below_threshold"]
    # Both sides of the threshold occur: confident best labels, and runners-up left empty.
    assert sum(job["label_counts"].values()) > 0 and any(got[index + 1][6] is None for index in filled)


def test_a_csv_keeps_its_encoding_line_endings_and_fields_and_new_columns_do_not_clash(trained: Trained) -> None:
    frame = labelled_frame(rows_per_label=8, seed=11)
    lines = [["编号", "内容", "predicted_label"]]
    lines += [[str(index), text, "旧结果"] for index, text in enumerate(frame["内容"])]
    lines.insert(3, ["99", "饭店油烟, 又一行\n第二行", ""])  # a quoted field with a comma and a newline
    lines.insert(5, ["98", ""])  # a short row with an empty text
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(lines)
    text = buffer.getvalue().replace("\r\n98,\r\n", "\r\n98,\r\n\r\n", 1)  # and a blank line, which is no row
    path = trained.work / "十二月投诉.csv"
    path.write_bytes(text.encode("gb18030"))

    job, body, name = run_job(trained, path, text_column="内容")
    assert name == "十二月投诉-predicted.csv" and job["sheet_name"] == "十二月投诉"
    assert job["output_columns"] == ["predicted_label.1", "predicted_score.1"]
    assert (job["rows_total"], job["rows_empty"]) == (len(lines) - 1, 1)
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    decoded = body.decode("gb18030")
    assert decoded.count("\r\n") == text.count("\r\n") and "\r\n\r\n" in decoded
    result = [row for row in csv.reader(io.StringIO(decoded, newline="")) if row]
    assert result[0] == [*lines[0], "predicted_label.1", "predicted_score.1"]
    assert [row[: len(original)] for row, original in zip(result[1:], lines[1:], strict=True)] == lines[1:]
    assert result[5] == ["98", "", "", "", ""]  # padded to the header's width, then an empty prediction
    filled = [row for row in lines[1:] if row[1]]
    ranked = pipeline_top(trained.model_dir, [row[1] for row in filled], 1)
    predicted = [row for row in result[1:] if row[1]]
    assert [row[3] for row in predicted] == [top[0]["label"] for top in ranked]
    assert all(abs(float(row[4]) - top[0]["score"]) < 1e-3 for row, top in zip(predicted, ranked, strict=True))


def test_a_result_whose_file_is_gone_answers_410_and_a_deleted_job_takes_its_file(trained: Trained) -> None:
    path = trained.work / "小.csv"
    labelled_frame(rows_per_label=2, seed=5).to_csv(path, index=False)
    job, _, _ = run_job(trained, path, text_column="内容")
    result = Path(job.get("output_path") or trained.data_dir / "predictions" / trained.task_id /
                  f"{job['prediction_id']}.csv")
    assert result.is_file()
    moved = result.with_name("moved")
    shutil.move(result, moved)
    code, answer = trained.server.request("GET", predictions_path(trained.task_id, job["prediction_id"], "/download"))
    assert code == 410 and "no longer on disk" in answer["error"]["message"]
    shutil.move(moved, result)
    assert trained.server.request("DELETE", predictions_path(trained.task_id, job["prediction_id"]))[0] == 200
    assert not result.exists() and (trained.data_dir / "uploads" / path.name).is_file()
    assert trained.model_dir.joinpath("config.json").is_file()


def test_bad_requests_are_refused_before_anything_runs(trained: Trained) -> None:
    server, task_id = trained.server, trained.task_id
    path = trained.work / "refused.xlsx"
    write_xlsx(path, {"data": labelled_frame(rows_per_label=2, seed=3), "notes": labelled_frame(2, seed=4)})
    assert server.upload(path)[0] in (200, 201)
    before = server.call("GET", predictions_path(task_id))["predictions"]
    ok = {"file": path.name, "sheet_name": "data", "text_column": "内容"}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**ok, "file": "missing.xlsx"}, 400, "file", "'missing.xlsx' has not been uploaded"),
        ({**ok, "sheet_name": "sheet9"}, 400, "sheet_name", "sheets are: data, notes"),
        ({**ok, "text_column": "正文"}, 400, "text_column", "columns are: 编号, 内容, 标签"),
        ({**ok, "top_k": 0}, 400, "top_k", "top_k must be >= 1 and <= 100, got 0"),
        ({**ok, "top_k": 4}, 400, "top_k", "at most 3, the number of labels"),
        ({**ok, "threshold": 1.5}, 400, "threshold", "threshold must be >= 0 and <= 1, got 1.5"),
        ({**ok, "threshold": "high"}, 400, "threshold", "threshold must be a number"),
        ({**ok, "texts": ["a"]}, 400, "", "unknown field(s) texts"),
        ({"file": path.name}, 400, "text_column", "text_column is required"),
    ]
    for body, status, field, message in cases:
        code, answer = server.request("POST", predictions_path(task_id), body)
        assert code == status and message in answer["error"]["message"], (body, answer)
        assert (answer["error"]["details"] or {}).get("field") == (field or None), answer
    assert server.request("POST", predictions_path("no-such-task"), ok)[0] == 404

    assert server.call("GET", predictions_path(task_id))["predictions"] == before
    # A missing job, its download and its stop are 404s.
    for method, suffix in (("GET", ""), ("GET", "/download"), ("POST", "/stop"), ("DELETE", "")):
        assert server.request(method, predictions_path(task_id, "nope", suffix))[0] == 404
