"""A small asynchronous client for the bertd API, used by the command line and the demo."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bertd.cli.language import accept_language, padded, tr, word
from bertd.protocol import PROGRESS_FIELDS

TASKS = "/api/v1/training/tasks"
BASE_MODELS = "/api/v1/base-models"


class ClientError(Exception):
    """The server said no (or could not be reached); the message is one line for the user, `status`
    the HTTP status (None when the server was not reached)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status



@dataclass
class Client:
    url: str
    token: str | None = None
    session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        # The server's error messages come back in the terminal's language.
        headers = {"Accept-Language": accept_language(),
                   **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        self.session = aiohttp.ClientSession(base_url=self.url.rstrip("/") + "/", headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        assert self.session is not None
        try:
            async with self.session.request(method, path.lstrip("/"), **options) as response:
                body = await response.read()
                if response.status >= 400:
                    raise ClientError(_error_text(response.status, body), response.status)
                return json.loads(body) if body else None
        except aiohttp.ClientConnectionError as error:
            raise ClientError(tr("cannot reach bertd at {url}: {error}", url=self.url, error=str(error))) from error

    async def upload(self, path: Path, name: str | None = None) -> dict[str, Any]:
        """Upload `path` (as `name`, by default its own name); the same bytes again answer 200."""
        form = aiohttp.FormData(quote_fields=False)
        with path.open("rb") as handle:
            form.add_field("file", handle, filename=name or path.name)
            return await self._call("POST", "/api/v1/files", data=form)

    async def create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", TASKS, json=body)

    async def tasks(self, status: str | None = None, page_size: int = 50) -> dict[str, Any]:
        params = {"page_size": str(page_size), **({"status": status} if status else {})}
        return await self._call("GET", TASKS, params=params)

    async def task(self, task_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{TASKS}/{task_id}")

    async def stop(self, task_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{TASKS}/{task_id}/stop")

    async def workers(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/workers")

    async def pause(self, task_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{TASKS}/{task_id}/pause")

    async def resume(self, task_id: str) -> dict[str, Any]:
        return await self._call("POST", f"{TASKS}/{task_id}/resume")

    async def delete(self, task_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"{TASKS}/{task_id}")

    async def predict(self, task_id: str, texts: list[str], top_k: int = 1) -> dict[str, Any]:
        return await self._call("POST", f"{TASKS}/{task_id}/predict", json={"texts": texts, "top_k": top_k})

    async def base_models(self) -> dict[str, Any]:
        return await self._call("GET", BASE_MODELS)

    async def pull(self, name: str, source: str | None, revision: str | None) -> dict[str, Any]:
        """Start a download (202) or find the model here (200): the model's entry, with `message`."""
        return await self._call("POST", BASE_MODELS, json={"name": name, "source": source, "revision": revision})

    async def download(self, task_id: str, target_dir: Path) -> Path:
        return await self._save(f"{TASKS}/{task_id}/download", target_dir, f"{task_id}.tar.gz")

    async def _save(self, path: str, target: Path, default_name: str) -> Path:
        """Stream a download to `target`: a folder (the file takes the server's name) or a file path."""
        assert self.session is not None
        try:
            async with self.session.get(path.lstrip("/")) as response:
                if response.status >= 400:
                    raise ClientError(_error_text(response.status, await response.read()), response.status)
                if target.is_dir():
                    name = response.content_disposition.filename if response.content_disposition else None
                    target = target / (name or default_name)
                with target.open("wb") as handle:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        handle.write(chunk)
                return target
        except aiohttp.ClientConnectionError as error:
            raise ClientError(tr("cannot reach bertd at {url}: {error}", url=self.url, error=str(error))) from error

    async def create_prediction(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"{TASKS}/{task_id}/predictions", json=body)

    async def prediction(self, task_id: str, prediction_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{TASKS}/{task_id}/predictions/{prediction_id}")

    async def download_prediction(self, task_id: str, prediction_id: str, target: Path) -> Path:
        return await self._save(f"{TASKS}/{task_id}/predictions/{prediction_id}/download", target,
                                f"{prediction_id}-predicted")

    async def watch(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        """The task's WebSocket messages, snapshot to end."""
        async for body in self._stream(f"{TASKS.lstrip('/')}/{task_id}/ws", tr("task {task_id}", task_id=task_id)):
            yield body
            if body["type"] == "end":
                return

    async def watch_prediction(self, task_id: str, prediction_id: str) -> AsyncIterator[dict[str, Any]]:
        """A prediction job's WebSocket messages, snapshot to end."""
        async for body in self._stream(f"{TASKS.lstrip('/')}/{task_id}/predictions/{prediction_id}/ws",
                                       tr("prediction job {prediction_id}", prediction_id=prediction_id)):
            yield body
            if body["type"] == "prediction_end":
                return

    def everything(self) -> AsyncIterator[dict[str, Any]]:
        """The messages of /api/v1/ws (every task, base model downloads), from its snapshot on."""
        return self._stream("api/v1/ws", tr("the server"))

    async def _stream(self, path: str, what: str) -> AsyncIterator[dict[str, Any]]:
        assert self.session is not None
        # The handshake carries the session's Authorization header: the token never goes into the URL.
        try:
            async with self.session.ws_connect(path, heartbeat=30) as socket:
                async for message in socket:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    yield json.loads(message.data)
        except aiohttp.WSServerHandshakeError as error:
            raise ClientError(tr("cannot watch {what}: HTTP {status}", what=what, status=error.status),
                              error.status) from error
        except aiohttp.ClientConnectionError as error:
            raise ClientError(tr("cannot reach bertd at {url}: {error}", url=self.url, error=str(error))) from error


def _error_text(status: int, body: bytes) -> str:
    try:
        return f"{json.loads(body)['error']['message']} (HTTP {status})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_bytes(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def bar(done: float, total: float | None, width: int = 24) -> str:
    """[####----]  45.2% (an empty bar and ?% while the total is unknown)."""
    if not total:
        return f"[{'-' * width}]     ?%"
    share = min(max(done / total, 0.0), 1.0)
    filled = int(width * share)
    return f"[{'#' * filled}{'-' * (width - filled)}] {100 * share:5.1f}%"


def download_line(name: str, status: str, done: int | None, total: int | None) -> str:
    """One line for a base model download: name, status, a bar, bytes."""
    return tr("{name}  {status}  {bar}  {done} of {total}", name=name, status=padded(word(status), 11),
              bar=bar(done or 0, total), done=format_bytes(done), total=format_bytes(total))


def progress_line(task: dict[str, Any], width: int = 24) -> str:
    """One line: phase, epoch, a bar, step, loss, accuracy, ETA; while the base model downloads,
    the download's bar and bytes."""
    progress = task.get("progress") or {}
    if progress.get("phase") == "downloading_base_model":
        done, total = progress.get("download_bytes_done"), progress.get("download_bytes_total")
        return tr("{status}  downloading base model {name}  {bar}  {done} of {total}",
                  status=padded(word(task.get("status")), 9), name=task.get("base_model", ""),
                  bar=bar(done or 0, total, width), done=format_bytes(done), total=format_bytes(total))
    percentage = progress.get("progress_percentage") or 0.0
    filled = int(width * percentage / 100)
    parts = [padded(word(task.get("status")), 9), padded(word(progress.get("phase", "")), 13),
             tr("epoch {epoch}/{epochs}", epoch=progress.get("current_epoch") or 0,
                epochs=progress.get("total_epochs") or "?"),
             f"[{'#' * filled}{'-' * (width - filled)}] {percentage:5.1f}%"]
    if progress.get("train_loss") is not None:
        parts.append(tr("loss {loss:.3f}", loss=progress["train_loss"]))
    if progress.get("val_accuracy") is not None:
        parts.append(tr("val_acc {accuracy:.3f}", accuracy=progress["val_accuracy"]))
    if progress.get("eta_seconds") is not None and task.get("status") == "training":
        parts.append(tr("ETA {eta}", eta=format_seconds(progress["eta_seconds"])))
    return "  ".join(parts)


def resumed_line(message: dict[str, Any]) -> str:
    if message.get("epoch_complete"):
        return tr("continues from its checkpoint at the end of epoch {epoch} (step {step})", epoch=message["epoch"],
                  step=message["step"])
    return tr("continues from its checkpoint within epoch {epoch} (step {step})", epoch=message["epoch"],
              step=message["step"])


async def follow(client: Client, task_id: str, show: Callable[[dict[str, Any]], None],
                 note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Apply the stream to a local copy of the task, call `show` on every change and `note` with a
    line for events worth a line of their own (a resume); the task once it ends or is paused."""
    task: dict[str, Any] = {}
    async for message in client.watch(task_id):
        kind = message["type"]
        if kind in ("snapshot", "end"):
            task = message["task"]
        elif kind == "progress":
            task["progress"] = {name: message[name] for name in PROGRESS_FIELDS if name in message}
        elif kind == "status":
            task["status"] = message["status"]
        elif kind == "epoch":
            task.setdefault("progress", {}).update(
                {k: message[k] for k in ("val_accuracy", "val_macro_f1", "val_loss") if k in message})
        elif kind == "resumed":
            note(resumed_line(message))
        show(task)
        if task.get("status") == "paused":  # nothing more comes until someone resumes it
            break
    return task
