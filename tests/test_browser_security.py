"""Attacks through a browser, from a real headless Chromium: a page served by another origin
(http://127.0.0.2:<port>) posts a form to stop a running task, uploads a file as multipart, opens the
live WebSocket; a DNS-rebinding page (attacker.example made to resolve to 127.0.0.1) reads and
writes as if it were bertd's own origin. Each is refused and changes nothing. The same actions from
the dashboard itself (also behind a reverse proxy's host name, and with API_TOKEN through tickets),
from the CLI and from clients without Origin still work. HTTP-level cases: test_browser_guard.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bertd.server.keys import CONFIG

from helpers import TASKS, create, get_task, task_body, upload, wait_for

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None

# As tests/test_dashboard.py: Debian's Chromium, never a browser playwright downloads.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # DNS as an attacker (rebinding) or a company's DNS (a reverse proxy's name) would answer.
    "--host-resolver-rules=MAP attacker.example 127.0.0.1, MAP bertd.internal.example 127.0.0.1",
]
ATTACKER_HOST = "127.0.0.2"  # Linux routes all of 127/8 to the loopback interface
TOKEN = "s3cret-token"

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@contextlib.asynccontextmanager
async def chromium_page(*extra_args: str) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                            args=[*CHROMIUM_ARGS, *extra_args])
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            await browser.close()


async def attacker_site(aiohttp_server, pages: dict[str, str]) -> str:
    """Another origin on the same machine, serving the attacker's pages; its base URL."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=pages[request.match_info["name"]], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    server = await aiohttp_server(app, host=ATTACKER_HOST)
    return f"http://{ATTACKER_HOST}:{server.port}"


async def running_task(client, csv_file: Path) -> str:
    """A stand-in task training for about a minute (random_seed = milliseconds per step, 20 steps)."""
    assert (await upload(client, csv_file)).status == 201
    task_id = (await create(client, task_body(csv_file.name, random_seed=3000, sheet_name=None)))["task_id"]
    await wait_for(client, task_id, {"training"}, timeout=30)
    return task_id


async def file_names(client) -> list[str]:
    return [f["filename"] for f in (await (await client.get("/api/v1/files")).json())["files"]]


# Run in the attacker's page: a WebSocket to `url`; what it saw once it closed (or after 5 s).
OPEN_SOCKET = """(url) => new Promise((resolve) => {
  const seen = {opened: false, messages: [], code: null};
  const socket = new WebSocket(url);
  socket.onopen = () => { seen.opened = true; };
  socket.onmessage = (event) => seen.messages.push(String(event.data).slice(0, 200));
  socket.onclose = (event) => { seen.code = event.code; resolve(seen); };
  setTimeout(() => { socket.close(); resolve(seen); }, 5000);
})"""


