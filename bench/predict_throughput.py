"""Predicting a sheet: bertd's prediction job against the script a user would write (pandas +
`transformers.pipeline(..., batch_size=32)`, bench/pipeline_script.py), same model, same file, in one
run. Short (~70 characters) and long (~390) texts, the tiny BERT and a BERT-base-shaped one.

For each: (a) the user's script as a whole, imports included (a subprocess); (b) bertd's whole job
through a running server: upload, POST, wait, download; (c) inference alone for both (the
pipeline call; the job's own rows/s, tokenising included). Then: do the labels agree (near-ties,
where the best two scores are within 1e-3, aside) and how far apart are the scores. Last, the online
/predict endpoint while a task trains: latency of one text, and how much it slows the training.

The model is a task trained by bertd for a moment (so the server has a completed task), whose
classification head is then scaled up so that scores are decisive, as a trained model's are: on a
barely trained head every row would be a near-tie.

    python bench/predict_throughput.py                       # tiny 20,000 rows; base-shaped 1,000 rows
    python bench/predict_throughput.py --rows 2000 --base-rows 200 --skip-online   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Server, machine_description, make_frame, running_server, temporary_directory
from train_throughput import build_model

HERE = Path(__file__).resolve().parent
TEXT, LABEL = "内容合并", "标签列"
HEAD_SCALE = 30.0


def write_sheet(path: Path, rows: int, mean_chars: int, seed: int) -> Path:
    import pandas as pd

    frame = make_frame(rows, mean_chars=mean_chars, seed=seed)
    frame.insert(0, "编号", range(1, rows + 1))
    notes = pd.DataFrame({"字段": [TEXT, LABEL], "说明": ["投诉内容", "人工标注"]})
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name="data", index=False)
        notes.to_excel(writer, sheet_name="说明", index=False)
    return path


def completed_task(server: Server, work: Path, base_model: str, max_length: int) -> dict[str, Any]:
    """A task trained for a moment on 60 rows, its head then made decisive (see the docstring)."""
    import torch
    from safetensors.torch import load_file, save_file

    data = work / f"train-{base_model}.csv"
    make_frame(60, mean_chars=60, seed=1).to_csv(data, index=False)
    server.upload(data)
    task = server.request("POST", "/api/v1/training/tasks", {
        "model_name_cn": "基准", "model_name_en": "bench", "training_data_file": data.name, "base_model": base_model,
        "hyperparameters": {"text_column": TEXT, "label_column": LABEL, "epochs": 1, "batch_size": 16,
                            "learning_rate": 1e-4, "max_sequence_length": max_length}})
    task = server.wait_for(task["task_id"], {"completed", "failed"})
    assert task["status"] == "completed", task["error_message"]
    weights = Path(task["artifacts"]["model_path"]) / "model.safetensors"
    state = load_file(weights)
    with torch.no_grad():
        state["classifier.weight"] *= HEAD_SCALE
    save_file(state, weights, metadata={"format": "pt"})
    return task


def user_script(data: Path, model_dir: Path, output: Path, max_length: int) -> dict[str, Any]:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, str(HERE / "pipeline_script.py"), str(data), str(model_dir),
                                str(output), "--max-length", str(max_length)], capture_output=True, text=True,
                               check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    result["rows_per_second"] = result["rows"] / result["inference_seconds"]
    return result


def until_prediction_end(server: Server, path: str) -> None:
    """Follow a prediction job's WebSocket up to its `prediction_end`, as `bertd predict` waits (a
    client polling GET many times a second would take CPU from the job it measures)."""
    import asyncio

    import aiohttp

    async def follow() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}{path}/ws") as socket:
            async for message in socket:
                if json.loads(message.data)["type"] == "prediction_end":
                    return

    asyncio.run(follow())


def bertd_job(server: Server, task_id: str, data: Path, output: Path) -> dict[str, Any]:
    """Upload to downloaded file, as `bertd predict --file` does it (top_k 2, for the near-tie check)."""
    jobs = f"/api/v1/training/tasks/{task_id}/predictions"
    started = time.perf_counter()
    upload = server.upload(data)
    posted = time.perf_counter()
    job = server.request("POST", jobs, {"file": upload["filename"], "sheet_name": "data", "text_column": TEXT,
                                        "top_k": 2})
    until_prediction_end(server, f"{jobs}/{job['prediction_id']}")
    job = server.request("GET", f"{jobs}/{job['prediction_id']}")
    assert job["status"] == "completed", job["error_message"]
    with urllib.request.urlopen(f"{server.url}{jobs}/{job['prediction_id']}/download", timeout=600) as response:
        output.write_bytes(response.read())
    finished = time.perf_counter()
    return {**job, "wall_seconds": finished - started, "post_to_download_seconds": finished - posted}


def compare(script_output: Path, bertd_output: Path) -> dict[str, float]:
    import pandas as pd

    theirs = pd.read_excel(script_output, sheet_name="data", engine="calamine")
    ours = pd.read_excel(bertd_output, sheet_name="data", engine="calamine")
    margin = ours["predicted_score"] - ours["predicted_score_2"]
    clear = margin >= 1e-3
    agree = (theirs["predicted_label"] == ours["predicted_label"])[clear].mean()
    return {"agree": float(agree), "near_ties": int((~clear).sum()),
            "max_score_difference": float((theirs["predicted_score"] - ours["predicted_score"]).abs().max())}


def run_model(label: str, base_model: str, rows: int, work: Path, arguments: argparse.Namespace) -> None:
    with running_server(work / "data", MAX_CONCURRENT_TASKS="1", BASE_MODELS_DIR=arguments.base_models) as server:
        task = completed_task(server, work, base_model, arguments.max_length)
        model_dir = Path(task["artifacts"]["model_path"])
        for texts, mean_chars in (("short", 68), ("long", 388)):
            data = write_sheet(work / f"投诉-{label}-{texts}.xlsx", rows, mean_chars, seed=7)
            script = user_script(data, model_dir, work / f"pipeline-{label}-{texts}.xlsx", arguments.max_length)
            ours = bertd_job(server, task["task_id"], data, work / f"bertd-{label}-{texts}.xlsx")
            agreement = compare(work / f"pipeline-{label}-{texts}.xlsx", work / f"bertd-{label}-{texts}.xlsx")
            print(f"| {label} | {texts} | {rows:,} | {script['wall_seconds']:.1f} s | "
                  f"**{ours['wall_seconds']:.1f} s** ({ours['post_to_download_seconds']:.1f} s from POST) | "
                  f"**{script['wall_seconds'] / ours['wall_seconds']:.2f}x** | {script['rows_per_second']:,.0f} | "
                  f"{ours['rows_per_second']:,.0f} | **{ours['rows_per_second'] / script['rows_per_second']:.2f}x** | "
                  f"{100 * agreement['agree']:.2f} % ({agreement['near_ties']} near-ties) | "
                  f"{agreement['max_score_difference']:.1e} |", flush=True)


def online_predict_while_training(work: Path, seconds: float, base_models: str) -> None:
    """p50/p99 of POST /predict with one text while a task trains, and the training's steps/s with and
    without that load (quiet, loaded, quiet again)."""
    with running_server(work / "data", MAX_CONCURRENT_TASKS="1", BASE_MODELS_DIR=base_models) as server:
        model_task = completed_task(server, work, "bench-tiny", 128)
        data = work / "train-long.csv"
        make_frame(2400, mean_chars=120, seed=3).to_csv(data, index=False)
        server.upload(data)
        training = server.request("POST", "/api/v1/training/tasks", {
            "model_name_cn": "基准", "model_name_en": "bench", "training_data_file": data.name,
            "base_model": "bench-tiny", "hyperparameters": {"text_column": TEXT, "label_column": LABEL,
                                                           "epochs": 100, "batch_size": 16, "max_sequence_length": 128}})
        path = f"/api/v1/training/tasks/{model_task['task_id']}/predict"
        server.request("POST", path, {"texts": ["工厂烟囱排放废气"]})  # loads the model into the cache
        server.handle.wait_for(training["task_id"], lambda t: t["progress"]["step"] > 20, timeout=300)

        def steps_per_second(load: bool) -> tuple[float, list[float]]:
            first = server.request("GET", f"/api/v1/training/tasks/{training['task_id']}")["progress"]["step"]
            started, latencies = time.perf_counter(), []
            while time.perf_counter() - started < seconds:
                if load:
                    sent = time.perf_counter()
                    server.request("POST", path, {"texts": ["饭店厨房油烟很大，烧烤排烟到晚上"]})
                    latencies.append(time.perf_counter() - sent)
                else:
                    time.sleep(0.2)
            last = server.request("GET", f"/api/v1/training/tasks/{training['task_id']}")["progress"]["step"]
            return (last - first) / (time.perf_counter() - started), latencies

        quiet, _ = steps_per_second(False)
        loaded, latencies = steps_per_second(True)
        quiet_again, _ = steps_per_second(False)
        server.request("POST", f"/api/v1/training/tasks/{training['task_id']}/stop")
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    baseline = (quiet + quiet_again) / 2
    print(f"\nOnline `/predict` (one text, sequential requests for {seconds:g} s) while a task trains "
          f"(tiny model, batch 16, max length 128):\n")
    print("| requests | p50 | p99 | training steps/s quiet | with /predict load | training slowed by |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(latencies)} | {1000 * statistics.median(latencies):.1f} ms | {1000 * p99:.1f} ms | "
          f"{quiet:.2f} / {quiet_again:.2f} | {loaded:.2f} | {100 * (1 - loaded / baseline):.0f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000, help="rows per sheet for the tiny model")
    parser.add_argument("--base-rows", type=int, default=1000, help="rows per sheet for the BERT-base-shaped model")
    parser.add_argument("--max-length", type=int, default=256, help="the task's max_sequence_length")
    parser.add_argument("--skip-base", action="store_true")
    parser.add_argument("--skip-online", action="store_true")
    parser.add_argument("--online-seconds", type=float, default=15.0)
    arguments = parser.parse_args()

    import torch

    work = temporary_directory()
    arguments.base_models = str(work / "base_models")
    build_model(work / "base_models" / "bench-tiny", tiny=True)
    if not arguments.skip_base:
        build_model(work / "base_models" / "bench-base", tiny=False)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine_description()}, {device}, torch {torch.__version__}")
    print(f"`python bench/predict_throughput.py --rows {arguments.rows} --base-rows {arguments.base_rows} "
          f"--max-length {arguments.max_length}`\n")
    print("| model | texts | rows | user's script (whole) | bertd job (upload to download) | faster by | "
          "pipeline rows/s | bertd rows/s | inference faster by | labels agree | max score diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    run_model("tiny (hidden 128, 2 layers)", "bench-tiny", arguments.rows, work / "tiny", arguments)
    if not arguments.skip_base:
        run_model("BERT-base shape", "bench-base", arguments.base_rows, work / "base", arguments)
    if not arguments.skip_online:
        online_predict_while_training(work / "online", arguments.online_seconds, arguments.base_models)


if __name__ == "__main__":
    main()
