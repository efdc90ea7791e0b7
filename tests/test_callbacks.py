"""Callbacks to a real local HTTP endpoint: retries, recorded outcome, signatures, failures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from pathlib import Path

from aiohttp import web

from helpers import create, events, get_task, task_body, upload, wait_for

STEADY = "standin:steady"


class Receiver:
    """A callback endpoint that answers 500 to its first `fail_first` requests, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append((json.loads(raw), dict(request.headers), raw))
        if len(self.requests) <= self.fail_first:
            return web.Response(status=500, text="not yet")
        return web.Response(text="ok")

    def events(self) -> list[str]:
        return [body["event"] for body, _, _ in self.requests]


async def start_receiver(aiohttp_server, receiver: Receiver) -> str:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


async def wait_until(condition, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_callback_is_retried_after_a_failure_and_recorded(make_client, aiohttp_server, csv_file: Path) -> None:
    receiver = Receiver(fail_first=1)
    url = await start_receiver(aiohttp_server, receiver)
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    body = {**task_body(csv_file.name, random_seed=10, sheet_name=None), "callback_url": url}
    task_id = (await create(client, body))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    await wait_until(lambda: "task.completed" in receiver.events())

    # The epoch callback failed once (500), was retried, then the terminal one followed in order.
    assert receiver.events() == ["task.epoch", "task.epoch", "task.completed"]
    epoch_body = receiver.requests[1][0]
    assert epoch_body["task_id"] == task_id and epoch_body["epoch"] == 1
    assert epoch_body["metrics"]["val_macro_f1"] == 1.0
    final = receiver.requests[2][0]
    assert final["task"]["task_id"] == task_id and final["task"]["status"] == "completed"
    assert "webhook-signature" not in receiver.requests[2][1]

    task = await get_task(client, task_id)
    assert task["status"] == "completed"
    assert task["callback"] == {"status": "delivered", "attempts": 1, "last_error": None, "event": "task.completed"}
    attempts = [e["data"] for e in await events(client, task_id) if e["type"] == "callback"]
    assert [(a["event"], a["attempt"], a["ok"]) for a in attempts] == [
        ("task.epoch", 1, False), ("task.epoch", 2, True), ("task.completed", 1, True)]
    assert attempts[0]["error"] == "HTTP 500"


async def test_callbacks_are_signed_with_the_secret(make_client, aiohttp_server, csv_file: Path) -> None:
    receiver = Receiver()
    url = await start_receiver(aiohttp_server, receiver)
    client = await make_client(training_function=STEADY, callback_secret="s3cret-键")
    await upload(client, csv_file)
    body = {**task_body(csv_file.name, random_seed=10, sheet_name=None), "callback_url": url}
    await create(client, body)
    await wait_until(lambda: "task.completed" in receiver.events())
    for _, headers, raw in receiver.requests:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
        expected = base64.b64encode(hmac.new("s3cret-键".encode(), signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{expected}"


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def test_a_failing_callback_never_changes_the_task(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY, callback_max_attempts=2)
    await upload(client, csv_file)
    body = {**task_body(csv_file.name, random_seed=10, sheet_name=None), "callback_url": closed_port_url()}
    task_id = (await create(client, body))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    for _ in range(100):
        task = await get_task(client, task_id)
        if task["callback"] and task["callback"]["event"] == "task.completed" and task["callback"]["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    assert task["status"] == "completed"
    assert task["callback"]["status"] == "failed" and task["callback"]["attempts"] == 2
    assert task["callback"]["last_error"]
    # Meanwhile the service answers as usual.
    assert (await client.get("/api/v1/health")).status == 200
