"""Health, the OpenAPI document (covering every route) and the self-hosted interactive docs."""

from __future__ import annotations

import re

from bertd.protocol import Hyperparameters


async def test_health(make_client) -> None:
    client = await make_client(max_concurrent_tasks=2)
    response = await client.get("/api/v1/health")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ok" and body["version"]
    assert body["max_concurrent_tasks"] == 2 and body["training"] == 0 and body["queued"] == 0
    assert any(device["type"] == "cpu" for device in body["devices"])


async def test_openapi_describes_every_route(make_client) -> None:
    client = await make_client()
    document = await (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    routes = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method == "HEAD" or path.startswith(("/api/v1/docs/assets", "/static")):
            continue
        routes.add((re.sub(r"\{(\w+)\}", r"{\1}", path), route.method.lower()))
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "delete", "put", "patch")}
    assert routes == documented
    request_schema = document["components"]["schemas"]["TaskRequest"]
    hyperparameters = request_schema["properties"]["hyperparameters"]["properties"]
    assert set(hyperparameters) == set(Hyperparameters.model_fields)
    assert all("default" in schema for schema in hyperparameters.values())
    assert request_schema["additionalProperties"] is False


async def test_docs_are_served_without_internet(make_client) -> None:
    client = await make_client()
    page = await client.get("/api/v1/docs")
    html = await page.text()
    assert page.status == 200 and "swagger-ui-bundle.js" in html and "/api/v1/openapi.json" in html
    for asset in re.findall(r'(?:src|href)="(/api/v1/docs/assets/[^"]+)"', html):
        response = await client.get(asset)
        assert response.status == 200, asset
        assert len(await response.read()) > 1000
