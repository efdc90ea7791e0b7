"""Scheduling with real worker processes running fast stand-in training functions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bertd.server.keys import CONFIG

from helpers import TASKS, create, events, get_task, task_body, upload, wait_for

STEADY = "standin:steady"


def standin_body(filename: str, step_ms: int) -> dict:
    # The stand-in reads random_seed as milliseconds per step (20 steps).
    return task_body(filename, random_seed=step_ms, epochs=1)


async def test_three_tasks_one_slot_run_one_at_a_time_in_fifo_order(make_client, csv_file: Path) -> None:
    client = await make_client(max_concurrent_tasks=1, training_function=STEADY)
    assert (await upload(client, csv_file)).status == 201
    body = task_body(csv_file.name, random_seed=25, epochs=1, sheet_name=None)
    ids = [(await create(client, body))["task_id"] for _ in range(3)]

    queued = [await get_task(client, task_id) for task_id in ids]
    positions = [task["queue_position"] for task in queued if task["status"] == "queued"]
    assert positions == list(range(1, len(positions) + 1)) and len(positions) >= 2

    most_at_once = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listing = await (await client.get(TASKS, params={"page_size": 10})).json()
        statuses = [task["status"] for task in listing["tasks"]]
        most_at_once = max(most_at_once, sum(status in ("training", "stopping") for status in statuses))
        if statuses.count("completed") == 3:
            break
        await asyncio.sleep(0.02)
    assert most_at_once == 1
    assert [task["task_id"] for task in listing["tasks"]] == ids[::-1]  # newest first

    def start_event_id(history: list[dict]) -> int:
        return next(e["id"] for e in history if e["type"] == "status" and e["data"]["status"] == "training")

    starts = [start_event_id(await events(client, task_id)) for task_id in ids]
    assert starts == sorted(starts)
    health = await (await client.get("/api/v1/health")).json()
    assert health["training"] == 0 and health["queued"] == 0 and health["max_concurrent_tasks"] == 1


async def test_two_slots_run_two_tasks_at_once(make_client, csv_file: Path) -> None:
    client = await make_client(max_concurrent_tasks=2, training_function=STEADY)
    await upload(client, csv_file)
    body = task_body(csv_file.name, random_seed=100, epochs=1, sheet_name=None)
    ids = [(await create(client, body))["task_id"] for _ in range(3)]
    await wait_for(client, ids[1], {"training"}, timeout=20)
    assert (await get_task(client, ids[0]))["status"] == "training"
    third = await get_task(client, ids[2])
    assert third["status"] == "queued" and third["queue_position"] == 1
    for task_id in ids:
        await wait_for(client, task_id, {"completed"}, timeout=30)


async def test_progress_is_persisted_while_training(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=150, sheet_name=None)))["task_id"]
    task = await wait_for(client, task_id, {"training"}, phase="training", timeout=20)
    first_step = task["progress"]["step"]
    await asyncio.sleep(1.0)
    later = await get_task(client, task_id)
    assert later["progress"]["step"] > first_step
    assert later["progress"]["total_steps"] == 20
    done = await wait_for(client, task_id, {"completed"}, timeout=20)
    assert done["progress"]["val_macro_f1"] == 1.0 and done["progress"]["progress_percentage"] == 100.0
    assert done["started_at"] is not None and done["finished_at"] is not None


async def test_stop_a_training_task(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=500, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"training"}, phase="training", timeout=20)

    response = await client.post(f"{TASKS}/{task_id}/stop")
    body = await response.json()
    # Training when asked: the answer is `stopping` until the worker has exited.
    assert response.status == 202 and body["status"] == "stopping" and body["message"]
    task = await wait_for(client, task_id, {"stopped"}, timeout=10)
    assert task["finished_at"] is not None and task["artifacts"] is None
    assert not (client.app[CONFIG].models_dir / task_id).exists()

    again = await client.post(f"{TASKS}/{task_id}/stop")
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"
    statuses = [e["data"]["status"] for e in await events(client, task_id) if e["type"] == "status"]
    assert statuses == ["queued", "training", "stopping", "stopped"]


async def test_stop_a_queued_task_at_once(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    body = task_body(csv_file.name, random_seed=300, sheet_name=None)
    running = (await create(client, body))["task_id"]
    queued = (await create(client, body))["task_id"]
    await wait_for(client, running, {"training"}, timeout=20)
    response = await client.post(f"{TASKS}/{queued}/stop")
    assert response.status == 202
    assert (await response.json())["status"] == "stopped"
    assert (await get_task(client, running))["status"] == "training"  # the other task is untouched
    await client.post(f"{TASKS}/{running}/stop")
    await wait_for(client, running, {"stopped"}, timeout=20)
    assert (await get_task(client, queued))["started_at"] is None


async def test_a_worker_that_ignores_stop_is_terminated_then_killed(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:stubborn", stop_grace_seconds=0.5, kill_wait_seconds=0.5)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"training"}, phase="training", timeout=20)
    started = time.monotonic()
    await client.post(f"{TASKS}/{task_id}/stop")
    task = await wait_for(client, task_id, {"stopped", "failed"}, timeout=10)
    assert task["status"] == "stopped"
    assert time.monotonic() - started < 5


async def test_a_worker_that_dies_fails_its_task_and_frees_the_slot(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:crashing")
    await upload(client, csv_file)
    body = task_body(csv_file.name, sheet_name=None)
    first = (await create(client, body))["task_id"]
    second = (await create(client, body))["task_id"]
    task = await wait_for(client, first, {"failed"}, timeout=20)
    assert "exit code 3" in task["error_message"]
    # The slot was freed: the second task started after the first ended, and died the same way.
    after = await wait_for(client, second, {"failed"}, timeout=20)
    assert after["started_at"] >= task["finished_at"] and "exit code 3" in after["error_message"]


async def test_delete_stops_an_active_task_and_removes_everything(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    body = task_body(csv_file.name, random_seed=500, sheet_name=None)
    running = (await create(client, body))["task_id"]
    waiting = (await create(client, task_body(csv_file.name, random_seed=10, sheet_name=None)))["task_id"]
    await wait_for(client, running, {"training"}, phase="training", timeout=20)

    response = await client.delete(f"{TASKS}/{running}")
    assert response.status == 200
    assert await response.json() == {"task_id": running, "deleted": True,
                                     "message": "task, its events and its model were deleted"}
    assert (await client.get(f"{TASKS}/{running}")).status == 404
    assert (await client.get(f"{TASKS}/{running}/events")).status == 404
    assert (await client.delete(f"{TASKS}/{running}")).status == 404

    done = await wait_for(client, waiting, {"completed"}, timeout=20)  # the slot was freed
    model_dir = Path(done["artifacts"]["model_path"])
    assert (model_dir / "marker.txt").is_file()
    assert (await client.delete(f"{TASKS}/{waiting}")).status == 200
    assert not model_dir.exists()
    listing = await (await client.get(TASKS)).json()
    assert listing["total"] == 0
