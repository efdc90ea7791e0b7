"""Real bertd server processes for tests that kill, signal or starve them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def upload(self, path: Path, name: str | None = None) -> tuple[int, Any]:
        boundary = "testboundary"
        payload = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name or path.name}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/api/v1/files", raw=payload,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def wait_for(self, task_id: str, predicate, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        task: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, task = self.request("GET", f"/api/v1/training/tasks/{task_id}")
            if status == 200 and predicate(task):
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not get there in {timeout} s: {str(task)[:800]}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_server(data_dir: Path, base_models_dir: Path, log_path: Path, preexec=None, **environment: str
                 ) -> ServerProcess:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DATA_DIR": str(data_dir), "BASE_MODELS_DIR": str(base_models_dir),
           "API_HOST": "127.0.0.1", "API_PORT": str(port), "LOG_LEVEL": "INFO", "STOP_GRACE_SECONDS": "10",
           **environment}
    with log_path.open("a", encoding="utf-8") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "bertd", "serve"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True, preexec_fn=preexec)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if server.request("GET", "/api/v1/health")[0] == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"bertd exited with {process.returncode}:\n{server.log()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"bertd did not answer in 60 s:\n{server.log()}")


def stop_server(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
