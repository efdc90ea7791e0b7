"""The spare worker: imports done before a task arrives, replaced after each task, gone at shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from processes import alive, children_of

from bertd.training.priority import IMPORT_NICE, can_raise_priority

from helpers import create, task_body, upload, wait_for


def workers() -> list[int]:
    return [pid for pid in children_of(os.getpid())
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            and "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]


async def wait_for_workers(count: int, timeout: float = 20.0) -> list[int]:
    for _ in range(int(timeout / 0.05)):
        found = workers()
        if len(found) == count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} worker process(es), found {workers()}")


async def test_a_task_takes_the_spare_and_a_new_spare_follows(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady", keep_spare_worker=True)
    [spare] = await wait_for_workers(1)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=200, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"training"}, phase="training", timeout=20)
    running = await wait_for_workers(2)
    assert spare in running  # the task runs in the process that was waiting
    await wait_for(client, task_id, {"completed"}, timeout=20)
    [next_spare] = await wait_for_workers(1)
    assert next_spare != spare and not alive(spare)

    second = (await create(client, task_body(csv_file.name, random_seed=10, sheet_name=None)))["task_id"]
    await wait_for(client, second, {"completed"}, timeout=20)
    await client.close()
    assert not alive(next_spare)
    assert workers() == []


async def test_workers_run_on_the_cpus_they_are_given(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:affinity", worker_cpus=(0,))
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    history = await (await client.get(f"/api/v1/training/tasks/{task_id}/events")).json()
    warnings = [e["data"]["message"] for e in history["events"] if e["type"] == "warning"]
    assert warnings == ["cpus=[0] threads=1"]


async def test_a_spare_imports_at_low_priority_and_its_job_runs_at_the_servers(make_client, csv_file: Path) -> None:
    if not can_raise_priority(os.getpriority(os.PRIO_PROCESS, 0)):
        pytest.skip("this user may not raise a thread's priority back (no CAP_SYS_NICE, low RLIMIT_NICE)")
    client = await make_client(training_function="standin:priority", keep_spare_worker=True)
    [spare] = await wait_for_workers(1)
    for _ in range(200):
        if os.getpriority(os.PRIO_PROCESS, spare) == IMPORT_NICE:
            break
        await asyncio.sleep(0.05)
    assert os.getpriority(os.PRIO_PROCESS, spare) == IMPORT_NICE  # the spare's main thread, importing

    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    history = await (await client.get(f"/api/v1/training/tasks/{task_id}/events")).json()
    warnings = [e["data"]["message"] for e in history["events"] if e["type"] == "warning"]
    assert warnings == [f"nice={[os.getpriority(os.PRIO_PROCESS, 0)]}"]
