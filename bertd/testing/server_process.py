"""A real `bertd serve` in a child process, and a small blocking client for it: how the tests that
kill, signal or starve a server, the benchmarks and `bertd demo` start one and talk to it."""

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ServerExited(RuntimeError):
    """The server process ended (or never answered) while it was expected to serve."""


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path | None

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
        """(status, decoded JSON body) of one call; error statuses are returned, not raised."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON body of a call that must succeed."""
        status, answer = self.request(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path} answered {status}: {answer}")
        return answer

    def upload(self, path: Path, name: str | None = None) -> tuple[int, Any]:
        boundary = "bertdboundary"
        payload = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name or path.name}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/api/v1/files", raw=payload, timeout=120,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def wait_for(self, task_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90.0,
                 interval: float = 0.1) -> dict[str, Any]:
        """Poll the task until `predicate(task)` holds."""
        deadline = time.monotonic() + timeout
        task: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, task = self.request("GET", f"/api/v1/training/tasks/{task_id}")
            if status == 200 and predicate(task):
                return task
            time.sleep(interval)
        raise TimeoutError(f"task {task_id} did not get there in {timeout} s: {str(task)[:800]}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process itself (workers are separate processes)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (the server's clean shutdown), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, base_models_dir: Path | None = None, log_path: Path | None = None,
                 preexec: Callable[[], None] | None = None, start_timeout: float = 60, port: int | None = None,
                 **environment: str) -> ServerProcess:
    """Start `python -m bertd serve` on a loopback port (a free one, or `port`: a restart keeps its
    address) and wait until it answers. Its output goes to `log_path` (appended), or to this
    process's own output when None."""
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DATA_DIR": str(data_dir),
           "API_HOST": "127.0.0.1", "API_PORT": str(port), "LOG_LEVEL": "INFO", **environment}
    if base_models_dir is not None:
        env["BASE_MODELS_DIR"] = str(base_models_dir)
    command = [sys.executable, "-m", "bertd", "serve"]
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                       preexec_fn=preexec)
    else:
        process = subprocess.Popen(command, env=env, text=True, preexec_fn=preexec)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        try:
            if server.request("GET", "/api/v1/health", timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None:
            raise ServerExited(f"bertd exited with {process.returncode}:\n{server.log()[-3000:]}")
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise ServerExited(f"bertd did not answer in {start_timeout:g} s:\n{server.log()[-3000:]}")
