"""WebSocket streams against the real server: lifecycle order, joins, back-pressure, global stream."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType

from bertd.api.ws_frame import text_frame
from bertd.api.ws_socket import CLOSE_TOO_SLOW, SocketSubscriber, TaskStreamEnd
from bertd.runtime.hub import Hub
from bertd.runtime.mailbox import Mailbox, SubscriberTooSlow
from bertd.server.keys import HUB

from helpers import TASKS, create, task_body, upload, wait_for

STEADY = "standin:steady"
LIFECYCLE = ["queued", "training", "completed"]


async def collect(client, path: str, until_end_of: str | None = None, timeout: float = 60.0):
    """Every message until the server closes (or, on the global stream, until `end` of a task)."""
    messages, arrivals = [], []
    async with client.ws_connect(path) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await ws.receive(timeout=deadline - time.monotonic())
            if message.type != WSMsgType.TEXT:
                break
            body = message.json()
            messages.append(body)
            arrivals.append(time.monotonic())
            if until_end_of and body["type"] == "end" and body["task_id"] == until_end_of:
                break
        close_code = ws.close_code
    return messages, arrivals, close_code


def check_task_stream(messages: list[dict], close_code: int | None) -> None:
    assert messages[0]["type"] == "snapshot" and messages[-1]["type"] == "end"
    assert close_code == 1000
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs)), "seq must increase, no duplicates"
    assert all(seq > messages[0]["seq"] for seq in seqs[1:])
    statuses = [messages[0]["task"]["status"]] + [m["status"] for m in messages if m["type"] == "status"]
    start = LIFECYCLE.index(statuses[0])
    assert statuses == LIFECYCLE[start:], statuses
    assert messages[-1]["task"]["status"] == "completed"


async def test_fifty_clients_see_the_whole_lifecycle_in_order(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=60, sheet_name=None)))["task_id"]
    results = await asyncio.gather(*(collect(client, f"{TASKS}/{task_id}/ws") for _ in range(50)))
    not_progress: set[int] = set()
    for messages, _, close_code in results:
        check_task_stream(messages, close_code)
        not_progress |= {m["seq"] for m in messages[1:] if m["type"] != "progress"}
    for messages, _, _ in results:
        # Only progress may be coalesced: every other message after the snapshot reached everyone.
        expected = {seq for seq in not_progress if seq > messages[0]["seq"]}
        assert expected <= {m["seq"] for m in messages}
        assert sum(m["type"] == "epoch" for m in messages) <= 1


async def test_joining_mid_training_and_after_the_end(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=100, sheet_name=None)))["task_id"]
    for _ in range(200):
        task = await wait_for(client, task_id, {"training"}, phase="training", timeout=20)
        if task["progress"]["step"] >= 3:
            break
        await asyncio.sleep(0.05)
    messages, _, close_code = await collect(client, f"{TASKS}/{task_id}/ws")
    check_task_stream(messages, close_code)
    snapshot = messages[0]["task"]
    assert snapshot["status"] == "training" and snapshot["progress"]["step"] >= 3
    live_steps = [m["step"] for m in messages if m["type"] == "progress"]
    assert live_steps and live_steps[0] > snapshot["progress"]["step"] - 1

    after, _, close_code = await collect(client, f"{TASKS}/{task_id}/ws")
    assert [m["type"] for m in after] == ["snapshot", "end"] and close_code == 1000
    assert after[0]["task"]["status"] == "completed" and after[1]["task"]["metrics"]["val_macro_f1"] == 1.0


async def test_unknown_task_is_404_before_the_upgrade(make_client) -> None:
    client = await make_client()
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await client.ws_connect(f"{TASKS}/nope/ws")
    assert error.value.status == 404
    assert client.app[HUB].subscriber_count == 0  # the refused client left no subscription behind


async def test_global_stream_carries_task_ids(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    async with client.ws_connect("/api/v1/ws") as ws:
        first = await ws.receive_json(timeout=10)
        assert first == {"type": "snapshot", "tasks": [], "predictions": [], "base_models": []}
        task_id = (await create(client, task_body(csv_file.name, random_seed=10, sheet_name=None)))["task_id"]
        seen = []
        while not seen or seen[-1]["type"] != "end":
            seen.append(await ws.receive_json(timeout=30))
    assert all(message["task_id"] == task_id for message in seen)
    assert [m["status"] for m in seen if m["type"] == "status"] == LIFECYCLE
    assert {"progress", "epoch", "status", "end"} <= {m["type"] for m in seen}


def stalled_client(port: int, path: str) -> socket.socket:
    """A raw WebSocket client that completes the handshake and then never reads."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, so the window stays small
    raw.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return raw


