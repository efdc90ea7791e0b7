"""A whole task on the CPU: bertd (POST to completed) against the plain Trainer script, same file,
same tiny model, same hyperparameters, in one run.

    python bench/whole_task.py --rows 1200 --epochs 3 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import build_base_model, machine_description, make_frame, running_server, temporary_directory

HERE = Path(__file__).resolve().parent


def bertd_task(server, body: dict) -> dict:
    started = time.perf_counter()
    task = server.request("POST", "/api/v1/training/tasks", body)
    done = server.wait_for(task["task_id"], {"completed", "failed"})
    wall = time.perf_counter() - started
    assert done["status"] == "completed", done["error_message"]
    return {"wall_seconds": wall, "val_accuracy": done["metrics"]["val_accuracy"],
            "val_macro_f1": done["metrics"]["val_macro_f1"],
            "train_samples_per_second": done["metrics"]["samples_per_second"]}


def trainer_task(data: Path, base_model: Path, output: Path, hp: dict, padding: str) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, str(HERE / "trainer_script.py"), str(data), str(base_model), str(output),
         "--epochs", str(hp["epochs"]), "--batch-size", str(hp["batch_size"]), "--lr", str(hp["learning_rate"]),
         "--max-length", str(hp["max_sequence_length"]), "--padding", padding, "--seed", str(hp.get("seed", 42))],
        capture_output=True, text=True, check=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--mean-chars", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    arguments = parser.parse_args()

    work = temporary_directory()
    base_model = build_base_model(work / "data" / "base_models" / "bench-bert", hidden=128, layers=2, heads=2)
    data = work / "环境保护_基准.xlsx"
    make_frame(arguments.rows, mean_chars=arguments.mean_chars).to_excel(data, index=False)
    hp = {"text_column": "内容合并", "label_column": "标签列", "epochs": arguments.epochs, "batch_size": 16,
          "learning_rate": 5e-4, "max_sequence_length": 256}
    body = {"model_name_cn": "基准", "model_name_en": "bench", "training_data_file": data.name,
            "base_model": "bench-bert", "hyperparameters": hp}

    runs: dict[str, list[dict]] = {"bertd": [], "trainer (dynamic padding)": [], "trainer (padded to max)": []}
    with running_server(work / "data") as server:
        server.upload(data)
        # A server that has just started is still importing torch in its spare worker; a running
        # one is not. One task first, not counted.
        bertd_task(server, body)
        for attempt in range(arguments.repeat):
            runs["bertd"].append(bertd_task(server, body))
            runs["trainer (dynamic padding)"].append(
                trainer_task(data, base_model, work / f"dyn{attempt}", hp, "dynamic"))
            runs["trainer (padded to max)"].append(
                trainer_task(data, base_model, work / f"max{attempt}", hp, "max_length"))
            for name, results in runs.items():
                print(name, json.dumps(results[-1]), flush=True)

    median = {name: statistics.median(r["wall_seconds"] for r in results) for name, results in runs.items()}
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/whole_task.py --rows {arguments.rows} --mean-chars {arguments.mean_chars} "
          f"--epochs {arguments.epochs} --repeat {arguments.repeat}`\n")
    print("| recipe | whole task (median) | train samples/s | val accuracy | val macro-F1 | bertd speed-up |")
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        last = results[-1]
        print(f"| {name} | {median[name]:.1f} s | {last['train_samples_per_second']:.0f} | "
              f"{last['val_accuracy']:.3f} | {last['val_macro_f1']:.3f} | {median[name] / median['bertd']:.2f}x |")


if __name__ == "__main__":
    main()
