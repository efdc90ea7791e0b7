"""The cluster executor (Celery + Redis, `bertd worker` boxes) against the local pool, on one machine:

- dispatch: POST to the first training step, seen on the task's WebSocket (the median of a few tasks);
- message latency: a worker's progress message from its sending to a WebSocket client (p50 / p99);
- throughput: tasks per hour on a batch of short tasks, with 1 and 2 workers (local: 1 and 2 slots).

    python bench/cluster.py [--tasks 6] [--rows 60]

Starts its own redis-server (loopback, a free port) and servers; a tiny model, so the figures are
bertd's own overhead, not training. Needs redis-server and the cluster extra."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import machine_description

from bertd.testing.example_data import characters, labelled_rows
from bertd.testing.server_process import ServerProcess, free_port, start_server
from bertd.testing.tiny_model import build_tiny_bert

TOKEN = "bench-token"


@contextmanager
def redis_server(folder: Path):
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def start_workers(count: int, folder: Path, api: ServerProcess, broker: str) -> list[subprocess.Popen]:
    workers = []
    cores = len(os.sched_getaffinity(0))
    for index in range(count):
        environment = {**os.environ, "BERTD_URL": api.url, "BROKER_URL": broker, "WORKER_TOKEN": TOKEN,
                       "LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1"}
        # Each box on a core of its own, as boxes are machines of their own (a box shares its cores
        # among its slots: two boxes each believing they had both cores would run four threads on two).
        pinned = ["taskset", "-c", str(index % cores)] if count > 1 and shutil.which("taskset") else []
        workers.append(subprocess.Popen([*pinned, sys.executable, "-m", "bertd", "worker", "--name", f"box-{index}",
                                         "--data-dir", str(folder / f"box-{index}")], env=environment,
                                        stdout=subprocess.DEVNULL,
                                        stderr=(folder / f"box-{index}.log").open("w"),
                                        start_new_session=True))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len([w for w in api.call("GET", "/api/v1/workers")["workers"] if w["alive"]]) == count:
            time.sleep(8)  # let their spare children finish importing
            return workers
        time.sleep(0.5)
    raise RuntimeError("workers did not connect")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)


def body(filename: str, epochs: int = 1) -> dict[str, Any]:
    return {"model_name_cn": "基准", "model_name_en": "bench", "training_data_file": filename, "base_model": "tiny",
            "hyperparameters": {"text_column": "内容", "label_column": "标签", "epochs": epochs, "batch_size": 4,
                                "max_sequence_length": 32}}


async def one_task(api: ServerProcess, payload: dict[str, Any]) -> tuple[float, list[float]]:
    """(seconds from POST to the first training step, latencies of its progress messages)."""
    latencies: list[float] = []
    first_step: float | None = None
    async with aiohttp.ClientSession() as session:
        posted = time.time()
        async with session.post(f"{api.url}/api/v1/training/tasks", json=payload) as response:
            task = await response.json()
        async with session.ws_connect(f"{api.url}/api/v1/training/tasks/{task['task_id']}/ws") as socket:
            async for message in socket:
                data = json.loads(message.data)
                if data["type"] == "progress" and data.get("step"):
                    first_step = first_step or time.time() - posted
                    if data.get("sent_at"):
                        latencies.append(time.time() - data["sent_at"])
                if data["type"] == "end":
                    assert data["task"]["status"] == "completed", data["task"]["error_message"]
                    break
    assert first_step is not None
    return first_step, latencies


def measure(api: ServerProcess, filename: str, tasks: int, gap: float) -> dict[str, Any]:
    firsts, latencies = [], []
    for _ in range(3):
        # A new spare imports torch and transformers (~4 s of CPU at nice 19) after each task: without
        # the gap, the next task would measure that import, not the dispatch.
        time.sleep(gap)
        first, seen = asyncio.run(one_task(api, body(filename, epochs=3)))
        firsts.append(first)
        latencies.extend(seen)
    started = time.monotonic()
    ids = [api.call("POST", "/api/v1/training/tasks", body(filename))["task_id"] for _ in range(tasks)]
    for task_id in ids:
        api.wait_for(task_id, lambda task: task["status"] in ("completed", "failed"), timeout=600, interval=0.2)
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"dispatch": statistics.median(firsts), "dispatches": firsts, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "per_hour": tasks / elapsed * 3600}


def warm_then_measure(api: ServerProcess, data: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    """One task first, uncounted (the spare is imported; a box has the files and model cached), then
    the measurement."""
    api.upload(data)
    api.wait_for(api.call("POST", "/api/v1/training/tasks", body(data.name))["task_id"],
                 lambda task: task["status"] == "completed")
    return measure(api, data.name, arguments.tasks, arguments.gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--rows", type=int, default=60, help="rows per label of each task's data")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between the dispatch tasks")
    arguments = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    work = Path(tempfile.mkdtemp(prefix="bertd-bench-cluster-"))
    build_tiny_bert(work / "base_models" / "tiny", [characters()], hidden_size=64, layers=2, heads=2)
    import pandas as pd

    data = work / "数据.csv"
    pd.DataFrame(labelled_rows(arguments.rows, 1)).to_csv(data, index=False)
    results: dict[str, dict[str, Any]] = {}
    for slots in (1, 2):
        api = start_server(work / f"local-{slots}", work / "base_models", work / f"local-{slots}.log",
                           MAX_CONCURRENT_TASKS=str(slots), LOG_LEVEL="WARNING")
        try:
            results[f"local pool, {slots} slot(s)"] = warm_then_measure(api, data, arguments)
        finally:
            api.stop()
        with redis_server(work) as broker:
            api = start_server(work / f"cluster-{slots}", work / "base_models", work / f"cluster-{slots}.log",
                               BROKER_URL=broker, WORKER_TOKEN=TOKEN, LOG_LEVEL="WARNING")
            workers = start_workers(slots, work, api, broker)
            try:
                results[f"Celery + Redis, {slots} worker(s)"] = warm_then_measure(api, data, arguments)
            finally:
                stop_workers(workers)
                api.stop()
    print(f"\n{datetime.now(UTC):%Y-%m-%d}, {machine_description()}")
    print(f"`python bench/cluster.py --tasks {arguments.tasks} --rows {arguments.rows} --gap {arguments.gap:g}`"
          f" (logs in {work})\n")
    print("| executor | POST to first step (median; each) | message latency p50 | p99 | short tasks per hour |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        each = ", ".join(f"{seconds:.2f}" for seconds in result["dispatches"])
        print(f"| {name} | {result['dispatch']:.2f} s ({each}) | {1000 * result['p50']:.1f} ms | "
              f"{1000 * result['p99']:.1f} ms | {result['per_hour']:.0f} |")


if __name__ == "__main__":
    main()
