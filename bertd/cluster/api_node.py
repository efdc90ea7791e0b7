"""A worker box's HTTP client of the API node's internal routes (WORKER_TOKEN): the handshake, the
data files (cached by sha256), base models, and the finished model going back."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bertd.protocol import Artifacts

INTERNAL = "/api/v1/internal"
CHUNK = 1 << 20
# A trained model is worth waiting for while the API node restarts.
UPLOAD_PATIENCE_SECONDS = 600


class ApiNodeError(Exception):
    """The API node refused or could not be reached; the message says which and why."""


class ApiNode:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _session(self, timeout: float | None = 60) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self._headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10))

    @staticmethod
    async def _refusal(response: aiohttp.ClientResponse) -> ApiNodeError:
        try:
            detail = (await response.json())["error"]["message"]
        except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
            detail = (await response.text())[:200]
        return ApiNodeError(f"the API node answered {response.status} to {response.method} {response.url.path}: "
                            f"{detail}")

    async def hello(self) -> dict[str, Any]:
        """Who the API node is (its protocol version); refused without the right WORKER_TOKEN."""
        try:
            async with self._session(15) as session, session.get(f"{self.url}{INTERNAL}/hello") as response:
                if response.status != 200:
                    raise await self._refusal(response)
                return await response.json()
        except aiohttp.ClientError as error:
            raise ApiNodeError(f"cannot reach the API node at {self.url}: {error}") from error

    async def fetch_file(self, filename: str, sha256: str, cache_dir: Path) -> Path:
        """The upload, from the cache when its bytes are already here (keyed by sha256)."""
        cached = cache_dir / f"{sha256}{Path(filename).suffix.lower()}"
        if cached.is_file():
            return cached
        cache_dir.mkdir(parents=True, exist_ok=True)
        url = f"{self.url}{INTERNAL}/files/{quote(filename, safe='')}"
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".download-", delete=False) as partial:
            try:
                async with self._session(None) as session, session.get(url) as response:
                    if response.status != 200:
                        raise await self._refusal(response)
                    async for chunk in response.content.iter_chunked(CHUNK):
                        digest.update(chunk)
                        partial.write(chunk)
            except BaseException:
                Path(partial.name).unlink(missing_ok=True)
                raise
        if digest.hexdigest() != sha256:
            Path(partial.name).unlink(missing_ok=True)
            raise ApiNodeError(f"{filename} arrived with sha256 {digest.hexdigest()}, expected {sha256}")
        Path(partial.name).rename(cached)
        return cached

    async def fetch_base_model(self, name: str, base_models_dir: Path) -> Path:
        """The base model folder, from the API node when this box does not have it."""
        target = base_models_dir / name
        if (target / "config.json").is_file():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        async with self._session(None) as session, \
                session.get(f"{self.url}{INTERNAL}/base-models/{quote(name, safe='')}") as response:
            if response.status != 200:
                raise await self._refusal(response)
            archive = io.BytesIO(await response.read())
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            tar.extractall(partial, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target

    async def upload_model(self, task_id: str, run_id: str, model_dir: Path,
                           patience_seconds: float = UPLOAD_PATIENCE_SECONDS) -> Artifacts:
        """Pack the model, send it with its sha256; the API node has it in place when this returns.
        An API node that cannot be reached (restarting, say) is tried again for `patience_seconds`."""
        deadline = time.monotonic() + patience_seconds
        while True:
            try:
                return await self._upload_model(task_id, run_id, model_dir)
            except aiohttp.ClientConnectionError as error:
                if time.monotonic() > deadline:
                    raise ApiNodeError(f"cannot reach the API node at {self.url}: {error}") from error
                await asyncio.sleep(2.0)

    async def _upload_model(self, task_id: str, run_id: str, model_dir: Path) -> Artifacts:
        with tempfile.TemporaryDirectory(prefix="bertd-upload-") as folder:
            archive = Path(folder) / "model.tar.gz"
            with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
                for path in sorted(model_dir.rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
            digest = hashlib.sha256()
            with archive.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
            url = f"{self.url}{INTERNAL}/tasks/{task_id}/model"
            async with self._session(None) as session:
                with archive.open("rb") as handle:
                    async with session.put(url, data=handle, params={"run_id": run_id},
                                           headers={"Content-Type": "application/gzip",
                                                    "X-Content-SHA256": digest.hexdigest()}) as response:
                        if response.status != 200:
                            raise await self._refusal(response)
                        return Artifacts.model_validate((await response.json())["artifacts"])
