"""Shared pieces of the benchmarks: generated data, a tiny base model, a bertd server process."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

# Class-specific vocabulary plus shared filler, so the task is learnable but not trivial.
LABEL_WORDS = {
    "工业废气": "工厂烟囱排放化工废气车间锅炉焚烧刺鼻气味",
    "扬尘": "工地尘土渣土施工沙石飞扬裸露道路清扫",
    "油烟": "饭店餐馆油烟厨房烧烤排烟净化器夜市",
    "机动车废气": "货车尾气柴油车冒黑烟公交车发动机怠速",
    "其他废气": "垃圾焚烧秸秆燃烧异味养殖场臭气污水",
    "其他": "噪音投诉咨询政策举报环境监测信息公开",
}
FILLER = "市民反映附近每天严重影响居民希望相关部门尽快处理小区周边晚上白天多次"


def sentence(label: str, rng: random.Random, mean_chars: int, signal: float) -> str:
    words, filler = LABEL_WORDS[label], FILLER
    length = max(8, int(rng.gauss(mean_chars, mean_chars / 4)))
    # Mostly filler with some class characters (a `signal` share): a model must read the whole text.
    return "".join(rng.choice(words) if rng.random() < signal else rng.choice(filler) for _ in range(length))


def make_frame(rows: int, mean_chars: int, seed: int = 0, signal: float = 0.25) -> pd.DataFrame:
    rng = random.Random(seed)
    labels = list(LABEL_WORDS)
    records = [{"内容合并": sentence(label, rng, mean_chars, signal), "标签列": label}
               for label in (labels[i % len(labels)] for i in range(rows))]
    rng.shuffle(records)
    return pd.DataFrame(records)


def all_characters() -> str:
    return "".join(LABEL_WORDS.values()) + FILLER + "".join(LABEL_WORDS)


def build_base_model(directory: Path, hidden: int, layers: int, heads: int) -> Path:
    from bertd.testing.tiny_model import build_tiny_bert

    return build_tiny_bert(directory, [all_characters()], hidden_size=hidden, layers=layers, heads=heads)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def upload(self, path: Path) -> Any:
        boundary = "benchboundary"
        payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/api/v1/files", data=payload, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def wait_for(self, task_id: str, statuses: set[str], timeout: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.request("GET", f"/api/v1/training/tasks/{task_id}")
            if task["status"] in statuses:
                return task
            time.sleep(0.2)
        raise TimeoutError(f"task {task_id} not in {statuses} after {timeout} s")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process itself (workers are separate processes)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_server(data_dir: Path, **environment: str) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DATA_DIR": str(data_dir),
           "API_HOST": "127.0.0.1", "API_PORT": str(port), "LOG_LEVEL": "WARNING", **environment}
    process = subprocess.Popen([sys.executable, "-m", "bertd", "serve"], env=env)
    server = Server(f"http://127.0.0.1:{port}", process, data_dir)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.request("GET", "/api/v1/health")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("bertd did not start") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)


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
