"""A whole task, POST to completed, on two versions of bertd in one run, interleaved: the code of a
git revision (`--before`, checked out into a temporary worktree) and the working tree. For changes
that must not make bertd slower (a refactor): same file, model and hyperparameters, alternating
tasks so that both see the same machine.

    python bench/before_after.py --before 12d1316 --rows 1200 --epochs 3 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from common import build_base_model, machine_description, make_frame, running_server, temporary_directory

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(revision: str, parent: Path) -> Iterator[Path]:
    folder = parent / f"bertd-{revision}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False,
                       capture_output=True)


def task_seconds(server, body: dict) -> float:
    started = time.perf_counter()
    task = server.request("POST", "/api/v1/training/tasks", body)
    done = server.wait_for(task["task_id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error_message"]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="git revision to compare the working tree with")
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--mean-chars", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    work = temporary_directory()
    data = work / "环境保护_基准.xlsx"
    make_frame(arguments.rows, mean_chars=arguments.mean_chars).to_excel(data, index=False)
    body = {"model_name_cn": "基准", "model_name_en": "bench", "training_data_file": data.name,
            "base_model": "bench-bert",
            "hyperparameters": {"text_column": "内容合并", "label_column": "标签列", "epochs": arguments.epochs,
                                "batch_size": 16, "learning_rate": 5e-4, "max_sequence_length": 256}}
    for side in ("before", "after"):
        build_base_model(work / side / "base_models" / "bench-bert", hidden=128, layers=2, heads=2)

    seconds: dict[str, list[float]] = {"before": [], "after": []}
    with worktree(arguments.before, work) as old_code, \
            running_server(work / "before", PYTHONPATH=str(old_code)) as before, \
            running_server(work / "after") as after:
        servers = {"before": before, "after": after}
        for server in servers.values():
            server.upload(data)
            task_seconds(server, body)  # a just-started server's spare is still importing: not counted
        for round_ in range(arguments.rounds):
            order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
            for side in order:
                seconds[side].append(task_seconds(servers[side], body))
                print(side, f"{seconds[side][-1]:.2f} s", flush=True)

    before_median, after_median = statistics.median(seconds["before"]), statistics.median(seconds["after"])
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/before_after.py --before {arguments.before} --rows {arguments.rows} "
          f"--mean-chars {arguments.mean_chars} --epochs {arguments.epochs} --rounds {arguments.rounds}`\n")
    print("| code | whole task (median) | each round | after / before |")
    print("|---|---|---|---|")
    for side, median in (("before", before_median), ("after", after_median)):
        rounds = ", ".join(f"{value:.1f}" for value in seconds[side])
        print(f"| {side} ({arguments.before if side == 'before' else 'working tree'}) | {median:.1f} s | {rounds} | "
              f"{median / before_median:.3f} |")


if __name__ == "__main__":
    main()
