"""The browser guard over plain HTTP: Host validation (DNS rebinding), Origin and Sec-Fetch-Site on
writes and WebSockets (cross-site requests), CORS for ALLOWED_ORIGINS, tickets in URLs, and the
settings' parsing. The same attacks from a real Chromium page: tests/test_browser_security.py."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from bertd.server.config import ConfigError, load_config
from bertd.server.keys import CONFIG, TICKETS
from bertd.server.origins import normalize_origin, split_host_header
from bertd.server.tickets import TicketBook

from helpers import TASKS, create, get_task, task_body, upload, wait_for

TOKEN = "correct-horse-battery"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
EVIL = "http://evil.example"
WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def running_task(client, csv_file: Path) -> str:
    """A stand-in task that trains for about 40 s (random_seed = milliseconds per step, 20 steps)."""
    assert (await upload(client, csv_file)).status == 201
    task_id = (await create(client, task_body(csv_file.name, random_seed=2000, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"training"}, timeout=30)
    return task_id


async def error_of(response: aiohttp.ClientResponse) -> dict:
    return (await response.json())["error"]


# ---------------------------------------------------------------- Host (DNS rebinding)

async def test_an_unknown_host_is_refused_before_any_handler(make_client, csv_file: Path) -> None:
    client = await make_client()
    port = client.server.port
    for path in ("/", "/api/v1/health", "/api/v1/openapi.json", TASKS, "/static/app.js", "/no/such/route"):
        response = await client.get(path, headers={"Host": f"attacker.example:{port}"})
        assert response.status == 403, path
        error = await error_of(response)
        assert error["code"] == "host_not_allowed"
        assert "'attacker.example'" in error["message"] and "ALLOWED_HOSTS" in error["message"]
        assert error["details"] == {"host": "attacker.example", "setting": "ALLOWED_HOSTS"}
    # A refused write changes nothing, whatever it carries.
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", csv_file.read_bytes(), filename=csv_file.name)
    refused = await client.post("/api/v1/files", data=form, headers={"Host": "attacker.example"})
    assert refused.status == 403
    assert (await (await client.get("/api/v1/files")).json())["files"] == []
    assert list(client.app[CONFIG].uploads_dir.iterdir()) == []
    with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
        await client.ws_connect("/api/v1/ws", headers={"Host": f"attacker.example:{port}"})
    assert failed.value.status == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "app.localhost",
                                  "[::1]:{port}", "[::1]", "10.1.2.3:{port}", "{hostname}", "{hostname}:{port}"])
async def test_ip_literals_localhost_and_the_machines_name_pass(make_client, host: str) -> None:
    client = await make_client()
    header = host.format(port=client.server.port, hostname=socket.gethostname())
    response = await client.get(TASKS, headers={"Host": header})
    assert response.status == 200, (header, await response.text())


@pytest.mark.parametrize("host", ["", "a b", "evil.example:99999", "::1", "127.0.0.1:", "[::1]x", "evil..example"])
async def test_a_malformed_host_is_refused(make_client, host: str) -> None:
    client = await make_client()
    response = await client.get(TASKS, headers={"Host": host})
    assert response.status == 403 and (await error_of(response))["code"] == "host_not_allowed"


async def test_allowed_hosts_follow_djangos_patterns(make_client) -> None:
    client = await make_client(allowed_hosts=("bertd.internal.example", ".corp.example"))
    for host, status in (("bertd.internal.example", 200), ("BERTD.internal.example.:8000", 200),
                         ("corp.example", 200), ("gpu1.corp.example", 200), ("a.b.corp.example:443", 200),
                         ("evilcorp.example", 403), ("internal.example", 403), ("corp.example.evil", 403)):
        response = await client.get(TASKS, headers={"Host": host})
        assert response.status == status, host
    anything = await make_client(allowed_hosts=("*",))
    assert (await anything.get(TASKS, headers={"Host": "whatever.example"})).status == 200


async def test_a_request_without_host_passes(make_client) -> None:
    """HTTP/1.0 clients (and some probes) send no Host; browsers always do."""
    client = await make_client()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"GET /api/v1/health HTTP/1.0\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]


# ---------------------------------------------------------------- Origin and Sec-Fetch-Site

async def test_writes_from_another_origin_are_refused_and_change_nothing(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    task_id = await running_task(client, csv_file)
    port = client.server.port
    attacks = [
        {"Origin": EVIL},
        {"Origin": "null"},  # sandboxed frames and file:// pages
        {"Origin": f"http://127.0.0.2:{port}"},  # another loopback address, same port
        {"Origin": f"http://127.0.0.1:{port + 1}"},  # same address, other port
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},  # a browser that left Origin out
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in attacks:
        # A form post is a "simple" request: browsers send it without asking first.
        response = await client.post(f"{TASKS}/{task_id}/stop", data={"a": "b"}, headers=headers)
        assert response.status == 403, headers
        error = await error_of(response)
        assert error["code"] == "cross_origin_refused" and "ALLOWED_ORIGINS" in error["message"]
        assert f"{TASKS}/{task_id}/stop" in error["message"]
        assert error["details"]["origin"] == headers.get("Origin")
        for method in ("DELETE", "PUT", "PATCH"):
            assert (await client.request(method, f"{TASKS}/{task_id}", headers=headers)).status == 403
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("file", b"text,label\n" * 4, filename="evil.csv")
        assert (await client.post("/api/v1/files", data=form, headers=headers)).status == 403
    first = await error_of(await client.post(f"{TASKS}/{task_id}/stop", headers={"Origin": EVIL}))
    assert first["message"].startswith(f"refused a POST request to {TASKS}/{task_id}/stop from the web page at {EVIL}")
    assert "ALLOWED_ORIGINS=http://evil.example" in first["message"]
    task = await get_task(client, task_id)
    assert task["status"] == "training"
    assert [f["filename"] for f in (await (await client.get("/api/v1/files")).json())["files"]] == [csv_file.name]
    # Reads stay open to every origin: the browser itself keeps another origin's page from reading them.
    assert (await client.get(TASKS, headers={"Origin": EVIL})).status == 200


async def test_websockets_from_another_origin_are_refused_before_the_upgrade(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    task_id = await running_task(client, csv_file)
    for path in ("/api/v1/ws", f"{TASKS}/{task_id}/ws"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
            await client.ws_connect(path, origin=EVIL)
        assert failed.value.status == 403
        response = await client.get(path, headers={**WS_HEADERS, "Origin": EVIL})
        assert response.status == 403 and (await error_of(response))["code"] == "cross_origin_refused"
        assert "refused a WebSocket" in (await error_of(response))["message"]
    own = f"http://127.0.0.1:{client.server.port}"
    async with client.ws_connect("/api/v1/ws", origin=own) as socket:
        assert (await socket.receive_json(timeout=5))["type"] == "snapshot"


async def test_own_origin_and_clients_without_origin_pass(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady")
    port = client.server.port
    own = f"http://127.0.0.1:{port}"
    for headers, host in (({"Origin": own, "Sec-Fetch-Site": "same-origin"}, None),
                          ({"Origin": own}, None),  # a browser without Sec-Fetch-*
                          ({"Origin": f"http://localhost:{port}"}, f"localhost:{port}"),
                          ({"Origin": f"http://[::1]:{port}"}, f"[::1]:{port}"),
                          # behind a TLS proxy that keeps the Host: https origin, plain http to bertd
                          ({"Origin": "https://127.0.0.1"}, "127.0.0.1"),
                          # behind a proxy that rewrites Host: the browser still says same-origin
                          ({"Origin": "https://bertd.example", "Sec-Fetch-Site": "same-origin"}, None),
                          ({"Sec-Fetch-Site": "none"}, None),
                          ({}, None)):  # curl, scripts, the CLI, workers
        all_headers = {**headers, **({"Host": host} if host else {})}
        response = await client.post(TASKS, json={}, headers=all_headers)
        assert response.status == 400, all_headers  # past the guard: the empty body is what is wrong
    task_id = await running_task(client, csv_file)
    stopped = await client.post(f"{TASKS}/{task_id}/stop", headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert stopped.status == 202


# ---------------------------------------------------------------- CORS

async def test_cors_stays_closed_by_default(make_client) -> None:
    client = await make_client()
    response = await client.get(TASKS, headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in response.headers and "Vary" not in response.headers
    preflight = await client.options(TASKS, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    assert (await error_of(preflight))["code"] == "cross_origin_refused"
    # An OPTIONS that is not a preflight is answered as before.
    assert (await client.options(TASKS)).status == 405


async def test_allowed_origins_get_preflights_and_cors_headers(make_client, csv_file: Path) -> None:
    tool = "https://tools.example.com"
    client = await make_client(api_token=TOKEN, allowed_origins=(tool, "http://127.0.0.1:3000"))
    preflight = await client.options(f"{TASKS}/x/stop", headers={
        "Origin": tool, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == tool
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Access-Control-Allow-Credentials" not in preflight.headers  # bearer tokens, never cookies
    listed = await client.get(TASKS, headers={"Origin": tool, **BEARER})
    assert listed.status == 200 and listed.headers["Access-Control-Allow-Origin"] == tool
    assert "Origin" in listed.headers["Vary"] and "Content-Disposition" in listed.headers["Access-Control-Expose-Headers"]
    # Errors carry them too, so the tool can read why.
    unauthorized = await client.get(TASKS, headers={"Origin": tool})
    assert unauthorized.status == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == tool
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", csv_file.read_bytes(), filename=csv_file.name)
    uploaded = await client.post("/api/v1/files", data=form, headers={"Origin": tool, "Sec-Fetch-Site": "cross-site",
                                                                        **BEARER})
    assert uploaded.status == 201 and uploaded.headers["Access-Control-Allow-Origin"] == tool
    async with client.ws_connect("/api/v1/ws", origin="http://127.0.0.1:3000", headers=BEARER) as socket:
        assert (await socket.receive_json(timeout=5))["type"] == "snapshot"
    # Another origin still gets nothing.
    other = await client.get(TASKS, headers={"Origin": EVIL, **BEARER})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    assert (await client.post(TASKS, json={}, headers={"Origin": EVIL, **BEARER})).status == 403


# ---------------------------------------------------------------- tickets

async def test_a_ticket_works_once_for_its_path_and_expires(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    assert (await client.post("/api/v1/tickets")).status == 401  # tickets go to authenticated clients only
    response = await client.post("/api/v1/tickets", json={"path": "/api/v1/ws"}, headers=BEARER)
    body = await response.json()
    assert response.status == 201
    assert set(body) == {"ticket", "path", "expires_at", "expires_in_seconds", "single_use"}
    assert body["path"] == "/api/v1/ws" and body["expires_in_seconds"] == 60 and body["single_use"] is True
    assert body["expires_at"].endswith("Z") and TOKEN not in body["ticket"] and len(body["ticket"]) >= 40

    async with client.ws_connect(f"/api/v1/ws?token={body['ticket']}") as socket:
        assert (await socket.receive_json(timeout=5))["type"] == "snapshot"
    with pytest.raises(aiohttp.WSServerHandshakeError) as again:  # single use
        await client.ws_connect(f"/api/v1/ws?token={body['ticket']}")
    assert again.value.status == 401

    scoped = (await (await client.post("/api/v1/tickets", json={"path": f"{TASKS}/a/ws"}, headers=BEARER)).json())
    refused = await client.get(f"/api/v1/ws?token={scoped['ticket']}", headers=WS_HEADERS)
    assert refused.status == 401 and "for another path than /api/v1/ws" in (await error_of(refused))["message"]

    book: TicketBook = client.app[TICKETS]
    late = (await (await client.post("/api/v1/tickets", headers=BEARER)).json())["ticket"]  # empty body: any path
    issued_at = book.clock()
    book.clock = lambda: issued_at + 60.5
    with pytest.raises(aiohttp.WSServerHandshakeError) as expired:
        await client.ws_connect(f"/api/v1/ws?token={late}")
    assert expired.value.status == 401
    book.clock = lambda: issued_at
    # A ticket opens only WebSockets and downloads, never a route that takes the header.
    other = (await (await client.post("/api/v1/tickets", headers=BEARER)).json())["ticket"]
    assert (await client.get(f"{TASKS}?token={other}")).status == 401


async def test_a_ticket_request_is_validated(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    for body, words in (({"path": "/api/v1/files"}, "must be the path of a WebSocket or a download"),
                        ({"path": "/api/v1/ws?x=1"}, "must be the path of a WebSocket or a download"),
                        ({"path": 3}, "path"),
                        ({"scope": "all"}, "scope")):
        response = await client.post("/api/v1/tickets", json=body, headers=BEARER)
        error = await error_of(response)
        assert response.status == 400 and error["code"] == "validation_error" and words in error["message"], body
    wrong_type = await client.post("/api/v1/tickets", data="path=/api/v1/ws", headers={
        **BEARER, "Content-Type": "application/x-www-form-urlencoded"})
    assert wrong_type.status == 415
    assert len(client.app[TICKETS]) == 0  # nothing issued


def test_the_ticket_book_forgets_expired_tickets_and_caps_the_outstanding() -> None:
    now = [0.0]
    book = TicketBook(lifetime_seconds=60, clock=lambda: now[0])
    first = book.issue(None)
    now[0] = 61
    book.issue("/api/v1/ws")
    assert len(book) == 1 and not book.redeem(first.value, "/api/v1/ws")


async def test_the_openapi_document_lists_tickets_and_the_403s(make_client) -> None:
    client = await make_client()
    document = await (await client.get("/api/v1/openapi.json")).json()
    tickets = document["paths"]["/api/v1/tickets"]["post"]
    assert set(tickets["responses"]) == {"201", "400", "401", "403", "415"}
    assert tickets["requestBody"]["required"] is False
    operations = [(path, method, operation) for path, item in document["paths"].items()
                  for method, operation in item.items() if method != "parameters"]
    for path, method, operation in operations:
        refused = operation["responses"]["403"]["description"]
        assert "host_not_allowed" in refused and "ALLOWED_HOSTS" in refused, (path, method)
        writes_or_socket = method != "get" or path.endswith("/ws")
        assert ("cross_origin_refused" in refused) == writes_or_socket, (path, method)
    for path in ("/api/v1/ws", "/api/v1/training/tasks/{task_id}/ws", "/api/v1/training/tasks/{task_id}/download"):
        assert {"name": "token", "in": "query"}.items() <= document["paths"][path]["parameters"][-1].items()


# ---------------------------------------------------------------- settings

def test_allowed_hosts_and_origins_are_parsed_and_named() -> None:
    config = load_config({"ALLOWED_HOSTS": " api, LocalHost ,.Corp.Example.,*,api",
                          "ALLOWED_ORIGINS": "https://Tools.Example.com/, http://127.0.0.1:3000,https://x.example:443"})
    assert config.allowed_hosts == ("api", "localhost", ".corp.example", "*")
    assert config.allowed_origins == ("https://tools.example.com", "http://127.0.0.1:3000", "https://x.example")
    for raw, words in (("api:8000", "'api:8000' has a port"), ("http://api", "is a URL"),
                       ("bad host", "is not a host name"), (".10.0.0.1", "is not a host name")):
        with pytest.raises(ConfigError, match=f"^ALLOWED_HOSTS: .*{words}"):
            load_config({"ALLOWED_HOSTS": raw})
    for raw, words in (("*", "lists origins one by one"), ("tools.example.com", "is not a web origin"),
                       ("https://tools.example.com/app", "is not a web origin"), ("ftp://x.example", "not a web origin")):
        with pytest.raises(ConfigError, match=f"^ALLOWED_ORIGINS.*{words}"):
            load_config({"ALLOWED_ORIGINS": raw})


def test_host_headers_and_origins_normalise_as_browsers_send_them() -> None:
    assert split_host_header("Example.COM.:8080") == ("example.com", 8080)
    assert split_host_header("[0:0::1]:80") == ("[::1]", 80)
    assert split_host_header("::1") is None and split_host_header("host:0") is None
    assert normalize_origin("HTTP://[::1]:80") == "http://[::1]"
    assert normalize_origin("null") is None and normalize_origin("https://u:p@x.example") is None
