"""The store directly: every status change is a guarded UPDATE, and a refused one changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bertd.protocol import Hyperparameters
from bertd.state.db import open_database
from bertd.state.records import ALLOWED_TRANSITIONS, FileRecord, TaskRecord, TaskStatus, sources_of, utc_now
from bertd.state.store import Store


@pytest.fixture
async def store(tmp_path: Path):
    opened = Store(await open_database(tmp_path / "bertd.sqlite3"))
    await opened.insert_file(FileRecord("a.csv", 1, "0" * 64, utc_now(), []))
    yield opened
    await opened.close()


async def new_task(store: Store, task_id: str) -> TaskRecord:
    return await store.insert_task(TaskRecord(
        seq=0, task_id=task_id, status=TaskStatus.QUEUED, model_name_cn="模型", model_name_en="m", base_model="b",
        training_data_file="a.csv", validation_data_file=None, hyperparameters=Hyperparameters(), callback_url=None,
        created_at=utc_now()), max_queued=10)


async def test_a_refused_transition_changes_nothing(store: Store) -> None:
    task = await new_task(store, "t1")
    before = await store.list_events("t1", 0, 100)
    # queued -> completed skips training: not allowed, whatever else is set with it.
    assert await store.transition("t1", TaskStatus.COMPLETED, error_message="x", finished_at=utc_now()) is None
    assert await store.get_task("t1") == task
    assert await store.list_events("t1", 0, 100) == before

    training = await store.transition("t1", TaskStatus.TRAINING, started_at=utc_now())
    assert training is not None and training.status == TaskStatus.TRAINING
    ended = await store.transition("t1", TaskStatus.FAILED, error_message="boom", finished_at=utc_now())
    assert ended is not None and ended.error_message == "boom"
    # An ended task stays ended: every later move is refused, and records no event.
    count = len(await store.list_events("t1", 0, 100))
    for target in TaskStatus:
        assert await store.transition("t1", target) is None
    assert (await store.get_task("t1")).status == TaskStatus.FAILED  # type: ignore[union-attr]
    assert len(await store.list_events("t1", 0, 100)) == count


async def test_two_claims_of_one_task_give_it_to_exactly_one(store: Store) -> None:
    await new_task(store, "t2")
    outcomes = await asyncio.gather(*(store.transition("t2", TaskStatus.TRAINING, started_at=utc_now())
                                      for _ in range(5)))
    assert sum(outcome is not None for outcome in outcomes) == 1
    statuses = [event.data["status"] for event in await store.list_events("t2", 0, 100)]
    assert statuses == ["queued", "training"]


def test_the_transition_table_is_what_the_contract_says() -> None:
    assert sources_of(TaskStatus.TRAINING) == (TaskStatus.QUEUED,)
    assert set(sources_of(TaskStatus.PAUSED)) == {TaskStatus.QUEUED, TaskStatus.TRAINING}
    assert set(sources_of(TaskStatus.STOPPED)) == {TaskStatus.QUEUED, TaskStatus.TRAINING, TaskStatus.STOPPING,
                                                   TaskStatus.PAUSED}
    # Back to the queue: a paused task resumed, or a training one a restart interrupted.
    assert set(sources_of(TaskStatus.QUEUED)) == {TaskStatus.PAUSED, TaskStatus.TRAINING}
    assert all(not ALLOWED_TRANSITIONS[status] for status in (TaskStatus.COMPLETED, TaskStatus.FAILED,
                                                             TaskStatus.STOPPED))
