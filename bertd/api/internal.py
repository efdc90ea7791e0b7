"""Routes only `bertd worker` boxes call (/api/v1/internal/*, WORKER_TOKEN): the handshake, a task's
data files and base model, and the finished model coming back (sha256 verified, written to a
.partial folder, renamed; the task completes only once it is in place)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

from aiohttp import web
from loguru import logger

from bertd import __version__
from bertd.cluster.contract import PROTOCOL_VERSION
from bertd.protocol import Artifacts, partial_path
from bertd.server.errors import ApiError, conflict, not_found, validation_error
from bertd.server.keys import CONFIG, MODEL_STORE, STORE
from bertd.server.responses import json_response
from bertd.state.records import TaskStatus
from bertd.training.base_model import resolve_base_model

CHUNK = 1 << 20


async def hello(_request: web.Request) -> web.Response:
    return json_response({"protocol": PROTOCOL_VERSION, "version": __version__})


async def get_file(request: web.Request) -> web.StreamResponse:
    filename = request.match_info["filename"]
    record = await request.app[STORE].get_file(filename)
    if record is None:
        raise not_found(f"no uploaded file named {filename!r}")
    return web.FileResponse(request.app[CONFIG].uploads_dir / filename,
                            headers={"X-Content-SHA256": record.sha256})


def _pack(folder: Path, target: Path) -> None:
    # dereference: a Hugging Face cache snapshot is links to blobs; the box gets the files.
    with tarfile.open(target, "w:gz", compresslevel=1, dereference=True) as tar:
        for path in sorted(folder.rglob("*")):
            if ".cache" not in path.relative_to(folder).parts:
                tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)


async def get_base_model(request: web.Request) -> web.StreamResponse:
    """The base model folder as a .tar.gz, for a box that does not have it."""
    name = request.match_info["name"]
    config = request.app[CONFIG]
    try:
        folder = await asyncio.to_thread(resolve_base_model, name, config.effective_base_models_dir)
    except ValueError as error:
        raise not_found(str(error)) from None
    scratch = Path(tempfile.mkdtemp(prefix="bertd-base-model-"))
    archive = scratch / "model.tar.gz"
    try:
        await asyncio.to_thread(_pack, folder, archive)
        response = web.StreamResponse(headers={"Content-Type": "application/gzip"})
        await response.prepare(request)
        with archive.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(archive: Path, target: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        # The "data" filter refuses absolute paths, links out of the folder and device files.
        tar.extractall(target, filter="data")


async def put_model(request: web.Request) -> web.Response:
    """The trained model from the box that ran the task's current run."""
    task_id = request.match_info["task_id"]
    run_id = request.query.get("run_id", "")
    expected = request.headers.get("X-Content-SHA256", "").lower()
    task = await request.app[STORE].get_task(task_id)
    if task is None:
        raise not_found(f"no training task with task_id {task_id!r}")
    if task.run_id != run_id or task.status not in (TaskStatus.TRAINING, TaskStatus.STOPPING):
        raise conflict(f"task {task_id} is {task.status} and its current run is not {run_id!r}; the model is not "
                       "wanted any more")
    if len(expected) != 64:
        raise validation_error("the X-Content-SHA256 header must carry the archive's sha256", "X-Content-SHA256")
    model_dir = request.app[MODEL_STORE].model_dir(task_id)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    archive = model_dir.with_name(f".{task_id}-{uuid.uuid4().hex}.tar.gz")
    partial = partial_path(model_dir)
    try:
        digest = hashlib.sha256()
        with archive.open("wb") as handle:
            while chunk := await request.content.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
        if digest.hexdigest() != expected:
            raise ApiError(400, "checksum_mismatch", f"the model arrived with sha256 {digest.hexdigest()}, the "
                           f"worker sent {expected}; nothing was kept", {"field": "X-Content-SHA256"})
        shutil.rmtree(partial, ignore_errors=True)
        await asyncio.to_thread(_unpack, archive, partial)
        if not (partial / "config.json").is_file():
            raise validation_error("the model archive has no config.json", "body")
        shutil.rmtree(model_dir, ignore_errors=True)
        partial.rename(model_dir)
    except OSError as error:
        raise ApiError(507, "insufficient_storage", f"could not store the model of task {task_id}: "
                       f"{error.strerror or error}") from error
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    logger.info("task {}: model received from its worker ({} in place)", task_id, model_dir)
    artifacts = Artifacts(model_path=str(model_dir), label_mapping_path=str(model_dir / "labels.json"),
                          metrics_path=str(model_dir / "metrics.json"))
    return json_response({"artifacts": artifacts.model_dump()})
