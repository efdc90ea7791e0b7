"""HTTP handlers for uploads: POST/GET/DELETE /api/v1/files. No SQL here: the store does that."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from loguru import logger

from bertd.i18n import Text
from bertd.runtime.copied_uploads import register_copied_files
from bertd.server.errors import ApiError, conflict, not_found, validation_error
from bertd.server.keys import CONFIG, STORE, UPLOAD_LOCK
from bertd.server.responses import json_response
from bertd.sheets import SUPPORTED_SUFFIXES, SheetError, read_sheet_metadata
from bertd.state.records import FileRecord, utc_now

CHUNK_BYTES = 1 << 20
MAX_FILENAME_BYTES = 255


PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def decoded_filename(raw: str) -> str:
    """Some clients (aiohttp, several Java ones) percent-encode a non-ASCII filename; curl and
    browsers send UTF-8. An ASCII name whose escapes decode to non-ASCII UTF-8 was encoded."""
    if raw.isascii() and PERCENT_ESCAPE.search(raw):
        try:
            decoded = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return raw
        if not decoded.isascii():
            return decoded
    return raw


def checked_filename(raw: str | None) -> str:
    """The upload's name as it will be stored, or an error if it could leave the uploads folder."""
    if not raw:
        raise validation_error(Text("the 'file' part has no filename; send it as a file field"), "file")
    name = unicodedata.normalize("NFC", decoded_filename(raw))
    if any(separator in name for separator in ("/", "\\")) or name in (".", ".."):
        raise validation_error(Text("filename {name!r} must be a plain file name without folders", name=raw), "file")
    if name.startswith(".") or any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        raise validation_error(Text("filename {name!r} must not start with '.' or contain control characters",
                                    name=raw), "file")
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise validation_error(Text("filename is longer than {limit} bytes", limit=MAX_FILENAME_BYTES), "file")
    if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ApiError(415, "unsupported_media_type",
                       Text("file {name!r} is not a .xlsx or .csv file; upload an Excel workbook (.xlsx) or a CSV "
                            "file", name=name),
                       {"field": "file", "filename": name})
    return name


async def _file_part(request: web.Request) -> BodyPartReader:
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       Text("POST /api/v1/files expects multipart/form-data with one part named 'file'"),
                       {"content_type": request.content_type})
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None:
            if isinstance(part, BodyPartReader) and part.name == "file":
                return part
            await part.release()
            part = await reader.next()
    except (ValueError, HttpProcessingError) as error:  # no boundary, broken framing, bad part headers
        raise ApiError(400, "invalid_multipart", Text("the multipart/form-data body cannot be read: {error}",
                                                      error=str(error)),
                       {"field": "file"}) from error
    raise validation_error(Text("the multipart body has no part named 'file'"), "file")


async def _read_chunk(part: BodyPartReader) -> bytes:
    try:
        return await part.read_chunk(CHUNK_BYTES)
    except (ValueError, HttpProcessingError) as error:
        raise ApiError(400, "invalid_multipart", Text("the uploaded file part cannot be read: {error}",
                                                      error=str(error)),
                       {"field": "file"}) from error


async def _save_stream(part: BodyPartReader, target: Path, limit_bytes: int) -> tuple[int, str]:
    """Stream the part to `target`, counting bytes: aiohttp does not bound a streamed part itself."""
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as handle:
        while chunk := await _read_chunk(part):
            size += len(chunk)
            if size > limit_bytes:
                raise ApiError(413, "payload_too_large",
                               Text("the upload is larger than MAX_UPLOAD_MB ({limit} MB)",
                                    limit=limit_bytes // (1 << 20)),
                               {"field": "file", "max_bytes": limit_bytes})
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return size, digest.hexdigest()


async def upload_file(request: web.Request) -> web.Response:
    config, store = request.app[CONFIG], request.app[STORE]
    part = await _file_part(request)
    filename = checked_filename(part.filename)
    uploads = config.uploads_dir
    # The temporary name keeps the real suffix: the readers pick their parser by it.
    temporary = uploads / f".upload-{uuid.uuid4().hex}{Path(filename).suffix.lower()}"
    try:
        try:
            size, sha256 = await _save_stream(part, temporary, config.max_upload_mb * (1 << 20))
        except OSError as error:
            raise ApiError(507, "insufficient_storage",
                           Text("could not store {name!r} in {folder}: {reason}; free space in DATA_DIR or make it "
                                "writable", name=filename, folder=str(uploads), reason=error.strerror or str(error)),
                           {"field": "file"}) from error
        if size == 0:
            raise validation_error(Text("file {name!r} is empty", name=filename), "file")
        try:
            sheets = await asyncio.to_thread(read_sheet_metadata, temporary, filename)
        except SheetError as error:
            message = error.text.replacing(temporary.name, repr(filename))
            raise validation_error(message, "file", filename=filename) from error
        async with request.app[UPLOAD_LOCK]:
            existing = await store.get_file(filename)
            if existing is not None:
                if existing.sha256 == sha256:
                    return json_response(existing.to_json(), status=200)
                raise conflict(Text("a different file named {name!r} is already uploaded; delete it first or "
                                    "upload under another name", name=filename), filename=filename,
                               sha256=existing.sha256)
            record = FileRecord(filename, size, sha256, utc_now(), sheets)
            final = uploads / filename
            try:
                os.replace(temporary, final)
            except OSError as error:
                raise ApiError(507, "insufficient_storage", Text("could not store {name!r} in {folder}: {reason}",
                               name=filename, folder=str(uploads), reason=error.strerror or str(error)),
                               {"field": "file"}) from error
            try:
                await store.insert_file(record)
            except BaseException:
                final.unlink(missing_ok=True)
                raise
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("file {} uploaded ({} bytes, {} sheet(s))", filename, size, len(sheets))
    return json_response(record.to_json(), status=201)


async def rescan_files(request: web.Request) -> web.Response:
    """Register files copied into the uploads folder by hand since the last scan."""
    config = request.app[CONFIG]
    result = await register_copied_files(request.app[STORE], config.uploads_dir, request.app[UPLOAD_LOCK])
    return json_response(result.to_json())


async def list_files(request: web.Request) -> web.Response:
    files = await request.app[STORE].list_files()
    return json_response({"files": [record.to_json() for record in files]})


async def get_file(request: web.Request) -> web.Response:
    filename = request.match_info["filename"]
    record = await request.app[STORE].get_file(filename)
    if record is None:
        raise not_found(no_such_file(filename))
    return json_response(record.to_json())


def no_such_file(filename: str) -> Text:
    return Text("no uploaded file named {name!r}", name=filename)


async def delete_file(request: web.Request) -> web.Response:
    config, store = request.app[CONFIG], request.app[STORE]
    filename = request.match_info["filename"]
    if await store.get_file(filename) is None:
        raise not_found(no_such_file(filename))
    users = await store.delete_file_unless_used(filename)
    if users:
        raise conflict(Text("file {name!r} is used by {count} queued or training task(s) or queued or running "
                            "prediction job(s); stop or delete them first", name=filename, count=len(users)),
                       task_ids=users)
    (config.uploads_dir / filename).unlink(missing_ok=True)
    logger.info("file {} deleted", filename)
    return json_response({"filename": filename, "deleted": True, "message": f"file {filename!r} deleted"})
