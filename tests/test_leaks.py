"""A server that shuts down leaves nothing behind: no asyncio task, file descriptor, thread or
process, however many times it is started and stopped in one process."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from processes import children_of

from bertd.server.app import create_app
from bertd.server.config import Config

from helpers import TASKS, create, task_body, upload, wait_for


def resources() -> dict[str, object]:
    current = asyncio.current_task()
    return {
        "tasks": sorted(task.get_name() for task in asyncio.all_tasks() if task is not current),
        "fds": len(os.listdir("/proc/self/fd")),
        # The event loop's default executor keeps its idle threads for the loop's lifetime.
        "threads": sorted(thread.name for thread in threading.enumerate() if not thread.name.startswith("asyncio_")),
        "processes": sorted(children_of(os.getpid())),
    }


async def run_once(directory: Path, base_models_dir: Path, csv_file: Path) -> None:
    config = Config(host="127.0.0.1", data_dir=directory, base_models_dir=base_models_dir,
                    training_function="standin:steady", keep_spare_worker=True, stop_grace_seconds=5.0)
    async with TestServer(create_app(config)) as server, TestClient(server) as client:
        assert (await upload(client, csv_file)).status == 201
        task_id = (await create(client, task_body(csv_file.name, random_seed=5, sheet_name=None)))["task_id"]
        async with client.ws_connect(f"{TASKS}/{task_id}/ws") as socket, client.ws_connect("/api/v1/ws") as every:
            assert (await socket.receive_json(timeout=10))["type"] == "snapshot"
            assert (await every.receive_json(timeout=10))["type"] == "snapshot"
            await wait_for(client, task_id, {"completed"}, timeout=30)
        # Left open on purpose: the server must close it on the way down.
        lingering = await client.ws_connect("/api/v1/ws")
        assert (await lingering.receive_json(timeout=10))["type"] == "snapshot"
    await lingering.close()


async def settled() -> None:
    """Wait for what a stopped server leaves ending a moment later (aiosqlite's connection thread,
    the spare's exit), so a snapshot taken now holds only what lives as long as the process."""
    for _ in range(150):
        if not any("_connection_worker_thread" in name or name.startswith("pump-")
                   for name in resources()["threads"]):
            return
        await asyncio.sleep(0.1)


async def test_starting_and_stopping_leaves_nothing_behind(tmp_path: Path, base_models_dir: Path,
                                                           csv_file: Path) -> None:
    # The first round pays for what lives as long as the process: imports, the loop's executor
    # threads, multiprocessing's resource tracker.
    await run_once(tmp_path / "warm-up", base_models_dir, csv_file)
    await settled()
    before = resources()
    for round_ in range(2):
        await run_once(tmp_path / f"round-{round_}", base_models_dir, csv_file)
    for _ in range(150):  # the spare's exit and the pump threads' ends are seen a moment later
        if resources() == before:
            break
        await asyncio.sleep(0.1)
    assert resources() == before
