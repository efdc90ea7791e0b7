"""Scheduling prediction jobs: in the same slots as training, FIFO with the tasks, stop, delete, and a
task's deletion taking its jobs along. Real worker processes run stand-ins (tests/standin.py) for
the model work, so the order of events is certain; test_predictions.py runs the real thing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bertd.server.keys import CONFIG

from helpers import (
    TASKS,
    create,
    create_prediction,
    events,
    get_task,
    predictions_path,
    task_body,
    upload,
    wait_for,
    wait_for_prediction,
)


def standin_body(filename: str, step_ms: int) -> dict:
    # The stand-in reads random_seed as milliseconds per step (20 steps).
    return task_body(filename, random_seed=step_ms, epochs=1, sheet_name=None)


def first_event_id(history: list[dict], kind: str, status: str, prediction_id: str | None = None) -> int:
    return next(event["id"] for event in history if event["type"] == kind and event["data"]["status"] == status
                and (prediction_id is None or event["data"]["prediction_id"] == prediction_id))


async def test_prediction_jobs_share_the_slot_fifo_with_tasks_stop_and_go_with_their_task(make_client,
                                                                                         csv_file: Path) -> None:
    client = await make_client(max_concurrent_tasks=1, training_function="standin:with_model",
                               prediction_function="standin:slow_prediction")
    assert (await upload(client, csv_file)).status == 201
    model_task = (await create(client, standin_body(csv_file.name, 0)))["task_id"]
    await wait_for(client, model_task, {"completed"}, timeout=30)

    # A task trains in the only slot: jobs created meanwhile wait, in the order they came, tasks and
    # prediction jobs together.
    training = (await create(client, standin_body(csv_file.name, 150)))["task_id"]
    await wait_for(client, training, {"training"}, timeout=30)
    request = {"file": csv_file.name, "text_column": "内容"}
    first = await create_prediction(client, model_task, **request)
    assert (first["status"], first["queue_position"], first["sheet_name"]) == ("queued", 1, csv_file.stem)
    later_task = await create(client, standin_body(csv_file.name, 0))
    assert later_task["queue_position"] == 2
    second = await create_prediction(client, model_task, **request, top_k=2)
    assert second["queue_position"] == 3
    # Only a completed task has a model to predict with.
    refused = await client.post(predictions_path(training), json=request)
    assert refused.status == 409 and "only a completed task has a model" in (await refused.json())["error"]["message"]
    await asyncio.sleep(0.5)
    assert (await get_task(client, training))["status"] == "training"
    assert (await (await client.get(predictions_path(model_task, first["prediction_id"]))).json())["status"] == "queued"

    # One at a time: never more than one worker at work.
    most_at_once = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = await (await client.get("/api/v1/health")).json()
        most_at_once = max(most_at_once, health["running_workers"])
        job = await (await client.get(predictions_path(model_task, second["prediction_id"]))).json()
        if job["status"] == "running" and job["rows_done"] > 0:
            break
        await asyncio.sleep(0.02)
    assert most_at_once == 1

    # A running job stops through its worker; it stays running until the worker has exited.
    stopping = await client.post(predictions_path(model_task, second["prediction_id"], "/stop"))
    assert stopping.status == 202
    assert (await wait_for_prediction(client, model_task, second["prediction_id"], {"stopped", "completed"}))[
        "status"] == "stopped"
    assert (await client.post(predictions_path(model_task, second["prediction_id"], "/stop"))).status == 409

    done = await wait_for_prediction(client, model_task, first["prediction_id"], {"completed"})
    assert (done["rows_done"], done["rows_total"], done["progress"]) == (40, 40, 100.0)
    assert done["download_name"] == f"{csv_file.stem}-predicted.csv"
    history = await events(client, model_task)
    later_history = await events(client, later_task["task_id"])
    training_history = await events(client, training)
    assert first_event_id(training_history, "status", "completed") \
        < first_event_id(history, "prediction", "running", first["prediction_id"]) \
        < first_event_id(later_history, "status", "training") \
        < first_event_id(history, "prediction", "running", second["prediction_id"])
    statuses = [e["data"]["status"] for e in history if e["type"] == "prediction"
                and e["data"]["prediction_id"] == second["prediction_id"]]
    assert statuses == ["queued", "running", "stopped"]

    # The result downloads under the input's name; deleting the job removes the file.
    download = await client.get(predictions_path(model_task, first["prediction_id"], "/download"))
    assert download.status == 200 and await download.text() == "stand-in result"
    assert download.content_disposition is not None
    assert download.content_disposition.filename == f"{csv_file.stem}-predicted.csv"
    predictions_dir = Path(client.app[CONFIG].data_dir) / "predictions" / model_task
    result = predictions_dir / f"{first['prediction_id']}.csv"
    assert result.is_file() and not (predictions_dir / f"{second['prediction_id']}.csv").exists()
    deleted = await client.delete(predictions_path(model_task, first["prediction_id"]))
    assert deleted.status == 200 and not result.exists()
    assert (await client.get(predictions_path(model_task, first["prediction_id"]))).status == 404

    # A queued job stops at once; deleting the task takes every job and result along, and leaves
    # the upload alone.
    third = await create_prediction(client, model_task, **request)
    await wait_for_prediction(client, model_task, third["prediction_id"], {"completed"})
    blocker = (await create(client, standin_body(csv_file.name, 150)))["task_id"]
    await wait_for(client, blocker, {"training"}, timeout=30)
    fourth = await create_prediction(client, model_task, **request)
    stopped = await client.post(predictions_path(model_task, fourth["prediction_id"], "/stop"))
    assert stopped.status == 202 and (await stopped.json())["status"] == "stopped"
    assert [path.name for path in predictions_dir.iterdir()] == [f"{third['prediction_id']}.csv"]
    assert (await client.delete(f"{TASKS}/{model_task}")).status == 200
    assert not predictions_dir.exists()
    assert (await client.get(predictions_path(model_task))).status == 404
    assert (await client.get(f"/api/v1/files/{csv_file.name}")).status == 200


async def test_a_prediction_job_streams_its_progress_and_end_on_its_own_websocket(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:with_model", prediction_function="standin:slow_prediction",
                               progress_report_interval=0.0)
    await upload(client, csv_file)
    task_id = (await create(client, standin_body(csv_file.name, 0)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=30)
    everything = await client.ws_connect("/api/v1/ws")
    assert (await everything.receive_json())["predictions"] == []
    job = await create_prediction(client, task_id, file=csv_file.name, text_column="内容")
    socket = await client.ws_connect(predictions_path(task_id, job["prediction_id"], "/ws"))
    messages = []
    async for message in socket:
        messages.append(message.json())
    assert socket.close_code == 1000
    kinds = [message["type"] for message in messages]
    assert kinds[0] == "prediction_snapshot" and kinds[-2:] == ["prediction_status", "prediction_end"]
    assert kinds.count("prediction_progress") >= 2
    assert [m["seq"] for m in messages[1:]] == list(range(messages[0]["seq"] + 1, messages[0]["seq"] + len(messages)))
    assert all(m["task_id"] == task_id and m["prediction_id"] == job["prediction_id"] for m in messages)
    done = [m["rows_done"] for m in messages if m["type"] == "prediction_progress"]
    assert done == sorted(done) and done[-1] == 40
    assert messages[-1]["prediction"]["status"] == "completed" and messages[-2]["status"] == "completed"

    # Every task's stream carries the same messages; an ended job gives its snapshot and end at once.
    seen = []
    while not seen or seen[-1]["type"] != "prediction_end":
        seen.append(await everything.receive_json(timeout=10))
    assert [m["seq"] for m in seen if m.get("prediction_id") == job["prediction_id"]] == \
        list(range(1, messages[-1]["seq"] + 1))
    assert seen[0]["type"] == "prediction_status" and seen[0]["status"] == "queued"
    await everything.close()
    again = await client.ws_connect(predictions_path(task_id, job["prediction_id"], "/ws"))
    assert [(await again.receive_json())["type"] for _ in range(2)] == ["prediction_snapshot", "prediction_end"]
    assert (await again.receive()).type.name in ("CLOSE", "CLOSED")
    missing = await client.get(predictions_path(task_id, "nope", "/ws"))
    assert missing.status == 404


async def test_a_completed_tasks_websocket_carries_its_jobs_until_the_last_one_ends(make_client, csv_file: Path) -> None:
    client = await make_client(max_concurrent_tasks=1, training_function="standin:with_model",
                               prediction_function="standin:slow_prediction", progress_report_interval=0.0)
    await upload(client, csv_file)
    task_id = (await create(client, standin_body(csv_file.name, 0)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=30)
    request = {"file": csv_file.name, "text_column": "内容"}
    first = await create_prediction(client, task_id, **request)
    socket = await client.ws_connect(f"{TASKS}/{task_id}/ws")
    opening = [await socket.receive_json(timeout=10) for _ in range(3)]
    assert [m["type"] for m in opening] == ["snapshot", "prediction_snapshot", "end"]
    assert opening[1]["prediction"]["prediction_id"] == first["prediction_id"]
    # A job created while the stream is open (the first one holds the only slot for 2 s) keeps it
    # open too: it closes after the last job's end.
    second = await create_prediction(client, task_id, **request)

    async def until_closed() -> list[dict]:
        return [message.json() async for message in socket]

    messages = await asyncio.wait_for(until_closed(), 30)
    assert socket.close_code == 1000
    assert messages[-1]["type"] == "prediction_end" and messages[-1]["prediction_id"] == second["prediction_id"]
    for job, first_seq in ((first, opening[1]["seq"]), (second, 0)):
        own = [m for m in messages if m["prediction_id"] == job["prediction_id"]]
        assert [m["seq"] for m in own] == list(range(first_seq + 1, first_seq + 1 + len(own)))
        assert sum(m["type"] == "prediction_progress" for m in own) >= 2
        assert own[-1]["type"] == "prediction_end" and own[-1]["prediction"]["status"] == "completed"
    assert all(m["task_id"] == task_id for m in messages)
    # Once no job is queued or running, the task's stream is its snapshot and end again.
    again = await client.ws_connect(f"{TASKS}/{task_id}/ws")
    assert [(await again.receive_json())["type"] for _ in range(2)] == ["snapshot", "end"]
    assert (await again.receive()).type.name in ("CLOSE", "CLOSED")


async def test_a_job_running_at_shutdown_runs_again_at_the_next_start(make_client, csv_file: Path) -> None:
    settings = {"training_function": "standin:with_model", "prediction_function": "standin:slow_prediction"}
    client = await make_client(**settings)
    await upload(client, csv_file)
    task_id = (await create(client, standin_body(csv_file.name, 0)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=30)
    job = await create_prediction(client, task_id, file=csv_file.name, text_column="内容")
    deadline = time.monotonic() + 30
    while (await (await client.get(predictions_path(task_id, job["prediction_id"]))).json())["rows_done"] == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await client.close()  # a clean shutdown while the job runs

    restarted = await make_client(**settings)
    done = await wait_for_prediction(restarted, task_id, job["prediction_id"], {"completed", "failed", "stopped"})
    assert done["status"] == "completed" and done["rows_done"] == 40
    history = [e["data"] for e in await events(restarted, task_id) if e["type"] == "prediction"]
    assert [entry["status"] for entry in history] == ["queued", "running", "queued", "running", "completed"]


async def test_a_failed_job_says_why_in_the_readers_language(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:with_model", prediction_function="standin:dying_prediction")
    assert (await upload(client, csv_file)).status == 201
    model_task = (await create(client, standin_body(csv_file.name, 0)))["task_id"]
    await wait_for(client, model_task, {"completed"}, timeout=30)
    job = await create_prediction(client, model_task, file=csv_file.name, text_column="内容")
    done = await wait_for_prediction(client, model_task, job["prediction_id"], {"completed", "failed", "stopped"})
    assert (done["status"], done["error_message"]) == ("failed", (
        "the worker process died with exit code 3 while starting; if it was killed for memory, split the sheet "
        "into smaller files"))
    path = f"{predictions_path(model_task)}/{job['prediction_id']}"
    chinese = await (await client.get(path, headers={"Accept-Language": "zh-CN"})).json()
    assert chinese["error_message"] == ("工作进程在 starting 阶段异常退出（退出码 3）；"
                                        "如果是因内存不足被终止，请把表格拆成较小的文件")
    listed = await (await client.get(predictions_path(model_task), headers={"Accept-Language": "zh-CN"})).json()
    assert listed["predictions"][0]["error_message"] == chinese["error_message"]
