"""Base models through the API, against a real server and the stand-in hub (bertd.testing.hub_standin):
listing, pulling (with a drop half-way), 409s, deleting, and tasks that wait for their base model."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType

from bertd.testing.hub_standin import HubStandin, run_hub_standin

from helpers import TASKS, create, events, get_task, task_body, upload, wait_for

MODEL = "google-bert/bert-base-chinese"
WEIGHTS = "model.safetensors"
BASE_MODELS = "/api/v1/base-models"


@pytest.fixture
def own_base_models_dir(tmp_path: Path, base_models_dir: Path) -> Path:
    """A BASE_MODELS_DIR of this test's own (pulls write there), with the tiny model as tiny-bert."""
    directory = tmp_path / "base_models"
    directory.mkdir()
    (directory / "tiny-bert").symlink_to(base_models_dir / "tiny-bert", target_is_directory=True)
    return directory


@pytest.fixture
def repo(base_models_dir: Path) -> Path:
    """What the stand-in hub serves: the tiny test model, whose vocabulary covers the test data."""
    return base_models_dir / "tiny-bert"


async def base_model_messages(socket, name: str, until: set[str], timeout: float = 60) -> list[dict[str, Any]]:
    """The `base_model` messages of `name` on /api/v1/ws until one has a status in `until`."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await socket.receive(timeout=deadline - time.monotonic())
        assert message.type == WSMsgType.TEXT, message
        body = message.json()
        if body["type"] == "base_model" and body["name"] == name:
            seen.append(body)
            if body["status"] in until:
                return seen
    raise AssertionError(f"no {until} message for {name} in {timeout} s: {seen[-3:]}")


async def listing(client) -> dict[str, dict[str, Any]]:
    response = await client.get(BASE_MODELS)
    assert response.status == 200
    return {entry["name"]: entry for entry in (await response.json())["base_models"]}


async def test_a_pull_resumes_a_dropped_connection_and_lists_the_model(make_client, hub_online: Path, repo: Path,
                                                                        own_base_models_dir: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    size = (repo / WEIGHTS).stat().st_size
    async with run_hub_standin({MODEL: repo}, chunk_delay=0.01, chunk_size=16 * 1024) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        client = await make_client(base_models_dir=own_base_models_dir, base_model_download_backoff_seconds=0.05)
        before = await listing(client)
        assert list(before) == ["tiny-bert"] and before["tiny-bert"]["status"] == "ready"
        assert before["tiny-bert"]["source"] == "local" and before["tiny-bert"]["hidden_size"] == 64

        hub.drop_connection(WEIGHTS, after_bytes=size // 2)
        async with client.ws_connect("/api/v1/ws") as socket:
            snapshot = await socket.receive_json(timeout=10)
            assert snapshot["type"] == "snapshot" and snapshot["base_models"] == []
            response = await client.post(BASE_MODELS, json={"name": MODEL})
            started = await response.json()
            assert response.status == 202, started
            assert started["status"] == "downloading" and started["source"] == "huggingface"
            assert started["path"] == str(own_base_models_dir / "google-bert" / "bert-base-chinese")
            assert hub.url in started["message"]

            again = await client.post(BASE_MODELS, json={"name": MODEL, "source": "huggingface"})
            assert again.status == 409 and (await again.json())["error"]["code"] == "conflict"
            during = (await listing(client))[MODEL]
            assert during["status"] == "downloading" and during["error_message"] is None

            messages = await base_model_messages(socket, MODEL, {"ready", "failed"})
        final = messages[-1]
        assert final["status"] == "ready", final
        progress = [m["bytes_done"] for m in messages if m["status"] == "downloading"]
        assert progress and progress == sorted(progress) and max(progress) < final["size_bytes"]
        stats = hub.stats(MODEL, WEIGHTS)
        assert stats.drops == 1 and stats.ranges[0] is None and stats.ranges[-1] is not None  # resumed

    entry = (await listing(client))[MODEL]
    assert entry == {key: value for key, value in final.items() if key not in ("type", "at")}
    assert (entry["status"], entry["source"], entry["location"]) == ("ready", "huggingface", "base_models_dir")
    config = json.loads((repo / "config.json").read_text(encoding="utf-8"))
    assert (entry["hidden_size"], entry["num_layers"], entry["vocab_size"]) == (64, 2, config["vocab_size"])
    assert entry["parameters"] > 0 and entry["size_bytes"] > size and entry["revision"] == hub.commit_sha(MODEL)
    assert (entry["bytes_done"], entry["bytes_total"], entry["error_message"]) == (None, None, None)
    present = await client.post(BASE_MODELS, json={"name": MODEL})
    assert present.status == 200 and "already on this server" in (await present.json())["message"]


async def test_a_task_waits_for_its_base_model_without_holding_up_the_queue(
        make_client, hub_online: Path, repo: Path, own_base_models_dir: Path, csv_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tasks on the missing model share one download; a task behind them on a model that is
    here trains meanwhile (one slot); then both train, from the downloaded model, in their order."""
    # 2 s between chunks: the download lasts until the test lets it go (chunk_delay 0 below).
    async with run_hub_standin({MODEL: repo}, chunk_delay=2.0, chunk_size=16 * 1024) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        client = await make_client(base_models_dir=own_base_models_dir, max_concurrent_tasks=1)
        assert (await upload(client, csv_file)).status == 201
        body = {**task_body(csv_file.name, sheet_name=None, epochs=1), "base_model": MODEL}
        first = await create(client, body)
        assert first["status"] == "queued" and first["progress"]["phase"] == "downloading_base_model"
        assert "waits for base model" in first["message"]
        second = await create(client, body)
        assert second["progress"]["phase"] == "downloading_base_model"
        behind = await create(client, task_body(csv_file.name, sheet_name=None, epochs=1))

        # The task behind trains while the first two wait: they hold no slot.
        done = await wait_for(client, behind["task_id"], {"completed", "failed"}, timeout=120)
        assert done["status"] == "completed", done["error_message"]
        waiting = await get_task(client, first["task_id"])
        assert waiting["status"] == "queued" and waiting["progress"]["phase"] == "downloading_base_model"
        assert waiting["progress"]["download_bytes_total"] > waiting["progress"]["download_bytes_done"] > 0

        hub.chunk_delay = 0.0
        ended = [await wait_for(client, task["task_id"], {"completed", "failed"}, timeout=120)
                 for task in (first, second)]
        assert [task["status"] for task in ended] == ["completed", "completed"], [t["error_message"] for t in ended]
        assert ended[0]["started_at"] <= ended[1]["started_at"]
        assert ended[0]["metrics"]["train_rows"] > 0
        assert hub.stats(MODEL, WEIGHTS).get_requests == 1  # one download for both
    assert (own_base_models_dir / "google-bert" / "bert-base-chinese" / WEIGHTS).is_file()
    history = [e["data"]["status"] for e in await events(client, first["task_id"]) if e["type"] == "status"]
    assert history == ["queued", "training", "completed"]


