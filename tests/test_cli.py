"""`python -m bertd serve` as a real process: configuration, start-up, health, clean exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_starts_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "logs" / "bertd.log"
    environ = {**os.environ, "API_PORT": "1", "LOG_FILE": str(log_file), "API_TOKEN": "secret-token"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bertd", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1) as response:
                    health = json.load(response)
            except OSError:
                time.sleep(0.2)
        assert health is not None, "server did not answer"
        assert health["status"] == "ok" and health["devices"][-1]["type"] == "cpu"
        for folder in ("uploads", "models", "base_models"):
            assert (tmp_path / "data" / folder).is_dir()
        assert (tmp_path / "data" / "bertd.sqlite3").is_file()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    logged = log_file.read_text(encoding="utf-8")
    assert "configuration:" in logged and "'api_token': '***'" in logged and "secret-token" not in logged
    assert "compute devices: cpu" in logged and "bertd stopped" in logged


def test_bad_configuration_exits_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bertd", "serve", "--data-dir", str(tmp_path)],
                            env={**os.environ, "MAX_CONCURRENT_TASKS": "none"}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "MAX_CONCURRENT_TASKS must be an integer" in result.stderr
