"""Shared pieces of the benchmarks: generated data, a tiny base model, a bertd server process
(the last two from bertd.testing, which the tests and `bertd demo` use too)."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertd.testing.example_data import noisy_characters, noisy_frame
from bertd.testing.server_process import ServerProcess, start_server

# The longer, noisier texts of the example data: learnable but not trivial.
make_frame = noisy_frame
all_characters = noisy_characters


def build_base_model(directory: Path, hidden: int, layers: int, heads: int) -> Path:
    from bertd.testing.tiny_model import build_tiny_bert

    return build_tiny_bert(directory, [all_characters()], hidden_size=hidden, layers=layers, heads=heads)


@dataclass
class Server:
    """A running bertd for a benchmark: calls that must succeed return their JSON body."""

    handle: ServerProcess
    data_dir: Path

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.handle.process

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self.handle.call(method, path, body)

    def upload(self, path: Path) -> Any:
        status, body = self.handle.upload(path)
        if status >= 300:
            raise RuntimeError(f"upload of {path.name} answered {status}: {body}")
        return body

    def wait_for(self, task_id: str, statuses: set[str], timeout: float = 3600) -> dict[str, Any]:
        return self.handle.wait_for(task_id, lambda task: task["status"] in statuses, timeout, interval=0.2)

    def cpu_seconds(self) -> float:
        return self.handle.cpu_seconds()


@contextlib.contextmanager
def running_server(data_dir: Path, **environment: str) -> Iterator[Server]:
    handle = start_server(data_dir, LOG_LEVEL="WARNING", **environment)
    try:
        yield Server(handle, data_dir)
    finally:
        handle.stop()


def temporary_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="bertd-bench-"))


def figure(value: float, unit: str, digits: int = 1) -> str:
    """A table cell: `value` with its unit, or a dash where there was nothing to measure (NaN)."""
    return "–" if math.isnan(value) else f"{value:.{digits}f} {unit}"


def machine_description() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def prepare_workload(name: str, rows: int, epochs: int, mean_chars: int = 60) -> tuple[Path, Path, dict[str, Any]]:
    """A work folder with a tiny base model (hidden 128, 2 layers) and a CSV, and the task body
    that trains on them: the shared set-up of the service benchmarks."""
    work = temporary_directory()
    build_base_model(work / "data" / "base_models" / "bench-bert", hidden=128, layers=2, heads=2)
    data = work / f"{name}.csv"
    make_frame(rows, mean_chars=mean_chars).to_csv(data, index=False)
    body = {"model_name_cn": "基准", "model_name_en": name, "training_data_file": data.name,
            "base_model": "bench-bert",
            "hyperparameters": {"text_column": "内容合并", "label_column": "标签列", "epochs": epochs,
                                "batch_size": 32, "learning_rate": 5e-4, "max_sequence_length": 128}}
    return work, data, body


def pin_cores(server: Server) -> None:
    """Emulate clients on other machines on a 2-core box: training workers on core 0 (the server
    is started with WORKER_CPUS=0), the server and this process (the clients) on core 1."""
    for process in (server.process.pid, os.getpid()):
        # Every thread already running (aiosqlite's, the pumps'); new ones inherit from their creator.
        for thread in Path(f"/proc/{process}/task").iterdir():
            os.sched_setaffinity(int(thread.name), {1})
