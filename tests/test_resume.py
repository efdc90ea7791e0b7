"""Nothing lost on a restart: checkpoints, continuing after kill -9 or SIGTERM, pause and resume.
Every continued task must end with the history and metrics of the same task run without a break."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from processes import start_server, stop_server

from bertd.protocol import Hyperparameters, TrainingJob
from bertd.server.keys import CONFIG
from bertd.training.loop import run_training

from conftest import TINY_MODEL
from datagen import labelled_frame, write_csv
from helpers import TASKS, create, events, get_task, task_body, upload, wait_for

# 120 rows (96 train), batches of 4: 24 steps an epoch, under a second an epoch on 2 cores.
EPOCHS = 4


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("resume") / "长任务.csv", labelled_frame(rows_per_label=40, seed=5))


def body(filename: str) -> dict[str, Any]:
    return task_body(filename, sheet_name=None, epochs=EPOCHS, batch_size=4, evaluation_steps=10)


@pytest.fixture(scope="module")
def reference(data_file: Path, base_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same task run in one go: what every interrupted run must end with."""
    folder = tmp_path_factory.mktemp("reference")
    job = TrainingJob(task_id="reference", training_data_path=str(data_file), validation_data_path=None,
                      base_model=TINY_MODEL, base_models_dir=str(base_models_dir), output_dir=str(folder / "model"),
                      hyperparameters=Hyperparameters.model_validate(body(data_file.name)["hyperparameters"]),
                      report_interval=0.0, cpu_threads=os.cpu_count())
    return run_training(job, lambda _: None, lambda: None).metrics


def assert_same_run(metrics: dict[str, Any], reference: dict[str, Any]) -> None:
    assert len(metrics["history"]) == len(reference["history"])
    for entry, expected in zip(metrics["history"], reference["history"], strict=True):
        assert entry.keys() == expected.keys()
        for key, value in expected.items():
            assert entry[key] == pytest.approx(value, abs=1e-6), (key, entry, expected)
    assert (metrics["best_epoch"], metrics["best_step"]) == (reference["best_epoch"], reference["best_step"])
    assert metrics["val_macro_f1"] == pytest.approx(reference["val_macro_f1"], abs=1e-6)
    assert metrics["confusion_matrix"] == reference["confusion_matrix"]


def epoch_events(history: list[dict[str, Any]]) -> list[int]:
    return [event["data"]["epoch"] for event in history if event["type"] == "epoch"]


@pytest.mark.slow
def test_kill_9_mid_epoch_then_the_task_continues_where_it_was(tmp_path: Path, base_models_dir: Path,
                                                               data_file: Path, reference: dict) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, base_models_dir, tmp_path / "first.log")
    try:
        assert server.upload(data_file)[0] == 201
        _, task = server.request("POST", TASKS, body(data_file.name))
        _, waiting = server.request("POST", TASKS, task_body(data_file.name, sheet_name=None, epochs=1))
        # Mid-epoch, after a checkpoint (every 10 steps with evaluation_steps=10; 24 steps an epoch).
        running = server.wait_for(task["task_id"], lambda t: t["status"] != "training" or (
            t["checkpoint"] is not None and t["progress"]["step"] % 24 != 0), interval=0.02)
        server.process.kill()
        server.process.wait()
        assert running["status"] == "training", "the task ended before it could be interrupted"
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()

    restarted = start_server(data_dir, base_models_dir, tmp_path / "second.log")
    try:
        done = restarted.wait_for(task["task_id"], lambda t: t["status"] in ("completed", "failed"), timeout=120)
        assert done["status"] == "completed", done["error_message"]
        assert done["interruptions"] == 1 and done["checkpoint"] is None  # removed once the task ended
        assert not (data_dir / "checkpoints" / task["task_id"]).exists()
        assert_same_run(done["metrics"], reference)
        _, answer = restarted.request("GET", f"{TASKS}/{task['task_id']}/events?limit=1000")
        history = answer["events"]
        resumed = [event["data"] for event in history if event["type"] == "resumed"]
        # From the newest checkpoint at the kill: the one seen, or one written in the moment after.
        assert len(resumed) == 1 and resumed[0]["step"] >= running["checkpoint"]["step"] >= 10
        assert epoch_events(history) == list(range(1, EPOCHS + 1))  # each epoch recorded (and called back) once
        # It went ahead of the task that was waiting when the server died.
        second = restarted.wait_for(waiting["task_id"], lambda t: t["status"] == "completed")
        assert second["started_at"] >= done["finished_at"]
    finally:
        stop_server(restarted)


