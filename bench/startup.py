"""Worker start-up: how long a user waits from POST to the first training step, with and without
the spare worker (KEEP_SPARE_WORKER), phase by phase.

    python bench/startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from common import build_base_model, figure, machine_description, make_frame, running_server, temporary_directory

PHASES = ("starting", "loading_data", "loading_model", "training")


def one_task(server, body: dict, gap: float) -> dict[str, float]:
    started = time.perf_counter()
    task_id = server.request("POST", "/api/v1/training/tasks", body)["task_id"]
    seen: dict[str, float] = {}
    while "training" not in seen:
        phase = server.request("GET", f"/api/v1/training/tasks/{task_id}")["progress"]["phase"]
        seen.setdefault(phase, time.perf_counter() - started)
        time.sleep(0.02)
    server.wait_for(task_id, {"completed", "failed"})
    # Let the next spare finish its imports (about 4 s of CPU here), as it would between real tasks;
    # a shorter gap measures a spare caught half-way through them.
    time.sleep(gap)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--gap", type=float, default=6.0, help="seconds between one task's end and the next POST")
    arguments = parser.parse_args()
    work = temporary_directory()
    build_base_model(work / "data" / "base_models" / "bench-bert", hidden=128, layers=2, heads=2)
    data = work / "startup.xlsx"
    make_frame(300, mean_chars=60).to_excel(data, index=False)
    body = {"model_name_cn": "启动", "model_name_en": "startup", "training_data_file": data.name,
            "base_model": "bench-bert", "hyperparameters": {"text_column": "内容合并", "label_column": "标签列",
                                                            "epochs": 1, "batch_size": 32}}
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine_description()}\n"
          f"`python bench/startup.py --repeat {arguments.repeat} --gap {arguments.gap}`\n")
    print("| spare worker | POST -> loading_data | POST -> loading_model | POST -> first step |")
    print("|---|---|---|---|")
    for spare in ("false", "true"):
        with running_server(work / f"data-{spare}", KEEP_SPARE_WORKER=spare,
                            BASE_MODELS_DIR=str(work / "data" / "base_models")) as server:
            server.upload(data)
            time.sleep(arguments.gap)  # the spare (if any) does its imports before the first task, as in service
            runs = [one_task(server, body, arguments.gap) for _ in range(arguments.repeat)]
        # A phase passed between two polls (every 20 ms) is not seen: "–".
        cells = [figure(statistics.median(r.get(p, float("nan")) for r in runs), "s", digits=2)
                 for p in ("loading_data", "loading_model", "training")]
        print(f"| {spare} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