async def test_a_missing_repository_fails_its_tasks_with_the_hub_the_id_and_what_to_do(
        make_client, hub_online: Path, repo: Path, own_base_models_dir: Path, csv_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_hub_standin({MODEL: repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        client = await make_client(base_models_dir=own_base_models_dir, training_function="standin:steady")
        assert (await upload(client, csv_file)).status == 201
        task = await create(client, {**task_body(csv_file.name, sheet_name=None), "base_model": "nobody/no-such-bert"})
        failed = await wait_for(client, task["task_id"], {"failed", "completed"}, timeout=30)
    assert failed["status"] == "failed" and failed["progress"]["phase"] == "failed"
    error = failed["error"]
    assert error["code"] == "base_model_download_failed"
    assert error["message"] == (f"could not download 'nobody/no-such-bert' from the Hugging Face Hub at {hub.url}: "
                                "no such repository (or it is private and no valid token was sent)")
    assert "HF_ENDPOINT" in error["hint"] and "HF_TOKEN" in error["hint"]
    assert failed["error_message"] == f"{error['message']}; {error['hint']}"
    listed = (await listing(client))["nobody/no-such-bert"]
    assert listed["status"] == "failed" and listed["error"]["code"] == "not_found"
    assert listed["error_message"] == failed["error_message"]
    # A failed download is forgotten by DELETE (no task uses it any more).
    removed = await client.delete(f"{BASE_MODELS}/nobody%2Fno-such-bert")
    assert removed.status == 200 and "nobody/no-such-bert" not in await listing(client)


async def test_without_auto_download_a_missing_model_is_a_400_naming_the_available_ones(
        make_client, own_base_models_dir: Path, csv_file: Path) -> None:
    client = await make_client(base_models_dir=own_base_models_dir, auto_download_base_models=False)
    assert (await upload(client, csv_file)).status == 201
    response = await client.post(TASKS, json={**task_body(csv_file.name, sheet_name=None),
                                              "base_model": "bert-base-chinese"})
    payload = await response.json()
    assert response.status == 400, payload
    error = payload["error"]
    assert error["details"] == {"field": "base_model", "available": ["tiny-bert"]}
    assert error["message"].startswith("base_model 'bert-base-chinese' is not on this server and "
                                       "AUTO_DOWNLOAD_BASE_MODELS is false; available base models: tiny-bert; ")
    for advice in ("bertd pull bert-base-chinese", "POST /api/v1/base-models", "HF_ENDPOINT=https://hf-mirror.com",
                   "BASE_MODELS_DIR/bert-base-chinese"):
        assert advice in error["message"]
    assert (await (await client.get(TASKS)).json())["total"] == 0


async def test_offline_a_missing_model_is_a_400_too(make_client, own_base_models_dir: Path, csv_file: Path) -> None:
    # conftest keeps huggingface_hub offline (HF_HUB_OFFLINE=1): auto-download cannot help.
    client = await make_client(base_models_dir=own_base_models_dir)
    assert (await upload(client, csv_file)).status == 201
    response = await client.post(TASKS, json={**task_body(csv_file.name, sheet_name=None), "base_model": "x-bert"})
    error = (await response.json())["error"]
    assert response.status == 400 and "HF_HUB_OFFLINE=1" in error["message"] and "tiny-bert" in error["message"]


async def test_delete_refuses_while_a_task_uses_the_model(make_client, own_base_models_dir: Path, repo: Path,
                                                          csv_file: Path) -> None:
    nested = own_base_models_dir / "org" / "copied"
    nested.parent.mkdir()
    nested.symlink_to(repo, target_is_directory=True)  # a folder copied in by hand, with an organisation
    client = await make_client(base_models_dir=own_base_models_dir, training_function="standin:steady")
    assert (await upload(client, csv_file)).status == 201
    listed = (await listing(client))["org/copied"]
    assert (listed["status"], listed["source"], listed["path"]) == ("ready", "local", str(nested))

    task = await create(client, {**task_body(csv_file.name, sheet_name=None, random_seed=300), "base_model": "org/copied"})
    refused = await client.delete(f"{BASE_MODELS}/org%2Fcopied")
    payload = await refused.json()
    assert refused.status == 409 and payload["error"]["details"] == {"task_ids": [task["task_id"]]}
    assert nested.exists()
    await client.post(f"{TASKS}/{task['task_id']}/stop")
    await wait_for(client, task["task_id"], {"stopped"})

    deleted = await client.delete(f"{BASE_MODELS}/org/copied")  # the slash as is works too
    assert deleted.status == 200 and (await deleted.json())["deleted"] is True
    assert not nested.exists() and "org/copied" not in await listing(client)
    assert [p.name for p in (own_base_models_dir / "org").iterdir()] == []  # no hidden leftovers
    for name in ("org/copied", "nothing", "..%2Fetc", "x.partial"):
        missing = await client.delete(f"{BASE_MODELS}/{name}")
        assert missing.status == 404, name


async def test_pull_requests_are_validated(make_client, own_base_models_dir: Path) -> None:
    client = await make_client(base_models_dir=own_base_models_dir)
    for body, field in (({"name": "../etc"}, "name"), ({"name": "a/b/c"}, "name"), ({}, "name"),
                        ({"name": "x", "source": "github"}, "source"), ({"name": "x", "revision": ""}, "revision"),
                        ({"name": "x", "extra": 1}, "extra")):
        response = await client.post(BASE_MODELS, json=body)
        error = (await response.json())["error"]
        assert response.status == 400 and field in error["message"], (body, error)
    assert list(await listing(client)) == ["tiny-bert"]


async def test_a_download_cut_by_a_restart_resumes_at_the_next_start(make_client, hub_online: Path, repo: Path,
                                                                     own_base_models_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    size = (repo / WEIGHTS).stat().st_size
    async with run_hub_standin({MODEL: repo}, chunk_delay=0.2, chunk_size=16 * 1024) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        client = await make_client(base_models_dir=own_base_models_dir)
        assert (await client.post(BASE_MODELS, json={"name": MODEL})).status == 202
        await wait_for_bytes(client, hub, size // 4)
        await client.close()  # the server shuts down mid-download

        partial = own_base_models_dir / "google-bert" / "bert-base-chinese.partial"
        assert partial.is_dir()
        hub.chunk_delay = 0.0
        client = await make_client(base_models_dir=own_base_models_dir)
        async with client.ws_connect("/api/v1/ws") as socket:
            snapshot = await socket.receive_json(timeout=10)
            resumed = [entry for entry in snapshot["base_models"] if entry["name"] == MODEL]
            if resumed and resumed[0]["status"] != "ready":
                await base_model_messages(socket, MODEL, {"ready", "failed"})
        entry = (await listing(client))[MODEL]
        assert entry["status"] == "ready", entry
        ranges = hub.stats(MODEL, WEIGHTS).ranges
        assert ranges[0] is None and ranges[-1] is not None and not partial.exists()


async def wait_for_bytes(client, hub: HubStandin, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.stats(MODEL, WEIGHTS).bytes_sent >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the download did not get going")