async def test_another_origins_page_cannot_stop_upload_or_listen(make_client, aiohttp_server, csv_file: Path,
                                                                  tmp_path: Path) -> None:
    client = await make_client(training_function="standin:steady")
    task_id = await running_task(client, csv_file)
    bertd = f"http://127.0.0.1:{client.server.port}"
    stop_url = f"{bertd}{TASKS}/{task_id}/stop"
    attacker = await attacker_site(aiohttp_server, {
        # A form post: a "simple" request that browsers send to any site without asking first.
        "form": f"""<form id="f" method="POST" action="{stop_url}" enctype="application/x-www-form-urlencoded">
                    <input name="reason" value="pwned"></form><script>document.getElementById("f").submit()</script>""",
        "blank": "<p>attacker</p>",
    })
    async with chromium_page() as page:
        async with page.expect_response(stop_url) as stop_answer:
            await page.goto(f"{attacker}/form")
        answer = await stop_answer.value
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "cross_origin_refused"
        assert answer.request.headers["origin"] == attacker  # what the guard judged

        # A multipart upload with fetch(): also a simple request (mode no-cors), also sent without asking.
        await page.goto(f"{attacker}/blank")
        async with page.expect_response(f"{bertd}/api/v1/files") as upload_answer:
            sent = await page.evaluate("""(url) => {
                const form = new FormData();
                form.append("file", new Blob(["内容,标签\\n工厂废气,工业废气\\n工地扬尘,扬尘\\n"]), "attack.csv");
                return fetch(url, {method: "POST", body: form, mode: "no-cors"}).then((r) => r.type, (e) => String(e));
            }""", f"{bertd}/api/v1/files")
        assert sent == "opaque" and (await upload_answer.value).status == 403

        # The live stream: names, files and metrics of every task, if the handshake were accepted.
        seen = await page.evaluate(OPEN_SOCKET, f"ws://127.0.0.1:{client.server.port}/api/v1/ws")
        assert seen == {"opened": False, "messages": [], "code": 1006}
        seen = await page.evaluate(OPEN_SOCKET, f"ws://127.0.0.1:{client.server.port}{TASKS}/{task_id}/ws")
        assert seen == {"opened": False, "messages": [], "code": 1006}

    task = await get_task(client, task_id)
    assert task["status"] == "training" and task["progress"]["step"] < 20
    assert await file_names(client) == [csv_file.name]
    assert sorted(p.name for p in client.app[CONFIG].uploads_dir.iterdir()) == [csv_file.name]

    # The same stop from a client outside a browser (no Origin, as curl sends it) works.
    stopped = await client.post(f"{TASKS}/{task_id}/stop", data={"reason": "mine"})
    assert stopped.status == 202


