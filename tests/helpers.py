"""Small client-side helpers shared by the tests: what a user of the API would write."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

TASKS = "/api/v1/training/tasks"


async def upload(client: TestClient, path: Path, name: str | None = None) -> aiohttp.ClientResponse:
    # quote_fields=False sends the UTF-8 filename as curl and browsers do.
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", path.read_bytes(), filename=name or path.name)
    return await client.post("/api/v1/files", data=form)


def task_body(filename: str, **hyperparameters: Any) -> dict[str, Any]:
    settings = {
        "text_column": "内容",
        "label_column": "标签",
        "sheet_name": "data",
        "epochs": 6,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "max_sequence_length": 32,
    }
    settings.update(hyperparameters)
    return {
        "model_name_cn": "空气污染分类",
        "model_name_en": "air-pollution",
        "training_data_file": filename,
        "base_model": "tiny-bert",
        "hyperparameters": settings,
    }


async def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(TASKS, json=body)
    payload = await response.json()
    assert response.status == 201, payload
    return payload


async def get_task(client: TestClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{TASKS}/{task_id}")
    assert response.status == 200
    return await response.json()


async def wait_for(
    client: TestClient, task_id: str, statuses: set[str], timeout: float = 90.0, phase: str | None = None
) -> dict[str, Any]:
    """Poll until the task reaches one of `statuses` (and `phase`, if given)."""
    deadline = time.monotonic() + timeout
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = await get_task(client, task_id)
        if task["status"] in statuses and (phase is None or task["progress"]["phase"] == phase):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not reach {statuses} (phase {phase}) in {timeout} s; last: {task}")


async def events(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{TASKS}/{task_id}/events", params={"limit": 1000})
    assert response.status == 200
    return (await response.json())["events"]


def predictions_path(task_id: str, prediction_id: str = "", suffix: str = "") -> str:
    return f"{TASKS}/{task_id}/predictions" + (f"/{prediction_id}" if prediction_id else "") + suffix


async def create_prediction(client: TestClient, task_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(predictions_path(task_id), json=body)
    payload = await response.json()
    assert response.status == 202, payload
    return payload


async def wait_for_prediction(client: TestClient, task_id: str, prediction_id: str, statuses: set[str],
                              timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(predictions_path(task_id, prediction_id))
        assert response.status == 200
        job = await response.json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"prediction {prediction_id} did not reach {statuses} in {timeout} s; last: {job}")
