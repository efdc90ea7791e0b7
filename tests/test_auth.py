"""API_TOKEN: bearer auth on every route but health, openapi.json and docs; WebSockets and download
links via ?token=<ticket> (tickets themselves: tests/test_browser_guard.py)."""

from __future__ import annotations

import aiohttp
import pytest

from helpers import TASKS

TOKEN = "correct-horse-battery"


async def test_routes_need_the_token(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    for path in (TASKS, "/api/v1/files", f"{TASKS}/x/events"):
        response = await client.get(path)
        assert response.status == 401, path
        body = await response.json()
        assert body["error"]["code"] == "unauthorized" and "Authorization: Bearer" in body["error"]["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer wrong", "Bearer 密码", "Basic abc", TOKEN):
        response = await client.get(TASKS, headers={"Authorization": header})
        assert response.status == 401, header
    ok = await client.get(TASKS, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    create = await client.post(TASKS, json={}, headers={"Authorization": "Bearer nope"})
    assert create.status == 401  # rejected before validation: nothing about the body leaks


async def test_health_openapi_and_docs_stay_open(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    for path in ("/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/assets/swagger-ui.css"):
        assert (await client.get(path)).status == 200, path


async def ticket(client, path: str | None = None) -> str:
    response = await client.post("/api/v1/tickets", json={"path": path},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    body = await response.json()
    assert response.status == 201, body
    return body["ticket"]


async def test_websockets_take_a_ticket_never_the_token(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await client.ws_connect("/api/v1/ws")
    assert error.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/api/v1/ws?token=wrong")
    # The API token itself is refused in a URL, with a message that says what to do instead.
    refused = await client.get(f"/api/v1/ws?token={TOKEN}", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert refused.status == 401
    assert "POST /api/v1/tickets" in (await refused.json())["error"]["message"]
    async with client.ws_connect(f"/api/v1/ws?token={await ticket(client, '/api/v1/ws')}") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
    async with client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"


async def test_download_links_take_a_ticket(make_client) -> None:
    client = await make_client(api_token=TOKEN)
    assert (await client.get(f"{TASKS}/x/download")).status == 401
    assert (await client.get(f"{TASKS}/x/download?token={TOKEN}")).status == 401
    one_use = await ticket(client)
    assert (await client.get(f"{TASKS}/x/download?token={one_use}")).status == 404  # past auth: no such task
    assert (await client.get(f"{TASKS}/x/download?token={one_use}")).status == 401  # spent
    assert (await client.get(f"{TASKS}/x?token={await ticket(client)}")).status == 401  # other routes need the header
