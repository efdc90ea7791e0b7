"""Operations: the systemd unit, sd_notify, /metrics, queue cap, upload guards, SSRF guard."""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import aiohttp
import pytest
from processes import start_server, stop_server

from bertd.server.keys import CONFIG

from helpers import TASKS, create, get_task, task_body, upload, wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_file_verifies_without_warnings(tmp_path: Path) -> None:
    unit = (ROOT / "bertd.service").read_text()
    executable = shutil.which("bertd")
    assert executable, "the bertd console script is not installed"
    # Verify the unit as installed: ExecStart must point at an existing executable.
    (tmp_path / "bertd.service").write_text(unit.replace("/opt/bertd/venv/bin/bertd", executable))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "bertd.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stderr
    for setting in ("Type=notify", "KillMode=mixed", "Restart=on-failure", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "StateDirectory=bertd", "EnvironmentFile="):
        assert setting in unit
    assert "PrivateDevices=" not in unit and "MemoryDenyWriteExecute=" not in unit
    timeout = int(next(line for line in unit.splitlines() if line.startswith("TimeoutStopSec=")).split("=")[1])
    assert timeout > 30 + 5  # longer than the default STOP_GRACE_SECONDS plus the kill wait


def test_ready_and_stopping_reach_systemd(tmp_path: Path, base_models_dir: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    try:
        server = start_server(tmp_path / "data", base_models_dir, tmp_path / "server.log", NOTIFY_SOCKET=address)
        try:
            assert listener.recv(4096).decode().startswith("READY=1")
        finally:
            stop_server(server)
        assert listener.recv(4096).decode().startswith("STOPPING=1")
        assert server.process.returncode == 0
    finally:
        listener.close()


async def test_metrics_in_prometheus_format(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    await upload(client, csv_file)
    task_id = (await create(client, task_body(csv_file.name, random_seed=10, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200 and response.content_type.startswith("text/plain")
    assert 'bertd_tasks{status="completed"} 1.0' in text and 'bertd_tasks{status="queued"} 0.0' in text
    assert "bertd_queue_depth 0.0" in text
    assert 'bertd_task_duration_seconds_count{status="completed"} 1.0' in text
    for name in ("bertd_training_samples_per_second", "bertd_callback_failures_total", "bertd_websocket_clients"):
        assert name in text


async def test_the_queue_is_capped(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady", max_queued_tasks=2)
    await upload(client, csv_file)
    body = task_body(csv_file.name, random_seed=400, sheet_name=None)
    first = (await create(client, body))["task_id"]
    await wait_for(client, first, {"training"}, timeout=20)
    await create(client, body)
    await create(client, body)
    refused = await client.post(TASKS, json=body)
    assert refused.status == 429
    assert "MAX_QUEUED_TASKS" in (await refused.json())["error"]["message"]
    assert (await (await client.get(TASKS)).json())["total"] == 3
    for task in (await (await client.get(TASKS)).json())["tasks"]:
        await client.post(f"{TASKS}/{task['task_id']}/stop")


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


async def post_file(client, name: str, content: bytes) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", io.BytesIO(content), filename=name)
    return await client.post("/api/v1/files", data=form)


async def test_zip_bombs_are_refused_before_parsing(make_client) -> None:
    client = await make_client()
    bomb = zip_bytes({"xl/worksheets/sheet1.xml": b"\0" * (60 << 20)})
    response = await post_file(client, "bomb.xlsx", bomb)
    assert response.status == 400
    assert "zip bomb" in (await response.json())["error"]["message"]
    rows = zip_bytes({"xl/worksheets/sheet1.xml": b'<worksheet><dimension ref="A1:C5000000"/></worksheet>'})
    response = await post_file(client, "rows.xlsx", rows)
    assert response.status == 400
    assert "5,000,000 rows" in (await response.json())["error"]["message"]
    assert list(client.app[CONFIG].uploads_dir.iterdir()) == []


async def test_callbacks_to_private_addresses_can_be_refused(make_client, aiohttp_server, csv_file: Path) -> None:
    received: list[bytes] = []

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append(await request.read())
        return aiohttp.web.Response(text="ok")

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    receiver = await aiohttp_server(app)
    client = await make_client(training_function="standin:steady", callback_block_private=True)
    await upload(client, csv_file)
    body = {**task_body(csv_file.name, random_seed=10, sheet_name=None), "callback_url": str(receiver.make_url("/hook"))}
    task_id = (await create(client, body))["task_id"]
    await wait_for(client, task_id, {"completed"}, timeout=20)
    for _ in range(100):
        task = await get_task(client, task_id)
        if task["callback"] and task["callback"]["event"] == "task.completed":
            break
        await asyncio.sleep(0.05)
    assert received == []
    assert task["callback"]["status"] == "failed" and task["callback"]["attempts"] == 1
    assert "non-public address 127.0.0.1" in task["callback"]["last_error"]


async def test_no_new_tasks_while_shutting_down(make_client, csv_file: Path) -> None:
    from bertd.server.keys import SCHEDULER

    client = await make_client(training_function="standin:steady")
    await upload(client, csv_file)
    client.app[SCHEDULER].begin_shutdown()
    response = await client.post(TASKS, json=task_body(csv_file.name, sheet_name=None))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"
    assert (await (await client.get(TASKS)).json())["total"] == 0


def test_listening_openly_without_a_token_warns() -> None:
    from loguru import logger

    from bertd.server.auth import warn_if_exposed
    from bertd.server.config import Config

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        warn_if_exposed(Config(host="0.0.0.0"))
        warn_if_exposed(Config(host="127.0.0.1"))
        warn_if_exposed(Config(host="0.0.0.0", api_token="t"))
    finally:
        logger.remove(sink)
    assert len(messages) == 1 and "without API_TOKEN" in messages[0]
