"""Crashes, signals and starvation, with real server processes on a real data directory."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest
from processes import alive, children_of, start_server, stop_server

from helpers import create, task_body, upload, wait_for

TASKS = "/api/v1/training/tasks"


def long_task(filename: str, epochs: int = 400) -> dict:
    return task_body(filename, sheet_name=None, epochs=epochs, batch_size=4)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_9_then_restart_recovers_and_leaves_no_orphan(tmp_path: Path, base_models_dir: Path,
                                                           csv_file: Path) -> None:
    """With RESUME_INTERRUPTED_TASKS=false, as before checkpoints: the interrupted task fails
    (test_resume.py covers the default, where it continues)."""
    data_dir = tmp_path / "data"
    server = start_server(data_dir, base_models_dir, tmp_path / "first.log", RESUME_INTERRUPTED_TASKS="false")
    try:
        assert server.upload(csv_file)[0] == 201
        _, interrupted = server.request("POST", TASKS, long_task(csv_file.name))
        _, waiting = server.request("POST", TASKS, task_body(csv_file.name, sheet_name=None, epochs=1))
        server.wait_for(interrupted["task_id"], lambda t: t["progress"]["phase"] == "training"
                        and t["progress"]["current_epoch"] >= 1)
        workers = children_of(server.process.pid)
        worker = next(pid for pid in workers if "spawn" in Path(f"/proc/{pid}/cmdline").read_text())
        (data_dir / "models" / f"{interrupted['task_id']}.partial").mkdir(parents=True)
        server.process.kill()
        server.process.wait()
        assert wait_gone(worker, 5.0), "the worker outlived its server"
    finally:
        if server.process.poll() is None:
            server.process.kill()

    restarted = start_server(data_dir, base_models_dir, tmp_path / "second.log", RESUME_INTERRUPTED_TASKS="false")
    try:
        status, failed = restarted.request("GET", f"{TASKS}/{interrupted['task_id']}")
        assert status == 200 and failed["status"] == "failed"
        assert failed["error_message"].startswith("bertd stopped while this task was training (during epoch")
        assert not (data_dir / "models" / f"{interrupted['task_id']}.partial").exists()
        done = restarted.wait_for(waiting["task_id"], lambda t: t["status"] in ("completed", "failed"))
        assert done["status"] == "completed", done["error_message"]
        status, files = restarted.request("GET", "/api/v1/files")
        assert [f["filename"] for f in files["files"]] == [csv_file.name]
        assert (data_dir / "uploads" / csv_file.name).read_bytes() == csv_file.read_bytes()
    finally:
        stop_server(restarted)


@pytest.mark.slow
def test_sigterm_stops_training_records_it_and_exits_zero(tmp_path: Path, base_models_dir: Path,
                                                          csv_file: Path) -> None:
    """With RESUME_INTERRUPTED_TASKS=false, as before checkpoints (test_resume.py: the default)."""
    data_dir = tmp_path / "data"
    server = start_server(data_dir, base_models_dir, tmp_path / "server.log", RESUME_INTERRUPTED_TASKS="false")
    try:
        server.upload(csv_file)
        _, task = server.request("POST", TASKS, long_task(csv_file.name))
        _, queued = server.request("POST", TASKS, long_task(csv_file.name))
        server.wait_for(task["task_id"], lambda t: t["progress"]["phase"] == "training")
        workers = children_of(server.process.pid)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert all(wait_gone(pid, 2.0) for pid in workers)
    with sqlite3.connect(data_dir / "bertd.sqlite3") as database:
        rows = dict(database.execute("SELECT task_id, status || '|' || COALESCE(error_message, '') FROM tasks"))
    assert rows[task["task_id"]] == "stopped|the server shut down while it was training"
    assert rows[queued["task_id"]] == "queued|"
    log = server.log()
    assert "SIGTERM received" in log
    assert "shutdown: 1 running task(s)" in log and "1 stopped" in log and "1 queued task(s) kept" in log


@pytest.mark.slow
def test_kill_9_during_a_burst_of_writes_loses_no_acknowledged_request(tmp_path: Path, base_models_dir: Path,
                                                                       csv_file: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, base_models_dir, tmp_path / "server.log", MAX_QUEUED_TASKS="10000",
                          MAX_CONCURRENT_TASKS="1")
    server.upload(csv_file)
    acknowledged: list[str] = []

    async def burst() -> None:
        body = long_task(csv_file.name)

        async def one(session: aiohttp.ClientSession) -> None:
            async with session.post(server.url + TASKS, json=body) as response:
                if response.status == 201:
                    acknowledged.append((await response.json())["task_id"])
                    if len(acknowledged) == 150:
                        server.process.kill()

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(one(session) for _ in range(600)), return_exceptions=True)

    asyncio.run(burst())
    server.process.wait()
    assert 150 <= len(acknowledged) < 600
    with sqlite3.connect(data_dir / "bertd.sqlite3") as database:
        assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restarted = start_server(data_dir, base_models_dir, tmp_path / "server.log", MAX_CONCURRENT_TASKS="1")
    try:
        _, listing = restarted.request("GET", f"{TASKS}?page_size=200&page=1")
        assert listing["total"] >= len(acknowledged)
        for task_id in acknowledged:
            assert restarted.request("GET", f"{TASKS}/{task_id}")[0] == 200
    finally:
        stop_server(restarted)


def test_a_full_disk_fails_the_upload_cleanly_and_the_server_keeps_going(tmp_path: Path, base_models_dir: Path,
                                                                          csv_file: Path) -> None:
    def small_file_limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as a full disk gives ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    server = start_server(tmp_path / "data", base_models_dir, tmp_path / "server.log", preexec=small_file_limit)
    try:
        big = tmp_path / "big.csv"
        big.write_bytes(b"text,label\n" + b"x" * (6 << 20))
        status, body = server.upload(big)
        assert status == 507, body
        assert body["error"]["code"] == "insufficient_storage" and "big.csv" in body["error"]["message"]
        assert list((tmp_path / "data" / "uploads").iterdir()) == []
        assert server.upload(csv_file)[0] == 201
        assert server.request("GET", "/api/v1/health")[0] == 200
    finally:
        stop_server(server)


async def test_a_worker_killed_with_9_fails_its_task_and_frees_the_slot(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    await upload(client, csv_file)
    victim = (await create(client, task_body(csv_file.name, random_seed=1000, sheet_name=None)))["task_id"]
    following = (await create(client, task_body(csv_file.name, random_seed=10, sheet_name=None)))["task_id"]
    await wait_for(client, victim, {"training"}, phase="training", timeout=20)
    worker = next(pid for pid in children_of(os.getpid()) if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()
                  and "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text())
    killed_at = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    task = await wait_for(client, victim, {"failed"}, timeout=10)
    assert time.monotonic() - killed_at < 5
    assert "signal SIGKILL" in task["error_message"]
    done = await wait_for(client, following, {"completed"}, timeout=20)
    # The slot was freed for it: it started after the victim ended, and produced its model.
    assert done["started_at"] >= task["finished_at"] and Path(done["artifacts"]["model_path"]).is_dir()