@pytest.mark.slow
def test_sigterm_checkpoints_requeues_and_the_next_start_continues(tmp_path: Path, base_models_dir: Path,
                                                                   data_file: Path, reference: dict) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, base_models_dir, tmp_path / "first.log")
    try:
        server.upload(data_file)
        _, task = server.request("POST", TASKS, body(data_file.name))
        server.wait_for(task["task_id"], lambda t: t["progress"]["current_epoch"] >= 2, interval=0.05)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    with sqlite3.connect(data_dir / "bertd.sqlite3") as database:
        status, interruptions, priority = database.execute(
            "SELECT status, interruptions, priority FROM tasks WHERE task_id = ?", (task["task_id"],)).fetchone()
    assert (status, interruptions, priority) == ("queued", 1, 1)
    assert "1 requeued to continue" in server.log()

    restarted = start_server(data_dir, base_models_dir, tmp_path / "second.log")
    try:
        done = restarted.wait_for(task["task_id"], lambda t: t["status"] in ("completed", "failed"), timeout=120)
        assert done["status"] == "completed", done["error_message"]
        assert_same_run(done["metrics"], reference)
        _, answer = restarted.request("GET", f"{TASKS}/{task['task_id']}/events?limit=1000")
        resumed = [event["data"] for event in answer["events"] if event["type"] == "resumed"]
        # The shutdown wrote a checkpoint where it stopped: mid-epoch, not at the last epoch's end.
        assert len(resumed) == 1 and resumed[0]["epoch"] >= 2 and resumed[0]["epoch_complete"] is False
        assert epoch_events(answer["events"]) == list(range(1, EPOCHS + 1))
        # Samples and training time before the shutdown count once: samples/s x seconds is the rows
        # trained, every epoch once (not the restart's wait, nor steps done twice).
        metrics = done["metrics"]
        trained = metrics["samples_per_second"] * metrics["training_seconds"]
        assert trained == pytest.approx(EPOCHS * metrics["train_rows"], rel=0.01)
    finally:
        stop_server(restarted)


async def test_pause_frees_the_slot_and_resume_continues_exactly(make_client, data_file: Path, csv_file: Path,
                                                                 reference: dict) -> None:
    client = await make_client()
    await upload(client, data_file)
    await upload(client, csv_file)
    task_id = (await create(client, body(data_file.name)))["task_id"]
    await wait_for(client, task_id, {"training"}, phase="training")
    response = await client.post(f"{TASKS}/{task_id}/pause")
    answer = await response.json()
    assert response.status == 202 and answer["status"] == "training" and answer["progress"]["phase"] == "pausing"
    assert (await client.post(f"{TASKS}/{task_id}/pause")).status == 409  # already pausing
    paused = await wait_for(client, task_id, {"paused"}, timeout=30)
    assert paused["checkpoint"] is not None and paused["progress"]["phase"] == "paused"
    assert (client.app[CONFIG].checkpoints_dir / task_id).is_dir()

    # The queue moves on while it waits.
    other = (await create(client, task_body(csv_file.name, sheet_name=None, epochs=1)))["task_id"]
    await wait_for(client, other, {"completed"}, timeout=60)
    assert (await get_task(client, task_id))["status"] == "paused"

    resumed = await client.post(f"{TASKS}/{task_id}/resume")
    assert resumed.status == 202 and (await resumed.json())["status"] in ("queued", "training")
    assert (await client.post(f"{TASKS}/{task_id}/resume")).status == 409  # no longer paused
    done = await wait_for(client, task_id, {"completed", "failed"}, timeout=120)
    assert done["status"] == "completed", done["error_message"]
    assert_same_run(done["metrics"], reference)
    history = await events(client, task_id)
    assert epoch_events(history) == list(range(1, EPOCHS + 1))
    statuses = [event["data"]["status"] for event in history if event["type"] == "status"]
    assert statuses == ["queued", "training", "paused", "queued", "training", "completed"]
    assert [event["type"] for event in history].count("resumed") == 1