async def test_a_dns_rebinding_page_gets_nothing(make_client, csv_file: Path) -> None:
    """After rebinding, the attacker's page and bertd share an origin: only the Host header tells them apart."""
    client = await make_client(training_function="standin:steady")
    task_id = await running_task(client, csv_file)
    port = client.server.port
    rebound = f"http://attacker.example:{port}"
    # Chromium 142+ asks the user before a page from the internet reaches the local network (Local
    # Network Access); Firefox, Safari and older Chromes do not, and a user may say yes. Off here,
    # so it is bertd that refuses.
    async with chromium_page("--disable-features=LocalNetworkAccessChecks") as page:
        # The page comes from the attacker (while attacker.example still resolved to its server) ...
        await page.route(f"{rebound}/", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<p>cute cats</p>"))
        await page.goto(f"{rebound}/")
        # ... then the name resolves to 127.0.0.1 (here, for good: --host-resolver-rules) and its
        # same-origin requests reach bertd, responses readable by the page.
        result = await page.evaluate("""async ([taskId, port]) => {
            const read = await fetch("/api/v1/training/tasks");
            const stop = await fetch(`/api/v1/training/tasks/${taskId}/stop`, {method: "POST"});
            return {read: read.status, body: await read.text(), stop: stop.status, stopBody: await stop.text()};
        }""", [task_id, port])
        assert result["read"] == 403 and result["stop"] == 403
        assert task_id not in result["body"] and "空气污染分类" not in result["body"]
        refused = json.loads(result["body"])["error"]
        assert refused["code"] == "host_not_allowed" and refused["details"]["host"] == "attacker.example"
        assert json.loads(result["stopBody"])["error"]["code"] == "host_not_allowed"
        seen = await page.evaluate(OPEN_SOCKET, f"ws://attacker.example:{port}/api/v1/ws")
        assert seen == {"opened": False, "messages": [], "code": 1006}
        # The dashboard under a name bertd does not know is refused too (a proxy's name must be configured).
        answer = await page.goto(f"http://bertd.internal.example:{port}/")
        assert answer is not None and answer.status == 403
        assert "ALLOWED_HOSTS" in await page.content()
    assert (await get_task(client, task_id))["status"] == "training"


async def test_the_dashboard_still_works_from_its_own_origin(make_client, csv_file: Path, tmp_path: Path) -> None:
    client = await make_client(training_function="standin:steady")
    task_id = await running_task(client, csv_file)
    bertd = f"http://127.0.0.1:{client.server.port}"
    second = tmp_path / "第二份数据.csv"
    second.write_bytes(csv_file.read_bytes())
    async with chromium_page() as page:
        await page.goto(f"{bertd}/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")  # its WebSocket
        await page.set_input_files("#upload-file", str(second))
        await page.click("#upload-button")  # multipart, from its own origin
        await expect(page.locator("#upload-sheets")).to_contain_text("内容")
        await page.click(f'.task-row[data-task-id="{task_id}"]')
        await expect(page.locator("#task-status")).to_have_attribute("data-status", "training")
        await page.click("#stop-button")
        await expect(page.locator("#task-status")).to_have_attribute("data-status", "stopped", timeout=30_000)
    assert sorted(await file_names(client)) == sorted([csv_file.name, second.name])
    assert (await get_task(client, task_id))["status"] == "stopped"


async def test_the_dashboard_behind_a_proxy_name_works_once_configured(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady", allowed_hosts=("bertd.internal.example",))
    task_id = await running_task(client, csv_file)
    async with chromium_page() as page:
        await page.goto(f"http://bertd.internal.example:{client.server.port}/#/tasks/{task_id}")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
        await page.click("#stop-button")
        await expect(page.locator("#task-status")).to_have_attribute("data-status", "stopped", timeout=30_000)


async def test_the_dashboard_with_a_token_puts_only_tickets_in_urls(make_client, csv_file: Path) -> None:
    client = await make_client(training_function="standin:steady", api_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    client.session.headers.update(bearer)  # this test's own calls, as a script with the token would make them
    assert (await upload(client, csv_file)).status == 201
    task_id = (await create(client, task_body(csv_file.name, random_seed=5, sheet_name=None)))["task_id"]
    task = await wait_for(client, task_id, {"completed"}, timeout=30)
    # The stand-in leaves a marker file only; a config.json makes it a model bertd will pack.
    (Path(task["artifacts"]["model_path"]) / "config.json").write_text("{}", encoding="utf-8")
    async with chromium_page() as page:
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.on("websocket", lambda socket: urls.append(socket.url))
        await page.add_init_script(f"localStorage.setItem('bertd.apiToken', {json.dumps(TOKEN)})")
        await page.goto(f"http://127.0.0.1:{client.server.port}/#/tasks/{task_id}")
        await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
        await expect(page.locator("#task-status")).to_have_attribute("data-status", "completed")
        link = page.locator("#download-link")
        await expect(link).to_have_attribute("href", f"/api/v1/training/tasks/{task_id}/download")
        async with page.expect_download() as download_info:
            await link.click()
        download = await download_info.value
        assert download.suggested_filename == f"air-pollution-{task_id[:8]}.tar.gz"
        assert Path(await download.path()).stat().st_size > 0
        urls.append(download.url)
    assert not [url for url in urls if TOKEN in url]
    sockets = [url for url in urls if url.startswith("ws://")]
    assert sockets and all("?token=" in url for url in sockets)
    assert download.url.startswith(f"http://127.0.0.1:{client.server.port}/api/v1/training/tasks/{task_id}/download?token=")


async def test_the_cli_and_scripts_are_not_affected(make_client, csv_file: Path) -> None:
    """Clients outside a browser send no Origin: the CLI stops and watches (its token in a header)."""
    client = await make_client(training_function="standin:steady", api_token=TOKEN)
    client.session.headers.update({"Authorization": f"Bearer {TOKEN}"})
    task_id = await running_task(client, csv_file)
    url = f"http://127.0.0.1:{client.server.port}"

    async def bertd(*arguments: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bertd", *arguments, "--url", url, "--token", TOKEN,
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        return process.returncode or 0, out.decode(), err.decode()

    watching = asyncio.create_task(bertd("watch", task_id, "--json"))
    await asyncio.sleep(3)  # the CLI's WebSocket is open
    code, out, err = await bertd("stop", task_id)
    assert code == 0 and f"task {task_id} stopping" in out, err
    code, out, err = await watching
    assert code == 1 and json.loads(out)["status"] == "stopped", err  # the stream followed the stop to its end