async def test_a_stalled_reader_is_closed_and_does_not_delay_others(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:chatty", ws_queue_limit=16, ws_send_timeout_seconds=3.0)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=1500, sheet_name=None)))["task_id"]
    slow = stalled_client(client.port, f"{TASKS}/{task_id}/ws")
    try:
        messages, arrivals, close_code = await collect(client, f"{TASKS}/{task_id}/ws")
        assert close_code == 1000 and messages[-1]["type"] == "end"
        epochs = [m["epoch"] for m in messages if m["type"] == "epoch"]
        assert epochs == list(range(epochs[0], 1501))  # the fast client missed nothing
        gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
        assert max(gaps) < 1.5, f"a fast client waited {max(gaps):.2f} s between two messages"

        # The server gave up on the stalled client: its handler ended, and reading now drains
        # what was buffered, then EOF.
        hub = client.app[HUB]
        for _ in range(150):
            if hub.subscriber_count == 0:
                break
            await asyncio.sleep(0.1)
        assert hub.subscriber_count == 0
        slow.setblocking(False)
        received = b""
        loop = asyncio.get_running_loop()
        while chunk := await asyncio.wait_for(loop.sock_recv(slow, 1 << 20), 10):
            received += chunk
        assert len(received) < 1500 * 16000, "the server kept sending everything to a stalled client"
    finally:
        slow.close()


def test_a_mailbox_coalesces_progress_and_overflows_on_the_rest() -> None:
    hub = Hub()
    mailbox = Mailbox("t", limit=4)
    hub.subscribe(mailbox)
    for step in range(10):
        hub.publish("t", {"type": "progress", "step": step})
    assert len(mailbox.pending()) == 1 and mailbox.coalesced == 9
    hub.publish("t", {"type": "status", "status": "training"})
    hub.publish("t", {"type": "progress", "step": 10})
    assert [m.get("step", m.get("status")) for m in mailbox.pending()] == ["training", 10]
    for epoch in range(3):
        hub.publish("t", {"type": "epoch", "epoch": epoch})
    assert mailbox.too_slow
    with pytest.raises(SubscriberTooSlow):
        mailbox.take()
    assert CLOSE_TOO_SLOW == 4008


def test_snapshot_state_and_seq_come_from_the_same_instant() -> None:
    hub = Hub()
    hub.publish("t", {"type": "status", "status": "queued"})
    hub.publish("t", {"type": "progress", "step": 1})
    mailbox = Mailbox("t", limit=16)
    states = hub.subscribe(mailbox)
    assert states["t"].seq == 2 and states["t"].status == "queued" and states["t"].progress == {"step": 1}
    message = hub.publish("t", {"type": "status", "status": "training"})
    assert message["seq"] == 3 and len(mailbox.pending()) == 1
    hub.publish("t", {"type": "end", "task": {}})
    assert hub.subscribe(Mailbox("t", limit=16)) == {}  # an ended task has no live state: the database has it all


async def test_idle_connections_get_pings(make_client) -> None:
    client = await make_client(ws_heartbeat_seconds=0.2)
    async with client.ws_connect("/api/v1/ws", autoping=False) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
        message = await ws.receive(timeout=5)
        assert message.type == WSMsgType.PING
        await ws.pong(message.data)


async def test_shutdown_closes_every_socket_with_1001(make_client) -> None:
    client = await make_client()
    sockets = [await client.ws_connect("/api/v1/ws") for _ in range(3)]
    for ws in sockets:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
    await client.server.close()
    for ws in sockets:
        message = await ws.receive(timeout=5)
        assert message.type == WSMsgType.CLOSE and message.data == 1001
        await ws.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_text_frames_follow_rfc_6455(size: int) -> None:
    text = "界" * (size // 3) + "a" * (size % 3)  # multi-byte UTF-8: the length is in bytes
    frame = text_frame(text)
    payload = text.encode()
    assert frame[0] == 0x81  # FIN, text
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size and frame[4:] == payload
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size and frame[10:] == payload


class FakeTransport:
    """Stands in for a connection's transport: records frames, or reports a full buffer."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.full = False

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 1 << 20 if self.full else 0

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)


async def test_a_keeping_up_subscriber_is_written_to_directly_and_order_holds() -> None:
    from aiohttp import web

    hub = Hub()
    transport = FakeTransport()
    socket = web.WebSocketResponse()
    subscriber = SocketSubscriber("t", socket, transport, queue_limit=16, send_timeout=1.0, ending=TaskStreamEnd())
    hub.subscribe(subscriber)
    sent: list[int] = []

    async def send_str(text: str) -> None:
        import json

        sent.append(json.loads(text)["seq"])

    async def close(**_: object) -> None:
        sent.append(-1)

    socket.send_str = send_str  # type: ignore[method-assign]
    socket.close = close  # type: ignore[method-assign]

    def written() -> list[int]:
        import json

        return [json.loads(frame[2:])["seq"] for frame in transport.frames]

    hub.publish("t", {"type": "progress", "step": 0})  # before the sender runs: queued, sent by it
    sender = asyncio.create_task(subscriber.run([]))
    await asyncio.sleep(0.01)
    assert sent == [1] and written() == []
    hub.publish("t", {"type": "progress", "step": 1})
    hub.publish("t", {"type": "status", "status": "training"})
    assert written() == [2, 3] and subscriber.mailbox.pending() == []  # the sender is idle: direct writes
    transport.full = True  # the client is behind: messages queue
    hub.publish("t", {"type": "epoch", "epoch": 1})
    transport.full = False
    hub.publish("t", {"type": "progress", "step": 2})  # behind a queued message: must queue too
    assert written() == [2, 3] and [m["seq"] for m in subscriber.mailbox.pending()] == [4, 5]
    await asyncio.sleep(0.01)
    assert sent == [1, 4, 5]  # the sender took the queue, in order
    hub.publish("t", {"type": "end", "task": {}})  # written directly; the sender is woken to close
    await asyncio.wait_for(sender, 1)
    assert written() == [2, 3, 6] and sent == [1, 4, 5, -1]


async def test_a_plain_get_of_a_websocket_route_is_a_documented_400(make_client, csv_file: Path) -> None:
    client = await make_client(training_function=STEADY)
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, sheet_name=None)))["task_id"]
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path, documented in (("/api/v1/ws", "/api/v1/ws"), (f"{TASKS}/{task_id}/ws", "/api/v1/training/tasks/{task_id}/ws")):
        response = await client.get(path)
        error = (await response.json())["error"]
        assert response.status == 400 and error["code"] == "websocket_required", error
        assert path in error["message"] and "WebSocket client" in error["message"]
        assert "400" in document["paths"][documented]["get"]["responses"]
    missing = await client.get(f"{TASKS}/nope/ws")
    assert missing.status == 404