async def test_a_paused_task_can_be_stopped_or_deleted_and_leaves_no_checkpoint(make_client, data_file: Path,
                                                                                  tmp_path: Path) -> None:
    client = await make_client()
    await upload(client, data_file)
    first = (await create(client, body(data_file.name)))["task_id"]
    second = (await create(client, body(data_file.name)))["task_id"]
    # A queued task pauses at once; a training one after its checkpoint.
    response = await client.post(f"{TASKS}/{second}/pause")
    assert response.status == 202 and (await response.json())["status"] == "paused"
    await wait_for(client, first, {"training"}, phase="training")
    await client.post(f"{TASKS}/{first}/pause")
    await wait_for(client, first, {"paused"}, timeout=30)
    checkpoints = tmp_path / "data" / "checkpoints"
    assert (checkpoints / first).is_dir()

    stopped = await client.post(f"{TASKS}/{first}/stop")
    assert stopped.status == 202 and (await stopped.json())["status"] == "stopped"
    assert not (checkpoints / first).exists()
    assert (await client.delete(f"{TASKS}/{second}")).status == 200
    assert (await client.get(f"{TASKS}/{second}")).status == 404
    assert (await client.post(f"{TASKS}/{first}/pause")).status == 409  # ended


def test_a_half_written_checkpoint_is_never_read_and_a_damaged_one_gives_way(tmp_path: Path) -> None:
    import torch

    from bertd.training import checkpoint

    folder = tmp_path / "checkpoints"
    checkpoint.write(folder, 10, {"weights": torch.ones(3)}, {"epoch": 1, "step": 10})
    # A crash mid-write leaves a .tmp folder; one that finished but got damaged later is unreadable.
    (folder / "step-000000030.tmp").mkdir()
    (folder / "step-000000030.tmp" / "state.pt").write_bytes(b"half")
    damaged = folder / "step-000000020"
    damaged.mkdir()
    (damaged / "checkpoint.json").write_text('{"epoch": 2, "step": 20}')
    (damaged / "state.pt").write_bytes(b"\x80\x04 cut off")
    payload, meta = checkpoint.load_latest(folder)  # type: ignore[misc]
    assert meta == {"epoch": 1, "step": 10} and torch.equal(payload["weights"], torch.ones(3))
    # A new checkpoint replaces everything before it, the leftovers included.
    checkpoint.write(folder, 40, {"weights": torch.zeros(3)}, {"epoch": 3, "step": 40})
    assert sorted(path.name for path in folder.iterdir()) == ["step-000000040"]


def test_a_full_disk_drops_the_checkpoint_and_training_goes_on(tmp_path: Path, data_file: Path,
                                                               base_models_dir: Path, reference: dict) -> None:
    import resource

    job = TrainingJob(task_id="full", training_data_path=str(data_file), validation_data_path=None,
                      base_model=TINY_MODEL, base_models_dir=str(base_models_dir), output_dir=str(tmp_path / "model"),
                      hyperparameters=Hyperparameters.model_validate(body(data_file.name)["hyperparameters"]),
                      report_interval=0.0, cpu_threads=os.cpu_count(), checkpoint_dir=str(tmp_path / "checkpoints"))
    messages: list = []
    # Files over 1 MB cannot be written: a checkpoint (weights and optimiser, ~1.7 MB) fails with
    # EFBIG, the finished model (~0.6 MB) still fits. Python ignores SIGXFSZ, so writes just fail.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        result = run_training(job, messages.append, lambda: None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    failures = [message for message in messages if message.type == "checkpoint_failed"]
    assert failures and all(failure.reason == "File too large" for failure in failures)
    assert not [message for message in messages if message.type == "checkpoint"]
    assert_same_run(result.metrics, reference)  # training itself did not notice
    leftovers = list((tmp_path / "checkpoints").rglob("*")) if (tmp_path / "checkpoints").exists() else []
    assert leftovers == []  # no half-written checkpoint left behind
